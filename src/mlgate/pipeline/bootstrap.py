"""Bootstrap intervals of test metrics and fairness gaps: stratified, seeded and vectorised.

Two engines, one definition of each metric:

- **cells** (`intervals`): a bootstrap resample of n rows drawn with replacement is a
  multinomial draw of how often each row is taken. Metrics of decisions (accuracy, precision,
  recall, F1, the fairness gaps) depend on the rows only through their cell (class, group,
  decision), so the resampled cell counts are drawn directly: exactly the bootstrap
  distribution, at a cost independent of the number of rows. Score metrics (ROC AUC, average
  precision, Brier, log loss) use the scores' distinct values as cells when there are at most
  SCORE_BINS of them (exact), else SCORE_BINS quantile bins, the bins' offset from the exact
  point value added back (within-bin ties move ROC AUC by < 1/(2 * SCORE_BINS)).
  Classification resamples are stratified: each class keeps its number of test rows.
- **rows** (regression intervals, `mlgate compare`): an index matrix of resampled rows, in
  chunks of CELLS values, ROC AUC by ranks (the Mann-Whitney statistic), the others from
  counts or means. Regression from NORMAL_ROWS test rows on: the resampled sums its
  metrics are made of, drawn from their normal limit (same mean and covariance).
- **row weights** (`paired_difference`, the champion rule): the candidate and the production
  model scored the same rows, and one resample serves both (paired); each resample is the
  number of times it draws each row, and each model's metric a segment sum of those weights
  over its own score cells (exact: the distinct scores), with no sort per resample.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from mlgate.config import Bootstrap

CELLS = 2_000_000  # resampled values held at once (resamples x cells or rows): ~16 MB a block
SCORE_BINS = 2048  # score cells of ROC AUC and average precision
EPS = 1e-15  # log loss clips probabilities as evaluate does


# ---------------------------------------------------------------- shared pieces


def percentile_interval(
    values: np.ndarray, confidence: float, digits: int | None = 4
) -> list[float] | None:
    """The central `confidence` share of the resampled values (NaN ones, where the metric
    is undefined, left out); None if none is defined."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return None
    tail = (1 - confidence) / 2
    lo, hi = (float(v) for v in np.quantile(values, [tail, 1 - tail]))
    return [lo, hi] if digits is None else [round(lo, digits), round(hi, digits)]


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, 0 where b is 0 (scikit-learn's zero_division=0, fairlearn's empty rates)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    out = np.zeros(np.broadcast(a, b).shape)
    np.divide(a, b, out=out, where=b > 0)
    return out


