"""Scores rows with the fitted Pipeline's own numbers, without a per-call pandas DataFrame.

A one-row `Pipeline.predict_proba` costs ~6-10 ms, almost all of it the ColumnTransformer's
per-call DataFrame checks; the arithmetic is microseconds. `LeanScorer` reads the fitted
scaler statistics, one-hot categories and (for a binary logistic regression) the
coefficients once, then scores plain rows with NumPy. Pipelines it does not understand
fall back to the Pipeline itself, so the result is always the Pipeline's result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Row = Mapping[str, Any]


class PipelineScorer:
    """The reference path: a DataFrame through the whole Pipeline."""

    lean = False

    def __init__(self, model: Any, positive_label: Any, columns: Sequence[str]) -> None:
        self.model = model
        self.columns = list(columns)
        self.positive_index = list(model.classes_).index(positive_label)

    def scores(self, rows: Sequence[Row]) -> np.ndarray:
        import pandas as pd

        frame = pd.DataFrame.from_records(list(rows), columns=self.columns)
        return self.model.predict_proba(frame)[:, self.positive_index]


class LeanScorer:
    """Numeric columns scaled, categorical columns one-hot, estimator applied: all in NumPy.

    Built from the fitted Pipeline (`from_pipeline`), or from its exported numbers
    (`export()` -> JSON -> `from_export`), which needs neither scikit-learn nor pandas: the
    service starts faster, and `mlgate build` checks the export against the Pipeline."""

    lean = True

    def __init__(self, spec: dict[str, Any], estimator: Any = None) -> None:
        self.spec = spec
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
        self.linear = spec.get("linear") is not None
        if self.linear:
            self.coef = np.asarray(spec["linear"]["coef"], dtype=float)
            self.intercept = float(spec["linear"]["intercept"])
            self.positive_is_class1 = bool(spec["linear"]["positive_is_class1"])
        else:
            if estimator is None:
                raise ValueError("a non-linear estimator must be given with its spec")
            self.estimator = estimator
            self.positive_index = int(spec["positive_index"])

    @classmethod
    def from_pipeline(cls, model: Any, positive_label: Any) -> LeanScorer:
        preprocess, estimator = model.steps[0][1], model.steps[-1][1]
        classes = list(estimator.classes_)
        spec: dict[str, Any] = {
            "width": int(sum(s.stop - s.start for s in preprocess.output_indices_.values())),
            "numeric": [],
            "categorical": [],
            "positive_index": classes.index(positive_label),
            "classes": [c.item() if hasattr(c, "item") else c for c in classes],
            "linear": None,
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
            else:  # OneHotEncoder, as supports() checked
                offset = out.start
                for column, categories in zip(columns, transformer.categories_, strict=True):
                    spec["categorical"].append(
                        {"column": column, "offset": offset, "categories": categories.tolist()}
                    )
                    offset += len(categories)
        # A binary logistic regression is a dot product and a sigmoid; others get the matrix.
        if type(estimator).__name__ == "LogisticRegression" and estimator.coef_.shape[0] == 1:
            spec["linear"] = {
                "coef": estimator.coef_[0].astype(float).tolist(),
                "intercept": float(estimator.intercept_[0]),
                "positive_is_class1": spec["positive_index"] == 1,
            }
            return cls(spec)
        return cls(spec, estimator)

    def export(self) -> dict[str, Any] | None:
        """The scorer as JSON-able numbers; None when it needs the estimator object."""
        return self.spec if self.linear else None

    @staticmethod
    def supports(model: Any) -> bool:
        """A Pipeline of (ColumnTransformer of StandardScaler/plain OneHotEncoder, estimator)."""
        steps = getattr(model, "steps", None)
        if not steps or len(steps) != 2 or type(steps[0][1]).__name__ != "ColumnTransformer":
            return False
        preprocess = steps[0][1]
        if not hasattr(steps[1][1], "predict_proba"):
            return False
        for name, transformer, _ in preprocess.transformers_:
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

    def matrix(self, rows: Sequence[Row]) -> np.ndarray:
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

    def scores(self, rows: Sequence[Row]) -> np.ndarray:
        x = self.matrix(rows)
        if self.linear:
            p = 1.0 / (1.0 + np.exp(-(x @ self.coef + self.intercept)))
            return p if self.positive_is_class1 else 1.0 - p
        return self.estimator.predict_proba(x)[:, self.positive_index]


def make_scorer(model: Any, positive_label: Any, columns: Sequence[str]) -> Any:
    """The lean scorer when the Pipeline's shape allows it, else the Pipeline itself."""
    if LeanScorer.supports(model):
        return LeanScorer.from_pipeline(model, positive_label)
    return PipelineScorer(model, positive_label, columns)
