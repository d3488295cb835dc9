"""The real data set: `--data PATH` tests another file with the same contract."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlgate.config import Params, load_params

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def params() -> Params:
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def raw_frame(request: pytest.FixtureRequest, params: Params) -> pd.DataFrame:
    path = request.config.getoption("--data") or ROOT / params.data.raw
    if not Path(path).exists():
        pytest.fail(f"{path} is missing: run `make data` (dvc pull) first")
    return pd.read_csv(path)