def _chunks(resamples: int, width: int) -> list[int]:
    step = max(1, CELLS // max(1, width))
    return [min(step, resamples - s) for s in range(0, resamples, step)]


def stratified_cells(
    rng: np.random.Generator, cell: np.ndarray, strata: np.ndarray, n_cells: int, size: int
) -> np.ndarray:
    """Resampled counts of each cell, [size, n_strata, n_cells]: within each stratum (target
    class) its rows are drawn with replacement, as many as it holds."""
    n_strata = int(strata.max()) + 1 if len(strata) else 0
    out = np.zeros((size, n_strata, n_cells), dtype=np.int64)
    for s in range(n_strata):
        counts = np.bincount(cell[strata == s], minlength=n_cells)
        n = int(counts.sum())
        if n:
            out[:, s, :] = rng.multinomial(n, counts / n, size=size)
    return out


def binary_counts(c: np.ndarray) -> dict[str, np.ndarray]:
    """Decision metrics from resampled counts c[..., y, decision] (y, decision in {0, 1})."""
    tp, fn, fp, tn = c[..., 1, 1], c[..., 1, 0], c[..., 0, 1], c[..., 0, 0]
    n = tp + fn + fp + tn
    return {
        "accuracy": _div(tp + tn, n),
        "precision": _div(tp, tp + fp),
        "recall": _div(tp, tp + fn),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
    }


def multiclass_counts(conf: np.ndarray, classes: list[Any]) -> dict[str, np.ndarray]:
    """Multiclass metrics from resampled confusion matrices conf[..., actual, decided]."""
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    support, decided = conf.sum(axis=-1), conf.sum(axis=-2)
    n = support.sum(axis=-1)
    recall, precision = _div(tp, support), _div(tp, decided)
    f1 = _div(2 * tp, support + decided)
    present = support > 0
    out = {
        "accuracy": _div(tp.sum(axis=-1), n),
        "balanced_accuracy": _div((recall * present).sum(axis=-1), present.sum(axis=-1)),
        "f1_macro": f1.mean(axis=-1),
        "f1_weighted": _div((f1 * support).sum(axis=-1), n),
    }
    for i, label in enumerate(classes):
        out[f"precision:{label}"] = precision[..., i]
        out[f"recall:{label}"] = recall[..., i]
    return out


def decision_gaps(c: np.ndarray) -> dict[str, np.ndarray]:
    """fairlearn's two gaps from resampled counts c[..., y, group, decision]: the largest
    minus the smallest selection rate (demographic parity) and the larger of the TPR and
    FPR spreads (equalized odds), over the groups present in the resample."""
    n_group = c.sum(axis=(-3, -1))
    present = n_group > 0
    selection = _div(c[..., :, :, 1].sum(axis=-2), n_group)
    tpr = _div(c[..., 1, :, 1], c[..., 1, :, :].sum(axis=-1))
    fpr = _div(c[..., 0, :, 1], c[..., 0, :, :].sum(axis=-1))
    return {
        "demographic_parity_difference": _spread(selection, present),
        "equalized_odds_difference": np.maximum(_spread(tpr, present), _spread(fpr, present)),
    }


def _spread(rate: np.ndarray, present: np.ndarray) -> np.ndarray:
    hi = np.where(present, rate, -np.inf).max(axis=-1)
    lo = np.where(present, rate, np.inf).min(axis=-1)
    return np.where(np.isfinite(hi), hi - lo, np.nan)


# ---------------------------------------------------------------- cells engine


def _score_cells(scores: np.ndarray) -> np.ndarray:
    """Each row's score cell, in increasing order of score: the distinct values when there
    are few enough, else quantile bins."""
    distinct = np.unique(scores)
    if len(distinct) <= SCORE_BINS:
        return np.searchsorted(distinct, scores)
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, SCORE_BINS + 1)[1:-1]))
    return np.searchsorted(edges, scores, side="right")


SCORE_METRICS = ("roc_auc", "average_precision", "brier", "log_loss")


def _score_metrics(
    pos: np.ndarray, neg: np.ndarray, loss: np.ndarray, names: tuple[str, ...] = SCORE_METRICS
) -> dict[str, np.ndarray]:
    """ROC AUC, average precision, Brier and log loss (those in `names`) from resampled
    counts of positives and negatives per score cell ([R, cells], increasing score) and each
    cell's mean losses loss[kind, y, cell]."""
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    out = {}
    if "roc_auc" in names:
        below = np.cumsum(neg, axis=1) - neg
        out["roc_auc"] = _div((pos * (below + 0.5 * neg)).sum(axis=1), n_pos * n_neg)
    if "average_precision" in names:
        tp = np.cumsum(pos[:, ::-1], axis=1)
        fp = np.cumsum(neg[:, ::-1], axis=1)
        out["average_precision"] = _div((pos[:, ::-1] * _div(tp, tp + fp)).sum(axis=1), n_pos)
    for i, name in enumerate(("brier", "log_loss")):
        if name in names:
            out[name] = (neg @ loss[i, 0] + pos @ loss[i, 1]) / (n_pos + n_neg)
    return out


