"""`mlgate compare`: champion against challenger on recorded traffic, and a verdict."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate import io
from mlgate.actions import utc_now
from mlgate.errors import MlgateError
from mlgate.names import CHALLENGER
from mlgate.serving.feedback import record_time

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlgate.config import Params

CHAMPION, CHALLENGER = "champion", CHALLENGER
# Exit codes a CI step can branch on (0 is promote); 2 stays mlgate's "could not run".
EXIT = {"promote": 0, "collect": 3, "abort": 4}
# The metrics compare can compute from (outcome, score) pairs, by task; the first is the
# default, gate.champion.metric picks another. True: higher is better.
METRICS = {
    "classification": {"roc_auc": True},
    "multiclass": {"accuracy": True, "log_loss": False},
    "regression": {"rmse": False, "mae": False},
}
# a multiclass metric is a mean over rows: each row's value (right or not, -log p of the
# outcome) is its "score", the outcome read into it (_sides)
ROW_MEANS = ("accuracy", "log_loss")
TRAFFIC = {
    "shadow": "the challenger scored the rows the champion answered: paired",
    "split": "canary or A/B: each row answered by one variant",
    "champion only": "no challenger record yet",
}
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
CELLS = 2_000_000  # resampled values held at once (rows x resamples): memory stays ~16 MB


@dataclass
class Variant:
    name: str
    model_versions: list[str]
    predictions: int
    errors: int
    error_rate: float
    score_mean: float | None
    score_quantiles: dict[str, float]
    latency_ms: dict[str, float]
    outcomes: int
    metric: float | None = None
    metric_ci: list[float] | None = None


@dataclass
class Difference:
    """challenger - champion on the primary metric, with its bootstrap interval."""

    metric: str
    higher_is_better: bool
    design: str  # paired (shadow: the same rows) | independent (canary / ab: different rows)
    rows: dict[str, int]
    value: float
    ci: list[float]
    p_value: float
    resamples: int  # resamples where the metric was defined on both sides


@dataclass
class Comparison:
    generated_at: str
    mode: str  # shadow | split | champion only
    task: str
    metric: str
    champion: Variant
    challenger: Variant
    score_drift: dict[str, Any] | None
    agreement: dict[str, Any] | None
    difference: Difference | None
    verdict: str
    reasons: list[str]
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT[self.verdict]


# ---------------------------------------------------------------- records


def load_records(folder: Path, since: str | None = None) -> dict[str, pd.DataFrame]:
    """The folder's records as frames: predictions (champion and challenger answers), shadow
    scores, errors, and outcomes (the latest per request id and row). `since` (an ISO time in
    UTC, as the records' `ts`) drops what was served before it, e.g. before a trial began;
    outcomes are kept whenever they arrived (they join only the served rows kept)."""
    import pandas as pd

    from mlgate.serving.feedback import read_records

    records = read_records(folder)
    if not records:
        raise MlgateError(f"{folder}: no feedback records (*.jsonl) to compare")
    if since:
        records = [
            r for r in records if r.get("kind") == "outcome" or str(r.get("ts", "")) >= since
        ]

    def frame(kind: str) -> pd.DataFrame:
        rows = [
            {
                "request_id": str(r.get("request_id")),
                "row": int(r.get("row", 0)),
                "variant": r.get("variant") or CHAMPION,
                "model_version": str(r.get("model_version")),
                "score": r.get("probability", r.get("prediction")),
                "decision": r.get("decision", r.get("class")),  # multiclass: the class
                "probabilities": r.get("probabilities"),
                "latency_ms": r.get("latency_ms"),
                "ts": str(r.get("ts", "")),
                "outcome": r.get("outcome"),
                "shadow": bool(r.get("shadow")),
            }
            for r in records
            if r.get("kind") == kind
        ]
        columns = ["request_id", "row", "variant", "model_version", "score", "decision"]
        columns += ["probabilities"]
        columns += ["latency_ms", "ts", "outcome", "shadow"]
        out = pd.DataFrame(rows, columns=columns)
        out["score"] = pd.to_numeric(out["score"], errors="coerce")
        out["latency_ms"] = pd.to_numeric(out["latency_ms"], errors="coerce")
        return out

    predictions = frame("prediction")
    if predictions.empty:
        after = f" served since {since}" if since else ""
        raise MlgateError(f"{folder}: feedback records but no predictions{after} to compare")
    outcomes = frame("outcome")
    # the latest outcome for a (request id, row) wins; ties: the one read last
    outcomes = outcomes.reset_index().sort_values(["ts", "index"], kind="stable")
    outcomes = outcomes.drop_duplicates(["request_id", "row"], keep="last")
    return {
        "predictions": predictions,
        "shadow": frame("shadow"),
        "errors": frame("error"),
        "outcomes": outcomes[["request_id", "row", "outcome"]],
    }


# ---------------------------------------------------------------- statistics


def metric_value(name: str, y: np.ndarray, s: np.ndarray) -> float | None:
    """The metric on all rows (scikit-learn); None when undefined (one class only)."""
    import numpy as np
    from sklearn import metrics as m

    if name == "roc_auc":
        return float(m.roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None
    if name in ROW_MEANS:
        return float(np.mean(s))
    if name == "rmse":
        return float(np.sqrt(m.mean_squared_error(y, s)))
    return float(m.mean_absolute_error(y, s))


def metric_resampled(name: str, y: np.ndarray, s: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The metric on each resample (rows of `idx`), vectorised, in blocks of CELLS values:
    NaN where undefined. The pipeline's bootstrap computes it (ROC AUC by ranks)."""
    import numpy as np

    from mlgate.pipeline.bootstrap import rows_metric

    task = "binary" if name == "roc_auc" else "regression"
    out = np.empty(len(idx))
    step = max(1, CELLS // max(1, idx.shape[1]))
    for start in range(0, len(idx), step):
        part = idx[start : start + step]
        if name in ROW_MEANS:  # per-row values (a correct answer, a row's log loss): the mean
            out[start : start + len(part)] = s[part].mean(axis=1)
        else:
            out[start : start + len(part)] = rows_metric(name, task, y[part], s[part], 0.5, [])
    return out


def _interval(values: np.ndarray, confidence: float) -> list[float]:
    from mlgate.pipeline.bootstrap import percentile_interval

    interval = percentile_interval(values, confidence, digits=None)
    return interval if interval is not None else [float("nan"), float("nan")]


def bootstrap_difference(
    name: str,
    champion: tuple[np.ndarray, np.ndarray],
    challenger: tuple[np.ndarray, np.ndarray],
    paired: bool,
    resamples: int,
    confidence: float,
    seed: int,
) -> tuple[Difference, list[float], list[float]]:
    """challenger - champion with a percentile bootstrap interval and a two-sided p-value
    (twice the share of resamples on the far side of 0). Paired: both variants scored the
    same rows (`champion[0]` is `challenger[0]`), one resample of rows serves both; else
    each variant's rows are resampled on their own. Also each variant's own interval."""
    import numpy as np

    rng = np.random.default_rng(seed)
    (y_cp, s_cp), (y_ch, s_ch) = champion, challenger
    idx_cp = rng.integers(0, len(y_cp), size=(resamples, len(y_cp)))
    idx_ch = idx_cp if paired else rng.integers(0, len(y_ch), size=(resamples, len(y_ch)))
    m_cp = metric_resampled(name, y_cp, s_cp, idx_cp)
    m_ch = metric_resampled(name, y_ch, s_ch, idx_ch)
    diff = m_ch - m_cp
    diff = diff[np.isfinite(diff)]
    if len(diff) == 0:
        raise MlgateError(f"{name} is undefined on every resample (one outcome class only?)")
    point_cp = metric_value(name, y_cp, s_cp)
    point_ch = metric_value(name, y_ch, s_ch)
    value = float("nan") if point_cp is None or point_ch is None else point_ch - point_cp
    # no resample on the far side: the p-value is below 1/resamples, reported as that bound
    p = min(1.0, max(1 / len(diff), 2 * min(float((diff <= 0).mean()), float((diff >= 0).mean()))))
    result = Difference(
        metric=name,
        higher_is_better=next(m[name] for m in METRICS.values() if name in m),
        design="paired" if paired else "independent",
        rows={CHAMPION: len(y_cp), CHALLENGER: len(y_ch)},
        value=value,
        ci=_interval(diff, confidence),
        p_value=p,
        resamples=len(diff),
    )
    return result, _interval(m_cp, confidence), _interval(m_ch, confidence)


def score_drift(params: Params, champion: pd.Series, challenger: pd.Series) -> dict[str, Any]:
    """The challenger's scores against the champion's: monitor's PSI and KS test and rule."""
    from mlgate.loop.monitor import feature_drift

    d = feature_drift("score", champion, challenger, params, params.monitor.max_prediction_psi)
    return {
        "psi": d.psi,
        "test": d.test,
        "statistic": d.statistic,
        "p_value": d.p_value,
        "drifted": d.drifted,
    }


# ---------------------------------------------------------------- the comparison


def primary_metric(params: Params) -> str:
    """gate.champion.metric when compare can compute it from outcomes, else the task's own."""
    choices = METRICS[params.data.task]
    rule = params.gate.champion
    return rule.metric if rule is not None and rule.metric in choices else next(iter(choices))


def _variant(name: str, answers: pd.DataFrame, errors: pd.DataFrame, outcomes: int) -> Variant:
    scores = answers["score"].dropna()
    latency = answers["latency_ms"].dropna()
    failed = int(errors.loc[errors["variant"] == name, "rows"].sum())
    total = len(answers) + failed
    return Variant(
        name=name,
        model_versions=sorted(set(answers["model_version"])),
        predictions=len(answers),
        errors=failed,
        error_rate=failed / total if total else 0.0,
        score_mean=float(scores.mean()) if len(scores) else None,
        score_quantiles={f"p{round(q * 100):02d}": float(scores.quantile(q)) for q in QUANTILES}
        if len(scores)
        else {},
        latency_ms={f"p{q}": float(latency.quantile(q / 100)) for q in (50, 95, 99)}
        if len(latency)
        else {},
        outcomes=outcomes,
    )


def _labels(params: Params, outcomes: pd.Series) -> np.ndarray:
    """Outcomes as the metric takes them: 1/0 for the positive label, numbers for regression."""
    import numpy as np

    if params.data.task == "classification":
        positive = str(params.data.positive_label)
        return np.asarray([str(v) == positive for v in outcomes], dtype=float)
    return outcomes.to_numpy(dtype=float)


def _sides(
    params: Params, name: str, labelled: pd.DataFrame, suffix: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """(outcomes, scores) of answered rows joined with their outcomes, as the metric takes
    them; a multiclass row's score is its value of the metric (1/0 right, or -log of the
    probability it gave the outcome, clipped at float64's eps as scikit-learn's log_loss)."""
    import numpy as np

    if params.data.task != "multiclass":
        return _labels(params, labelled["outcome"]), labelled[f"score{suffix}"].to_numpy(float)
    outcomes = [str(o) for o in labelled["outcome"]]
    if name == "accuracy":
        decided = labelled[f"decision{suffix}"].astype(str)
        values = np.asarray([d == o for d, o in zip(decided, outcomes, strict=True)], float)
    else:
        given = [
            (p or {}).get(o, 0.0)
            for p, o in zip(labelled[f"probabilities{suffix}"], outcomes, strict=True)
        ]
        eps = np.finfo(float).eps
        values = -np.log(np.clip(np.asarray(given, dtype=float), eps, 1 - eps))
    return np.zeros(len(values)), values


def compare(params: Params, frames: dict[str, pd.DataFrame]) -> Comparison:
    import pandas as pd

    c = params.compare
    preds, shadow, errors = frames["predictions"], frames["shadow"], frames["errors"]
    keys = ["request_id", "row"]
    champion = preds[preds["variant"] == CHAMPION]
    # A failed shadow score is one error record for the whole request: it counts as the rows
    # the champion answered in it, as the challenger's scored rows do (a rejection counts 1).
    answered = champion.groupby("request_id").size()
    errors = errors.assign(
        rows=errors["request_id"].map(answered).fillna(1).where(errors["shadow"], 1)
    )
    challenger = pd.concat([preds[preds["variant"] == CHALLENGER], shadow], ignore_index=True)
    mode = "shadow" if len(shadow) else ("split" if len(challenger) else "champion only")
    labelled_cp = champion.merge(frames["outcomes"], on=keys, suffixes=("_", ""))
    labelled_ch = challenger.merge(frames["outcomes"], on=keys, suffixes=("_", ""))
    cp = _variant(CHAMPION, champion, errors, len(labelled_cp))
    ch = _variant(CHALLENGER, challenger, errors, len(labelled_ch))

    drift = agreement = None
    if len(champion["score"].dropna()) and len(challenger["score"].dropna()):
        drift = score_drift(params, champion["score"].dropna(), challenger["score"].dropna())
    both = champion.merge(shadow, on=keys, suffixes=("_cp", "_ch"))
    if len(both):
        agreement = {"rows": len(both)}
        if params.data.task != "multiclass":  # one score a row to differ by
            delta = (both["score_ch"] - both["score_cp"]).abs()
            agreement["mean_abs_score_difference"] = float(delta.mean())
        if params.data.task != "regression":
            same = both["decision_cp"].astype(str) == both["decision_ch"].astype(str)
            agreement["decision_agreement"] = float(same.mean())

    name = primary_metric(params)
    difference = None
    if cp.outcomes and ch.outcomes:
        cp.metric = metric_value(name, *_sides(params, name, labelled_cp))
        ch.metric = metric_value(name, *_sides(params, name, labelled_ch))
    enough_outcomes = min(cp.outcomes, ch.outcomes) >= c.min_outcomes
    if enough_outcomes and cp.metric is not None and ch.metric is not None:
        if mode == "shadow":
            paired = both.merge(frames["outcomes"], on=keys)
            sides = (_sides(params, name, paired, "_cp"), _sides(params, name, paired, "_ch"))
        else:
            sides = (_sides(params, name, labelled_cp), _sides(params, name, labelled_ch))
        difference, cp.metric_ci, ch.metric_ci = bootstrap_difference(
            name, sides[0], sides[1], mode == "shadow", c.bootstrap, c.confidence, c.seed
        )

    verdict, reasons = decide(params, cp, ch, difference, name)
    return Comparison(
        generated_at=utc_now(),
        mode=mode,
        task=params.data.task,
        metric=name,
        champion=cp,
        challenger=ch,
        score_drift=drift,
        agreement=agreement,
        difference=difference,
        verdict=verdict,
        reasons=reasons,
        thresholds=c.model_dump(mode="json", exclude={"report"}),
    )


def decide(
    params: Params, cp: Variant, ch: Variant, difference: Difference | None, metric: str
) -> tuple[str, list[str]]:
    """The rule of compare.* (docs/COMPARE.md#the-verdict): abort on a failing or confidently
    worse challenger, promote on enough evidence of non-inferiority, otherwise collect."""
    c = params.compare
    abort: list[str] = []
    collect: list[str] = []
    passed: list[str] = []
    seen = ch.predictions + ch.errors
    rate = (
        f"challenger error rate {ch.error_rate:.2%} ({ch.errors} errors, "
        f"{ch.predictions} predictions)"
    )
    if seen >= c.min_rows and ch.error_rate > c.max_error_rate:
        abort.append(f"{rate} > max_error_rate {c.max_error_rate:.2%}")
    elif ch.error_rate > c.max_error_rate:
        collect.append(f"{rate} > max_error_rate, on fewer than min_rows {c.min_rows}")
    else:
        passed.append(f"{rate} <= max_error_rate {c.max_error_rate:.2%}")
    if seen == 0:
        collect.append("no challenger record yet (is serving.strategy.mode shadow, canary or ab?)")
    for v in (cp, ch):
        if v.predictions < c.min_rows:
            collect.append(f"{v.name}: {v.predictions} predictions < min_rows {c.min_rows}")
        if v.outcomes < c.min_outcomes:
            collect.append(f"{v.name}: {v.outcomes} outcomes < min_outcomes {c.min_outcomes}")
    enough = min(cp.outcomes, ch.outcomes) >= c.min_outcomes
    if difference is None and enough:  # the outcomes are there, the metric is not
        collect.append(f"{metric} is undefined on the outcomes so far (one class only)")
    if difference is not None:
        # improvement: positive when the challenger is better, whatever the metric's direction
        sign = 1 if difference.higher_is_better else -1
        low, high = sorted(sign * b for b in difference.ci)
        loss = c.max_metric_loss
        budget = f"max_metric_loss {loss:g}"
        if c.relative and cp.metric is not None:  # a share of the champion's, in its units
            loss = c.max_metric_loss * abs(cp.metric)
            share = f"{c.max_metric_loss:.1%} of the champion's {cp.metric:.4g}"
            budget = f"max_metric_loss {share} = {loss:.4g}"
        shown = (
            f"{difference.metric} challenger - champion {difference.value:+.4f}, "
            f"{c.confidence:.0%} CI [{difference.ci[0]:+.4f}, {difference.ci[1]:+.4f}] "
            f"({difference.design} bootstrap, p {_p(difference)})"
        )
        if high < -loss:
            abort.append(
                f"confidently worse: {shown}; the challenger loses more than "
                f"{budget} across the whole interval"
            )
        elif low > -loss:
            passed.append(f"non-inferior: {shown}; the interval stays within {budget}")
        else:
            collect.append(f"undecided: {shown}; the interval reaches beyond {budget}")
    if abort:
        return "abort", abort
    if collect:
        return "collect", collect
    return "promote", passed


# ---------------------------------------------------------------- reports


def _p(d: Difference) -> str:
    return f"<= {d.p_value:.2g}" if d.p_value <= 1 / d.resamples else f"= {d.p_value:.3g}"


def _f(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _loss(t: dict[str, Any]) -> str:
    if t.get("relative"):
        return f"{t['max_metric_loss']:.1%} of the champion's value"
    return f"{t['max_metric_loss']:g}"


def markdown(result: Comparison) -> str:
    t = result.thresholds
    headline = {
        "promote": "**Promote**: the challenger meets every condition.",
        "collect": "**Keep collecting**: not enough evidence either way yet.",
        "abort": "**Abort**: the challenger must not take over.",
    }[result.verdict]
    lines = [
        "# Champion vs challenger",
        "",
        headline,
        "",
        *[f"- {r}" for r in result.reasons],
        "",
        f"- generated: {result.generated_at}",
        f"- traffic: {result.mode} ({TRAFFIC[result.mode]})",
        f"- rule: abort when the challenger's error rate > {t['max_error_rate']:.2%} or the "
        f"{t['confidence']:.0%} interval of {result.metric} (challenger - champion) lies beyond "
        f"a loss of {_loss(t)}; promote with >= {t['min_rows']} predictions and "
        f">= {t['min_outcomes']} outcomes per variant and the interval within that loss",
        "",
        "| | champion | challenger |",
        "|---|---:|---:|",
    ]
    cp, ch = result.champion, result.challenger

    def row(label: str, a: str, b: str) -> None:
        lines.append(f"| {label} | {a} | {b} |")

    row(
        "model version(s)", ", ".join(cp.model_versions) or "–", ", ".join(ch.model_versions) or "–"
    )
    row("predictions", str(cp.predictions), str(ch.predictions))
    row("errors (rate)", f"{cp.errors} ({cp.error_rate:.2%})", f"{ch.errors} ({ch.error_rate:.2%})")
    row("score mean", _f(cp.score_mean), _f(ch.score_mean))
    for q in QUANTILES:
        key = f"p{round(q * 100):02d}"
        row(f"score {key}", _f(cp.score_quantiles.get(key)), _f(ch.score_quantiles.get(key)))
    for key in ("p50", "p95", "p99"):
        row(f"latency {key} (ms)", _f(cp.latency_ms.get(key), 2), _f(ch.latency_ms.get(key), 2))
    row("outcomes", str(cp.outcomes), str(ch.outcomes))

    def metric(v: Variant) -> str:
        if v.metric is None:
            return "–"
        ci = f" [{v.metric_ci[0]:.4f}, {v.metric_ci[1]:.4f}]" if v.metric_ci else ""
        return f"{v.metric:.4f}{ci}"

    row(result.metric, metric(cp), metric(ch))
    lines.append("")
    if result.difference is not None:
        d = result.difference
        lines.append(
            f"- {d.metric} difference (challenger - champion): **{d.value:+.4f}**, "
            f"{t['confidence']:.0%} CI [{d.ci[0]:+.4f}, {d.ci[1]:+.4f}], p {_p(d)} "
            f"({d.design} bootstrap, {d.resamples} resamples, rows {d.rows[CHAMPION]} / "
            f"{d.rows[CHALLENGER]}; {'higher' if d.higher_is_better else 'lower'} is better)"
        )
    if result.agreement is not None:
        a = result.agreement
        text = f"- agreement on {a['rows']} rows both scored"
        if "mean_abs_score_difference" in a:
            text += f": mean |score difference| {a['mean_abs_score_difference']:.4f}"
        if "decision_agreement" in a:
            text += f", same decision on {a['decision_agreement']:.1%}"
        lines.append(text)
    if result.score_drift is not None:
        s = result.score_drift
        lines.append(
            f"- score drift, challenger vs champion: PSI {s['psi']:.3f}, KS p-value "
            f"{s['p_value']:.2g}{' (drifted by the monitor rule)' if s['drifted'] else ''}"
        )
    return "\n".join(lines) + "\n"


def write_reports(result: Comparison, out: Path) -> None:
    io.write_text(out / "compare.md", markdown(result))
    io.write_json(out / "compare.json", {**asdict(result), "exit_code": result.exit_code})


def run(
    params: Params,
    feedback: Path | None = None,
    out: Path | None = None,
    since: str | None = None,
    quiet: bool = False,
) -> Comparison:
    from mlgate.loop.monitor import feedback_folder

    out = out or params.compare.report
    result = compare(params, load_records(feedback_folder(params, feedback), since))
    write_reports(result, Path(out))
    if not quiet:
        print(markdown(result))
    print(
        f"compare: {result.verdict} (exit {result.exit_code}); wrote {out}/compare.md, compare.json"
    )
    return result


def iso_utc(text: str) -> str:
    """TIME as the records write `ts` (UTC, milliseconds, Z), so that strings compare as times."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-12-01T09:00:00Z)"
        ) from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return record_time(when)
