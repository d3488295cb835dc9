"""The PR report: this PR's pipeline results against the base branch and production, in Markdown."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.actions import table_cell
from mlgate.config import LOWER_IS_BETTER
from mlgate.errors import MlgateError
from mlgate.names import PRODUCTION

if TYPE_CHECKING:
    from mlgate.config import Params

GRID = [round(i / 10, 1) for i in range(11)]  # x positions of the inline charts
GROUP_COLUMNS = ("count", "accuracy", "selection_rate", "true_positive_rate", "false_positive_rate")


@dataclass
class Results:
    """One side of the comparison: what a pipeline run left in its output files."""

    label: str
    metrics: dict[str, float] = field(default_factory=dict)
    fairness: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    roc: list[dict[str, float]] = field(default_factory=list)
    pr: list[dict[str, float]] = field(default_factory=list)
    # multiclass: the confusion matrix's cells (actual, predicted, count)
    confusion: list[dict[str, Any]] = field(default_factory=list)
    # evaluate's bootstrap intervals (absent for results older than intervals)
    intervals: dict[str, Any] = field(default_factory=dict)
    # what drives the model (evaluate: importance.json; absent for older results)
    importance: dict[str, Any] = field(default_factory=dict)
    note: str = ""


# ---------------------------------------------------------------- collecting


def _load(text: str | None, path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(text) if text else {}
    except ValueError as err:
        raise MlgateError(f"{path} is not valid JSON ({err}): rerun `dvc repro`") from None
    if not isinstance(loaded, dict):
        raise MlgateError(f"{path} holds {type(loaded).__name__}, not the pipeline's JSON object")
    return loaded


def _paths(params: Params) -> dict[str, Path]:
    return {
        "metrics": params.evaluate.metrics,
        "fairness": params.evaluate.fairness,
        "summary": params.data.summary,
        "roc": params.evaluate.plots / "roc.json",
        "pr": params.evaluate.plots / "precision_recall.json",
        "confusion": params.evaluate.plots / "confusion.csv",
        "intervals": params.evaluate.intervals,
        "importance": params.evaluate.importance,
    }


def _fill(res: Results, read: Any, params: Params, params_text: str | None) -> Results:
    import yaml

    p = _paths(params)
    res.metrics = _load(read(p["metrics"]), p["metrics"])
    res.fairness = _load(read(p["fairness"]), p["fairness"])
    res.summary = _load(read(p["summary"]), p["summary"])
    res.roc = _load(read(p["roc"]), p["roc"]).get("roc", [])
    res.pr = _load(read(p["pr"]), p["pr"]).get("precision_recall", [])
    res.intervals = _load(read(p["intervals"]), p["intervals"])
    res.importance = _load(read(p["importance"]), p["importance"])
    res.params = yaml.safe_load(params_text) if params_text else {}
    if params.data.task == "multiclass":
        res.confusion = _cells(read(p["confusion"]), p["confusion"])
    return res


def _cells(text: str | None, path: Path) -> list[dict[str, Any]]:
    """The rows of evaluate's confusion.csv (actual, predicted, count)."""
    import csv

    if not text:
        return []
    try:
        return [
            {"actual": r["actual"], "predicted": r["predicted"], "count": int(r["count"])}
            for r in csv.DictReader(text.splitlines())
        ]
    except (KeyError, TypeError, ValueError):
        raise MlgateError(f"{path} is not evaluate's confusion matrix: rerun `dvc repro`") from None


def workspace_results(params: Params, params_file: Path) -> Results:
    def read(path: Path) -> str | None:
        return path.read_text(encoding="utf-8") if path.exists() else None

    return _fill(Results("this PR"), read, params, read(params_file))


def git_results(ref: str, params: Params, params_file: Path) -> Results:
    """The committed outputs of `ref` (metrics and plots are committed: `cache: false`)."""
    res = Results(f"base ({ref})")
    probe = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        res.note = f"`{ref}` is not a commit here (fetch it: checkout with fetch-depth: 0)"
        return res

    def read(path: Path) -> str | None:
        proc = subprocess.run(
            ["git", "show", f"{ref}:{path.as_posix()}"], capture_output=True, text=True, timeout=60
        )
        return proc.stdout if proc.returncode == 0 else None

    _fill(res, read, params, read(params_file))
    if not res.metrics:
        res.note = f"`{ref}` has no committed {params.evaluate.metrics}"
    return res


