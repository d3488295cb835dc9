"""`mlgate monitor`: recorded production traffic against the training reference (drift, errors)."""

from __future__ import annotations

import base64
import html
import io as _io
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate import io
from mlgate.actions import table_cell, utc_now
from mlgate.errors import MlgateError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlgate.config import Params

EPS = 1e-4  # floor for empty bins: PSI is a log ratio and an empty bin would make it infinite
# a classifier's probability, a regressor's value, a multiclass model's decided class
PREDICTION = "prediction (model output)"


@dataclass
class FeatureDrift:
    name: str
    kind: str  # numeric | categorical
    psi: float
    test: str
    statistic: float
    p_value: float
    drifted: bool
    reference_share: dict[str, float] = field(default_factory=dict)
    current_share: dict[str, float] = field(default_factory=dict)


@dataclass
class DriftReport:
    generated_at: str
    model_versions: list[str]
    rows: int
    errors: int
    error_rate: float
    enough_data: bool
    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    thresholds: dict[str, float]
    drifted_features: list[str]
    prediction_drifted: bool
    error_rate_exceeded: bool
    # what the model leans on, training rows against served ones (attribution_drift); None
    # without enough traffic or without exact contributions for this model
    attribution: dict[str, Any] | None = None

    @property
    def drift(self) -> bool:
        return self.enough_data and (
            bool(self.drifted_features) or self.prediction_drifted or self.error_rate_exceeded
        )


# ---------------------------------------------------------------- statistics


MISSING = "(missing)"  # the category a missing value counts as


def psi_numeric(reference: np.ndarray, current: np.ndarray, bins: int) -> float:
    """Population stability index over the reference's quantile bins (open-ended outer bins),
    with missing values (NaN) as a bin of their own: a shift of the values or of how often
    they are missing both count."""
    import numpy as np

    ref_seen, cur_seen = reference[~np.isnan(reference)], current[~np.isnan(current)]
    edges = [-np.inf, np.inf]
    if len(ref_seen):
        inner = np.unique(np.quantile(ref_seen, np.linspace(0, 1, bins + 1)[1:-1]))
        edges = np.concatenate(([-np.inf], inner, [np.inf]))
    ref = np.append(np.histogram(ref_seen, edges)[0], len(reference) - len(ref_seen))
    cur = np.append(np.histogram(cur_seen, edges)[0], len(current) - len(cur_seen))
    return _psi(ref / len(reference), cur / len(current))


def categories(values: pd.Series) -> pd.Series:
    """Values as text, a missing one as MISSING (pandas 3's astype(str) keeps NaN as NaN)."""
    return values.astype("string").fillna(MISSING).astype(str)


def psi_categorical(reference: pd.Series, current: pd.Series) -> tuple[float, dict, dict]:
    import numpy as np

    reference, current = categories(reference), categories(current)
    cats = sorted(set(reference) | set(current))
    ref = reference.value_counts(normalize=True).reindex(cats, fill_value=0.0)
    cur = current.value_counts(normalize=True).reindex(cats, fill_value=0.0)
    return _psi(np.asarray(ref), np.asarray(cur)), ref.round(4).to_dict(), cur.round(4).to_dict()


