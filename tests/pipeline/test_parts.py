"""The files stages hand each other: typed Parquet parts, checked cheaply when read back."""

from __future__ import annotations

import pandas as pd
import pytest

from mlgate.config import load_params
from mlgate.errors import DataValidationError
from mlgate.pipeline import data
from tests.conftest import ROOT

PARAMS = load_params(ROOT / "params.yaml")


@pytest.fixture(scope="module")
def validated() -> pd.DataFrame:
    return data.load(ROOT / PARAMS.data.raw, PARAMS)  # the raw CSV, through the contract


def test_a_parquet_part_comes_back_with_the_types_validate_gave_it(validated, tmp_path):
    path = tmp_path / "part.parquet"
    data.save(validated, path)
    back = data.load(path, PARAMS)
    text = [c for c in validated if not pd.api.types.is_numeric_dtype(validated[c])]
    assert text and all(isinstance(back[c].dtype, pd.CategoricalDtype) for c in text)
    assert (back.dtypes.drop(text) == validated.dtypes.drop(text)).all()
    pd.testing.assert_frame_equal(back.astype({c: validated[c].dtype for c in text}), validated)


def test_a_csv_path_is_still_written_and_read_as_csv(validated, tmp_path):
    path = tmp_path / "part.csv"
    data.save(validated, path)
    assert path.read_text().startswith(",".join(validated.columns))
    pd.testing.assert_frame_equal(data.load(path, PARAMS), validated)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda f: f.drop(columns=["age"]), "missing column 'age'"),
        (lambda f: f.head(0), "0 rows checked"),
        (lambda f: f.assign(risk=1), "one class only (1:"),
    ],
)
def test_a_damaged_part_is_refused_with_the_way_back(validated, tmp_path, damage, expected):
    path = tmp_path / "test.parquet"
    damage(validated).to_parquet(path, index=False)
    with pytest.raises(DataValidationError) as err:
        data.load(path, PARAMS)
    assert expected in str(err.value)
    assert f"`dvc checkout --force {path}` puts back" in str(err.value)


def test_a_file_that_is_not_parquet_is_refused_by_name(tmp_path):
    path = tmp_path / "test.parquet"
    path.write_text("actual,predicted\n1,0\n")
    with pytest.raises(DataValidationError, match="not a readable Parquet file"):
        data.load(path, PARAMS)