def production_results(params: Params) -> Results:
    """Metrics of the model holding `production`, when a tracking server is configured."""
    res = Results(PRODUCTION)
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        res.note = "skipped: no MLFLOW_TRACKING_URI, so no registry to ask for production"
        return res
    from mlflow.exceptions import MlflowException

    from mlgate.registry import tracking

    client = tracking.connect(params)
    try:
        mv = client.get_model_version_by_alias(params.model_name, PRODUCTION)
    except MlflowException:
        res.note = f"no version of {params.model_name} holds alias `production` yet"
        return res
    run = client.get_run(mv.run_id)
    res.label = f"production (v{mv.version})"
    res.metrics = {
        k.removeprefix("test_"): v for k, v in run.data.metrics.items() if k.startswith("test_")
    }
    res.intervals = tracking.run_json(client, mv.run_id, "evaluation/intervals.json")
    res.importance = tracking.run_json(client, mv.run_id, "evaluation/importance.json")
    return res


# ---------------------------------------------------------------- rendering


def _num(v: Any) -> str:
    return "–" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _value(v: Any) -> str:
    """A parameter as written in params.yaml (not rounded like a metric)."""
    return "–" if v is None else '""' if v == "" else str(v)


def delta(metric: str, new: float | None, old: float | None) -> str:
    if new is None or old is None:
        return "–"
    d = round(new - old, 4)
    if d == 0:
        return "±0"
    better = (d < 0) if metric in LOWER_IS_BETTER else (d > 0)
    return f"{d:+.4f} ({'better' if better else 'worse'})"


def _ci(ci: list[float] | None) -> str:
    return "" if not ci else f" [{ci[0]:.4f}, {ci[1]:.4f}]"


def change(metric: str, new: float | None, old: float | None, interval: list[float] | None) -> str:
    """The difference new - old with its interval and a verdict in plain words: "better" or
    "worse" when the interval excludes 0, else "no detectable change"; without an interval
    the point difference alone (`delta`)."""
    if new is None or old is None or interval is None:
        return delta(metric, new, old)
    lo, hi = interval
    if lo <= 0 <= hi:
        said = "no detectable change"
    else:
        up = lo > 0
        said = "worse" if up == (metric in LOWER_IS_BETTER) else "better"
    return f"{new - old:+.4f} [{lo:+.4f}, {hi:+.4f}] {said}"


