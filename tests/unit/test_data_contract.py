"""The pandera contract: every failure is reported at once, with column, check, values, rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlgate import data
from mlgate.config import load_params
from mlgate.errors import DataValidationError, MlgateError

ROOT = Path(__file__).resolve().parents[2]
PARAMS = load_params(ROOT / "params.yaml")

GOOD = {
    "risk": 1, "sex": "male", "job": 2, "housing": "own", "saving_accounts": "little",
    "checking_account": "moderate", "credit_amount": 1200, "duration": 12,
    "purpose": "car", "age": 40,
}  # fmt: skip


def frame(n: int = 5) -> pd.DataFrame:
    return pd.DataFrame([GOOD] * n)


def failure_report(df: pd.DataFrame) -> str:
    with pytest.raises(DataValidationError) as err:
        data.validate(df, data.load_schema(PARAMS), "applications.csv")
    return str(err.value)


def test_a_good_frame_passes_and_is_coerced_to_the_schema_types():
    df = frame().astype({"credit_amount": float})
    out = data.validate(df, data.load_schema(PARAMS))
    assert str(out["credit_amount"].dtype) == "int64"


def test_all_four_kinds_of_failure_are_reported_in_one_run():
    df = frame(6)
    df = df.rename(columns={"housing": "home"})  # wrong column: one missing, one unexpected
    df.loc[1, "age"] = 150  # out of range
    df.loc[2, "purpose"] = "yacht"  # unknown category
    df.loc[3, "credit_amount"] = None  # null
    df.loc[4, "credit_amount"] = None
    report = failure_report(df)
    assert report.startswith("applications.csv: 6 rows checked")
    assert "missing column 'housing'" in report
    assert "unexpected column 'home'" in report
    assert "column 'age' fails less_than_or_equal_to(100): 1 row(s); values: 150" in report
    assert "column 'purpose' fails isin(" in report and "'yacht'" in report
    assert "column 'credit_amount' fails not_nullable: 2 row(s)" in report
    # a null is reported as a null, not again as a failed integer conversion
    assert "coerce_dtype" not in report


def test_a_value_of_the_wrong_type_names_column_and_value():
    df = frame().astype({"duration": object})
    df.loc[0, "duration"] = "twelve"
    report = failure_report(df)
    assert "column 'duration' fails coerce_dtype('int64'): 1 row(s); values: 'twelve'" in report


def test_many_failing_values_are_counted_and_a_few_shown():
    df = frame(20)
    df["age"] = range(200, 220)
    report = failure_report(df)
    assert "20 row(s); values: 200, 201, 202, 203, 204 …" in report


def test_the_request_schema_is_the_training_schema_without_the_target():
    columns = set(data.input_schema(PARAMS).columns)
    assert columns == set(GOOD) - {"risk"}


def test_an_unreadable_file_is_a_clear_error(tmp_path):
    with pytest.raises(MlgateError, match=r"not found .*dvc pull"):
        data.read_csv(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataValidationError, match="not a readable CSV"):
        data.read_csv(empty)
