"""Gates with intervals: pass, fail or uncertain, an uncertain check ruled by gate.uncertain;
the champion rule on the paired bootstrap of the candidate's difference with production."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from mlgate.config import Bootstrap, parse_params
from mlgate.errors import MlgateError
from mlgate.pipeline.bootstrap import paired_difference
from mlgate.pipeline.stages.gate import champion_check, decide, format_report, threshold_checks

RAW = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
METRICS = {"roc_auc": 0.75, "accuracy": 0.72}
FAIRNESS = {
    "sex": {"demographic_parity_difference": 0.05, "equalized_odds_difference": 0.08},
    # equalized odds for age: 0.375 over its bound of 0.35, as in issue 28's re-splits
    "age": {"demographic_parity_difference": 0.20, "equalized_odds_difference": 0.375},
}
INTERVALS = {
    "confidence": 0.95,
    "metrics": {"roc_auc": [0.70, 0.80], "accuracy": [0.71, 0.75]},
    "fairness": {
        "sex": {
            "demographic_parity_difference": [0.01, 0.09],
            "equalized_odds_difference": [0.02, 0.14],
        },
        "age": {
            "demographic_parity_difference": [0.1, 0.28],
            "equalized_odds_difference": [0.2, 0.55],
        },
    },
}
AGE_EOD = "equalized_odds_difference:age"


def params_with(**uncertain):
    raw = copy.deepcopy(RAW)
    raw["gate"]["uncertain"] = uncertain or raw["gate"].get("uncertain")
    return parse_params(raw)


def by_name(checks):
    return {c.name: c for c in checks}


def test_a_gap_over_its_bound_whose_interval_straddles_it_is_uncertain_and_passes_by_default():
    params = parse_params(RAW)  # gate.uncertain as the example ships it
    checks = by_name(threshold_checks(METRICS, FAIRNESS, params, INTERVALS))
    age = checks[AGE_EOD]
    assert (age.verdict, age.passed, age.interval) == ("uncertain", True, [0.2, 0.55])
    report = decide(list(checks.values()), None, "r", 0.95)
    assert report["passed"] is True
    text = format_report(report)
    assert text.splitlines()[0].startswith(
        f"gate: passed; uncertain, passed with a warning: {AGE_EOD}"
    )
    assert f"WARN  fairness  {AGE_EOD}: 0.3750 [0.2000, 0.5500] <= 0.35  (uncertain" in text


@pytest.mark.parametrize(("rule", "passed"), [("pass", True), ("fail", False), ("point", False)])
def test_an_uncertain_fairness_check_follows_gate_uncertain(rule, passed):
    params = params_with(quality="pass", fairness=rule, champion="pass")
    age = by_name(threshold_checks(METRICS, FAIRNESS, params, INTERVALS))[AGE_EOD]
    assert age.verdict == "uncertain"
    assert age.passed is passed


def test_a_quality_metric_below_its_bound_with_an_interval_across_it_is_uncertain():
    metrics = {**METRICS, "roc_auc": 0.69}
    intervals = copy.deepcopy(INTERVALS)
    intervals["metrics"]["roc_auc"] = [0.64, 0.74]
    lenient = by_name(threshold_checks(metrics, FAIRNESS, params_with(quality="pass"), intervals))
    assert (lenient["roc_auc"].verdict, lenient["roc_auc"].passed) == ("uncertain", True)
    strict = by_name(threshold_checks(metrics, FAIRNESS, params_with(quality="point"), intervals))
    assert (strict["roc_auc"].verdict, strict["roc_auc"].passed) == ("uncertain", False)
    assert "FAIL? quality   roc_auc: 0.6900 [0.6400, 0.7400] >= 0.7" in format_report(
        decide(list(strict.values()), None, "r")
    )


def test_an_interval_wholly_beyond_the_bound_fails_whatever_the_rule():
    intervals = copy.deepcopy(INTERVALS)
    intervals["fairness"]["age"]["equalized_odds_difference"] = [0.36, 0.55]
    intervals["metrics"]["accuracy"] = [0.50, 0.69]
    checks = by_name(threshold_checks(METRICS, FAIRNESS, params_with(fairness="pass"), intervals))
    assert (checks[AGE_EOD].verdict, checks[AGE_EOD].passed) == ("fail", False)
    assert (checks["accuracy"].verdict, checks["accuracy"].passed) == ("fail", False)
    assert checks["roc_auc"].verdict == "pass"


def test_uncertain_point_for_every_kind_is_the_point_estimate_rule_of_before():
    raw = copy.deepcopy(RAW)
    raw["gate"]["uncertain"] = "point"
    params = parse_params(raw)
    assert {params.gate.uncertain.quality, params.gate.uncertain.fairness} == {"point"}
    assert params.gate.uncertain.champion == "point"
    checks = threshold_checks(METRICS, FAIRNESS, params, INTERVALS)
    assert [c.name for c in checks if not c.passed] == [AGE_EOD]
    raw["gate"]["uncertain"] = "maybe"
    with pytest.raises(MlgateError, match="uncertain"):
        parse_params(raw)


# ---- the champion rule: a paired bootstrap of candidate - production on the same rows


def scored_split(seed: int, candidate_noise: float, n: int = 300):
    """A test split's labels, the production model's scores and a candidate's: both read
    the same latent signal; the candidate's noise sets how good it is."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=n)
    y = (latent + rng.normal(scale=1.0, size=n) > 0).astype(np.int64)
    production = latent + rng.normal(scale=0.6, size=n)
    candidate = latent + rng.normal(scale=candidate_noise, size=n)
    return y, candidate, production


