"""The model: one scikit-learn Pipeline (preprocessing + estimator) built from params.yaml."""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

from mlgate.errors import MlgateError

if TYPE_CHECKING:
    from pathlib import Path

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
    _check_task(cls, params)
    if "random_state" in accepted and "random_state" not in hyper:
        hyper["random_state"] = params.train.seed
    try:
        return cls(**hyper)
    except (TypeError, ValueError) as err:
        raise MlgateError(f"train.hyperparameters: {err}") from None


def _check_task(cls: type, params: Params) -> None:
    """A classifier for classification, a regressor for regression: caught before fitting."""
    kind = getattr(cls, "_estimator_type", None)
    if kind is None:  # scikit-learn >= 1.6 keeps it in the estimator's tags
        from sklearn.utils import get_tags

        try:
            kind = get_tags(cls()).estimator_type
        except TypeError:  # needs constructor arguments: let fit() judge it
            return
    wanted = "classifier" if params.data.classes else "regressor"
    if kind is not None and kind != wanted:
        raise MlgateError(
            f"train.estimator {params.train.estimator} is a {kind}, but data.task is "
            f"{params.data.task!r}: choose a {wanted}"
        )


def predict_fn(params: Params) -> str:
    """What the logged model's pyfunc predicts with: the class probabilities for a classifier."""
    return "predict" if params.data.task == "regression" else "predict_proba"


def build_pipeline(params: Params) -> Pipeline:
    """One-hot the categorical features, scale the numeric ones (imputing first if asked),
    then the estimator."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric: Any = StandardScaler()
    categorical: Any = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    if params.features.impute:
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline

        numeric = make_pipeline(SimpleImputer(strategy="median"), numeric)
        categorical = make_pipeline(SimpleImputer(strategy="most_frequent"), categorical)
    transformers = []
    if params.features.numeric:
        transformers.append(("numeric", numeric, list(params.features.numeric)))
    if params.features.categorical:
        transformers.append(("categorical", categorical, list(params.features.categorical)))
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


def class_probabilities(model: Any, frame: Any) -> tuple[list[Any], Any]:
    """Multiclass: the model's classes and one column of probabilities per class, in order."""
    return list(model.classes_), model.predict_proba(frame)


def decided_classes(classes: list[Any], probabilities: Any) -> Any:
    """The decision rule of a multiclass model: the most probable class (the first of them in
    the model's class order on a tie, as scikit-learn's `predict`)."""
    import numpy as np

    return np.asarray(classes)[np.argmax(probabilities, axis=1)]


def model_scores(model: Any, frame: Any, params: Params) -> Any:
    """What the model's answer is measured by: the positive class's probability for a
    classifier, the predicted value for a regressor, the decided class for a multiclass
    model (it has no single score: its answer's drift is that of the classes it decides)."""
    if params.data.task == "regression":
        return model.predict(frame)
    if params.data.task == "multiclass":
        return decided_classes(*class_probabilities(model, frame))
    return positive_scores(model, frame, params.data.positive_label)


def load_model(path: Path) -> Any:
    """The trained model file, or a one-line error naming it: missing, or not a model (a
    damaged or foreign file: unpickling it fails in whatever way its bytes lead to)."""
    import joblib

    try:
        return joblib.load(path)
    except FileNotFoundError:
        raise MlgateError(f"{path} not found: run `dvc repro` (or `dvc pull`)") from None
    except IsADirectoryError:
        raise MlgateError(f"{path} is a folder, not the trained model file") from None
    except Exception as err:  # any unpickling failure means a bad file: reported, not carried on
        raise MlgateError(
            f"{path} is not a model file this pipeline wrote ({type(err).__name__}): "
            f"`dvc checkout --force {path}` or `dvc repro train` remakes it"
        ) from err
