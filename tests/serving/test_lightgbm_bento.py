"""A team's own model library on the road: `train.estimator: lightgbm.LGBMClassifier` trained
by `dvc repro`, registered, packaged by `mlgate build` with the project's own LightGBM version
(and the system library its wheel links against) and served by a real `bentoml serve` with
the in-process Pipeline's answers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.serving.conftest import Server, version_two_served
from tests.serving.test_service import served_test_split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def boosted(
    trained_repo: Path, home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str, Server]]:
    """Version 2 LightGBM, built and served: (the repo, the bento tag, the server)."""
    hyper = {"n_estimators": 60, "num_leaves": 15, "verbose": -1}
    update = {"train": {"estimator": "lightgbm.LGBMClassifier", "hyperparameters": hyper}}
    with version_two_served(trained_repo, home, tmp_path_factory, "lightgbm", update) as (
        repo,
        printed,
        srv,
    ):
        bento = re.search(r", bento (\S+)", printed)
        assert bento, printed
        yield repo, bento[1], srv


def test_the_bento_carries_the_projects_lightgbm_and_its_system_library(
    boosted: tuple[Path, str, Server], home: Path
) -> None:
    _, tag, _ = boosted
    name, _, ver = tag.partition(":")
    bento = yaml.safe_load((home / "bentos" / name / ver / "bento.yaml").read_text())
    requirements = (home / "bentos" / name / ver / "env/python/requirements.txt").read_text()
    assert f"lightgbm=={version('lightgbm')}" in requirements.split(), requirements
    assert bento["labels"]["estimator"] == "lightgbm.sklearn.LGBMClassifier"
    # the image installs it (bento.yaml's image commands: what `bentoml containerize` runs)
    commands = bento["image"]["commands"]
    assert [c for c in commands if "apt-get install" in c and "libgomp1" in c.split()], commands
    assert not [c for c in commands if "build-essential" in c], commands


def test_served_lightgbm_scores_equal_the_pipeline(boosted: tuple[Path, str, Server]) -> None:
    repo, _, srv = boosted
    rows, expected, body = served_test_split(srv, repo)
    served = np.array([p["probability"] for p in body["predictions"]])
    assert np.max(np.abs(served - expected)) <= 1e-12
    status, info = srv.call("/model_info")
    assert status == 200 and info["model_version"] == "2", info
    for i in (0, 7, 42):
        status, one = srv.call("/predict", {"applicant": rows[i]})
        assert status == 200 and abs(one["probability"] - expected[i]) <= 1e-12, one
