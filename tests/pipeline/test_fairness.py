"""Group metrics: bands as documented, gaps as fairlearn defines them (checked by hand, and
against fairlearn's MetricFrame as the oracle on the example and on a large resample)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlgate.config import SensitiveAttribute, load_params
from mlgate.pipeline.fairness import (
    association,
    band_labels,
    classification_table,
    group_metrics,
    groups,
    regression_group_metrics,
    regression_table,
)
from tests.conftest import ROOT


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


# ---- fairlearn as the oracle: the vectorised tables and gaps equal MetricFrame's ----


def fairlearn_classification(y_true, y_pred, values: pd.Series) -> tuple[pd.DataFrame, dict]:
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score

    metrics = {
        "count": count,
        "accuracy": accuracy_score,
        "selection_rate": selection_rate,
        "true_positive_rate": true_positive_rate,
        "false_positive_rate": false_positive_rate,
    }
    frame = MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=values)
    gaps = {
        "demographic_parity_difference": demographic_parity_difference(
            y_true, y_pred, sensitive_features=values
        ),
        "equalized_odds_difference": equalized_odds_difference(
            y_true, y_pred, sensitive_features=values
        ),
    }
    return frame.by_group, gaps


def assert_equal_to_fairlearn(y_true, y_pred, values: pd.Series) -> None:
    expected, gaps = fairlearn_classification(y_true, y_pred, values)
    got = classification_table(y_true, y_pred, values)
    expected.index = expected.index.astype(str).rename(None)
    # same groups, same numbers (fairlearn lists bands as text; ours in band order)
    pd.testing.assert_frame_equal(
        got.sort_index(), expected.sort_index().astype(float), check_exact=False, atol=1e-9, rtol=0
    )
    result = group_metrics(y_true, y_pred, {"attr": values})["attr"]
    for gap, value in gaps.items():
        assert result[gap] == round(value, 4), gap
        assert abs(result[gap] - value) <= 5e-5, gap


@pytest.fixture(scope="module")
def example() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The example's test split and the decisions of the example's model on it."""
    from mlgate.pipeline import data
    from mlgate.pipeline.stages import split, train

    params = load_params(ROOT / "params.yaml")
    frame = data.load(ROOT / params.data.raw, params)
    tr, te = split.split_frame(frame, params)
    model = train.fit(tr, params)
    scores = model.predict_proba(te[params.features.all])[:, 1]
    y_pred = (scores >= params.evaluate.threshold).astype(int)
    return te, (te[params.data.target] == params.data.positive_label).astype(int).to_numpy(), y_pred


def test_vectorised_group_metrics_equal_fairlearn_on_the_example(example):
    test, y_true, y_pred = example
    params = load_params(ROOT / "params.yaml")
    for name, spec in params.evaluate.sensitive.items():
        assert_equal_to_fairlearn(y_true, y_pred, groups(test, name, spec))


def test_vectorised_group_metrics_equal_fairlearn_on_a_large_resample(example):
    test, y_true, y_pred = example
    rng = np.random.default_rng(7)
    rows = rng.integers(0, len(test), 40_000)  # 200x the split
    flip = rng.random(len(rows)) < 0.1  # decisions that are not a copy of the example's
    big = test.iloc[rows].reset_index(drop=True)
    params = load_params(ROOT / "params.yaml")
    for name, spec in params.evaluate.sensitive.items():
        assert_equal_to_fairlearn(y_true[rows], y_pred[rows] ^ flip, groups(big, name, spec))


def test_a_group_without_positives_or_negatives_has_rates_of_zero_as_fairlearn():
    # group a: only negatives (TPR undefined -> 0); group b: only positives (FPR -> 0)
    y_true = np.array([0, 0, 0, 1, 1, 1])
    y_pred = np.array([1, 0, 0, 1, 0, 1])
    assert_equal_to_fairlearn(y_true, y_pred, pd.Series(list("aaabbb")))


def test_regression_group_metrics_equal_fairlearn():
    from fairlearn.metrics import MetricFrame, count
    from sklearn.metrics import mean_absolute_error

    rng = np.random.default_rng(3)
    y_true, y_pred = rng.normal(size=50_000), rng.normal(size=50_000)
    towns = pd.Series(rng.choice(["north", "south", "east"], 50_000))

    def mean_prediction(_, pred):
        return float(np.mean(pred))

    frame = MetricFrame(
        metrics={"count": count, "mae": mean_absolute_error, "mean_prediction": mean_prediction},
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=towns,
    )
    got = regression_table(y_true, y_pred, towns)
    pd.testing.assert_frame_equal(
        got, frame.by_group.astype(float), check_exact=False, atol=1e-9, rtol=0, check_names=False
    )
    gap = regression_group_metrics(y_true, y_pred, {"town": towns})["town"]["mae_difference"]
    assert gap == round(frame.difference(method="between_groups")["mae"], 4)


def test_rows_without_a_group_are_refused_by_name():
    from mlgate.errors import MlgateError

    ages = pd.DataFrame({"age": [20.0, None, 40.0]})
    bands = groups(ages, "age", SensitiveAttribute(bands=(25, 35, 50)))
    with pytest.raises(MlgateError, match="'age': 1 rows have no value"):
        group_metrics([1, 0, 1], [1, 1, 0], {"age": bands})


def test_association_is_cramers_v_for_categories_and_eta_for_numbers():
    group = pd.Series(["f", "m"] * 50)
    assert association(pd.Series(["a", "b"] * 50), group) == pytest.approx(1.0)  # determines
    assert association(pd.Series(["a"] * 50 + ["b"] * 50), group) == pytest.approx(0.0)
    numbers = pd.Series([1.0, 3.0] * 50)
    assert association(numbers, group) == pytest.approx(1.0)
    assert association(pd.Series(np.arange(100.0)), pd.Series(["f"] * 50 + ["m"] * 50)) > 0.8
    noise = pd.Series(np.random.default_rng(0).normal(size=100))
    assert association(noise, group) < 0.3
    # missing values: their own category, or left out of η; never NaN
    assert association(pd.Series(["a", None] * 50), group) == pytest.approx(1.0)
    assert association(pd.Series([1.0, np.nan] * 50), group) == 0.0
