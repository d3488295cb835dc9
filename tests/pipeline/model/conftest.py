"""The trained model: `--model PATH` tests a given model.joblib, else one is trained here.

Training in-process uses the pipeline's own functions on the real data, so these tests
check the same model `dvc repro` produces (the reproducibility test proves it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlgate.config import Params, load_params
from mlgate.pipeline import data
from mlgate.pipeline.stages import split, train

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def params() -> Params:
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def splits(params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = data.load(ROOT / params.data.raw, params)
    return split.split_frame(frame, params)


@pytest.fixture(scope="session")
def model(request: pytest.FixtureRequest, params: Params, splits) -> Any:
    path = request.config.getoption("--model")
    if path:
        import joblib

        return joblib.load(path)
    return train.fit(splits[0], params)


@pytest.fixture(scope="session")
def test_frame(splits) -> pd.DataFrame:
    return splits[1]


@pytest.fixture(scope="session")
def score(model: Any, params: Params):
    from mlgate.pipeline.model import positive_scores

    def _score(frame: pd.DataFrame):
        return positive_scores(model, frame[params.features.all], params.data.positive_label)

    return _score
