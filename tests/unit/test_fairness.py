"""Group metrics: bands as documented, gaps as fairlearn defines them (checked by hand)."""

from __future__ import annotations

import pandas as pd
import pytest

from mlgate.config import SensitiveAttribute
from mlgate.fairness import band_labels, group_metrics, groups


def test_band_labels_read_as_people_say_them():
    assert band_labels((25, 35, 50)) == ["<25", "25-34", "35-49", "50+"]


def test_ages_fall_into_the_documented_bands():
    ages = pd.DataFrame({"age": [19, 24, 25, 34, 35, 49, 50, 75]})
    got = groups(ages, "age", SensitiveAttribute(bands=(25, 35, 50))).tolist()
    assert got == ["<25", "<25", "25-34", "25-34", "35-49", "35-49", "50+", "50+"]


def test_unbanded_attributes_are_their_own_groups():
    sexes = pd.DataFrame({"sex": ["male", "female"]})
    assert groups(sexes, "sex", SensitiveAttribute()).tolist() == ["male", "female"]


def test_gaps_match_a_hand_computed_example():
    # group a: 4 rows, 3 selected (0.75); group b: 4 rows, 1 selected (0.25) -> DPD 0.5
    y_true = [1, 1, 0, 0, 1, 1, 0, 0]
    y_pred = [1, 1, 1, 0, 1, 0, 0, 0]
    sex = pd.Series(["a"] * 4 + ["b"] * 4)
    result = group_metrics(y_true, y_pred, {"sex": sex})["sex"]
    assert result["demographic_parity_difference"] == pytest.approx(0.5)
    # TPR a = 1.0, b = 0.5; FPR a = 0.5, b = 0.0 -> equalized odds difference 0.5
    assert result["equalized_odds_difference"] == pytest.approx(0.5)
    assert result["groups"]["a"]["selection_rate"] == pytest.approx(0.75)
    assert result["groups"]["b"]["count"] == 4


def test_bands_are_listed_in_age_order_not_text_order():
    ages = pd.DataFrame({"age": [60, 30, 20, 40, 61, 31, 21, 41]})
    bands = groups(ages, "age", SensitiveAttribute(bands=(25, 35, 50)))
    y = [1, 0, 1, 0, 0, 1, 0, 1]
    result = group_metrics(y, y, {"age": bands})["age"]
    assert list(result["groups"]) == ["<25", "25-34", "35-49", "50+"]
