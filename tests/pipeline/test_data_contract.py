"""The pandera contract: every failure is reported at once, with column, check, values, rows."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from mlgate.config import load_params
from mlgate.errors import DataValidationError, MlgateError
from mlgate.pipeline import data

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
    # reported once: not again as a failed dtype, nor as range checks that cannot compare
    assert report.count("'duration'") == 1, report


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


# ---------------------------------------------------------------- whole-dataset rules


def varied(n: int = 600) -> pd.DataFrame:
    """n distinct rows, both classes (2 in 3 good), honouring every column check."""
    df = frame(n)
    df["credit_amount"] = range(1000, 1000 + n)
    df["risk"] = [i % 3 != 0 for i in range(n)]
    return df.astype({"risk": int})


def contract_report(df: pd.DataFrame, params=PARAMS) -> str:
    with pytest.raises(DataValidationError) as err:
        data.validate(df, data.contract_schema(params), "new.csv", data.dataset_rules(params))
    return str(err.value)


def test_a_varied_frame_honours_the_whole_dataset_rules():
    out = data.validate(varied(), data.contract_schema(PARAMS), "new.csv")
    assert len(out) == 600


def test_a_header_without_rows_is_refused_with_the_numbers():
    report = contract_report(varied().head(0))
    assert report.startswith("new.csv: 0 rows checked, the data contract is broken:")
    assert "the data set fails min_rows(500): 0 rows, at least 500 required" in report
    assert "target 'risk' has no value at all" in report


def test_a_single_class_target_is_refused():
    report = contract_report(varied().assign(risk=1))
    assert "the data set fails target_varies: target 'risk' has one class only (1: 600 rows)" in (
        report
    )


def test_identical_rows_are_refused_with_their_share_and_rows():
    report = contract_report(frame(600))
    assert "the data set fails max_duplicate_share(0.01): 599 of 600 rows (99.8%) repeat" in report
    assert "rows 1, 2, 3, 4, 5 …" in report


def test_too_few_rows_and_a_rare_class_are_refused():
    report = contract_report(varied(9))
    assert "the data set fails min_rows(500): 9 rows" in report
    assert "class 1 has 6 rows; class 0 has 3 rows; at least 100 required" in report


def test_a_split_that_cannot_hold_every_class_is_refused():
    tiny = PARAMS.model_copy(
        update={"data": PARAMS.data.model_copy(update={"contract": PARAMS.data.contract.model_copy(
            update={"min_rows": 1, "min_rows_per_class": 2})}),
                "split": PARAMS.split.model_copy(update={"test_size": 0.2})}
    )  # fmt: skip
    report = contract_report(varied(5), tiny)
    assert "the data set fails split_fits: split.test_size 0.2 leaves 4 train and 1 test rows" in (
        report
    )


def test_a_fraction_in_an_integer_column_is_a_failure_not_a_truncation():
    df = varied().astype({"job": float, "age": float})
    df.loc[[3, 7], "job"] = 2.5
    df.loc[9, "age"] = 40.0  # a whole number written as a float coerces without loss
    report = contract_report(df)
    assert "column 'job' fails lossless_coercion(int64): 2 row(s); values: 2.5" in report
    assert "'age'" not in report


def test_a_wrong_delimiter_names_every_missing_column_and_suggests_the_delimiter():
    text = varied().to_csv(sep=";", index=False)
    report = contract_report(pd.read_csv(io.StringIO(text)))
    assert "is the file delimited by ';'?" in report
    for column in GOOD:
        assert f"missing column {column!r}" in report


def test_splits_the_pipeline_wrote_need_rows_and_two_classes_only():
    """A test split is smaller than min_rows: only a part's rules apply to it."""
    part = varied(50)
    assert len(data.validate(part, data.load_schema(PARAMS), "test.csv")) == 50
    rules = data.dataset_rules(PARAMS, part=True)
    with pytest.raises(DataValidationError, match="fails target_varies"):
        data.validate(part.assign(risk=0), data.with_rules(data.load_schema(PARAMS), rules),
                      "test.csv", rules)  # fmt: skip


def test_the_request_schema_has_no_whole_dataset_rule():
    assert data.input_schema(PARAMS).checks == []
    assert len(data.contract_schema(PARAMS).checks) == len(data.dataset_rules(PARAMS))
