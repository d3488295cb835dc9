"""gate: the candidate against the thresholds in params.yaml and against the champion."""

from __future__ import annotations

import math
import operator
import re
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from mlgate import io
from mlgate.config import LOWER_IS_BETTER
from mlgate.errors import GateFailed, MlgateError
from mlgate.pipeline.fairness import gaps

if TYPE_CHECKING:
    from mlgate.config import Params

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


VERDICTS = ("pass", "fail", "uncertain")


@dataclass(frozen=True)
class Check:
    name: str
    kind: str  # quality | fairness | champion
    value: float | None
    threshold: float | None
    op: str
    passed: bool  # what the gate counts: the verdict, an uncertain one ruled by gate.uncertain
    detail: str = ""
    interval: list[float] | None = None  # the value's bootstrap interval, when there is one
    verdict: str = ""  # pass | fail | uncertain (the interval straddles the bound)


def verdict(value: float, op: str, threshold: float, interval: list[float] | None) -> str:
    """pass or fail when the whole interval (or, without one, the value) is on one side of
    the bound; uncertain when the interval straddles it."""
    if interval is None:
        return "pass" if _OPS[op](value, threshold) else "fail"
    lo, hi = interval
    worst, best = (lo, hi) if op == ">=" else (hi, lo)
    if _OPS[op](worst, threshold):
        return "pass"
    return "uncertain" if _OPS[op](best, threshold) else "fail"


def _check(
    name: str,
    kind: str,
    value: float,
    op: str,
    threshold: float,
    detail: str = "",
    interval: list[float] | None = None,
    rule: str = "point",
) -> Check:
    """One check. An uncertain verdict passes or fails as `rule` says (gate.uncertain):
    pass, fail, or point (the point estimate decides)."""
    said = verdict(value, op, threshold, interval)
    if said != "uncertain":
        passed = said == "pass"
    elif rule == "point":
        passed = bool(_OPS[op](value, threshold))
    else:
        passed = rule == "pass"
    return Check(name, kind, value, threshold, op, passed, detail, interval, said)


def threshold_checks(
    metrics: dict[str, float],
    fairness: dict[str, Any],
    params: Params,
    intervals: dict[str, Any] | None = None,
) -> list[Check]:
    """The quality and fairness bounds of params.yaml; with evaluate's intervals, each check
    is pass, fail or uncertain, an uncertain one ruled by gate.uncertain per kind."""
    rule = params.gate.uncertain
    of_metric = (intervals or {}).get("metrics", {})
    of_gap = (intervals or {}).get("fairness", {})
    checks = []
    for name, minimum in params.gate.min_metrics.items():
        value, ci = _metric(metrics, name), of_metric.get(name)
        checks.append(_check(name, "quality", value, ">=", minimum, "", ci, rule.quality))
    for name, maximum in params.gate.max_metrics.items():
        value, ci = _metric(metrics, name), of_metric.get(name)
        checks.append(_check(name, "quality", value, "<=", maximum, "", ci, rule.quality))
    for gap, limits in params.gate.max_fairness_gap.items():
        for attr, maximum in limits.items():
            value, ci = fairness[attr][gap], of_gap.get(attr, {}).get(gap)
            name = f"{gap}:{attr}"
            checks.append(_check(name, "fairness", value, "<=", maximum, "", ci, rule.fairness))
    rows = (intervals or {}).get("rows")
    checks = [needs_rows(c, rows) for c in checks]
    beaten = (intervals or {}).get("chance")
    return [*checks, chance_check(metrics, beaten)] if beaten else checks