def champion_verdict(seed: int, candidate_noise: float, params) -> tuple[bool, bool]:
    """(paired rule passed, point rule passed) on one split."""
    y, cand, prod = scored_split(seed, candidate_noise)
    ours, theirs = roc_auc_score(y, cand), roc_auc_score(y, prod)
    diff = paired_difference("roc_auc", "binary", y, cand, prod, Bootstrap(resamples=500))
    paired = champion_check(ours, theirs, params, "1", diff)
    point = champion_check(ours, theirs, params_with(champion="point"), "1")
    return paired.passed, point.passed


def test_a_candidate_as_good_as_production_passes_the_paired_rule_on_noisy_splits():
    params = parse_params(RAW)  # champion tolerance 0.01 on roc_auc, uncertain: pass
    verdicts = [champion_verdict(seed, 0.6, params) for seed in range(20)]
    assert sum(paired for paired, _ in verdicts) >= 19
    # the point rule fails the same model on some of these splits: noise, not the model
    assert sum(not point for _, point in verdicts) >= 3


def test_a_clearly_worse_candidate_fails_the_paired_rule_on_every_split():
    params = parse_params(RAW)
    verdicts = [champion_verdict(seed, 2.5, params) for seed in range(10)]
    assert not any(paired for paired, _ in verdicts)


def test_the_champion_check_shows_the_paired_interval():
    params = parse_params(RAW)
    check = champion_check(0.74, 0.75, params, "3", [-0.03, 0.01])
    assert check.verdict == "uncertain" and check.passed
    assert check.interval == [0.72, 0.76]
    assert "paired difference [-0.0300, +0.0100]" in check.detail
    assert champion_check(0.70, 0.75, params, "3", [-0.08, -0.02]).verdict == "fail"


def test_an_uncertain_check_says_how_many_test_rows_would_tell():
    checks = by_name(
        threshold_checks(METRICS, FAIRNESS, parse_params(RAW), {**INTERVALS, "rows": 200})
    )
    # half-width 0.175, 0.025 from the bound: 200 * (0.175 / 0.025)^2 rows
    assert checks[AGE_EOD].detail == "the test split has 200 rows; ~9,800 would tell"
    assert checks["accuracy"].detail == ""  # passes: nothing to tell


def three_class_split(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels 0..2 and two models' class probabilities: the candidate sharper than production."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    signal = np.eye(3)[y]

    def model(noise: float) -> np.ndarray:
        logits = 2 * signal + rng.normal(scale=noise, size=(n, 3))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return y, model(1.0), model(2.0)


@pytest.mark.parametrize("metric", ["roc_auc_ovr", "log_loss"])
def test_the_multiclass_champion_rule_pairs_the_probability_metrics(metric: str) -> None:
    """roc_auc_ovr and log_loss come from the class probabilities, so the paired difference
    is resampled from them: its interval holds the whole split's difference (scikit-learn's)
    and is narrower than the two models' own intervals added up."""
    from sklearn.metrics import log_loss

    y, candidate, production = three_class_split(3)

    def score(p: np.ndarray) -> float:
        if metric == "log_loss":
            return log_loss(y, p, labels=[0, 1, 2])
        return roc_auc_score(y, p, multi_class="ovr", labels=[0, 1, 2])

    spec = Bootstrap(resamples=1000)
    diff = paired_difference(metric, "multiclass", y, candidate, production, spec, 0.5, [0, 1, 2])
    assert diff is not None
    whole = score(candidate) - score(production)
    assert diff[0] < whole < diff[1]
    # the sharper candidate is better on both: a higher AUC, a lower log loss
    assert (diff[0] > 0) if metric == "roc_auc_ovr" else (diff[1] < 0)
    # decided classes alone (1-D) still give the confusion metrics, and no probability metric
    decided = candidate.argmax(axis=1), production.argmax(axis=1)
    assert paired_difference("accuracy", "multiclass", y, *decided, spec, 0.5, [0, 1, 2])
    assert paired_difference(metric, "multiclass", y, *decided, spec, 0.5, [0, 1, 2]) is None
