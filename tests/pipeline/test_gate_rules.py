"""Gate rules: thresholds, fairness gaps and the champion rule decide as documented."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from mlgate.config import parse_params
from mlgate.errors import MlgateError
from mlgate.pipeline.stages.gate import champion_check, decide, format_report, threshold_checks

RAW = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
PARAMS = parse_params(RAW)
METRICS = {"roc_auc": 0.75, "accuracy": 0.72}
FAIRNESS = {
    "sex": {"demographic_parity_difference": 0.05, "equalized_odds_difference": 0.08},
    "age": {"demographic_parity_difference": 0.20, "equalized_odds_difference": 0.25},
}


def test_a_model_within_every_threshold_passes():
    checks = threshold_checks(METRICS, FAIRNESS, PARAMS)
    assert {c.kind for c in checks} == {"quality", "fairness"}
    assert all(c.passed for c in checks)
    assert decide(checks, None, "run1")["passed"] is True


def test_one_failing_gap_fails_the_gate_and_is_named():
    fairness = copy.deepcopy(FAIRNESS)
    fairness["sex"]["demographic_parity_difference"] = 0.24
    report = decide(threshold_checks(METRICS, fairness, PARAMS), None, "run1")
    assert report["passed"] is False
    text = format_report(report)
    assert text.splitlines()[0] == "gate: FAILED (demographic_parity_difference:sex)"
    assert "FAIL  fairness  demographic_parity_difference:sex: 0.2400 <= 0.1" in text


def test_measured_gaps_without_a_threshold_are_shown_as_not_gated():
    raw = copy.deepcopy(RAW)
    raw["gate"]["max_fairness_gap"] = {"demographic_parity_difference": {"sex": 0.1}}
    params = parse_params(raw)
    text = format_report(decide(threshold_checks(METRICS, FAIRNESS, params), None, "r"), FAIRNESS)
    assert "PASS  fairness  demographic_parity_difference:sex: 0.0500 <= 0.1" in text
    assert "----  fairness  equalized_odds_difference:sex: 0.0800  (not gated)" in text
    assert "----  fairness  demographic_parity_difference:age: 0.2000  (not gated)" in text
    assert "demographic_parity_difference:sex: 0.0500  (not gated)" not in text


def test_a_metric_below_its_minimum_fails():
    checks = threshold_checks({**METRICS, "roc_auc": 0.69}, FAIRNESS, PARAMS)
    failed = [c.name for c in checks if not c.passed]
    assert failed == ["roc_auc"]


def test_a_gate_on_a_metric_evaluate_does_not_produce_is_an_error():
    raw = copy.deepcopy(RAW)
    raw["gate"]["min_metrics"]["auc_roc"] = 0.7
    with pytest.raises(MlgateError, match="'auc_roc', which evaluate does not produce"):
        threshold_checks(METRICS, FAIRNESS, parse_params(raw))


@pytest.mark.parametrize(
    ("candidate", "champion", "passed"),
    [(0.75, 0.75, True), (0.741, 0.75, True), (0.739, 0.75, False), (0.80, 0.75, True)],
)
def test_the_champion_rule_allows_the_configured_tolerance(candidate, champion, passed):
    check = champion_check(candidate, champion, PARAMS, "3")  # tolerance 0.01 in params.yaml
    assert check.passed is passed
    assert check.threshold == pytest.approx(champion - 0.01)
    assert "version 3" in check.detail


def test_without_a_champion_the_rule_passes_and_says_why():
    check = champion_check(0.6, None, PARAMS, None)
    assert check.passed and check.threshold is None
    assert "no model holds alias 'production'" in check.detail
