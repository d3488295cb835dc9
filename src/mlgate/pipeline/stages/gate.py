"""gate: the candidate against the thresholds in params.yaml and against the champion."""

from __future__ import annotations

import operator
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mlgate import io
from mlgate.errors import GateFailed, MlgateError
from mlgate.pipeline.fairness import gaps

if TYPE_CHECKING:
    from mlgate.config import Params

_OPS = {">=": operator.ge, "<=": operator.le}
# Metrics where a smaller value is better: the champion rule flips its direction for them.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "brier", "log_loss"})


@dataclass(frozen=True)
class Check:
    name: str
    kind: str  # quality | fairness | champion
    value: float | None
    threshold: float | None
    op: str
    passed: bool
    detail: str = ""


def _check(
    name: str, kind: str, value: float, op: str, threshold: float, detail: str = ""
) -> Check:
    return Check(name, kind, value, threshold, op, bool(_OPS[op](value, threshold)), detail)


def threshold_checks(
    metrics: dict[str, float], fairness: dict[str, Any], params: Params
) -> list[Check]:
    checks = []
    for name, minimum in params.gate.min_metrics.items():
        checks.append(_check(name, "quality", _metric(metrics, name), ">=", minimum))
    for name, maximum in params.gate.max_metrics.items():
        checks.append(_check(name, "quality", _metric(metrics, name), "<=", maximum))
    for gap, limits in params.gate.max_fairness_gap.items():
        for attr, maximum in limits.items():
            value = fairness[attr][gap]
            checks.append(_check(f"{gap}:{attr}", "fairness", value, "<=", maximum))
    return checks


def champion_check(
    candidate_value: float,
    champion_value: float | None,
    params: Params,
    champion_version: str | None,
) -> Check:
    rule = params.gate.champion
    assert rule is not None
    if champion_value is None:
        return Check(
            f"champion:{rule.metric}",
            "champion",
            candidate_value,
            None,
            "<=" if rule.metric in LOWER_IS_BETTER else ">=",
            True,
            f"no model holds alias {rule.alias!r} yet: nothing to compare with",
        )
    # the candidate may be worse than the champion by at most `tolerance`, in either direction
    margin = rule.tolerance * abs(champion_value) if rule.relative else rule.tolerance
    if rule.metric in LOWER_IS_BETTER:
        op, bound = "<=", round(champion_value + margin, 6)
    else:
        op, bound = ">=", round(champion_value - margin, 6)
    return _check(
        f"champion:{rule.metric}",
        "champion",
        candidate_value,
        op,
        bound,
        f"{rule.alias} is version {champion_version} with {rule.metric}="
        f"{champion_value:.4f}; tolerance {rule.tolerance:g}"
        + (f" of it ({margin:.4g})" if rule.relative else ""),
    )


def _metric(metrics: dict[str, float], name: str) -> float:
    if name not in metrics:
        raise MlgateError(
            f"gate names metric {name!r}, which evaluate does not produce "
            f"(it produces: {', '.join(sorted(metrics))})"
        )
    return metrics[name]


