"""Schema and role inference of `mlgate init`: pure functions on small frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlgate.errors import MlgateError
from mlgate.init import (
    attr_name,
    choose_positive_label,
    dataset_contract,
    infer_columns,
    infer_task,
    sensitive_specs,
    widened_bounds,
)


def test_bounds_widen_by_a_tenth_of_the_span_and_keep_non_negative() -> None:
    assert widened_bounds(10, 110, integer=True) == (0, 120)
    assert widened_bounds(-5, 5, integer=True) == (-6, 6)
    low, high = widened_bounds(0.2, 0.7, integer=False)
    assert (low, high) == (0.15, 0.75)
    assert widened_bounds(3, 3, integer=True) == (2, 4)  # a constant column still has room


def test_column_names_become_identifiers_without_clashes() -> None:
    taken: set[str] = set()
    assert attr_name("monthly income", taken) == "monthly_income"
    assert attr_name("monthly-income", taken) == "monthly_income_2"
    assert attr_name("2nd", taken) == "c_2nd"
    assert attr_name("class", taken) == "class_"


def frame() -> pd.DataFrame:
    n = 40
    return pd.DataFrame(
        {
            "id": range(n),
            "score": np.linspace(0, 1, n),
            "colour": ["red", "blue"] * (n // 2),
            "note": [f"free text {i}" for i in range(n)],
            "group": ["a", "b", None, "a"] * (n // 4),
            "label": [0, 1] * (n // 2),
        }
    )


def test_roles_types_and_contract_are_inferred() -> None:
    cols = {c["name"]: c for c in infer_columns(frame(), "label", "classification", ("group",))}
    assert cols["id"]["kind"] == "ignored"  # every value distinct: an identifier
    assert cols["note"]["kind"] == "ignored"  # free text
    assert cols["score"]["kind"] == "numeric" and cols["score"]["dtype"] == "float"
    assert (cols["score"]["ge"], cols["score"]["le"]) == (0.0, 1.1)
    assert cols["colour"]["isin"] == ["blue", "red"] and cols["colour"]["kind"] == "categorical"
    assert cols["group"]["kind"] == "sensitive" and cols["group"]["nullable"] is True
    assert cols["label"]["kind"] == "target" and cols["label"]["isin"] == [0, 1]
    assert cols["label"]["ge"] is None  # a class label has classes, not a range


def test_numeric_sensitive_attributes_get_quartile_bands() -> None:
    data = pd.DataFrame({"age": np.arange(18, 98), "sex": ["f", "m"] * 40})
    specs = sensitive_specs(data, ("age", "sex"))
    assert specs["sex"] == {}
    assert specs["age"] == {"bands": [38, 58, 77]}


def test_task_and_positive_label_guesses() -> None:
    assert infer_task(pd.Series(np.linspace(0, 100, 50))) == "regression"
    assert infer_task(pd.Series(["yes", "no"] * 5)) == "classification"
    assert infer_task(pd.Series([0, 1] * 30)) == "classification"
    assert choose_positive_label(["no", "yes"], None) == "yes"
    assert choose_positive_label([0, 1], None) == 1
    assert choose_positive_label(["bad", "good"], "GOOD") == "good"
    with pytest.raises(MlgateError, match="pass --positive-label"):
        choose_positive_label(["cat", "dog"], None)


def test_a_boolean_target_needs_no_class_list() -> None:
    data = pd.DataFrame({"x": np.arange(30), "ok": [True, False, True] * 10})
    target = infer_columns(data, "ok", "classification", ())[-1]
    assert target["dtype"] == "bool" and target["isin"] is None


def test_the_first_whole_dataset_rules_let_the_data_seen_pass_and_half_of_it() -> None:
    frame = pd.DataFrame({"x": range(60), "y": ["a"] * 40 + ["b"] * 20})
    frame.loc[59, "x"] = 58  # one repeated row
    contract = dataset_contract(frame, "y", "classification")
    assert contract == {
        "rows": 60,
        "min_rows": 30,
        "max_duplicate_share": 0.04,  # twice the share seen (1/60), rounded up to a percent
        "min_rows_per_class": 10,
    }
    assert "min_rows_per_class" not in dataset_contract(frame, "x", "regression")
