"""The project's own feature code on the road: features.transform in src/credit_risk, trained
by `dvc repro`, registered, packaged by `mlgate build` (the package travels as source in the
bento) and served by a real `bentoml serve` with the in-process Pipeline's answers; once the
feature code changes, the old version's bento is refused, never built beside the new code."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run
from tests.pipeline.model.test_own_features import FEATURES
from tests.serving.conftest import Server, bentoml_env, version_two_served
from tests.serving.test_service import served_test_split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def featured(
    trained_repo: Path, home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str, Server]]:
    update = {
        "features": {
            "transform": "credit_risk.features:ratios",
            "derived": {"numeric": ["credit_per_month"], "categorical": ["long_loan"]},
        }
    }
    files = {"src/credit_risk/features.py": FEATURES}
    with version_two_served(trained_repo, home, tmp_path_factory, "features", update, files) as s:
        yield s


def test_served_scores_run_the_projects_feature_code(
    featured: tuple[Path, str, Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, printed, srv = featured
    assert "build: scorer pipeline" in printed, printed
    assert "steps are ['features', 'preprocess', 'estimator']" in printed, printed
    # this process unpickles the copy's model too: its credit_risk.features must import
    import credit_risk

    monkeypatch.setattr(
        credit_risk, "__path__", [*credit_risk.__path__, str(repo / "src/credit_risk")]
    )
    monkeypatch.delitem(sys.modules, "credit_risk.features", raising=False)
    assert "build: scorer pipeline" in printed, printed
    rows, expected, body = served_test_split(srv, repo)
    served = np.array([p["probability"] for p in body["predictions"]])
    assert np.max(np.abs(served - expected)) <= 1e-12
    status, info = srv.call("/model_info")
    assert status == 200 and info["model_version"] == "2" and info["scorer"] == "pipeline", info
    # a request carries the contract's columns only: the derived ones are computed inside
    status, one = srv.call("/predict", {"applicant": rows[3]})
    assert status == 200 and abs(one["probability"] - expected[3]) <= 1e-12, one


def test_the_version_is_refused_once_its_feature_code_changed(
    featured: tuple[Path, str, Server], home: Path
) -> None:
    repo, _, _ = featured
    features = repo / "src/credit_risk/features.py"
    changed = features.read_text().replace("> 24", "> 12")
    assert changed != FEATURES
    features.write_text(changed)
    env = {"PYTHONPATH": str(repo / "src"), **bentoml_env(home)}
    out = run(["mlgate", "build", "--model", "2"], repo, check=False, **env)
    assert out.returncode != 0
    assert (
        "credit-risk version 2 runs the project's own code (features from credit_risk), "
        "which changed since it was trained" in out.stderr
    ), out.stderr
    assert "Traceback" not in out.stderr
    assert "dvc repro" in out.stderr