def champion_score(params: Params) -> tuple[str | None, float | None]:
    """Score the model holding the champion alias on this test set; (None, None) if none."""
    rule = params.gate.champion
    assert rule is not None
    import mlflow
    from mlflow.exceptions import MlflowException

    from mlgate.pipeline import data
    from mlgate.pipeline.stages.evaluate import test_metrics
    from mlgate.registry import tracking

    client = tracking.connect(params)
    try:
        version = client.get_model_version_by_alias(params.model_name, rule.alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None, None
        raise MlgateError(f"cannot look up the {rule.alias} model: {err.message}") from None
    model = mlflow.sklearn.load_model(f"models:/{params.model_name}/{version.version}")
    test = data.load(params.split.test, params)
    missing = set(getattr(model, "feature_names_in_", [])) - set(test.columns)
    if missing:
        raise MlgateError(
            f"the {rule.alias} model (version {version.version}) needs columns "
            f"{sorted(missing)} that the data no longer has: the champion rule cannot "
            "compare them; retire the champion rule for this change in params.yaml"
        )
    metrics = test_metrics(model, test, params)
    return str(version.version), _metric(metrics, rule.metric)


def decide(checks: list[Check], champion: dict[str, Any] | None, run_id: str) -> dict[str, Any]:
    return {
        "passed": all(c.passed for c in checks),
        "run_id": run_id,
        "checks": [asdict(c) for c in checks],
        "champion": champion,
    }


def format_report(report: dict[str, Any], fairness: dict[str, Any] | None = None) -> str:
    """The verdict, every check, then every fairness gap evaluate measured that no
    `gate.max_fairness_gap` threshold covers (shown, marked "not gated")."""
    lines = []
    for c in report["checks"]:
        mark = "PASS" if c["passed"] else "FAIL"
        bound = "" if c["threshold"] is None else f" {c['op']} {c['threshold']}"
        detail = f"  ({c['detail']})" if c["detail"] else ""
        lines.append(f"  {mark}  {c['kind']:<9} {c['name']}: {c['value']:.4f}{bound}{detail}")
    gated = {c["name"] for c in report["checks"]}
    for attr, measured in (fairness or {}).items():
        for gap, value in gaps(measured).items():
            if f"{gap}:{attr}" not in gated:
                lines.append(f"  ----  fairness  {gap}:{attr}: {value:.4f}  (not gated)")
    verdict = "passed" if report["passed"] else "FAILED"
    failed = [c["name"] for c in report["checks"] if not c["passed"]]
    head = f"gate: {verdict}" + (f" ({', '.join(failed)})" if failed else "")
    return "\n".join([head, *lines])


def _mlflow_name(name: str) -> str:
    """A metric name MLflow accepts: a class label in `recall:<class>` may hold any character,
    MLflow's names only letters, digits, `_-. :` (a slash would make a path)."""
    return re.sub(r"[^\w.\- :]", "_", name)


def run(params: Params) -> dict[str, Any]:
    run_id = io.read_json(params.train.run, "training run record")["run_id"]
    metrics = io.read_json(params.evaluate.metrics, "metrics")
    fairness = io.read_json(params.evaluate.fairness, "fairness report")
    checks = threshold_checks(metrics, fairness, params)
    champion = None
    if params.gate.champion is not None:
        version, value = champion_score(params)
        metric = params.gate.champion.metric
        checks.append(champion_check(_metric(metrics, metric), value, params, version))
        champion = {"alias": params.gate.champion.alias, "version": version, metric: value}
    report = decide(checks, champion, run_id)
    # MLflow first: a tracking failure leaves no fresh gate.json behind
    _log_to_run(report, metrics, fairness)
    io.write_json(params.gate.report, report)
    print(format_report(report, fairness))
    if not report["passed"]:
        raise GateFailed(f"the model did not pass the gate; see {params.gate.report}")
    return report


def _log_to_run(
    report: dict[str, Any], metrics: dict[str, float], fairness: dict[str, Any]
) -> None:
    """Test metrics, fairness gaps and the verdict join the training run: one run per model.

    Logged here rather than in evaluate, so evaluate never pays for importing MLflow."""
    import mlflow

    from mlgate.registry import tracking

    flat = {f"test_{k}": v for k, v in metrics.items()}
    for attr, res in fairness.items():
        # every gap measure the task produces (classification: the two fairlearn differences)
        flat.update({f"fairness_{attr}_{k}": v for k, v in gaps(res).items()})
    with tracking.resume_run(report["run_id"]):
        mlflow.log_metrics({_mlflow_name(k): v for k, v in flat.items()})
        mlflow.log_dict(fairness, "evaluation/fairness.json")
        mlflow.set_tag("mlgate.gate_passed", str(report["passed"]).lower())
        mlflow.log_dict(report, "evaluation/gate.json")
