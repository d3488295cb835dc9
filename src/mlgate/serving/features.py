"""The feature matrix a fast scorer reads: a plain preprocessing step of the Pipeline (scaling,
one-hot) captured as numbers, applied to request rows without pandas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Row = Mapping[str, Any]


class _EveryClass:
    """The `positive_label` a scorer is given for a multiclass model: no class is positive,
    its scores are every class's probability, one column per class in `classes_` order."""

    def __repr__(self) -> str:
        return "EVERY_CLASS"


EVERY_CLASS: Any = _EveryClass()


def class_columns(classes: Sequence[Any], positive_label: Any) -> int | slice | None:
    """Which columns of predict_proba a scorer answers: the positive class's (binary), all
    of them (EVERY_CLASS: multiclass), none (None: a regressor answers its prediction)."""
    if positive_label is None:
        return None
    if positive_label is EVERY_CLASS:
        return slice(None)
    return list(classes).index(positive_label)


def final_estimator(model: Any) -> Any:
    """The estimator a Pipeline ends with; inside mlgate.pipeline.labels.EncodedLabels (an
    XGBoost classifier fitted on label codes) when that wraps it."""
    last = model.steps[-1][1]
    return last.estimator_ if type(last).__name__ == "EncodedLabels" else last


def plain_preprocess(model: Any) -> bool:
    """A Pipeline of (ColumnTransformer of StandardScaler / plain OneHotEncoder, estimator):
    no imputer, so a row never carries a null the converted graph would have to impute."""
    steps = getattr(model, "steps", None)
    if not steps or len(steps) != 2 or type(steps[0][1]).__name__ != "ColumnTransformer":
        return False
    for name, transformer, _ in steps[0][1].transformers_:
        if name == "remainder":
            if transformer != "drop":
                return False
            continue
        kind = type(transformer).__name__
        if kind == "OneHotEncoder":
            if (
                transformer.drop is not None
                or transformer.handle_unknown != "ignore"
                or getattr(transformer, "_infrequent_enabled", False)
            ):
                return False
        elif kind != "StandardScaler":
            return False
    return True


def not_plain_because(model: Any) -> str:
    """Why plain_preprocess refused MODEL, in a line `mlgate build` prints."""
    steps = getattr(model, "steps", None)
    if not steps:
        return f"the model is a {type(model).__name__}, not a Pipeline"
    names = [name for name, _ in steps]
    if len(steps) != 2 or type(steps[0][1]).__name__ != "ColumnTransformer":
        return (
            f"the Pipeline's steps are {names}, not (preprocess, estimator): a step of the "
            "project's own (features.transform) runs in scikit-learn only"
        )
    derived = [n for n, _, _ in steps[0][1].transformers_ if n.startswith("from_")]
    if derived:
        return (
            "the model derives features from a timestamp or a text (features.from_timestamp / "
            "from_text), computed in scikit-learn only"
        )
    return "the preprocessing imputes or encodes beyond StandardScaler and plain one-hot"


def features_spec(model: Any) -> dict[str, Any]:
    """The numbers of a plain_preprocess Pipeline's scaling and one-hot, as JSON: where each
    column lands in the feature matrix the estimator sees, and how."""
    preprocess = model.steps[0][1]
    spec: dict[str, Any] = {
        "width": int(sum(s.stop - s.start for s in preprocess.output_indices_.values())),
        "numeric": [],
        "categorical": [],
    }
    for name, transformer, columns in preprocess.transformers_:
        if name == "remainder":
            continue
        out = preprocess.output_indices_[name]
        if type(transformer).__name__ == "StandardScaler":
            n = len(columns)
            mean = transformer.mean_ if transformer.with_mean else np.zeros(n)
            scale = transformer.scale_ if transformer.with_std else np.ones(n)
            spec["numeric"].append(
                {
                    "columns": list(columns),
                    "start": out.start,
                    "stop": out.stop,
                    "mean": np.asarray(mean).tolist(),
                    "scale": np.asarray(scale).tolist(),
                }
            )
        else:  # OneHotEncoder, as plain_preprocess checked
            offset = out.start
            for column, categories in zip(columns, transformer.categories_, strict=True):
                spec["categorical"].append(
                    {"column": column, "offset": offset, "categories": categories.tolist()}
                )
                offset += len(categories)
    return spec


class FeatureMatrix:
    """Rows to the matrix the estimator sees, from features_spec's numbers, in NumPy."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.width = int(spec["width"])
        self.numeric = [
            (
                list(n["columns"]),
                slice(n["start"], n["stop"]),
                np.asarray(n["mean"], dtype=float),
                np.asarray(n["scale"], dtype=float),
            )
            for n in spec["numeric"]
        ]
        self.categorical = [
            (c["column"], int(c["offset"]), {v: i for i, v in enumerate(c["categories"])})
            for c in spec["categorical"]
        ]

    def __call__(self, rows: Sequence[Row]) -> np.ndarray:
        x = np.zeros((len(rows), self.width))
        for columns, out, mean, scale in self.numeric:
            values = np.array([[row[c] for c in columns] for row in rows], dtype=float)
            x[:, out] = (values - mean) / scale
        for column, offset, codes in self.categorical:
            for i, row in enumerate(rows):
                code = codes.get(row[column])
                if code is not None:  # an unseen category is all zeros, as handle_unknown="ignore"
                    x[i, offset + code] = 1.0
        return x


def plain_values(values: Any) -> list[Any]:
    """NumPy scalars (a model's classes) as the Python values JSON writes."""
    return [v.item() if hasattr(v, "item") else v for v in values]