def _cell_losses(y: np.ndarray, scores: np.ndarray, cell: np.ndarray, n_cells: int) -> np.ndarray:
    """Mean Brier and log loss of the rows of each (class, score cell): [2, 2, cells]."""
    out = np.zeros((2, 2, n_cells))
    clipped = np.clip(scores, EPS, 1 - EPS)
    for k in (0, 1):
        rows = y == k
        count = np.bincount(cell[rows], minlength=n_cells)
        brier = (scores[rows] - k) ** 2
        ll = -np.log(clipped[rows] if k else 1 - clipped[rows])
        out[0, k] = _div(np.bincount(cell[rows], weights=brier, minlength=n_cells), count)
        out[1, k] = _div(np.bincount(cell[rows], weights=ll, minlength=n_cells), count)
    return out


def classification_intervals(
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    sensitive: dict[str, pd.Series],
    point: dict[str, Any],
    spec: Bootstrap,
) -> dict[str, Any]:
    """Intervals of the binary metrics and of each attribute's two gaps. `point` holds the
    exact values (evaluate's) the score-bin offsets are measured against."""
    rng = np.random.default_rng(spec.seed)
    y = np.asarray(y, dtype=np.int64)
    scores = np.asarray(scores, dtype=float)
    decided = (scores >= threshold).astype(np.int64)
    r = spec.resamples
    c = stratified_cells(rng, decided, y, 2, r)
    resampled = binary_counts(c)
    cell = _score_cells(scores)
    n_cells = int(cell.max()) + 1
    loss = _cell_losses(y, scores, cell, n_cells)
    parts: dict[str, list[np.ndarray]] = {}
    for size in _chunks(r, 2 * n_cells):
        counts = stratified_cells(rng, cell, y, n_cells, size)
        for k, v in _score_metrics(counts[:, 1], counts[:, 0], loss).items():
            parts.setdefault(k, []).append(v)
    pos, neg = (np.bincount(cell[y == k], minlength=n_cells)[None] for k in (1, 0))
    binned = _score_metrics(pos, neg, loss)
    for k, v in parts.items():
        resampled[k] = np.concatenate(v) + (point[k] - float(binned[k][0]) if k in point else 0.0)
    fairness = {}
    for name, values in sensitive.items():
        codes, n_groups = _codes(values)
        cg = stratified_cells(rng, codes * 2 + decided, y, 2 * n_groups, r)
        gaps = decision_gaps(cg.reshape(r, 2, n_groups, 2))
        fairness[name] = _intervals(gaps, spec.confidence)
    return _result(resampled, fairness, spec, len(y))