def chance_check(metrics: dict[str, float], chance: dict[str, Any]) -> Check:
    """The model against what its training reaches on shuffled labels (evaluate.chance): it
    passes when it is beyond the bound of any of the metrics (each bound at the confidence
    shared between them). Shown on the metric where it stands furthest from the noise fits
    (in their sds). No interval: both sides are scored on the same test rows."""

    def distance(name: str) -> float:
        null = chance["metrics"][name]
        sign = -1 if null["op"] == "<" else 1
        return sign * (_metric(metrics, name) - null["mean"]) / max(null["sd"], 1e-12)

    name = max(chance["metrics"], key=distance)
    null = chance["metrics"][name]
    value, op, bound = _metric(metrics, name), null["op"], null["bound"]
    passed = any(
        _OPS[b["op"]](_metric(metrics, n), b["bound"]) for n, b in chance["metrics"].items()
    )
    reached = "; ".join(
        f"{n} {b['mean']:.4f} ± {b['sd']:.4f}, bound {b['op']} {b['bound']:.4f}"
        for n, b in chance["metrics"].items()
    )
    detail = (
        f"{chance['refits']} fits on shuffled labels reach {reached}; a model that learned "
        f"nothing beats one of them at most {1 - chance['confidence']:.0%} of the time"
    )
    return Check(f"chance:{name}", "chance", value, bound, op, passed, detail, None,
                 "pass" if passed else "fail")  # fmt: skip


def quality_checks(model: Any, rows: Any, params: Params) -> list[Check]:
    """The gate's quality bounds (gate.min_metrics, gate.max_metrics) on these rows, e.g. one
    group's: each value with its bootstrap interval on them, ruled as the gate rules the test
    split (gate.uncertain.quality), so a group of a few dozen rows is not failed by the noise
    of its point estimate against a bar set from the whole split's interval."""
    from mlgate.pipeline.stages.evaluate import evaluate

    bare = params.model_copy(
        update={
            "evaluate": params.evaluate.model_copy(update={"sensitive": {}}),
            "gate": params.gate.model_copy(update={"max_fairness_gap": {}}),
        }
    )
    result = evaluate(model, rows, bare)
    return threshold_checks(result["metrics"], {}, bare, result["intervals"])


def needs_rows(check: Check, rows: int | None) -> Check:
    """An uncertain check says how many test rows would tell: the interval's half-width
    shrinks as 1/sqrt(rows), so rows * (half-width / distance to the bound)^2 make it clear
    the bound (with the same groups' shares and the same point value)."""
    if check.verdict != "uncertain" or not rows or check.interval is None:
        return check
    assert check.value is not None and check.threshold is not None
    distance = abs(check.value - check.threshold)
    half = (check.interval[1] - check.interval[0]) / 2
    if distance == 0:
        said = "the value is on the bound: no test size tells"
    else:
        needed = math.ceil(rows * (half / distance) ** 2)
        said = f"the test split has {rows} rows; ~{needed:,} would tell"
    return replace(check, detail="; ".join(filter(None, [check.detail, said])))


def champion_check(
    candidate_value: float,
    champion_value: float | None,
    params: Params,
    champion_version: str | None,
    difference: list[float] | None = None,
) -> Check:
    """The candidate may be worse than the champion by at most `tolerance`. With the paired
    bootstrap interval of candidate - champion (`difference`), it fails only when the whole
    interval is beyond the tolerance; uncertain when it straddles it (gate.uncertain)."""
    rule = params.gate.champion
    assert rule is not None
    lower = rule.metric in LOWER_IS_BETTER
    if champion_value is None:
        return Check(
            f"champion:{rule.metric}",
            "champion",
            candidate_value,
            None,
            "<=" if lower else ">=",
            True,
            f"no model holds alias {rule.alias!r} yet: nothing to compare with",
            verdict="pass",
        )
    margin = rule.tolerance * abs(champion_value) if rule.relative else rule.tolerance
    op, bound = (
        ("<=", round(champion_value + margin, 6))
        if lower
        else (
            ">=",
            round(champion_value - margin, 6),
        )
    )
    # the interval of the candidate's value implied by the paired difference
    ci = None if difference is None else [round(champion_value + d, 4) for d in difference]
    detail = (
        f"{rule.alias} is version {champion_version} with {rule.metric}="
        f"{champion_value:.4f}; tolerance {rule.tolerance:g}"
        + (f" of it ({margin:.4g})" if rule.relative else "")
    )
    if difference is not None:
        detail += f"; paired difference [{difference[0]:+.4f}, {difference[1]:+.4f}]"
    return _check(
        f"champion:{rule.metric}",
        "champion",
        candidate_value,
        op,
        bound,
        detail,
        ci,
        params.gate.uncertain.champion,
    )


