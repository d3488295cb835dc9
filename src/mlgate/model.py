"""The model: one scikit-learn Pipeline (preprocessing + estimator) built from params.yaml."""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

from mlgate.errors import MlgateError

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from mlgate.config import Params


def estimator_class(dotted: str) -> type:
    module_name, _, name = dotted.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise MlgateError(f"train.estimator: {dotted!r} is not a scikit-learn estimator") from None
    return cls


def build_estimator(params: Params) -> Any:
    cls = estimator_class(params.train.estimator)
    hyper = dict(params.train.hyperparameters)
    accepted = inspect.signature(cls).parameters
    unknown = sorted(set(hyper) - set(accepted))
    if unknown:
        raise MlgateError(
            f"train.hyperparameters: {unknown} not accepted by {params.train.estimator} "
            f"(it takes: {', '.join(sorted(accepted))})"
        )
    if "random_state" in accepted and "random_state" not in hyper:
        hyper["random_state"] = params.train.seed
    try:
        return cls(**hyper)
    except (TypeError, ValueError) as err:
        raise MlgateError(f"train.hyperparameters: {err}") from None


def build_pipeline(params: Params) -> Pipeline:
    """One-hot the categorical features, scale the numeric ones, then the estimator."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    transformers = []
    if params.features.numeric:
        transformers.append(("numeric", StandardScaler(), list(params.features.numeric)))
    if params.features.categorical:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        transformers.append(("categorical", encoder, list(params.features.categorical)))
    preprocess = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("preprocess", preprocess), ("estimator", build_estimator(params))])


def positive_scores(model: Any, frame: Any, positive_label: Any) -> Any:
    """The probability of the positive class, whatever the order of model.classes_."""
    classes = list(model.classes_)
    if positive_label not in classes:
        raise MlgateError(
            f"data.positive_label {positive_label!r} is not a class of the model {classes}"
        )
    return model.predict_proba(frame)[:, classes.index(positive_label)]