def multiclass_intervals(
    y: np.ndarray,
    decided: np.ndarray,
    classes: list[Any],
    sensitive: dict[str, pd.Series],
    spec: Bootstrap,
    probabilities: np.ndarray | None = None,
    point: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Intervals of the multiclass decision metrics and of each attribute's gaps (per class
    one-vs-rest, the largest over the classes); with the class probabilities, of
    roc_auc_ovr and log_loss too (score cells, offset to the exact `point` values)."""
    rng = np.random.default_rng(spec.seed)
    index = {label: i for i, label in enumerate(classes)}
    k = len(classes)
    yi = np.array([index[v] for v in np.asarray(y).tolist()], dtype=np.int64)
    di = np.array([index[v] for v in np.asarray(decided).tolist()], dtype=np.int64)
    r = spec.resamples
    conf = stratified_cells(rng, di, yi, k, r)
    conf = np.pad(conf, ((0, 0), (0, k - conf.shape[1]), (0, 0)))
    resampled = multiclass_counts(conf, classes)
    if probabilities is not None:
        scored = _multiclass_scores(rng, yi, np.asarray(probabilities, dtype=float), r)
        for name, (values, binned) in scored.items():
            resampled[name] = values + ((point or {}).get(name, binned) - binned)
    fairness = {}
    for name, values in sensitive.items():
        codes, g = _codes(values)
        c = stratified_cells(rng, codes * k + di, yi, g * k, r).reshape(r, -1, g, k)
        c = np.pad(c, ((0, 0), (0, k - c.shape[1]), (0, 0), (0, 0)))
        per_class = []
        for j in range(k):
            positive = c[:, j]
            negative = c.sum(axis=1) - positive
            one_vs_rest = np.stack([negative, positive], axis=1)  # [R, y, group, decided]
            hit = one_vs_rest[..., j]
            c2 = np.stack([one_vs_rest.sum(axis=-1) - hit, hit], axis=-1)
            per_class.append(decision_gaps(c2))
        gaps = {gap: np.max(np.stack([p[gap] for p in per_class]), axis=0) for gap in per_class[0]}
        fairness[name] = _intervals(gaps, spec.confidence)
    return _result(resampled, fairness, spec, len(yi))


def macro_auc_cells(yi: np.ndarray, probabilities: np.ndarray) -> dict[int, np.ndarray]:
    """For each class present and absent somewhere on the split (its one-vs-rest AUC is
    defined), each row's score cell of that class's probability."""
    n = len(yi)
    present = [j for j in range(probabilities.shape[1]) if 0 < int((yi == j).sum()) < n]
    return {j: _score_cells(probabilities[:, j]) for j in present}


def weighted_macro_auc(w: np.ndarray, yi: np.ndarray, cells: dict[int, np.ndarray]) -> np.ndarray:
    """One-vs-rest macro ROC AUC (over `macro_auc_cells`' classes, as evaluate) of each
    resample given as row weights w[R, n]; every class's AUC of a resample shares its rows."""
    flat = np.zeros((2, 2, 1))
    aucs = []
    for j, cell in cells.items():
        n_cells = int(cell.max()) + 1
        pos = _cell_sums(w * (yi == j), cell, n_cells)
        neg = _cell_sums(w, cell, n_cells) - pos
        loss = np.broadcast_to(flat, (2, 2, n_cells))
        aucs.append(_score_metrics(pos, neg, loss, ("roc_auc",))["roc_auc"])
    return np.mean(aucs, axis=0)


def multiclass_score_metric(
    name: str, w: np.ndarray, yi: np.ndarray, probabilities: np.ndarray
) -> np.ndarray | None:
    """roc_auc_ovr or log_loss of each resample (row weights w[R, n]) from class indices and
    one probability column per class; None for any other metric."""
    if name == "roc_auc_ovr":
        cells = macro_auc_cells(yi, probabilities)
        return weighted_macro_auc(w, yi, cells) if cells else None
    if name == "log_loss":
        p = np.clip(probabilities[np.arange(len(yi)), yi], EPS, 1)
        return _div(w @ -np.log(p), w.sum(axis=1))
    return None


def _multiclass_scores(
    rng: np.random.Generator, yi: np.ndarray, probabilities: np.ndarray, r: int
) -> dict[str, tuple[np.ndarray, float]]:
    """Resampled one-vs-rest macro ROC AUC (over the classes present, as evaluate) and log
    loss, each with its value on the whole split's cells (the offset's reference). The
    classes' AUCs of one resample must share its rows, so they come from row weights (cost:
    resamples x rows x classes); the log loss of a row is one number, a score cell."""
    k, n = probabilities.shape[1], len(yi)
    cells = macro_auc_cells(yi, probabilities)

    def macro_auc(w: np.ndarray) -> np.ndarray:
        return weighted_macro_auc(w, yi, cells)

    loss = -np.log(np.clip(probabilities[np.arange(n), yi], np.finfo(float).eps, 1))
    cell = _score_cells(loss)
    n_cells = int(cell.max()) + 1
    mean = _div(
        np.bincount(cell, weights=loss, minlength=n_cells), np.bincount(cell, minlength=n_cells)
    )
    draws = [
        stratified_cells(rng, cell, yi, n_cells, size).sum(axis=1) @ mean
        for size in _chunks(r, k * n_cells)
    ]
    whole_loss = float(np.bincount(cell, minlength=n_cells) @ mean) / n
    out = {"log_loss": (np.concatenate(draws) / n, whole_loss)}
    if cells:
        resampled = [
            macro_auc(row_weights(resample_rows(rng, yi, n, size), n)) for size in _chunks(r, n)
        ]
        out["roc_auc_ovr"] = (np.concatenate(resampled), float(macro_auc(np.ones((1, n)))[0]))
    return out


# ---------------------------------------------------------------- rows engine


def resample_rows(
    rng: np.random.Generator, strata: np.ndarray | None, n: int, size: int
) -> np.ndarray:
    """An index matrix [size, n] of rows drawn with replacement, within each stratum."""
    if strata is None:
        return rng.integers(0, n, size=(size, n))
    parts = []
    for s in np.unique(strata):
        rows = np.flatnonzero(strata == s)
        parts.append(rows[rng.integers(0, len(rows), size=(size, len(rows)))])
    return np.concatenate(parts, axis=1)


def _auc_ranks(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of y, s as the Mann-Whitney statistic over average ranks (equal to
    scikit-learn's); NaN where a resample holds one class only."""
    from scipy.stats import rankdata

    pos = y.sum(axis=1)
    neg = y.shape[1] - pos
    u = (rankdata(s, axis=1) * y).sum(axis=1) - pos * (pos + 1) / 2
    return np.where((pos > 0) & (neg > 0), _div(u, pos * neg), np.nan)


def rows_metric(
    name: str, task: str, y: np.ndarray, out: np.ndarray, threshold: float, classes: list[Any]
) -> np.ndarray | None:
    """One metric on each resample, from resampled rows y[R, n] and the model's outputs
    out[R, n] (scores, decided class indices or predictions); None if not supported."""
    if task == "regression":
        err = out - y
        if name == "rmse":
            return np.sqrt((err**2).mean(axis=1))
        if name == "mae":
            return np.abs(err).mean(axis=1)
        if name == "r2":
            total = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
            return 1 - _div((err**2).sum(axis=1), total)
        return None
    if task == "multiclass":
        k = len(classes)
        flat = (np.arange(len(y))[:, None] * k + y) * k + out
        conf = np.bincount(flat.ravel(), minlength=len(y) * k * k).reshape(len(y), k, k)
        return multiclass_counts(conf, classes).get(name)
    if name == "roc_auc":
        return _auc_ranks(y, out)
    if name == "brier":
        return ((out - y) ** 2).mean(axis=1)
    if name == "log_loss":
        p = np.clip(out, EPS, 1 - EPS)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=1)
    d = (out >= threshold).astype(np.int64)
    flat = (np.arange(len(y))[:, None] * 2 + y) * 2 + d
    c = np.bincount(flat.ravel(), minlength=len(y) * 4).reshape(len(y), 2, 2)
    return binary_counts(c).get(name)


def row_weights(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each of n rows is drawn in each resample of an index matrix: [R, n]."""
    flat = (np.arange(len(idx))[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=len(idx) * n).reshape(len(idx), n).astype(float)


def _cell_sums(w: np.ndarray, cell: np.ndarray, n_cells: int) -> np.ndarray:
    """Per resample, the weight of each cell's rows: [R, n_cells], by one gather of the rows
    in cell order and a segment sum (no sort per resample)."""
    order = np.argsort(cell, kind="stable")
    present, starts = np.unique(cell[order], return_index=True)
    out = np.zeros((len(w), n_cells))
    out[:, present] = np.add.reduceat(w[:, order], starts, axis=1)
    return out


def weighted_metric(
    name: str,
    task: str,
    w: np.ndarray,
    y: np.ndarray,
    out: np.ndarray,
    threshold: float,
    classes: list[Any],
) -> np.ndarray | None:
    """One metric on each resample given as row weights w[R, n] (`row_weights`): the same
    values as `rows_metric` on the index matrix, at the cost of a gather per model rather
    than a sort per resample. None if not supported."""
    if task == "regression":
        n, err = w.sum(axis=1), out - y
        squares = w @ err**2
        if name == "r2":
            return 1 - _div(squares, w @ y**2 - (w @ y) ** 2 / n)
        return {"rmse": np.sqrt(squares / n), "mae": w @ np.abs(err) / n}.get(name)
    if task == "multiclass":
        if out.ndim == 2:  # one probability column per class: the score metrics
            return multiclass_score_metric(name, w, y, out)
        k = len(classes)
        conf = _cell_sums(w, y * k + out, k * k).reshape(len(w), k, k)
        return multiclass_counts(conf, classes).get(name)
    if name in SCORE_METRICS:
        cell = np.unique(out, return_inverse=True)[1].ravel()
        n_cells = int(cell.max()) + 1
        loss = _cell_losses(y, out, cell, n_cells)
        pos = _cell_sums(w * y, cell, n_cells)
        metric = _score_metrics(pos, _cell_sums(w, cell, n_cells) - pos, loss, (name,))[name]
        if name == "roc_auc":  # undefined where a resample holds one class only
            metric = np.where(
                (pos.sum(axis=1) > 0) & (pos.sum(axis=1) < w.sum(axis=1)), metric, np.nan
            )
        return metric
    d = (out >= threshold).astype(np.int64)
    c = _cell_sums(w, y * 2 + d, 4).reshape(len(w), 2, 2)
    return binary_counts(c).get(name)


def paired_difference(
    name: str,
    task: str,
    y: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    spec: Bootstrap,
    threshold: float = 0.5,
    classes: list[Any] | None = None,
) -> list[float] | None:
    """The interval of candidate - champion on `name`, both models scored on the same rows
    and each resample of rows shared by both (stratified by class for classification);
    None when the metric has no resampled form here (the point rule applies)."""
    rng = np.random.default_rng(spec.seed)
    classes = classes or []
    y = np.asarray(y)
    strata = None if task == "regression" else y
    diffs = []
    for size in _chunks(spec.resamples, len(y)):
        w = row_weights(resample_rows(rng, strata, len(y), size), len(y))
        a = weighted_metric(name, task, w, y, np.asarray(candidate), threshold, classes)
        b = weighted_metric(name, task, w, y, np.asarray(champion), threshold, classes)
        if a is None or b is None:
            return None
        diffs.append(a - b)
    return percentile_interval(np.concatenate(diffs), spec.confidence)


def regression_intervals(
    y: np.ndarray, predicted: np.ndarray, sensitive: dict[str, pd.Series], spec: Bootstrap
) -> dict[str, Any]:
    """Intervals of rmse, mae and r2 and of each attribute's mae_difference (rows engine:
    a regression error is no cell; its cost grows with resamples x rows), or from NORMAL_ROWS
    rows on, the normal limit of the resampled sums (`_normal_sums`)."""
    rng = np.random.default_rng(spec.seed)
    y = np.asarray(y, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    coded = {name: _codes(values) for name, values in sensitive.items()}
    if len(y) >= NORMAL_ROWS:
        return _regression_normal(rng, y, predicted, coded, spec)
    metrics: dict[str, list[np.ndarray]] = {}
    gaps: dict[str, list[np.ndarray]] = {name: [] for name in coded}
    for size in _chunks(spec.resamples, len(y)):
        idx = resample_rows(rng, None, len(y), size)
        for name in ("rmse", "mae", "r2"):
            v = rows_metric(name, "regression", y[idx], predicted[idx], 0.5, [])
            metrics.setdefault(name, []).append(v)  # type: ignore[arg-type]
        err = np.abs(y - predicted)[idx]
        for name, (codes, g) in coded.items():
            flat = (np.arange(size)[:, None] * g + codes[idx]).ravel()
            n = np.bincount(flat, minlength=size * g).reshape(size, g)
            total = np.bincount(flat, weights=err.ravel(), minlength=size * g).reshape(size, g)
            gaps[name].append(_spread(_div(total, n), n > 0))
    resampled = {k: np.concatenate(v) for k, v in metrics.items()}
    fairness = {
        name: _intervals({"mae_difference": np.concatenate(v)}, spec.confidence)
        for name, v in gaps.items()
    }
    return _result(resampled, fairness, spec, len(y))


NORMAL_ROWS = 100_000  # regression: from this many test rows, resampled sums drawn at once


def _normal_sums(
    rng: np.random.Generator, total: np.ndarray, products: np.ndarray, n: int, size: int
) -> np.ndarray:
    """`size` draws of a bootstrap resample's column sums of per-row values q (n rows): a
    resample takes each row a multinomial number of times, so its sums have mean
    `total` (Σ q) and covariance Σ q qᵀ - total totalᵀ / n (`products`: Σ q qᵀ); at many
    rows they are that normal (the central limit theorem), whose draw costs nothing a row."""
    cov = products - np.outer(total, total) / n
    return rng.multivariate_normal(total, cov, size=size, method="eigh")


def _regression_normal(
    rng: np.random.Generator,
    y: np.ndarray,
    predicted: np.ndarray,
    coded: dict[str, tuple[np.ndarray, int]],
    spec: Bootstrap,
) -> dict[str, Any]:
    """regression_intervals at NORMAL_ROWS rows and more: the metrics from the resampled
    sums of (e², |e|, y, y²), each attribute's mae_difference from its groups' resampled
    (rows, Σ|e|); each interval needs only its own sums' joint law, so each is drawn apart."""
    n, err = len(y), y - predicted
    q = np.column_stack([err**2, np.abs(err), y, y**2])
    s = _normal_sums(rng, q.sum(axis=0), q.T @ q, n, spec.resamples)
    resampled = {
        "rmse": np.sqrt(np.maximum(s[:, 0], 0) / n),
        "mae": s[:, 1] / n,
        "r2": 1 - s[:, 0] / (s[:, 3] - s[:, 2] ** 2 / n),
    }
    fairness = {}
    for name, (codes, g) in coded.items():
        count = np.bincount(codes, minlength=g).astype(float)
        absolute = np.bincount(codes, weights=q[:, 1], minlength=g)
        squared = np.bincount(codes, weights=q[:, 0], minlength=g)
        products = np.block([[np.diag(count), np.diag(absolute)],
                             [np.diag(absolute), np.diag(squared)]])  # fmt: skip
        sums = _normal_sums(rng, np.concatenate([count, absolute]), products, n, spec.resamples)
        rows = sums[:, :g]
        gap = _spread(_div(sums[:, g:], rows), rows > 0.5)
        fairness[name] = _intervals({"mae_difference": gap}, spec.confidence)
    result = _result(resampled, fairness, spec, n)
    result["method"] = f"bootstrap, normal limit of the resampled sums ({n} rows >= {NORMAL_ROWS})"
    return result


# ---------------------------------------------------------------- results


def _codes(values: pd.Series) -> tuple[np.ndarray, int]:
    import pandas as pd

    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64), len(uniques)


def _intervals(resampled: dict[str, np.ndarray], confidence: float) -> dict[str, Any]:
    return {k: percentile_interval(v, confidence) for k, v in resampled.items()}


def _result(
    resampled: dict[str, np.ndarray], fairness: dict[str, Any], spec: Bootstrap, rows: int
) -> dict[str, Any]:
    return {
        "method": "percentile bootstrap, stratified by target class (classification)",
        "confidence": spec.confidence,
        "resamples": spec.resamples,
        "seed": spec.seed,
        "rows": rows,
        "metrics": _intervals(resampled, spec.confidence),
        "fairness": fairness,
    }
