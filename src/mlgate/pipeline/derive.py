"""Features the model derives from a timestamp or a free-text column (features.from_timestamp,
features.from_text): scikit-learn transformers fitted in train and pickled inside the model's
Pipeline, so serving and batch compute them from the raw column exactly as training did.

Each reads one column and names its outputs `<column>:<part>` (a timestamp) or
`<column>:<term>` (a text), so explain.output_columns attributes them all to that column.
Missing values are expected (such columns are optional in a request): a missing date gives
missing parts (imputed, or one-hot as a category of their own), a missing text no terms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from mlgate.pipeline.data import parse_times

DAY_SECONDS = 86_400.0
CYCLES = ("month", "weekday", "hour")  # one-hot: a linear model sees each month, not a slope


def _column(frame: Any) -> pd.Series:
    """The one column a derived transformer reads, as a Series (a frame or a 2-D array)."""
    if isinstance(frame, pd.DataFrame):
        return frame.iloc[:, 0]
    if isinstance(frame, pd.Series):
        return frame
    return pd.Series(np.asarray(frame, dtype=object).reshape(len(frame), -1)[:, 0])


def _name(frame: Any) -> str:
    return str(frame.columns[0]) if isinstance(frame, pd.DataFrame) else "x0"


class TimestampParts(TransformerMixin, BaseEstimator):
    """A timestamp column's parts as numbers: `days_since` (days from the row's date to the
    latest date of the training rows, a reference fixed at fit: the same row scores the same
    tomorrow), `month` (1-12), `weekday` (0 = Monday) and `hour` (UTC); NaN where missing."""

    def __init__(self, parts: tuple[str, ...] = ("days_since",)) -> None:
        self.parts = parts

    def fit(self, frame: Any, y: Any = None) -> TimestampParts:
        del y
        times = parse_times(_column(frame), coerce=True)
        if times.isna().all():
            raise ValueError(f"{_name(frame)}: no date/time to derive features from")
        self.column_ = _name(frame)
        self.reference_ = times.max()
        self.n_features_in_ = 1
        return self

    def transform(self, frame: Any) -> np.ndarray:
        times = parse_times(_column(frame), coerce=True).reset_index(drop=True)
        columns = []
        for part in self.parts:
            if part == "days_since":
                values = (self.reference_ - times).dt.total_seconds() / DAY_SECONDS
            else:
                values = getattr(times.dt, "day_of_week" if part == "weekday" else part)
            columns.append(values.astype("float64").to_numpy(na_value=np.nan))
        return np.column_stack(columns) if columns else np.empty((len(times), 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        del input_features
        return np.array([f"{self.column_}:{p}" for p in self.parts], dtype=object)


def timestamp_features(parts: tuple[str, ...]) -> Any:
    """The parts of one timestamp column, encoded: days_since filled with its training median
    and scaled, each cyclic part (month, weekday, hour) one-hot, a missing date its own
    category; an unseen value (a month training never had) is all zeros."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    where = {p: i for i, p in enumerate(parts)}
    encode = []
    if "days_since" in where:
        scale = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
        encode.append(("days", scale, [where["days_since"]]))
    cycles = [where[p] for p in parts if p in CYCLES]
    if cycles:
        onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        encode.append(("cycles", onehot, cycles))
    return Pipeline(
        [
            ("parts", TimestampParts(tuple(parts))),
            ("encode", ColumnTransformer(encode, verbose_feature_names_out=False)),
        ]
    )


class TextTerms(TransformerMixin, BaseEstimator):
    """A text column's TF-IDF weights over a bounded vocabulary (its `max_features` commonest
    terms in the training rows), dense: a missing text is an empty one (no terms)."""

    def __init__(self, max_features: int = 100) -> None:
        self.max_features = max_features

    def _texts(self, frame: Any) -> list[str]:
        column = _column(frame)
        return [v if isinstance(v, str) else "" for v in column.astype(object).tolist()]

    def fit(self, frame: Any, y: Any = None) -> TextTerms:
        del y
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.column_ = _name(frame)
        self.vectorizer_ = TfidfVectorizer(max_features=self.max_features)
        try:
            self.vectorizer_.fit(self._texts(frame))
        except ValueError as err:  # "empty vocabulary": no word in any training row
            raise ValueError(f"{self.column_}: no term to learn from ({err})") from None
        self.n_features_in_ = 1
        return self

    def transform(self, frame: Any) -> np.ndarray:
        return np.asarray(self.vectorizer_.transform(self._texts(frame)).toarray())

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        del input_features
        terms = self.vectorizer_.get_feature_names_out()
        return np.array([f"{self.column_}:{t}" for t in terms], dtype=object)


def derived_transformers(
    from_timestamp: dict[str, tuple[str, ...]], from_text: dict[str, int]
) -> list[tuple[str, Any, list[str]]]:
    """The ColumnTransformer entries of features.from_timestamp and from_text, one per source
    column (named by position: a column's own name may hold the `__` scikit-learn refuses)."""
    entries: list[tuple[str, Any, list[str]]] = []
    for i, (column, parts) in enumerate(from_timestamp.items()):
        entries.append((f"from_timestamp{i}", timestamp_features(parts), [column]))
    for i, (column, max_features) in enumerate(from_text.items()):
        entries.append((f"from_text{i}", TextTerms(max_features), [column]))
    return entries
