"""What drives the model: each feature column's contribution to each row's raw score, and the
global importance evaluate writes (mean |contribution| per column on the test split).

Exact where the math allows, so that base value + contributions = the raw score (log-odds of
the positive class, or the prediction for a regressor) for every row:
- a linear estimator (coef_, intercept_) after mlgate's preprocessing: closed form, each
  scaled or one-hot output's term summed back to the column it came from, against the mean
  of the training split's transformed rows;
- LightGBM: the booster's own TreeSHAP (`pred_contrib`), grouped the same way.
Anything else (and multiclass): permutation importance on the test split (global only; the
model is scored once per column and repeat), said in the file as `method`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from mlgate.config import Params

PERMUTATION_REPEATS = 5


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
    grouped = np.zeros((terms.shape[0], len(columns)))
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
    contributions.sum(1) is the raw score; None where no exact method applies. `reference`:
    the training rows, or their reference_mean (None: the model is not linear)."""
    parts = _split(model)
    if parts is None:
        return None
    head, preprocess, estimator = parts
    owners = output_columns(preprocess)
    x = _transform(head, preprocess, frame)
    coef = getattr(estimator, "coef_", None)
    if coef is not None and (np.ndim(coef) == 1 or np.shape(coef)[0] == 1):
        w = np.asarray(coef, dtype=float).reshape(-1)
        if reference is None:
            raise ValueError("a linear model's contributions need the reference rows")
        mean = reference if isinstance(reference, np.ndarray) else reference_mean(model, reference)
        base = float(np.ravel(estimator.intercept_)[0]) + float(mean @ w)
        columns, grouped = _grouped((x - mean) * w, owners)
        return "exact-linear", np.full(len(x), base), columns, grouped
    two_or_fewer = len(getattr(estimator, "classes_", [0, 1])) <= 2
    if type(estimator).__module__.startswith("lightgbm") and two_or_fewer:
        raw = np.asarray(estimator.predict(x, pred_contrib=True), dtype=float)
        columns, grouped = _grouped(raw[:, :-1], owners)
        return "lightgbm-treeshap", raw[:, -1], columns, grouped
    return None


def raw_score(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """The score contributions add up to: the positive class's log-odds, or the prediction."""
    parts = _split(model)
    assert parts is not None
    head, preprocess, estimator = parts
    x = _transform(head, preprocess, frame)
    if hasattr(estimator, "decision_function"):
        return np.asarray(estimator.decision_function(x), dtype=float).reshape(-1)
    if hasattr(estimator, "predict_proba"):
        return np.asarray(estimator.predict(x, raw_score=True), dtype=float).reshape(-1)
    return np.asarray(estimator.predict(x), dtype=float).reshape(-1)


def importance(
    model: Any, test: pd.DataFrame, train: pd.DataFrame, params: Params
) -> dict[str, Any]:
    """Global importance on the test split, largest first: mean |contribution| per column
    (exact methods), else the mean drop of the primary metric when the column is shuffled."""
    features = params.features.inputs
    exact = (
        None
        if params.data.task == "multiclass"
        else contributions(model, test[features], train[features])
    )
    if exact is not None:
        method, _, columns, grouped = exact
        values = dict(zip(columns, np.abs(grouped).mean(axis=0).tolist(), strict=True))
        unit = "mean |contribution| to the raw score"
    else:
        method, unit = "permutation", "mean drop of the score when the column is shuffled"
        values = _permutation(model, test, params)
    ranked = sorted(values.items(), key=lambda kv: -kv[1])
    return {"method": method, "unit": unit, "columns": {k: round(v, 6) for k, v in ranked}}


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
