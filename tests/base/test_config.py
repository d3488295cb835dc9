"""params.yaml: the real file loads; a broken one fails naming the key and the reason."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from mlgate.config import load_params, parse_params
from mlgate.errors import MlgateError

ROOT = Path(__file__).resolve().parents[2]
RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_change(path: str, value: object) -> dict:
    raw = copy.deepcopy(RAW)
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return raw


def test_the_repository_params_load_into_typed_frozen_objects():
    params = load_params(ROOT / "params.yaml")
    assert params.split.test_size == 0.3
    assert params.features.all == [*params.features.numeric, *params.features.categorical]
    assert params.data.schema_ref == "credit_risk.schema:LabelledCreditApplication"
    with pytest.raises(ValueError, match="frozen"):
        params.split.seed = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("split.test_size", 1.5, r"split\.test_size: Input should be less than 1 \(got 1\.5\)"),
        ("train.model", KeyError, r"train\.model: Field required"),
        ("gate.min_metric", {"roc_auc": 0.7}, r"gate\.min_metric: Extra inputs are not permitted"),
        ("evaluate.threshold", "high", r"evaluate\.threshold: Input should be a valid number"),
        ("train.estimator", "LGBMClassifier", r"train\.estimator: String should match"),
        ("data.target", "age", r"data\.target 'age' is also listed as a feature"),
        ("project.name", "has spaces", r"project\.name: String should match"),
        ("data.contract.max_duplicate_share", 1.5, r"data\.contract\.max_duplicate_share: Input"),
        ("data.contract.min_rows_per_class", 1, r"min_rows_per_class must be at least 2: a strat"),
        ("compare.confidence", 1.0, r"compare\.confidence: Input should be less than 1 "),
        ("compare.max_error_rate", -0.1, r"compare\.max_error_rate: Input should be greater"),
        (
            "compare.bootstrap",
            10,
            r"compare\.bootstrap: Input should be greater than or equal to 100",
        ),
        ("serving.strategy.mode", "blue-green", r"serving\.strategy\.mode: Input should be 'none'"),
        ("serving.strategy.share", 1.0, r"serving\.strategy\.share: Input should be less than 1"),
        ("serving.strategy.share", 0, r"serving\.strategy\.share: Input should be greater than 0"),
        ("serving.strategy.key", "customer id", r"serving\.strategy\.key: String should match"),
        ("serving.strategy.key", "header:", r"serving\.strategy\.key: String should match"),
        ("serving.explain.top_k", 0, r"serving\.explain\.top_k: Input should be greater than"),
        ("deploy.trial.mode", "ab", r"deploy\.trial\.mode: Input should be 'none', 'shadow' or"),
        ("deploy.trial.max_minutes", 400, r"deploy\.trial\.max_minutes: Input should be less"),
        ("deploy.trial.poll_seconds", 0, r"deploy\.trial\.poll_seconds: Input should be greater"),
        (
            "deploy.trial",
            {"mode": "shadow", "min_minutes": 30, "max_minutes": 10},
            r"min_minutes 30 > max_minutes 10: the trial would abort before it may promote",
        ),
        (
            "serving.strategy",
            {"mode": "canary", "challenger": "production"},
            r"serving: the challenger must be another model|strategy\.challenger is serving\.model",
        ),
    ],
)
def test_an_invalid_value_names_the_key_and_the_reason(path, value, expected):
    with pytest.raises(MlgateError, match=expected):
        parse_params(with_change(path, value))


def test_a_fairness_gap_for_an_attribute_that_is_not_evaluated_is_refused():
    raw = with_change("gate.max_fairness_gap", {"demographic_parity_difference": {"race": 0.1}})
    with pytest.raises(MlgateError, match=r"\['race'\].*not in evaluate\.sensitive"):
        parse_params(raw)


def test_age_bands_must_increase():
    raw = with_change("evaluate.sensitive", {"age": {"bands": [35, 25]}})
    with pytest.raises(MlgateError, match=r"evaluate\.sensitive\.age\.bands: .*increasing"):
        parse_params(raw)


def test_missing_and_unparsable_files_say_so(tmp_path):
    with pytest.raises(MlgateError, match="not found"):
        load_params(tmp_path / "params.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("split: [unclosed\n")
    with pytest.raises(MlgateError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("- a list\n")
    with pytest.raises(MlgateError, match="expected a mapping"):
        load_params(bad)


def test_the_fingerprint_follows_values_not_formatting():
    a = parse_params(RAW)
    b = parse_params(yaml.safe_load(yaml.safe_dump(RAW, default_flow_style=True)))
    c = parse_params(with_change("train.hyperparameters", {"C": 0.5, "max_iter": 1000}))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_the_fingerprint_ignores_what_does_not_change_the_model():
    base = parse_params(RAW).fingerprint()
    assert parse_params(with_change("gate.min_metrics", {"roc_auc": 0.6})).fingerprint() == base
    assert parse_params(with_change("evaluate.threshold", 0.6)).fingerprint() == base
    assert parse_params(with_change("deploy", {"target": "kubernetes"})).fingerprint() == base
    assert parse_params(with_change("split.seed", 7)).fingerprint() != base


def test_the_environment_overrides_the_tracking_uri(monkeypatch):
    params = parse_params(RAW)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert params.tracking_uri == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert params.tracking_uri == "http://127.0.0.1:5000"


def test_a_bad_deploy_setting_fails_when_params_load_not_at_deploy_time():
    with pytest.raises(
        MlgateError, match=r"deploy\.target: Input should be 'local' or 'kubernetes'"
    ):
        parse_params(with_change("deploy", {"target": "heroku"}))
    with pytest.raises(MlgateError, match=r"deploy\.kubernetes\.cpu_target: Input should be less"):
        parse_params(with_change("deploy", {"kubernetes": {"cpu_target": 150}}))


def test_a_strategy_key_is_a_field_or_a_header():
    field = parse_params(with_change("serving.strategy", {"mode": "canary", "key": "age"}))
    assert (field.serving.strategy.field, field.serving.strategy.header) == ("age", None)
    header = with_change("serving.strategy", {"mode": "ab", "key": "header:X-Customer-Id"})
    strategy = parse_params(header).serving.strategy
    assert (strategy.field, strategy.header) == (None, "x-customer-id")
    assert parse_params(RAW).serving.strategy.mode == "none"


def test_build_flags_override_the_strategy_and_are_validated_as_params_are():
    from mlgate.serving.build import with_strategy

    params = parse_params(RAW)
    trial = with_strategy(params, "shadow", "7")
    assert (trial.serving.strategy.mode, trial.serving.strategy.challenger) == ("shadow", "7")
    assert trial.serving.strategy.share == params.serving.strategy.share  # the rest kept
    assert params.serving.strategy.mode == "none"  # the loaded params are not changed
    with pytest.raises(MlgateError, match=r"--strategy/--challenger:\n  - serving: Value error"):
        with_strategy(params, "canary", params.serving.model)


def test_params_written_before_intervals_load_with_the_documented_defaults():
    raw = copy.deepcopy(RAW)
    for section, key in (
        ("evaluate", "intervals"),
        ("evaluate", "bootstrap"),
        ("gate", "uncertain"),
    ):
        del raw[section][key]
    params = parse_params(raw)
    assert params.evaluate.intervals == Path("artifacts/intervals.json")
    spec = params.evaluate.bootstrap
    assert (spec.resamples, spec.confidence, spec.seed) == (1000, 0.95, 0)
    rule = params.gate.uncertain
    assert (rule.quality, rule.fairness, rule.champion) == ("pass", "pass", "pass")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("evaluate.bootstrap.resamples", 10, "resamples"),
        ("evaluate.bootstrap.confidence", 1.5, "confidence"),
        ("gate.uncertain.fairness", "warn", "fairness"),
    ],
)
def test_a_bad_bootstrap_or_uncertain_rule_is_named(path, value, message):
    with pytest.raises(MlgateError, match=message):
        parse_params(with_change(path, value))
