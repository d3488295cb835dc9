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


ESTIMATOR_METHODS = ("fit", "predict", "get_params", "set_params")


def estimator_class(dotted: str) -> type:
    """The class train.estimator names: scikit-learn's, a library's the project added
    (`uv add lightgbm`: lightgbm.LGBMClassifier) or the project's own package's."""
    module_name, _, name = dotted.rpartition(".")
    top = module_name.partition(".")[0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        hint = f"add it to the project (`uv add {top}`)" if err.name == top else str(err)
        raise MlgateError(
            f"train.estimator: {dotted!r}: module {err.name!r} is not installed here: {hint}"
        ) from None
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise MlgateError(f"train.estimator: {module_name} has no class {name!r}") from None
    missing = [m for m in ESTIMATOR_METHODS if not callable(getattr(cls, m, None))]
    if missing:
        raise MlgateError(
            f"train.estimator: {dotted} is not a scikit-learn-compatible estimator (no "
            f"{', '.join(missing)}; derive from sklearn.base.BaseEstimator)"
        )
    return cls


def build_estimator(params: Params) -> Any:
    cls = estimator_class(str(params.train.estimator))
    hyper = dict(params.train.hyperparameters)
    accepted = inspect.signature(cls).parameters
    open_ended = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    # an estimator taking **kwargs (LightGBM, XGBoost) hands the rest to its library, which
    # names what it does not know; the named parameters are still checked
    unknown = [] if open_ended else sorted(set(hyper) - set(accepted))
    if unknown:
        raise MlgateError(
            f"train.hyperparameters: {unknown} not accepted by {params.train.estimator} "
            f"(it takes: {', '.join(sorted(accepted))})"
        )
    _check_task(cls, params)
    if params.data.classes and not callable(getattr(cls, "predict_proba", None)):
        raise MlgateError(
            f"train.estimator: {params.train.estimator} has no predict_proba: a classifier "
            "must give probabilities (scores, ROC AUC, the decision threshold, calibration)"
        )
    # XGBoost's classes take random_state through **kwargs: their get_params names it
    seeded = "random_state" in accepted or (open_ended and "random_state" in _defaults(cls))
    if seeded and "random_state" not in hyper:
        hyper["random_state"] = params.train.seed
    try:
        estimator = cls(**hyper)
    except (TypeError, ValueError) as err:
        raise MlgateError(f"train.hyperparameters: {err}") from None
    if params.data.classes:
        from mlgate.pipeline.labels import EncodedLabels, needs_codes

        if needs_codes(cls):  # fitted on the codes 0..k-1 of the project's labels
            return EncodedLabels(estimator)
    return estimator


def _defaults(cls: type) -> dict[str, Any]:
    """The parameters an estimator class made without arguments reports (none if it needs
    some)."""
    try:
        return cls().get_params()
    except TypeError:
        return {}


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


def own_pipeline(params: Params) -> Any:
    """train.pipeline: the project's function returning the whole model, checked as an
    estimator is; parameters named `*random_state` it leaves unset get train.seed."""
    from mlgate.io import import_ref

    spec = str(params.train.pipeline)
    try:
        model = import_ref(spec)()
    except MlgateError as err:
        raise MlgateError(f"train.pipeline: {err}") from None
    missing = [m for m in ESTIMATOR_METHODS if not callable(getattr(model, m, None))]
    if params.data.classes and not callable(getattr(model, "predict_proba", None)):
        missing.append("predict_proba")
    if missing:
        raise MlgateError(
            f"train.pipeline: {spec}() returned a {type(model).__name__}, not a "
            f"scikit-learn-compatible model (no {', '.join(missing)}): return e.g. a Pipeline"
        )
    seeds = {
        k: params.train.seed
        for k, v in model.get_params().items()
        if k.endswith("random_state") and v is None
    }
    return model.set_params(**seeds) if seeds else model


def build_pipeline(params: Params) -> Pipeline:
    """One-hot the categorical features, scale the numeric ones (imputing first if asked),
    derive those of features.from_timestamp / from_text, then the estimator; or
    train.pipeline's own model."""
    if params.train.pipeline:
        return own_pipeline(params)
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
    features, derived = params.features, params.features.derived
    transformers = []
    if features.numeric or derived.numeric:
        transformers.append(("numeric", numeric, [*features.numeric, *derived.numeric]))
    if features.categorical or derived.categorical:
        columns = [*features.categorical, *derived.categorical]
        transformers.append(("categorical", categorical, columns))
    if features.from_timestamp or features.from_text:
        from mlgate.pipeline.derive import derived_transformers

        texts = {c: spec.max_features for c, spec in features.from_text.items()}
        transformers += derived_transformers(features.from_timestamp, texts)
    preprocess = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    steps = [("preprocess", preprocess), ("estimator", build_estimator(params))]
    if features.transform:
        steps.insert(0, ("features", own_features(params)))
    return Pipeline(steps)


def own_features(params: Params) -> Any:
    """The transformer features.transform's function returns (the project's feature code),
    giving pandas frames so the standard preprocessing finds its columns by name."""
    from mlgate.io import import_ref

    spec = params.features.transform or ""
    try:
        make = import_ref(spec)
    except MlgateError as err:
        raise MlgateError(f"features.transform: {err}") from None
    transformer = make()
    if not (
        callable(getattr(transformer, "fit", None))
        and callable(getattr(transformer, "transform", None))
    ):
        raise MlgateError(
            f"features.transform: {spec}() returned {type(transformer).__name__}, not a "
            "scikit-learn transformer (fit, transform): return e.g. a FunctionTransformer"
        )
    if hasattr(transformer, "set_output"):
        transformer.set_output(transform="pandas")
    return transformer


def check_own_features(model: Any, frame: Any, target: Any, params: Params) -> None:
    """Before the model is fitted: the project's transform (a copy, fitted on the training
    rows) keeps the feature columns and makes the derived ones, or training stops naming what
    is missing, not with a KeyError deep in the ColumnTransformer."""
    if not params.features.transform:
        return
    from sklearn.base import clone

    try:
        out = clone(model.named_steps["features"]).fit(frame, target).transform(frame.head(50))
    except (ValueError, TypeError, KeyError) as err:
        raise MlgateError(
            f"features.transform {params.features.transform} failed on the training rows: "
            f"{type(err).__name__}: {err}"
        ) from None
    columns = set(getattr(out, "columns", []))
    derived = params.features.derived
    wanted = [*params.features.inputs, *derived.numeric, *derived.categorical]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise MlgateError(
            f"features.transform {params.features.transform} gave no column(s) {missing} "
            f"(it gave {sorted(map(str, columns))[:20]}): it must keep the feature columns "
            "and add those features.derived names"
        )


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