def _metric(metrics: dict[str, float], name: str) -> float:
    if name not in metrics:
        raise MlgateError(
            f"gate names metric {name!r}, which evaluate does not produce "
            f"(it produces: {', '.join(sorted(metrics))})"
        )
    return metrics[name]


def champion_score(params: Params) -> tuple[str | None, float | None, list[float] | None]:
    """Score the model holding the champion alias on this test set, and the paired bootstrap
    interval of candidate - champion on the same rows; (None, None, None) if none holds it."""
    rule = params.gate.champion
    assert rule is not None
    import mlflow
    from mlflow.exceptions import MlflowException

    from mlgate.pipeline import data
    from mlgate.pipeline.model import load_model
    from mlgate.pipeline.stages.evaluate import test_metrics
    from mlgate.registry import tracking

    client = tracking.connect(params)
    try:
        version = client.get_model_version_by_alias(params.model_name, rule.alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None, None, None
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
    difference = paired_interval(load_model(params.train.model), model, test, params)
    return str(version.version), _metric(metrics, rule.metric), difference


def paired_interval(candidate: Any, champion: Any, test: Any, params: Params) -> list[float] | None:
    """candidate - champion on the champion rule's metric: the paired bootstrap interval
    over the test rows both models scored (None: the metric has no resampled form)."""
    from mlgate.pipeline.bootstrap import paired_difference
    from mlgate.pipeline.stages.evaluate import test_outputs

    assert params.gate.champion is not None
    y, ours = test_outputs(candidate, test, params)
    _, theirs = test_outputs(champion, test, params)
    classes: list[Any] = []
    if params.data.task == "multiclass":
        models = (candidate, champion)
        seen = {c for m in models for c in m.classes_} | set(y.tolist())
        classes = sorted(seen | set(ours.tolist()) | set(theirs.tolist()), key=str)
        index = {label: i for i, label in enumerate(classes)}
        y, ours, theirs = (np.array([index[v] for v in a.tolist()]) for a in (y, ours, theirs))
        if params.gate.champion.metric in ("roc_auc_ovr", "log_loss"):  # from probabilities
            ours, theirs = (class_columns(m, test, params, classes) for m in models)
    return paired_difference(
        params.gate.champion.metric,
        params.data.task,
        y,
        ours,
        theirs,
        params.evaluate.bootstrap,
        params.evaluate.threshold,
        classes,
    )


def class_columns(model: Any, test: Any, params: Params, classes: list[Any]) -> np.ndarray:
    """The model's probability of each of `classes` on the test rows, in that order (0 for a
    class the model never saw)."""
    from mlgate.pipeline.model import class_probabilities

    own, probabilities = class_probabilities(model, test.drop(columns=[params.data.target]))
    out = np.zeros((len(test), len(classes)))
    for j, label in enumerate(own):
        out[:, classes.index(label)] = probabilities[:, j]
    return out


def decide(
    checks: list[Check],
    champion: dict[str, Any] | None,
    run_id: str,
    confidence: float | None = None,
) -> dict[str, Any]:
    return {
        "passed": all(c.passed for c in checks),
        "run_id": run_id,
        "confidence": confidence,
        "checks": [asdict(c) for c in checks],
        "champion": champion,
    }


MARKS = {"pass": "PASS", "fail": "FAIL"}


def _mark(c: dict[str, Any]) -> str:
    """PASS, FAIL, or for an uncertain check WARN (it passes) or FAIL?: fails by rule."""
    said = c.get("verdict") or ("pass" if c["passed"] else "fail")
    if said != "uncertain":
        return MARKS[said]
    return "WARN" if c["passed"] else "FAIL?"


def _interval(ci: list[float] | None) -> str:
    return "" if ci is None else f" [{ci[0]:.4f}, {ci[1]:.4f}]"


def format_report(report: dict[str, Any], fairness: dict[str, Any] | None = None) -> str:
    """The verdict, every check (value, its interval, bound, and pass, fail or uncertain),
    then every fairness gap evaluate measured that no `gate.max_fairness_gap` threshold
    covers (shown, marked "not gated")."""
    lines = []
    for c in report["checks"]:
        bound = "" if c["threshold"] is None else f" {c['op']} {c['threshold']}"
        notes = [c["detail"]] if c["detail"] else []
        if c.get("verdict") == "uncertain":
            ruled = "passes with a warning" if c["passed"] else "fails"
            notes.insert(0, f"uncertain: the interval straddles the bound; {ruled}")
        detail = f"  ({'; '.join(notes)})" if notes else ""
        lines.append(
            f"  {_mark(c):<5} {c['kind']:<9} {c['name']}: {c['value']:.4f}"
            f"{_interval(c.get('interval'))}{bound}{detail}"
        )
    gated = {c["name"] for c in report["checks"]}
    for attr, measured in (fairness or {}).items():
        for gap, value in gaps(measured).items():
            if f"{gap}:{attr}" not in gated:
                lines.append(f"  ----  fairness  {gap}:{attr}: {value:.4f}  (not gated)")
    outcome = "passed" if report["passed"] else "FAILED"
    failed = [c["name"] for c in report["checks"] if not c["passed"]]
    unsure = [
        c["name"] for c in report["checks"] if c["passed"] and c.get("verdict") == "uncertain"
    ]
    head = f"gate: {outcome}" + (f" ({', '.join(failed)})" if failed else "")
    head += f"; uncertain, passed with a warning: {', '.join(unsure)}" if unsure else ""
    if report.get("confidence"):
        head += f"  [intervals: {report['confidence']:.0%} bootstrap]"
    return "\n".join([head, *lines])


def _mlflow_name(name: str) -> str:
    """A metric name MLflow accepts: a class label in `recall:<class>` may hold any character,
    MLflow's names only letters, digits, `_-. :` (a slash would make a path)."""
    return re.sub(r"[^\w.\- :]", "_", name)


def run(params: Params) -> dict[str, Any]:
    run_id = io.read_json(params.train.run, "training run record")["run_id"]
    metrics = io.read_json(params.evaluate.metrics, "metrics")
    fairness = io.read_json(params.evaluate.fairness, "fairness report")
    intervals = _intervals(params)
    checks = threshold_checks(metrics, fairness, params, intervals)
    champion = None
    if params.gate.champion is not None:
        version, value, difference = champion_score(params)
        metric = params.gate.champion.metric
        check = champion_check(_metric(metrics, metric), value, params, version, difference)
        checks.append(needs_rows(check, (intervals or {}).get("rows")))
        champion = {
            "alias": params.gate.champion.alias,
            "version": version,
            metric: value,
            "difference_interval": difference,
        }
    report = decide(checks, champion, run_id, intervals.get("confidence") if intervals else None)
    # MLflow first: a tracking failure leaves no fresh gate.json behind
    importance = params.evaluate.importance
    drivers = io.read_json(importance, "importance") if importance.exists() else None
    _log_to_run(report, metrics, fairness, intervals, drivers)
    io.write_json(params.gate.report, report)
    print(format_report(report, fairness))
    if not report["passed"]:
        raise GateFailed(f"the model did not pass the gate; see {params.gate.report}")
    return report


def _intervals(params: Params) -> dict[str, Any] | None:
    """evaluate's intervals; None when its file is absent (evaluated before intervals
    existed: every check is then decided on its point value, as it was)."""
    if not params.evaluate.intervals.exists():
        print(f"gate: {params.evaluate.intervals} not found: point estimates only (rerun evaluate)")
        return None
    return io.read_json(params.evaluate.intervals, "intervals")


def _log_to_run(
    report: dict[str, Any],
    metrics: dict[str, float],
    fairness: dict[str, Any],
    intervals: dict[str, Any] | None = None,
    drivers: dict[str, Any] | None = None,
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
        if intervals:
            mlflow.log_dict(intervals, "evaluation/intervals.json")
        if drivers:
            mlflow.log_dict(drivers, "evaluation/importance.json")
        mlflow.set_tag("mlgate.gate_passed", str(report["passed"]).lower())
        mlflow.log_dict(report, "evaluation/gate.json")
