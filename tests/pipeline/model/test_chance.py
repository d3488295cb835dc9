"""Beats chance (evaluate.chance): the model against what its own training reaches when the
labels are shuffled, refitted and scored on the same test rows; the gate's `chance:` check."""

from __future__ import annotations

import random
from typing import Any

import pandas as pd
import pytest
import yaml

from mlgate.config import Params, parse_params
from mlgate.errors import MlgateError
from mlgate.pipeline import data
from mlgate.pipeline.stages import evaluate, split, train
from mlgate.pipeline.stages.gate import chance_check, decide, format_report, threshold_checks
from tests.pipeline.model.conftest import ROOT


def with_chance(params: Params, **chance: Any) -> Params:
    spec = params.evaluate.chance.model_copy(update=chance)
    return params.model_copy(
        update={"evaluate": params.evaluate.model_copy(update={"chance": spec})}
    )


def shuffled(frame: pd.DataFrame, target: str, seed: int) -> pd.DataFrame:
    labels = frame[target].tolist()
    random.Random(seed).shuffle(labels)
    return frame.assign(**{target: labels})


def test_the_example_model_beats_its_training_on_shuffled_labels(
    params: Params, splits: tuple[pd.DataFrame, pd.DataFrame], model: Any
) -> None:
    tr, te = splits
    found = evaluate.chance(model, tr, te, params)
    assert found is not None and params.evaluate.chance.refits == found["refits"] == 30
    assert found["rows"] == len(tr) and set(found["metrics"]) == {"roc_auc", "brier"}
    auc, brier = found["metrics"]["roc_auc"], found["metrics"]["brier"]
    assert 0.4 < auc["mean"] < 0.6 and auc["sd"] > 0.02  # a fit on noise ranks at random
    assert auc["op"] == ">" and auc["bound"] > auc["mean"] + 2 * auc["sd"]
    assert brier["op"] == "<" and brier["bound"] < brier["mean"] - 2 * brier["sd"]
    metrics = evaluate.test_metrics(model, te, params)
    check = chance_check(metrics, found)
    assert (check.kind, check.passed, check.verdict) == ("chance", True, "pass")
    assert check.name in ("chance:roc_auc", "chance:brier")
    # the same numbers again: the permutations are seeded (evaluate.bootstrap.seed)
    again = evaluate.chance(model, tr, te, params)
    assert again is not None and again["metrics"] == found["metrics"]


@pytest.fixture(scope="module")
def small_splits(params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The example's data on a 20 % test split (200 rows): there a lucky fit on noise can
    reach the quality bound; on the example's own 300 the quality gate alone catches it."""
    params = params.model_copy(update={"split": params.split.model_copy(update={"test_size": 0.2})})
    return split.split_frame(data.load(ROOT / params.data.raw, params), params)


@pytest.mark.parametrize("seed", [15, 12, 36])
def test_a_model_fitted_on_shuffled_labels_fails_the_chance_check(
    params: Params, small_splits: tuple[pd.DataFrame, pd.DataFrame], seed: int
) -> None:
    # of 40 shuffles of the example's training labels, these three rank its 200 test rows
    # best (ROC AUC 0.656, 0.614, 0.614): a fit on noise pointing somewhere useful by luck
    tr, te = small_splits
    noise = shuffled(tr, params.data.target, seed)
    fitted = train.fit(noise, params)
    found = evaluate.chance(fitted, noise, te, params)
    result = evaluate.evaluate(fitted, te, params)
    assert result["metrics"]["roc_auc"] > 0.6
    intervals = {**result["intervals"], "chance": found}
    checks = {c.name: c for c in threshold_checks(result["metrics"], result["fairness"], params,
                                                  intervals)}  # fmt: skip
    (chance,) = [c for c in checks.values() if c.kind == "chance"]
    assert not chance.passed
    if seed == 15:  # its interval reaches over the quality bound: only chance keeps it out
        assert (checks["roc_auc"].verdict, checks["roc_auc"].passed) == ("uncertain", True)
    report = format_report(decide(list(checks.values()), None, "run", None))
    assert f"FAIL  chance    {chance.name}" in report and "fits on shuffled labels" in report


def test_a_value_on_the_bound_does_not_beat_it() -> None:
    null = {"op": ">", "bound": 0.5, "mean": 0.5, "sd": 0.0}
    chance = {"metrics": {"roc_auc": null}, "refits": 20, "confidence": 0.99}
    assert chance_check({"roc_auc": 0.5}, chance).passed is False  # a constant model
    assert chance_check({"roc_auc": 0.5001}, chance).passed is True


def test_beating_the_noise_fits_on_either_metric_is_enough() -> None:
    # a titanic model: its ROC AUC within a noise fit's reach (few strong features), its
    # Brier score far beyond it (a fit on noise predicts near the base rate)
    chance = {
        "metrics": {
            "roc_auc": {"op": ">", "bound": 0.72, "mean": 0.50, "sd": 0.085},
            "brier": {"op": "<", "bound": 0.221, "mean": 0.236, "sd": 0.0055},
        },
        "refits": 30,
        "confidence": 0.99,
    }
    check = chance_check({"roc_auc": 0.71, "brier": 0.205}, chance)
    assert (check.passed, check.name, check.op, check.threshold) == (
        True, "chance:brier", "<", 0.221)  # fmt: skip
    assert "roc_auc 0.5000 ± 0.0850, bound > 0.7200" in check.detail
    assert not chance_check({"roc_auc": 0.71, "brier": 0.23}, chance).passed


def test_regression_beats_chance_with_a_lower_error() -> None:
    from tests.pipeline.test_regression import houses, raw_params

    raw = raw_params()
    raw["evaluate"]["chance"] = {"refits": 10}
    params = parse_params(raw)
    frame = houses(300)
    tr, te = frame.iloc[:200], frame.iloc[200:]
    model = train.fit(tr, params)
    found = evaluate.chance(model, tr, te, params)
    assert found is not None and list(found["metrics"]) == ["rmse"]
    rmse = found["metrics"]["rmse"]
    assert rmse["op"] == "<" and rmse["bound"] < rmse["mean"]  # below a fit on noise
    error = evaluate.test_metrics(model, te, params)
    assert chance_check(error, found).passed
    noise = train.fit(shuffled(tr, "price", 0), params)
    assert not chance_check(evaluate.test_metrics(noise, te, params), found).passed


def test_a_large_training_split_is_sampled_to_max_rows(
    params: Params, splits: tuple[pd.DataFrame, pd.DataFrame], model: Any
) -> None:
    found = evaluate.chance(model, splits[0], splits[1], with_chance(params, refits=5,
                            max_rows=300))  # fmt: skip
    assert (found["refits"], found["rows"]) == (5, 300)


def test_chance_is_off_by_default_and_needs_a_handful_of_fits() -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    del raw["evaluate"]["chance"]
    assert parse_params(raw).evaluate.chance.refits == 0
    raw["evaluate"]["chance"] = {"refits": 3}
    with pytest.raises(MlgateError, match="at least 5 fits"):
        parse_params(raw)