def _psi(ref: np.ndarray, cur: np.ndarray) -> float:
    import numpy as np

    ref = np.clip(ref, EPS, None)
    cur = np.clip(cur, EPS, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _numeric_test(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """KS on the values present; where either side misses values, also a chi-squared test of
    how often (Bonferroni over the two). A test with NaN in its input answers NaN, which
    never counted as drift: age shifted by 40 years went unreported."""
    import numpy as np
    from scipy import stats

    ref_seen, cur_seen = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    stat, p = 0.0, 1.0
    if len(ref_seen) and len(cur_seen):
        result = stats.ks_2samp(ref_seen, cur_seen)
        stat, p = float(result.statistic), float(result.pvalue)
    missing = np.array([[len(ref) - len(ref_seen), len(cur) - len(cur_seen)]])
    if missing.any():
        table = np.vstack([missing, [[len(ref_seen), len(cur_seen)]]])
        if (table.sum(axis=1) > 0).all():
            p = min(1.0, 2 * min(p, float(stats.chi2_contingency(table).pvalue)))
    return stat, p


def feature_drift(
    name: str, reference: pd.Series, current: pd.Series, params: Params, max_psi: float
) -> FeatureDrift:
    """PSI for the size of the shift; a two-sample test for whether it is more than noise."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    alpha = params.monitor.alpha
    if pd.api.types.is_numeric_dtype(reference) and name not in params.features.categorical:
        ref = reference.to_numpy(dtype=float, na_value=np.nan)
        cur = current.to_numpy(dtype=float, na_value=np.nan)
        psi = psi_numeric(ref, cur, params.monitor.bins)
        stat, p = _numeric_test(ref, cur)
        return FeatureDrift(name, "numeric", psi, "ks_2samp", stat, p, psi > max_psi and p < alpha)
    psi, ref_share, cur_share = psi_categorical(reference, current)
    cats = list(ref_share)
    table = np.array(
        [
            categories(reference).value_counts().reindex(cats, fill_value=0).to_numpy(),
            categories(current).value_counts().reindex(cats, fill_value=0).to_numpy(),
        ]
    )
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        stat, p = 0.0, 1.0
    else:
        chi2 = stats.chi2_contingency(table)
        stat, p = float(chi2.statistic), float(chi2.pvalue)
    return FeatureDrift(
        name,
        "categorical",
        psi,
        "chi2_contingency",
        stat,
        p,
        psi > max_psi and p < alpha,
        ref_share,
        cur_share,
    )


# ---------------------------------------------------------------- data


def feedback_folder(params: Params, given: Path | None = None) -> Path:
    """The folder of recorded traffic: --feedback, else MLGATE_FEEDBACK_DIR, else
    serving.feedback.path (the order the service itself uses, after the command line)."""
    env = os.environ.get("MLGATE_FEEDBACK_DIR")
    folder = given or Path(env or params.serving.feedback.path)
    if not folder.is_dir():
        raise MlgateError(f"no recorded traffic: {folder} is not a folder (serving.feedback.path)")
    return folder


def load_traffic(
    folder: Path | str, multiclass: bool = False
) -> tuple[pd.DataFrame, pd.Series, int, list[str]]:
    """Recorded inputs, predicted probabilities (multiclass: the decided classes, as text),
    the number of rejected requests, versions."""
    import pandas as pd

    from mlgate.serving.feedback import read_records

    records = read_records(folder)
    predictions = [r for r in records if r.get("kind") == "prediction"]
    # the service's own rejections; not a shadow challenger's failures (its own record, for
    # `mlgate compare`) nor a bad POST /outcome (not a prediction request)
    errors = sum(
        1
        for r in records
        if r.get("kind") == "error" and not r.get("shadow") and r.get("endpoint") != "outcome"
    )
    # a classifier's records carry the probability, a regressor's the predicted value, a
    # multiclass model's the class (a label: text or a whole number)
    kinds = (str, int) if multiclass else (int, float)
    scored = [
        r.get("class") if multiclass else r.get("probability", r.get("prediction"))
        for r in predictions
    ]
    broken = sum(
        1
        for r, score in zip(predictions, scored, strict=True)
        if not isinstance(r.get("inputs"), dict)
        or isinstance(score, bool)
        or not isinstance(score, kinds)
    )
    if broken:
        answer = "class" if multiclass else "numeric probability/prediction"
        raise MlgateError(
            f"{folder}: {broken} of {len(predictions)} prediction records lack their inputs "
            f"(an object) or a {answer}: is this the service's feedback?"
        )
    inputs = pd.DataFrame.from_records([r["inputs"] for r in predictions])
    scores = predicted_classes(scored) if multiclass else pd.Series(scored, dtype=float)
    versions = sorted({str(r.get("model_version")) for r in predictions})
    return inputs, scores, errors, versions


def load_batch(folder: Path, columns: list[str]) -> tuple[pd.DataFrame, pd.Series, int, list[str]]:
    """A `mlgate predict` output as traffic: the scored rows' inputs and scores; its
    quarantined rows count as rejected requests (from summary.json, for both engines)."""
    import json

    import pandas as pd

    from mlgate.loop.chunks import CLASS_COLUMN, QUARANTINE, SCORED, SUMMARY

    summary_path = folder / SUMMARY
    if not summary_path.is_file():
        raise MlgateError(f"--batch {folder}: not a `mlgate predict` output (no {SUMMARY})")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    scored = folder / f"{SCORED}.{summary.get('format', 'parquet')}"
    task = summary.get("task")
    output = {"regression": "prediction", "multiclass": CLASS_COLUMN}.get(task, "score")
    wanted = [*columns, output]
    if summary.get("format") == "csv":  # one file, or Spark's folder of parts
        parts = sorted(scored.glob("*.csv")) if scored.is_dir() else [scored]
        frame = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True) if parts else None
        missing = [] if frame is None else [c for c in wanted if c not in frame.columns]
    else:
        import pyarrow.parquet as pq

        names = pq.read_schema(next(scored.glob("*.parquet")) if scored.is_dir() else scored).names
        missing = [c for c in wanted if c not in names]
        frame = None if missing else pd.read_parquet(scored, columns=wanted)
    if missing or frame is None:
        raise MlgateError(
            f"--batch {folder}: {scored.name} lacks column(s) {missing or wanted}; monitoring "
            "needs every contract column (run `mlgate predict` with all input columns as "
            f"keys, the default) and the model's {output}; not {QUARANTINE} rows"
        )
    versions = [str(summary["model"]["version"])]
    scores = (
        predicted_classes(frame[output]) if task == "multiclass" else frame[output].astype(float)
    )
    return frame[columns], scores, int(summary["rows_quarantined"]), versions


def predicted_classes(labels: Any) -> pd.Series:
    """Decided classes as text: their drift is categorical (PSI over the classes, a
    chi-squared test), whole-number labels included."""
    import pandas as pd

    return pd.Series([str(label) for label in labels], dtype=object)


def reference(
    params: Params, train: pd.DataFrame, model: Any
) -> tuple[pd.DataFrame, np.ndarray | pd.Series]:
    """The training split's watched columns and the model's scores on it (multiclass: its
    decided classes, as text): what production is compared with."""
    from mlgate.pipeline import data
    from mlgate.pipeline.model import model_scores

    # what the model reads and the groups fairness is judged on; not the columns the contract
    # carries beside them (IDs, dates, free text): new IDs and today's dates are not drift
    watched = {*params.features.all, *params.evaluate.sensitive}
    frame = train[[c for c in data.input_schema(params).columns if c in watched]]
    scores = model_scores(model, train[params.features.inputs], params)
    return frame, predicted_classes(scores) if params.data.task == "multiclass" else scores


def compare(
    params: Params,
    ref_inputs: pd.DataFrame,
    ref_scores: np.ndarray | pd.Series,
    inputs: pd.DataFrame,
    scores: pd.Series,
    errors: int,
    versions: list[str],
) -> DriftReport:
    import pandas as pd

    m = params.monitor
    rows = len(inputs)
    total = rows + errors
    error_rate = errors / total if total else 0.0
    enough = rows >= m.min_rows
    features: list[FeatureDrift] = []
    prediction = None
    if enough:
        for name in ref_inputs.columns:
            if name not in inputs.columns:
                raise MlgateError(f"recorded inputs have no column {name!r}: an older contract?")
            features.append(feature_drift(name, ref_inputs[name], inputs[name], params, m.max_psi))
        prediction = feature_drift(
            PREDICTION, pd.Series(ref_scores), scores, params, m.max_prediction_psi
        )
    return DriftReport(
        generated_at=utc_now(),
        model_versions=versions,
        rows=rows,
        errors=errors,
        error_rate=error_rate,
        enough_data=enough,
        features=features,
        prediction=prediction,
        thresholds={
            "max_psi": m.max_psi,
            "alpha": m.alpha,
            "max_prediction_psi": m.max_prediction_psi,
            "max_error_rate": m.max_error_rate,
            "min_rows": m.min_rows,
        },
        drifted_features=[f.name for f in features if f.drifted],
        prediction_drifted=bool(prediction and prediction.drifted),
        error_rate_exceeded=enough and error_rate > m.max_error_rate,
    )


def attribution_drift(
    params: Params, model: Any, train: pd.DataFrame, served: pd.DataFrame
) -> dict[str, Any] | None:
    """Attribution drift: each column's share of the model's mean |contribution| on the
    training rows and on the served ones (pipeline/explain.py's exact contributions), and the
    shift between them, half their summed absolute change (0 to 1). The model now leaning on
    other columns than it learnt to shows here even when no single feature's PSI moves.
    None where the model has no exact contributions, and for a multiclass model. Each side
    is read on at most explain.IMPORTANCE_ROWS rows (a seeded sample: TreeSHAP of a large
    forest costs milliseconds a row)."""
    import numpy as np

    from mlgate.pipeline import explain

    columns = list(params.features.inputs)
    if params.data.task == "multiclass" or not set(columns) <= set(served.columns):
        return None
    reference = train[columns]
    seed = params.train.seed
    found = explain.contributions(model, explain.sample(reference, seed), reference)
    if found is None:
        return None
    method, _, names, ref = found
    now = explain.contributions(model, explain.sample(served[columns], seed), reference)
    assert now is not None
    before, after = (np.abs(c).mean(axis=0) for c in (ref, now[3]))
    before, after = before / max(before.sum(), 1e-12), after / max(after.sum(), 1e-12)
    shift = float(np.abs(after - before).sum() / 2)
    limit = params.monitor.max_attribution_shift
    order = np.argsort(-after, kind="stable")
    return {
        "method": method,
        "shift": round(shift, 4),
        "max_shift": limit,
        "shifted": shift > limit,
        "shares": {
            names[i]: [round(float(before[i]), 4), round(float(after[i]), 4)] for i in order
        },
    }


def _attribution_lines(found: dict[str, Any] | None) -> list[str]:
    if found is None:
        return []
    verdict = "**shifted**" if found["shifted"] else "steady"
    lines = [
        "",
        f"What the model leans on ({found['method']} contributions): {verdict}, shift "
        f"{found['shift']:.3f} (max {found['max_shift']}); reported beside drift, not part of it.",
        "",
        "| column | share on training rows | share on served rows |",
        "|---|---:|---:|",
    ]
    for name, (before, after) in list(found["shares"].items())[:8]:
        lines.append(f"| {table_cell(name)} | {before:.1%} | {after:.1%} |")
    return lines


# ---------------------------------------------------------------- reports


def summary_markdown(report: DriftReport) -> str:
    t = report.thresholds
    if not report.enough_data:
        verdict = (
            f"**Not enough data**: {report.rows} predictions recorded, {t['min_rows']:.0f} needed."
        )
    elif report.drift:
        what = [*report.drifted_features]
        if report.prediction_drifted:
            what.append("predictions")
        if report.error_rate_exceeded:
            what.append(f"error rate {report.error_rate:.1%}")
        verdict = f"**Drift detected**: {', '.join(what)}."
    else:
        verdict = "**No drift** beyond the thresholds."
    lines = [
        "# Production monitoring",
        "",
        verdict,
        "",
        f"- generated: {report.generated_at}",
        f"- model version(s) seen: {', '.join(report.model_versions) or '(none)'}",
        f"- predictions: {report.rows}; rejected requests: {report.errors} "
        f"(error rate {report.error_rate:.2%}, max {t['max_error_rate']:.0%})",
        f"- rule: a feature drifts when PSI > {t['max_psi']} and p-value < {t['alpha']} "
        f"(predictions: PSI > {t['max_prediction_psi']})",
    ]
    if report.enough_data:
        lines += [
            "",
            "| feature | type | PSI | test | p-value | drift |",
            "|---|---|---:|---|---:|---|",
        ]
        for f in [*report.features, *([report.prediction] if report.prediction else [])]:
            name = table_cell(f.name)
            lines.append(
                f"| {name} | {f.kind} | {f.psi:.3f} | {f.test} | {f.p_value:.2g} | "
                f"{'**yes**' if f.drifted else 'no'} |"
            )
        lines += _attribution_lines(report.attribution)
    return "\n".join(lines) + "\n"


def _plot(f: FeatureDrift, ref: Any, cur: Any) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(5, 2.6))
    if f.kind == "numeric":
        # the values present (missing ones are counted in the test, not drawn): a histogram
        # of a column with a NaN has no range and raised
        ref, cur = (np.asarray(v, dtype=float) for v in (ref, cur))
        ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
        present = np.concatenate([ref, cur])
        edges = np.histogram_bin_edges(present if len(present) else [0.0], bins=30)
        for values, label in ((ref, "training"), (cur, "production")):
            if len(values):  # a density of no values divides by zero
                ax.hist(values, edges, density=True, alpha=0.5, label=label)
    else:
        cats = list(f.reference_share)
        x = np.arange(len(cats))
        ax.bar(x - 0.2, [f.reference_share[c] for c in cats], 0.4, label="training")
        ax.bar(x + 0.2, [f.current_share.get(c, 0) for c in cats], 0.4, label="production")
        ax.set_xticks(x, cats, rotation=30, ha="right", fontsize=7)
    ax.set_title(f"{f.name}  PSI {f.psi:.3f}", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def write_reports(report: DriftReport, out: Path, plots: dict[str, str]) -> None:
    summary = summary_markdown(report)
    io.write_text(out / "summary.md", summary)
    io.write_json(out / "drift.json", {**asdict(report), "drift": report.drift})
    figures = "\n".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{png}"></figure>'
        for name, png in plots.items()
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>mlgate monitor</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "figure{display:inline-block;margin:4px}</style></head><body>"
        f"<pre>{html.escape(summary)}</pre>{figures}</body></html>\n"
    )
    io.write_text(out / "report.html", page)


def run(
    params: Params,
    feedback: Path | None = None,
    out: Path | None = None,
    batch: Path | None = None,
) -> DriftReport:
    from mlgate.pipeline import data
    from mlgate.pipeline.model import load_model

    out = out or params.monitor.report
    if batch is not None and not batch.is_dir():
        raise MlgateError(f"--batch {batch}: not a folder (a `mlgate predict` --output)")
    if batch is None:  # the traffic's own problems are said before the reference's
        multiclass = params.data.task == "multiclass"
        traffic = load_traffic(feedback_folder(params, feedback), multiclass)
    train, model = data.load(params.split.train, params), load_model(params.train.model)
    ref_inputs, ref_scores = reference(params, train, model)
    if batch is not None:  # the batch output's columns are the reference's
        traffic = load_batch(batch, list(ref_inputs.columns))
    inputs, scores, errors, versions = traffic
    report = compare(params, ref_inputs, ref_scores, inputs, scores, errors, versions)
    if report.enough_data:
        report.attribution = attribution_drift(params, model, train, inputs)
    plots: dict[str, str] = {}
    if report.enough_data:
        for f in report.features:
            plots[f.name] = _plot(f, ref_inputs[f.name], inputs[f.name])
        if report.prediction is not None:
            plots[PREDICTION] = _plot(report.prediction, ref_scores, scores)
    write_reports(report, Path(out), plots)
    print(summary_markdown(report))
    print(f"monitor: wrote {out}/summary.md, report.html, drift.json")
    return report
