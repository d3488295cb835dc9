"""A RandomForest bento under a real `bentoml serve`: scored by the NumPy tree walk, with the
Pipeline's answers, by workers that never load scikit-learn or pandas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.serving.conftest import Server, version_two_served
from tests.serving.test_service import GOOD, served_test_split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def forest(
    trained_repo: Path, home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str, Server]]:
    """Version 2 a RandomForest (100 trees), built with serving.scorer auto and served."""
    with version_two_served(
        trained_repo,
        home,
        tmp_path_factory,
        "forest",
        {
            "train": {
                "estimator": "sklearn.ensemble.RandomForestClassifier",
                "hyperparameters": {"n_estimators": 100, "random_state": 0},
            }
        },
    ) as served:
        yield served


def test_the_build_picks_the_tree_walk(forest: tuple[Path, str, Server]) -> None:
    _, printed, srv = forest
    assert (
        "build: scorer numpy-trees: NumPy tree walk (RandomForestClassifier; max |Δ| 0.0e+00 "
        "on 300 rows)" in printed
    ), printed
    status, info = srv.call("/model_info")
    assert status == 200 and info["scorer"] == "numpy-trees" and info["model_version"] == "2"


def test_served_forest_scores_equal_the_pipeline(forest: tuple[Path, str, Server]) -> None:
    repo, _, srv = forest
    rows, expected, body = served_test_split(srv, repo)
    served = np.array([p["probability"] for p in body["predictions"]])
    assert np.max(np.abs(served - expected)) <= 1e-12
    for i in (0, 7, 42):
        status, one = srv.call("/predict", {"applicant": rows[i]})
        assert status == 200 and abs(one["probability"] - expected[i]) <= 1e-12, one


def test_served_reasons_are_treeshap_of_the_forest(forest: tuple[Path, str, Server]) -> None:
    """/explain of a forest: exact TreeSHAP in the worker's NumPy, the contributions this
    process computes from the Pipeline, adding up to the forest's probability."""
    import joblib
    import pandas as pd

    from mlgate.serving.explainers import make_explainer

    repo, printed, srv = forest
    assert (
        "build: explain treeshap: contributions to the probability (base + contributions" in printed
    )
    model = joblib.load(repo / "artifacts/model/model.joblib")
    columns = list(model.feature_names_in_)
    rows = pd.read_parquet(repo / "artifacts/data/test.parquet").drop(columns=["risk"])
    rows = rows.head(40).to_dict("records")
    here = make_explainer(model, 1, list, columns).explain(rows)
    status, body = srv.call("/explain_batch", {"applicants": rows})
    assert status == 200, body
    for i, answer in enumerate(body["predictions"]):
        whole = answer["attribution"]
        assert (whole["method"], whole["scale"]) == ("treeshap", "probability")
        got = np.array([whole["contributions"][c] for c in columns])
        assert np.max(np.abs(got - here.contributions[i])) <= 1e-6
        assert abs(whole["base_value"] + got.sum() - whole["raw_score"]) <= 1e-6
        assert abs(whole["raw_score"] - answer["probability"]) <= 1e-12  # a forest's mean
    status, one = srv.call("/explain", {"applicant": rows[3]})
    assert status == 200 and one["attribution"] == body["predictions"][3]["attribution"]


def test_the_service_never_loads_scikit_learn(forest: tuple[Path, str, Server]) -> None:
    """The point of the path for cold start and memory: no compiled module of scikit-learn
    (or pandas) is mapped into the server or its workers, explaining too."""
    _, _, srv = forest
    assert srv.call("/explain", {"applicant": GOOD})[0] == 200
    processes, mapped = srv.mapped_files()
    assert processes >= 2  # the server and its worker
    loaded = {path for path in mapped if "/sklearn/" in path or "/pandas/" in path}
    assert not loaded, sorted(loaded)[:5]
