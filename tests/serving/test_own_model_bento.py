"""A team's own model code on the road: `train.estimator: lightgbm.LGBMClassifier` (a library
the project added) over `features.transform` (feature code in src/credit_risk), or a class of
the project's own package as the estimator, trained by
`dvc repro`, registered, packaged by `mlgate build` — the project's LightGBM version, the
system library its wheel links against, the package's source — and served by a real
`bentoml serve` with the in-process Pipeline's answers; once the feature code changes, the
old version's bento is refused, never built beside the new code."""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run
from tests.pipeline.model.test_own_estimator import OWN_MODULE
from tests.pipeline.model.test_own_features import FEATURES
from tests.serving.conftest import Server, bentoml_env, built_bento, version_two_served
from tests.serving.test_service import served_test_split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def own_model(
    trained_repo: Path, home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str, Server]]:
    """Version 2: LightGBM over the project's own features, built and served: (the repo, what
    the build printed, the server)."""
    update = {
        "train": {
            "estimator": "lightgbm.LGBMClassifier",
            "hyperparameters": {"n_estimators": 60, "num_leaves": 15, "verbose": -1},
        },
        "features": {
            "transform": "credit_risk.features:ratios",
            "derived": {"numeric": ["credit_per_month"], "categorical": ["long_loan"]},
        },
    }
    files = {"src/credit_risk/features.py": FEATURES}
    with version_two_served(trained_repo, home, tmp_path_factory, "own", update, files) as s:
        yield s


def test_the_bento_carries_the_projects_lightgbm_and_its_system_library(
    own_model: tuple[Path, str, Server], home: Path
) -> None:
    _, printed, _ = own_model
    folder, bento = built_bento(home, printed)
    requirements = (folder / "env/python/requirements.txt").read_text()
    assert f"lightgbm=={version('lightgbm')}" in requirements.split(), requirements
    assert bento["labels"]["estimator"] == "lightgbm.sklearn.LGBMClassifier"
    assert (folder / "src/credit_risk/features.py").read_text() == FEATURES
    # the image installs it (bento.yaml's image commands: what `bentoml containerize` runs)
    commands = bento["image"]["commands"]
    (install,) = [c for c in commands if "libgomp1" in c.split()]
    # with the package lists it needs (BentoML's dropped compiler layer used to fetch them)
    assert install.startswith("apt-get update && apt-get install "), install
    assert not [c for c in commands if "build-essential" in c], commands


