"""LightGBM and XGBoost bentos under a real `bentoml serve` (a team's `train.estimator:
lightgbm.LGBMClassifier` / `xgboost.XGBClassifier`): built onto the NumPy tree walk, the
Pipeline's answers and reasons over HTTP, by workers that load neither the booster's library
nor scikit-learn; the bento carries the library at its installed version for the image."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from tests.serving.conftest import Server, built_bento, version_two_served
from tests.serving.test_service import GOOD, served_test_split

pytestmark = pytest.mark.slow

BOOSTERS = {
    "lightgbm": ("lightgbm.LGBMClassifier", {"n_estimators": 60, "verbose": -1}),
    "xgboost": ("xgboost.XGBClassifier", {"n_estimators": 60, "max_depth": 4}),
}
# the walk's largest distance to the booster's own probabilities: LightGBM an ulp of exp,
# XGBoost its float32 sigmoid
TOLERANCE = {"lightgbm": 1e-12, "xgboost": 1e-7}


@pytest.fixture(scope="module", params=list(BOOSTERS))
def booster(
    request: pytest.FixtureRequest,
    trained_repo: Path,
    home: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Path, str, Server]]:
    """Version 2 a booster, built with serving.scorer auto and served: (library, repo, what
    the build printed, server)."""
    estimator, hyper = BOOSTERS[request.param]
    update = {"train": {"estimator": estimator, "hyperparameters": hyper}}
    with version_two_served(trained_repo, home, tmp_path_factory, request.param, update) as s:
        yield (request.param, *s)


def test_the_build_walks_the_boosters_trees_and_packs_its_library(
    booster: tuple[str, Path, str, Server], home: Path
) -> None:
    library, _, printed, srv = booster
    estimator = BOOSTERS[library][0].rpartition(".")[2]
    assert f"build: scorer numpy-trees: NumPy tree walk ({estimator}; max |Δ| " in printed, printed
    status, info = srv.call("/model_info")
    assert status == 200 and info["scorer"] == "numpy-trees"
    folder, bento = built_bento(home, printed)
    requirements = (folder / "env/python/requirements.txt").read_text()
    # the distribution, not the import name: `xgboost` is installed as xgboost-cpu
    distribution = {"lightgbm": "lightgbm", "xgboost": "xgboost-cpu"}[library]
    assert f"{distribution}=={version(distribution)}" in requirements.split(), requirements
    installs = [c for c in bento["image"]["commands"] if "libgomp1" in c.split()]
    assert len(installs) == (library == "lightgbm")  # xgboost-cpu carries its own


def test_served_scores_are_the_boosters_own(booster: tuple[str, Path, str, Server]) -> None:
    library, repo, _, srv = booster
    rows, expected, body = served_test_split(srv, repo)
    served = np.array([p["probability"] for p in body["predictions"]])
    assert np.max(np.abs(served - expected)) <= TOLERANCE[library]
    for i in (0, 7, 42):
        status, one = srv.call("/predict", {"applicant": rows[i]})
        assert status == 200 and abs(one["probability"] - expected[i]) <= TOLERANCE[library]


def test_served_reasons_add_up_to_the_log_odds_without_the_library(
    booster: tuple[str, Path, str, Server],
) -> None:
    """/explain: TreeSHAP of the booster's trees in the worker's NumPy, adding up to the
    log-odds whose sigmoid is the answer; no compiled module of the booster's library,
    scikit-learn or pandas is mapped into the server or its workers."""
    library, _, printed, srv = booster
    assert "build: explain treeshap: contributions to the log-odds" in printed, printed
    status, one = srv.call("/explain", {"applicant": GOOD})
    assert status == 200, one
    whole = one["attribution"]
    assert (whole["method"], whole["scale"]) == ("treeshap", "log-odds")
    total = whole["base_value"] + sum(whole["contributions"].values())
    assert abs(total - whole["raw_score"]) <= 1e-6
    assert abs(1 / (1 + np.exp(-whole["raw_score"])) - one["probability"]) <= 1e-6
    processes, mapped = srv.mapped_files()
    assert processes >= 2  # the server and its worker
    loaded = {p for p in mapped if any(f"/{m}/" in p for m in (library, "sklearn", "pandas"))}
    assert not loaded, sorted(loaded)[:5]
