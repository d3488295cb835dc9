"""What drives the model: each feature column's contribution to each row's raw score, and the
global importance evaluate writes (mean |contribution| per column on the test split).

Exact where the math allows, so that base value + contributions = the raw score (`scale`:
log-odds of classes_[1], a forest's probability of it, or the prediction) for every row:
- a linear estimator (coef_, intercept_) after mlgate's preprocessing: closed form, each
  scaled or one-hot output's term summed back to the column it came from, against the mean
  of the training split's transformed rows;
- a scikit-learn forest, decision tree or HistGradientBoosting: exact path-dependent
  TreeSHAP over its trees (pipeline.treeshap), grouped the same way;
- LightGBM: the booster's own TreeSHAP (`pred_contrib`), grouped the same way.
A model of several classes gets every class's (base (rows, classes), contributions (rows,
columns, classes)): a forest's class probabilities, or for a softmax model each class's
centred logit, its logit minus the mean of every class's (log p_k - mean_j log p_j: softmax
leaves logits free up to a shift, the centred ones are unique; softmax of them is the
probabilities). Anything else: permutation importance on the test split (global only; the
model is scored once per column and repeat), said in the file as `method`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mlgate.pipeline import treeshap

if TYPE_CHECKING:
    import pandas as pd

    from mlgate.config import Params

PERMUTATION_REPEATS = 5
# evaluate's exact importance (and the monitor's attribution drift) reads at most this many
# rows (a seeded sample, said in importance.json): a 100-tree unbounded forest's TreeSHAP
# costs ~10-20 ms a row
IMPORTANCE_ROWS = 500


def _split(model: Any) -> tuple[list[Any], Any, Any] | None:
    """(steps before the preprocessing, the ColumnTransformer, the estimator) of mlgate's
    Pipeline; None for any other model."""
    steps = getattr(model, "steps", None)
    if not steps or len(steps) < 2 or type(steps[-2][1]).__name__ != "ColumnTransformer":
        return None
    return [s for _, s in steps[:-2]], steps[-2][1], steps[-1][1]


def output_columns(preprocess: Any) -> list[str]:
    """For each output column of the fitted ColumnTransformer, the input column it came from
    (a one-hot encoder's outputs, one per category, all name their column; so do a timestamp's
    derived parts and a text's terms: every output of a one-column transformer)."""
    owners: list[str] = [""] * sum(s.stop - s.start for s in preprocess.output_indices_.values())
    for name, transformer, columns in preprocess.transformers_:
        where = preprocess.output_indices_.get(name)
        if where is None or where.stop == where.start or name == "remainder":
            continue
        if len(columns) == 1:
            owners[where.start : where.stop] = [columns[0]] * (where.stop - where.start)
            continue
        last = transformer.steps[-1][1] if hasattr(transformer, "steps") else transformer
        categories = getattr(last, "categories_", None)
        sizes = [len(c) for c in categories] if categories is not None else [1] * len(columns)
        flat = [c for column, size in zip(columns, sizes, strict=True) for c in [column] * size]
        owners[where.start : where.stop] = flat
    return owners


def _transform(head: list[Any], preprocess: Any, frame: pd.DataFrame) -> np.ndarray:
    for step in head:
        frame = step.transform(frame)
    out = preprocess.transform(frame)
    return np.asarray(out.toarray() if hasattr(out, "toarray") else out, dtype=float)


def _grouped(terms: np.ndarray, owners: list[str]) -> tuple[list[str], np.ndarray]:
    columns = list(dict.fromkeys(owners))
    index = np.array([columns.index(o) for o in owners])
    grouped = np.zeros((terms.shape[0], len(columns), *terms.shape[2:]))
    np.add.at(grouped, (slice(None), index), terms)
    return columns, grouped


def reference_mean(model: Any, reference: pd.DataFrame) -> np.ndarray:
    """The mean of the reference rows (the training split) as the estimator sees them, which
    a linear model's contributions are measured against (a service keeps this, not rows)."""
    parts = _split(model)
    assert parts is not None
    head, preprocess, _ = parts
    return _transform(head, preprocess, reference).mean(axis=0)


def contributions(
    model: Any, frame: pd.DataFrame, reference: pd.DataFrame | np.ndarray | None
) -> tuple[str, np.ndarray, list[str], np.ndarray] | None:
    """(method, base value per row, columns, contributions [rows, columns]) such that base +
    contributions.sum(1) is the raw score (several classes: one of each per class, last
    axis); None where no exact method applies. `reference`: the training rows, or their
    reference_mean (None: the model is not linear)."""
    parts = _split(model)
    if parts is None:
        return None
    head, preprocess, estimator = parts
    owners = output_columns(preprocess)
    x = _transform(head, preprocess, frame)
    if getattr(estimator, "coef_", None) is not None and hasattr(estimator, "intercept_"):
        if reference is None:
            raise ValueError("a linear model's contributions need the reference rows")
        mean = reference if isinstance(reference, np.ndarray) else reference_mean(model, reference)
        w, b = centred(np.atleast_2d(estimator.coef_).T, np.ravel(estimator.intercept_))
        if w.shape[1] == 1:
            w, b = w[:, 0], b[0]
        columns, grouped = _grouped(
            (x - mean)[:, :, None] * w if w.ndim > 1 else (x - mean) * w, owners
        )
        return "exact-linear", _per_row(b + mean @ w, len(x)), columns, grouped
    trees = treeshap.sklearn_trees(estimator)
    if trees is not None:
        arrays, divisor, float32 = trees
        if np.ndim(arrays["value"]) == 2 and np.shape(arrays["value"])[1] == 2:
            arrays = {**arrays, "value": arrays["value"][:, 1]}  # two classes: classes_[1]'s
        if float32:  # a forest compares the row cast to float32, as scikit-learn does
            x = x.astype(np.float32).astype(np.float64)
        shap = treeshap.TreeShap(arrays, x.shape[1])
        terms, base = shap.contributions(x) / divisor, np.asarray(shap.base) / divisor
        if terms.ndim == 3 and type(estimator).__name__ in treeshap.BOOSTINGS:
            terms, base = terms - terms.mean(axis=2, keepdims=True), base - base.mean()
        columns, grouped = _grouped(terms, owners)
        return "treeshap", _per_row(base, len(x)), columns, grouped
    two_or_fewer = len(getattr(estimator, "classes_", [0, 1])) <= 2
    if type(estimator).__module__.startswith("lightgbm") and two_or_fewer:
        raw = np.asarray(estimator.predict(x, pred_contrib=True), dtype=float)
        columns, grouped = _grouped(raw[:, :-1], owners)
        return "lightgbm-treeshap", raw[:, -1], columns, grouped
    return None


def _per_row(base: Any, n: int) -> np.ndarray:
    """The base value (one, or one per class) repeated for n rows."""
    return np.tile(base, (n, 1)) if np.ndim(base) else np.full(n, float(base))


def centred(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A softmax's weights (features, classes) and intercepts less their mean over classes:
    the same probabilities, and each class's logit minus the mean logit (one score: as is)."""
    if w.shape[1] == 1:
        return w, b
    return w - w.mean(axis=1, keepdims=True), b - b.mean()


def scale(model: Any) -> str:
    """What a model's raw score is: `log-odds` (of classes_[1]), `centred log-odds` (each
    class's, several classes), `probability` (a forest's, of classes_[1] or each class's) or
    `prediction` (a regressor's)."""
    estimator = model.steps[-1][1]
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        return "prediction"
    if type(estimator).__name__ in treeshap.FORESTS:
        return "probability"
    return "log-odds" if len(classes) <= 2 else "centred log-odds"


def raw_score(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """The score contributions add up to (see `scale`); several classes: (rows, classes)."""
    parts = _split(model)
    assert parts is not None
    head, preprocess, estimator = parts
    x = _transform(head, preprocess, frame)
    kind = scale(model)
    if type(estimator).__module__.startswith("lightgbm"):
        raw = np.asarray(estimator.predict(x, raw_score=True), dtype=float)
    elif kind == "probability":
        raw = np.asarray(estimator.predict_proba(x), dtype=float)
        raw = raw[:, 1] if raw.shape[1] == 2 else raw
    elif kind == "prediction":
        raw = np.asarray(estimator.predict(x), dtype=float)
    else:
        raw = np.asarray(estimator.decision_function(x), dtype=float)
    if kind == "centred log-odds":
        return raw - raw.mean(axis=1, keepdims=True)
    return raw.reshape(-1)


def importance(
    model: Any, test: pd.DataFrame, train: pd.DataFrame, params: Params
) -> dict[str, Any]:
    """Global importance on the test split, largest first: mean |contribution| per column
    (exact methods; several classes: to the score of the class decided for each row, as
    /explain gives its reasons), else the mean drop of the primary metric when the column is
    shuffled. Says the method and the number of test rows read (IMPORTANCE_ROWS at most, a
    seeded sample, for an exact method)."""
    features = params.features.inputs
    rows = sample(test[features], params.train.seed)
    exact = contributions(model, rows, train[features])
    if exact is not None:
        method, _, columns, grouped = exact
        unit = "mean |contribution| to the raw score"
        if grouped.ndim == 3:
            decided = np.searchsorted(model.classes_, model.predict(rows))
            grouped = grouped[np.arange(len(grouped)), :, decided]
            unit += " of the decided class"
        values = dict(zip(columns, np.abs(grouped).mean(axis=0).tolist(), strict=True))
    else:
        method, unit = "permutation", "mean drop of the score when the column is shuffled"
        values, rows = _permutation(model, test, params), test
    ranked = sorted(values.items(), key=lambda kv: -kv[1])
    return {
        "method": method,
        "unit": unit,
        "rows": len(rows),
        "columns": {k: round(v, 6) for k, v in ranked},
    }


def sample(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """At most IMPORTANCE_ROWS of the frame's rows, drawn with the seed, in their order."""
    if len(frame) <= IMPORTANCE_ROWS:
        return frame
    return frame.sample(IMPORTANCE_ROWS, random_state=seed).sort_index()


def _permutation(model: Any, test: pd.DataFrame, params: Params) -> dict[str, float]:
    from sklearn.inspection import permutation_importance

    scoring: Any = {"regression": "r2", "multiclass": "accuracy"}.get(params.data.task)
    y = test[params.data.target]
    if scoring is None:  # two classes: ROC AUC of the positive class's score
        from sklearn.metrics import roc_auc_score

        from mlgate.pipeline.model import positive_scores

        positive = params.data.positive_label
        y = (y == positive).astype(int)

        def scoring(est: Any, x: pd.DataFrame, truth: Any) -> float:
            return float(roc_auc_score(truth, positive_scores(est, x, positive)))

    found = permutation_importance(
        model, test[params.features.inputs], y, scoring=scoring,
        n_repeats=PERMUTATION_REPEATS, random_state=params.train.seed,
    )  # fmt: skip
    return dict(zip(params.features.inputs, found.importances_mean.tolist(), strict=True))