def test_served_scores_run_the_projects_feature_code(
    own_model: tuple[Path, str, Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, printed, srv = own_model
    assert "build: scorer pipeline" in printed, printed
    assert "steps are ['features', 'preprocess', 'estimator']" in printed, printed
    # this process unpickles the copy's model too: its credit_risk.features must import
    import credit_risk

    copy = str(repo / "src/credit_risk")
    monkeypatch.setattr(credit_risk, "__path__", [*credit_risk.__path__, copy])
    monkeypatch.delitem(sys.modules, "credit_risk.features", raising=False)
    rows, expected, body = served_test_split(srv, repo)
    served = np.array([p["probability"] for p in body["predictions"]])
    assert np.max(np.abs(served - expected)) <= 1e-12
    status, info = srv.call("/model_info")
    assert status == 200 and info["model_version"] == "2" and info["scorer"] == "pipeline", info
    # a request carries the contract's columns only: the derived ones are computed inside
    for i in (0, 3, 42):
        status, one = srv.call("/predict", {"applicant": rows[i]})
        assert status == 200 and abs(one["probability"] - expected[i]) <= 1e-12, one


def test_served_reasons_are_lightgbms_own_over_the_projects_features(
    own_model: tuple[Path, str, Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """/explain of LightGBM behind the project's feature code: LightGBM's TreeSHAP on the
    Pipeline, the derived columns as columns of their own with the values the code makes."""
    import joblib
    import pandas as pd

    from mlgate.pipeline import explain

    repo, printed, srv = own_model
    assert "build: explain lightgbm-treeshap: contributions to the log-odds" in printed
    import credit_risk

    copy = str(repo / "src/credit_risk")
    monkeypatch.setattr(credit_risk, "__path__", [*credit_risk.__path__, copy])
    monkeypatch.delitem(sys.modules, "credit_risk.features", raising=False)
    model = joblib.load(repo / "artifacts/model/model.joblib")
    test = pd.read_parquet(repo / "artifacts/data/test.parquet").drop(columns=["risk"]).head(30)
    _, base, columns, contributions = explain.contributions(
        model, test[model.feature_names_in_], None
    )
    assert {"credit_per_month", "long_loan"} <= set(columns)
    rows = test.to_dict("records")
    status, body = srv.call("/explain_batch", {"applicants": rows})
    assert status == 200, body
    for i, answer in enumerate(body["predictions"]):
        whole = answer["attribution"]
        got = np.array([whole["contributions"][c] for c in columns])
        assert np.max(np.abs(got - contributions[i])) <= 1e-6
        assert abs(whole["base_value"] - base[i]) <= 1e-6
        assert abs(whole["base_value"] + got.sum() - whole["raw_score"]) <= 1e-6
        for reason in answer["reasons"]:
            if reason["column"] == "credit_per_month":
                per_month = rows[i]["credit_amount"] / rows[i]["duration"]
                assert reason["value"] == pytest.approx(per_month)


def test_the_version_is_refused_once_its_feature_code_changed(
    own_model: tuple[Path, str, Server], home: Path
) -> None:
    repo, _, _ = own_model
    features = repo / "src/credit_risk/features.py"
    changed = features.read_text().replace("> 24", "> 12")
    assert changed != FEATURES
    features.write_text(changed)
    env = {"PYTHONPATH": str(repo / "src"), **bentoml_env(home)}
    out = run(["mlgate", "build", "--model", "2"], repo, check=False, **env)
    assert out.returncode != 0
    said = re.search(r"credit-risk version 2 runs the project's own code \((.+?)\), which "
                     r"changed since it was trained", out.stderr)  # fmt: skip
    assert said and said[1].startswith("credit_risk.features."), out.stderr
    assert "Traceback" not in out.stderr
    assert "dvc repro" in out.stderr


@pytest.fixture(scope="module")
def own_class(
    trained_repo: Path, home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str, Server]]:
    """Version 2: a class of the project's own package as the estimator
    (`train.estimator: credit_risk.shrunk.ShrunkLogit`), trained, built and served."""
    update = {
        "train": {
            "estimator": "credit_risk.shrunk.ShrunkLogit",
            "hyperparameters": {"shrink": 0.25},
        }
    }
    files = {"src/credit_risk/shrunk.py": textwrap.dedent(OWN_MODULE)}
    with version_two_served(trained_repo, home, tmp_path_factory, "class", update, files) as s:
        yield s


def test_a_class_of_the_projects_package_is_built_and_served_as_trained(
    own_class: tuple[Path, str, Server], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, printed, srv = own_class
    folder, bento = built_bento(home, printed)
    assert bento["labels"]["estimator"] == "credit_risk.shrunk.ShrunkLogit"
    shipped = folder / "src/credit_risk/shrunk.py"
    assert shipped.read_text() == textwrap.dedent(OWN_MODULE)  # the class travels with it
    import credit_risk

    copy = str(repo / "src/credit_risk")  # this process unpickles the copy's model too
    monkeypatch.setattr(credit_risk, "__path__", [*credit_risk.__path__, copy])
    monkeypatch.delitem(sys.modules, "credit_risk.shrunk", raising=False)
    _, expected, body = served_test_split(srv, repo)
    served = np.array([p["probability"] for p in body["predictions"]])
    assert np.max(np.abs(served - expected)) <= 1e-12
    # shrink 0.25 pulls every answer a quarter of the way to the base rate: never 0 or 1
    assert served.min() > 0.05 and served.max() < 0.95
    status, info = srv.call("/model_info")
    assert status == 200 and info["model_version"] == "2", info
