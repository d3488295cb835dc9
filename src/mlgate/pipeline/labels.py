"""Classifiers of a library that takes only the labels 0..k-1 (XGBoost), fitted on the codes of
the project's labels and answering in those labels."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone

# Libraries whose scikit-learn classifiers refuse other labels than 0..k-1 (XGBoost since 1.6:
# "Invalid classes inferred from unique values of `y`. Expected: [0 1], got ['bad' 'good']")
CODES_ONLY = ("xgboost",)


def needs_codes(cls: type) -> bool:
    """Whether a classifier class comes from a library of CODES_ONLY."""
    return cls.__module__.partition(".")[0] in CODES_ONLY


class EncodedLabels(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """`estimator` fitted on the codes 0..k-1 of the labels, in their sorted order (the order
    scikit-learn's classifiers give classes_): `classes_` are the labels themselves,
    predict_proba's columns follow them, predict answers a label. Everything reading the
    model (scores, the positive class, serving, batch, explanations) sees the labels."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any, **fit_params: Any) -> EncodedLabels:
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        self.estimator_ = clone(self.estimator).fit(X, codes, **fit_params)
        self.n_features_in_ = self.estimator_.n_features_in_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.estimator_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label (the first in classes_ order on a tie)."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
