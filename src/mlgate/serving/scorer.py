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
    """Numeric columns scaled, categorical columns one-hot, estimator applied: all in NumPy."""

    lean = True

    def __init__(self, model: Any, positive_label: Any) -> None:
        preprocess, estimator = model.steps[0][1], model.steps[-1][1]
        self.estimator = estimator
        self.positive_index = list(estimator.classes_).index(positive_label)
        self.width = int(sum(s.stop - s.start for s in preprocess.output_indices_.values()))
        self.numeric: list[tuple[list[str], slice, np.ndarray, np.ndarray]] = []
        self.categorical: list[tuple[str, int, dict[Any, int]]] = []
        for name, transformer, columns in preprocess.transformers_:
            if name == "remainder":
                continue
            out = preprocess.output_indices_[name]
            kind = type(transformer).__name__
            if kind == "StandardScaler":
                n = len(columns)
                mean = transformer.mean_ if transformer.with_mean else np.zeros(n)
                scale = transformer.scale_ if transformer.with_std else np.ones(n)
                self.numeric.append((list(columns), out, np.asarray(mean), np.asarray(scale)))
            elif kind == "OneHotEncoder":
                offset = out.start
                for column, categories in zip(columns, transformer.categories_, strict=True):
                    self.categorical.append(
                        (column, offset, {c: i for i, c in enumerate(categories.tolist())})
                    )
                    offset += len(categories)
            else:  # pragma: no cover - guarded by supports()
                raise TypeError(kind)
        # A binary logistic regression is a dot product and a sigmoid; others get the matrix.
        self.linear = (
            type(estimator).__name__ == "LogisticRegression" and estimator.coef_.shape[0] == 1
        )
        if self.linear:
            self.coef = estimator.coef_[0].astype(float)
            self.intercept = float(estimator.intercept_[0])

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
            return p if self.positive_index == 1 else 1.0 - p
        return self.estimator.predict_proba(x)[:, self.positive_index]


def make_scorer(model: Any, positive_label: Any, columns: Sequence[str]) -> Any:
    """The lean scorer when the Pipeline's shape allows it, else the Pipeline itself."""
    if LeanScorer.supports(model):
        return LeanScorer(model, positive_label)
    return PipelineScorer(model, positive_label, columns)