def unpaired_interval(
    new: list[float] | None, old: list[float] | None, d: float
) -> list[float] | None:
    """An interval of new - old from the two sides' own intervals, as if independent
    (their half-widths add in quadrature): wider than the paired interval of two models on
    the same rows, so it says "better" or "worse" only when the change is clear."""
    if not new or not old:
        return None
    half = ((new[1] - new[0]) ** 2 + (old[1] - old[0]) ** 2) ** 0.5 / 2
    return [round(d - half, 4), round(d + half, 4)]


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def params_diff(base: dict[str, Any], pr: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    fb, fp = _flatten(base), _flatten(pr)
    missing = object()
    rows = []
    for key in sorted(set(fb) | set(fp)):
        old, new = fb.get(key, missing), fp.get(key, missing)
        if old != new:
            rows.append((key, None if old is missing else old, None if new is missing else new))
    return rows


def _interp(points: list[dict[str, float]], x: str, y: str) -> list[float]:
    import numpy as np

    xs = np.array([p[x] for p in points])
    ys = np.array([p[y] for p in points])
    order = np.argsort(xs, kind="stable")
    return [round(float(v), 3) for v in np.interp(GRID, xs[order], ys[order])]


def chart(title: str, x: str, y: str, series: list[tuple[str, list[dict[str, float]]]]) -> str:
    """A Mermaid xychart (GitHub renders it inline: no image hosting)."""
    drawn = [(name, pts) for name, pts in series if pts]
    if not drawn:
        return ""
    legend = ", ".join(f"line {i + 1}: {name}" for i, (name, _) in enumerate(drawn))
    lines = [
        "```mermaid",
        "xychart-beta",
        f'    title "{title}"',
        f'    x-axis "{x}" [{", ".join(str(g) for g in GRID)}]',
        f'    y-axis "{y}" 0 --> 1',
        *(f"    line [{', '.join(map(str, _interp(pts, x, y)))}]" for _, pts in drawn),
        "```",
        f"<sub>{legend}</sub>",
    ]
    return "\n".join(lines)


def render(
    gate: dict[str, Any] | None,
    pr: Results,
    base: Results,
    prod: Results,
    plots_url: str = "",
    pipeline_ok: bool = True,
) -> str:
    out = ["## mlgate report", "", f"**{_verdict(gate, pipeline_ok)}**", ""]
    out += _gates(gate)
    out += _metrics(pr, base, prod, gate)
    out += _parameters(pr, base)
    out += _classes(pr)
    out += _fairness(pr, base)
    out += _drivers(pr, base, prod)
    out += _data(pr, base)
    charts = [
        chart("ROC curve", "fpr", "tpr", [(pr.label, pr.roc), (base.label, base.roc)]),
        chart(
            "Precision-recall", "recall", "precision", [(pr.label, pr.pr), (base.label, base.pr)]
        ),
    ]
    if any(charts):
        out += ["### Curves", "", *(c + "\n" for c in charts if c)]
    if plots_url:
        out.append(f"Full `dvc plots` HTML: the `ml-report` artifact of [this run]({plots_url}).")
    return "\n".join(out).rstrip() + "\n"


def _drivers(pr: Results, base: Results, prod: Results, top: int = 10) -> list[str]:
    """What the model leans on, ranked, with the change against base and production (same
    method only: a linear model's contributions and a forest's permutation drops are
    different units), and the proxies of a sensitive attribute it leans on more than base."""
    mine = pr.importance.get("columns") or {}
    if not mine:
        return []
    out = [
        "### What drives the model",
        "",
        f"{pr.importance.get('unit', 'importance')} on the test split "
        f"({pr.importance.get('method', '?')}):",
        "",
        f"| # | column | {pr.label} | {base.label} | change | {prod.label} | change |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, (column, value) in enumerate(list(mine.items())[:top], start=1):
        cells = [cell for res in (base, prod) for cell in _moved(pr, res, i, column, value)]
        out.append(f"| {i} | {table_cell(column)} | {value:.3g} | {' | '.join(cells)} |")
    if len(mine) > top:
        out.append(f"| | … {len(mine) - top} more in importance.json | | | | | |")
    return [*out, "", *_proxies_rising(pr, base), ""]


def _moved(pr: Results, res: Results, rank: int, column: str, value: float) -> tuple[str, str]:
    """(res's importance of column, the change to this PR's: difference and rank move)."""
    theirs = res.importance.get("columns") or {}
    comparable = res.importance.get("method") == pr.importance.get("method")
    old = theirs.get(column) if comparable else None
    moved = {c: n for n, c in enumerate(theirs, start=1)}.get(column)
    was = "" if not theirs or moved == rank else "new" if moved is None else f"was #{moved}"
    delta = "" if old is None else f"{value - old:+.3g}"
    return "–" if old is None else f"{old:.3g}", ", ".join(x for x in (delta, was) if x)


def _proxies_rising(pr: Results, base: Results) -> list[str]:
    """A feature associated with a sensitive attribute (fairness.PROXY_ASSOCIATION or more, on
    the test split) that this PR's model leans on more than base's (importance up by over
    10 %, or new), its association not lower than base's: the model may be learning the
    attribute through it."""
    from mlgate.pipeline.fairness import PROXY_ASSOCIATION

    mine, theirs = pr.importance.get("columns") or {}, base.importance.get("columns") or {}
    if base.importance.get("method") != pr.importance.get("method"):
        theirs = {}
    now, before = pr.importance.get("proxies") or {}, base.importance.get("proxies") or {}
    flags = []
    for column, value in mine.items():
        for attr, assoc in (now.get(column) or {}).items():
            was = (before.get(column) or {}).get(attr)
            old = theirs.get(column)
            rising = old is None or value > 1.1 * old
            if assoc >= PROXY_ASSOCIATION and rising and (was is None or assoc >= was):
                lean = "new" if old is None else f"{old:.3g} → {value:.3g}"
                flags.append(
                    f"> ⚠️ **{column}** may stand in for the sensitive attribute **{attr}** "
                    f"(association {assoc:.2f}): the model leans on it more than "
                    f"{base.label} ({lean}). Check the fairness gaps above."
                )
    return flags


def _verdict(gate: dict[str, Any] | None, pipeline_ok: bool) -> str:
    if gate is None or (not pipeline_ok and gate["passed"]):
        # A stage failed before the gate ran: the gate.json here (if any) is the committed one
        verdict = "❌ the pipeline failed before the gate (see the `pipeline` job log)"
        if gate is not None:
            verdict += "; the gate results below are the last committed ones, not this PR's"
        return verdict
    if gate["passed"]:
        # the pipeline gates only: lint and tests are separate jobs of the `ml / gate` check
        return "✅ pipeline gates passed (lint and tests: the `ml / gate` check)"
    failed = ", ".join(c["name"] for c in gate["checks"] if not c["passed"])
    return f"❌ gate FAILED: {failed}"


def _gates(gate: dict[str, Any] | None) -> list[str]:
    out = ["### Gates", ""]
    if gate is None:
        return [*out, "No gate report: the pipeline stopped earlier.", ""]
    confidence = gate.get("confidence")
    interval = f" [{confidence:.0%} interval]" if confidence else ""
    out += [f"| check | kind | value{interval} | bound | verdict |", "|---|---|---|---|---|"]
    for c in gate["checks"]:
        bound = "–" if c["threshold"] is None else f"{c['op']} {c['threshold']}"
        detail = f" <sub>{c['detail']}</sub>" if c.get("detail") else ""
        value = _num(c["value"]) + _ci(c.get("interval"))
        out.append(f"| `{c['name']}` | {c['kind']} | {value} | {bound} | {_mark(c)}{detail} |")
    if any(c.get("verdict") == "uncertain" for c in gate["checks"]):
        out += [
            "",
            "> uncertain: the interval straddles the bound, so this test split cannot tell "
            "(`gate.uncertain` says whether that passes or fails).",
        ]
    return [*out, ""]


def _mark(c: dict[str, Any]) -> str:
    if c.get("verdict") == "uncertain":
        return "⚠️ uncertain, passes" if c["passed"] else "❌ uncertain, fails"
    return "✅ pass" if c["passed"] else "❌ fail"


def _metrics(pr: Results, base: Results, prod: Results, gate: dict[str, Any] | None) -> list[str]:
    """Each metric with its interval; the change against base and production with an
    interval and a verdict in words. Against production, the champion metric's interval is
    the gate's paired one (both models on the same rows); other changes are unpaired."""
    out = ["### Metrics", ""]
    head = f"| metric | this PR | {base.label} | Δ vs base | {prod.label} | Δ vs production |"
    out += [head, "|---|---|---|---|---|---|"]
    mine, theirs = pr.intervals.get("metrics", {}), base.intervals.get("metrics", {})
    champions = prod.intervals.get("metrics", {})
    paired = _paired(gate)
    for m in sorted(set(pr.metrics) | set(base.metrics)):
        new, old, champ = pr.metrics.get(m), base.metrics.get(m), prod.metrics.get(m)
        vs_base = vs_prod = None
        if new is not None and old is not None:
            vs_base = unpaired_interval(mine.get(m), theirs.get(m), new - old)
        if new is not None and champ is not None:
            vs_prod = paired.get(m) or unpaired_interval(mine.get(m), champions.get(m), new - champ)
        out.append(
            f"| {table_cell(m)} | {_num(new)}{_ci(mine.get(m))} | {_num(old)}{_ci(theirs.get(m))} "
            f"| {change(m, new, old, vs_base)} | {_num(champ)}{_ci(champions.get(m))} "
            f"| {change(m, new, champ, vs_prod)} |"
        )
    if pr.intervals:
        out.append(
            f"> intervals: {pr.intervals.get('confidence', 0.95):.0%} bootstrap over the test "
            "rows; a Δ adds both sides' uncertainty (unpaired)"
            + (", except Δ vs production on the gated metric: paired" if paired else "")
        )
    if pr.intervals and base.intervals and _rows(pr) != _rows(base):
        out.append(
            f"> ⚠️ {base.label} and this PR were evaluated on different test rows (the data or "
            "the split changed): Δ vs base mixes that change with the model's"
        )
    out += [f"> {r.label}: {r.note}" for r in (base, prod) if r.note]
    return [*out, ""]


def _rows(res: Results) -> Any:
    return res.intervals.get("rows_hash"), res.intervals.get("rows")


def _paired(gate: dict[str, Any] | None) -> dict[str, list[float]]:
    """The gate's paired interval of this PR - production on the champion metric."""
    champion = (gate or {}).get("champion") or {}
    interval = champion.get("difference_interval")
    metric = next(
        (k for k in champion if k not in ("alias", "version", "difference_interval")), None
    )
    return {metric: interval} if metric and interval else {}


def _parameters(pr: Results, base: Results) -> list[str]:
    out = ["### Parameters", ""]
    diff = params_diff(base.params, pr.params) if base.params else []
    if not base.params:
        out.append("No base parameters to compare with.")
    elif not diff:
        out.append("No parameter changed.")
    else:
        out += ["| parameter | base | this PR |", "|---|---|---|"]
        out += [f"| `{k}` | {_value(o)} | {_value(n)} |" for k, o, n in diff]
    return [*out, ""]


def _classes(pr: Results) -> list[str]:
    """Multiclass: each class's precision, recall and test rows, then the confusion matrix
    (rows: the actual class, columns: the class decided)."""
    if not pr.confusion:
        return []
    labels = list(dict.fromkeys(c["actual"] for c in pr.confusion))
    count = {(c["actual"], c["predicted"]): c["count"] for c in pr.confusion}
    out = ["### Classes", "", "| class | precision | recall | test rows |", "|---|---|---|---|"]
    for label in labels:
        support = sum(count.get((label, p), 0) for p in labels)
        precision, recall = pr.metrics.get(f"precision:{label}"), pr.metrics.get(f"recall:{label}")
        out.append(f"| {table_cell(label)} | {_num(precision)} | {_num(recall)} | {support} |")
    out += ["", "Confusion matrix (rows: actual class, columns: decided class):", ""]
    out += [
        "| actual \\ decided | " + " | ".join(map(table_cell, labels)) + " |",
        "|---" * (len(labels) + 1) + "|",
    ]
    for a in labels:
        out.append(
            f"| {table_cell(a)} | " + " | ".join(str(count.get((a, p), 0)) for p in labels) + " |"
        )
    return [*out, ""]


def _fairness(pr: Results, base: Results) -> list[str]:
    out = ["### Fairness by group", ""]
    mine = pr.intervals.get("fairness", {})
    for attr, res in pr.fairness.items():
        b = base.fairness.get(attr, {})
        ci = mine.get(attr, {})
        gaps = [
            f"{g} {res[g]:.4f}{_ci(ci.get(g))} (base {_num(b.get(g))})"
            for g in (
                "demographic_parity_difference",
                "equalized_odds_difference",
                "mae_difference",
            )
            if g in res
        ]
        out += [f"**{attr}** — {'; '.join(gaps)}", ""]
        groups = res.get("groups", {})
        # multiclass groups carry count and accuracy; the rates are per class, below
        columns = [c for c in GROUP_COLUMNS if any(c in row for row in groups.values())]
        columns = columns or list(GROUP_COLUMNS)
        out += ["| group | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for group, row in groups.items():
            cells = " | ".join(
                str(int(row[col])) if col == "count" and col in row else _num(row.get(col))
                for col in columns
            )
            out.append(f"| {table_cell(group)} | {cells} |")
        out.append("")
        out += _class_gaps(res.get("classes", {}))
    return out


def _class_gaps(by_class: dict[str, dict[str, float]]) -> list[str]:
    """Multiclass: each class's gaps, that class against the rest (the largest is gated)."""
    if not by_class:
        return []
    gaps = ("demographic_parity_difference", "equalized_odds_difference")
    out = ["| class (one vs rest) | " + " | ".join(gaps) + " |", "|---|---|---|"]
    out += [
        f"| {table_cell(label)} | " + " | ".join(_num(res.get(g)) for g in gaps) + " |"
        for label, res in by_class.items()
    ]
    return [*out, ""]


def _data(pr: Results, base: Results) -> list[str]:
    s, sb = pr.summary, base.summary
    balance = ", ".join(f"{k}: {v}" for k, v in s.get("class_balance", {}).items())
    base_balance = ", ".join(f"{k}: {v}" for k, v in sb.get("class_balance", {}).items())
    return [
        "### Data",
        "",
        f"- rows: {s.get('rows', '–')} (base: {sb.get('rows', '–')})",
        f"- class balance: {balance or '–'} (base: {base_balance or '–'})",
        f"- schema: {schema_changes(sb.get('columns', {}), s.get('columns', {}))}",
        "",
    ]


def schema_changes(base: dict[str, str], pr: dict[str, str]) -> str:
    if not base:
        return "no base schema to compare with"
    changes = [f"added `{c}` ({pr[c]})" for c in pr if c not in base]
    changes += [f"removed `{c}`" for c in base if c not in pr]
    changes += [f"`{c}` {base[c]} → {pr[c]}" for c in pr if c in base and base[c] != pr[c]]
    return "; ".join(changes) if changes else "unchanged"


# ---------------------------------------------------------------- command


def build_report(
    params: Params, params_file: Path, base_ref: str, plots_url: str = "", pipeline_ok: bool = True
) -> tuple[str, bool]:
    """The Markdown and whether this PR passed (pipeline finished and every gate passed)."""
    pr = workspace_results(params, params_file)
    if not pr.metrics:
        raise MlgateError(f"{params.evaluate.metrics} not found: run `dvc repro` first")
    base = (
        git_results(base_ref, params, params_file)
        if base_ref
        else Results("base", note="no --base given")
    )
    gate = json.loads(params.gate.report.read_text()) if params.gate.report.exists() else None
    text = render(gate, pr, base, production_results(params), plots_url, pipeline_ok)
    return text, bool(pipeline_ok and gate and gate["passed"])
