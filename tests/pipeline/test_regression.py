"""Regression support: metrics, error by group, the direction-aware champion rule, config checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlgate.config import parse_params
from mlgate.errors import MlgateError
from mlgate.pipeline.fairness import regression_group_metrics
from mlgate.pipeline.model import build_pipeline, predict_fn
from mlgate.pipeline.stages.evaluate import evaluate, regression_metrics, regression_points
from mlgate.pipeline.stages.gate import champion_check, threshold_checks


def raw_params(**gate: Any) -> dict[str, Any]:
    return {
        "project": {"name": "house-price"},
        "data": {
            "raw": "data/houses.csv",
            "schema": "houses.schema:Row",
            "target": "price",
            "task": "regression",
            "validated": "v.csv",
            "summary": "s.json",
        },
        "split": {"test_size": 0.25, "train": "tr.csv", "test": "te.csv"},
        "features": {"numeric": ["area"], "categorical": ["town"]},
        "train": {
            "estimator": "sklearn.linear_model.Ridge",
            "hyperparameters": {"alpha": 1.0},
            "model": "m.joblib",
            "run": "r.json",
        },
        "evaluate": {
            "metrics": "m.json",
            "fairness": "f.json",
            "plots": "p",
            "sensitive": {"town": {}},
        },
        "gate": {"report": "g.json", **gate},
    }


def houses(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    area = rng.uniform(40, 200, n)
    town = rng.choice(["north", "south"], n)
    price = 1000 * area + np.where(town == "north", 20_000, 0) + rng.normal(0, 5000, n)
    return pd.DataFrame({"area": area, "town": town, "price": price})


def test_regression_metrics_match_their_definitions() -> None:
    y_true, y_pred = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 6.0])
    m = regression_metrics(y_true, y_pred)
    assert m["mae"] == 0.5
    assert m["rmse"] == 1.0
    assert m["r2"] == pytest.approx(1 - 4 / 5, abs=1e-4)


def test_points_are_thinned_and_carry_residuals() -> None:
    y = np.arange(2000, dtype=float)
    points = regression_points(y, y - 1)
    assert 2 < len(points) <= 500
    assert all(p["residual"] == 1.0 for p in points)
    assert points[0]["actual"] == 0.0 and points[-1]["actual"] == 1999.0


def test_group_gap_is_the_mae_spread_between_groups() -> None:
    y_true = np.array([10.0, 10.0, 10.0, 10.0])
    y_pred = np.array([11.0, 9.0, 14.0, 6.0])  # group a errs by 1, group b by 4
    report = regression_group_metrics(y_true, y_pred, {"g": pd.Series(["a", "a", "b", "b"])})
    assert report["g"]["groups"]["a"]["mae"] == 1.0
    assert report["g"]["groups"]["b"]["mae"] == 4.0
    assert report["g"]["mae_difference"] == 3.0


def test_evaluate_a_fitted_regressor_end_to_end_in_memory() -> None:
    params = parse_params(raw_params())
    frame = houses()
    model = build_pipeline(params).fit(frame[["area", "town"]], frame["price"])
    result = evaluate(model, houses(seed=1), params)
    assert set(result["metrics"]) == {"rmse", "mae", "r2"}
    assert result["metrics"]["r2"] > 0.9
    assert set(result["fairness"]["town"]["groups"]) == {"north", "south"}
    assert predict_fn(params) == "predict"


def test_gates_on_regression_metrics_in_both_directions() -> None:
    params = parse_params(raw_params(min_metrics={"r2": 0.5}, max_metrics={"rmse": 100.0}))
    checks = threshold_checks({"r2": 0.8, "rmse": 150.0, "mae": 90.0}, {}, params)
    verdicts = {c.name: c.passed for c in checks}
    assert verdicts == {"r2": True, "rmse": False}


@pytest.mark.parametrize(
    ("candidate", "passed"), [(104.0, True), (105.0, True), (106.0, False), (90.0, True)]
)
def test_champion_rule_is_lower_is_better_for_rmse(candidate: float, passed: bool) -> None:
    params = parse_params(raw_params(champion={"metric": "rmse", "tolerance": 5.0}))
    check = champion_check(candidate, 100.0, params, "3")
    assert check.passed is passed
    assert check.op == "<=" and check.threshold == 105.0


def test_a_relative_champion_tolerance_is_a_share_of_the_champions_metric() -> None:
    rule = {"metric": "rmse", "tolerance": 0.01, "relative": True}
    params = parse_params(raw_params(champion=rule))
    check = champion_check(5_040.0, 5_000.0, params, "3")  # 1% of 5000: up to 5050
    assert check.passed and check.threshold == 5_050.0
    assert "tolerance 0.01 of it (50)" in check.detail
    assert not champion_check(5_051.0, 5_000.0, params, "3").passed


def test_champion_rule_stays_higher_is_better_for_r2() -> None:
    params = parse_params(raw_params(champion={"metric": "r2", "tolerance": 0.01}))
    assert champion_check(0.795, 0.80, params, "1").passed
    assert not champion_check(0.78, 0.80, params, "1").passed


def test_classification_gaps_are_refused_for_regression() -> None:
    raw = raw_params(max_fairness_gap={"demographic_parity_difference": {"town": 0.1}})
    with pytest.raises(MlgateError, match="do not apply to regression"):
        parse_params(raw)
    assert parse_params(raw_params(max_fairness_gap={"mae_difference": {"town": 10.0}}))


def test_a_classifier_for_a_regression_task_is_refused() -> None:
    raw = raw_params()
    raw["train"] = {**raw["train"], "estimator": "sklearn.linear_model.LogisticRegression"}
    raw["train"]["hyperparameters"] = {}
    with pytest.raises(MlgateError, match="is a classifier"):
        build_pipeline(parse_params(raw))


def test_impute_fills_missing_values_before_fitting() -> None:
    raw = raw_params()
    raw["features"] = {**raw["features"], "impute": True}
    params = parse_params(raw)
    frame = houses()
    frame.loc[:10, "area"] = np.nan
    frame.loc[5:15, "town"] = np.nan
    model = build_pipeline(params).fit(frame[["area", "town"]], frame["price"])
    assert np.isfinite(model.predict(frame[["area", "town"]])).all()
