"""train: fit the Pipeline on the training split; log it with its lineage to MLflow."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mlgate import io
from mlgate.errors import DataValidationError
from mlgate.pipeline import data
from mlgate.pipeline.model import build_pipeline, check_own_features, predict_fn
from mlgate.registry import lineage, tracking

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from mlgate.config import Params


def fit(train: pd.DataFrame, params: Params) -> Pipeline:
    return fit_pipeline(build_pipeline(params), train, params)


def fit_pipeline(model: Pipeline, train: pd.DataFrame, params: Params) -> Pipeline:
    frame, target = train[params.features.inputs], train[params.data.target]
    check_own_features(model, frame, target, params)
    try:
        model.fit(frame, target)
    except ValueError as err:  # the estimator refuses the data: its words, no traceback
        raise DataValidationError(
            f"{params.train.name} cannot fit the {len(train)} training rows: {err}"
        ) from None
    return model


def logged_params(params: Params) -> dict[str, Any]:
    flat: dict[str, Any] = {
        "estimator": params.train.name,
        "seed": params.train.seed,
        "split.test_size": params.split.test_size,
        "split.seed": params.split.seed,
        "features.numeric": ",".join(params.features.numeric),
        "features.categorical": ",".join(params.features.categorical),
    }
    if params.features.transform:
        derived = params.features.derived
        flat["features.transform"] = params.features.transform
        flat["features.derived"] = ",".join([*derived.numeric, *derived.categorical])
    flat.update({f"hp.{k}": v for k, v in params.train.hyperparameters.items()})
    return flat


def run(params: Params) -> Pipeline:
    import joblib

    # Reach the tracking store before spending time on fitting; write files only after the
    # run is logged, so a failure leaves no model that looks trained.
    tracking.connect(params)
    train = data.load(params.split.train, params)
    model = build_pipeline(params)  # imports the estimator: not part of the fit time
    started = time.perf_counter()
    fit_pipeline(model, train, params)
    fit_seconds = time.perf_counter() - started
    print(f"train: fitted {params.train.name} on {len(train)} rows in {fit_seconds:.2f}s")
    record = log_to_mlflow(model, train, params, fit_seconds)
    io.write_with(params.train.model, lambda p: joblib.dump(model, p))
    io.write_json(params.train.run, record)
    return model


def model_requirements() -> list[str]:
    """What loading the logged model needs, pinned to what trained it.

    Named explicitly: MLflow's own inference exports the whole project lock (~200 pins)."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("scikit-learn", "pandas", "numpy", "cloudpickle")]


def model_environment() -> dict[str, Any]:
    """The environment MLflow records beside the model, given whole: the requirements above
    and the Python that trained it. (Given only the requirements, MLflow looks up the
    installed pip to pin it, and a uv environment has no pip: a warning on every train.)"""
    import platform

    return {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [
            f"python={platform.python_version()}",
            "pip",
            {"pip": model_requirements()},
        ],
    }


def log_to_mlflow(
    model: Pipeline, train: pd.DataFrame, params: Params, fit_seconds: float
) -> dict[str, str]:
    """Log the run; returns the record `register` needs: run id, model id and URI."""
    import logging
    import warnings

    import mlflow
    from mlflow.models import infer_signature

    # cloudpickle is chosen knowingly (skops rejects Pipeline internals unless every type is
    # trusted by name); the model is loaded only by this project's own processes.
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
    features = train[params.features.inputs]
    example = features.head(3)
    with warnings.catch_warnings():
        # "integer columns cannot represent missing values": the schema forbids nulls anyway.
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        signature = infer_signature(example, getattr(model, predict_fn(params))(example))
    with mlflow.start_run(
        run_name=f"train-{params.train.name.rsplit('.', 1)[-1].rsplit(':', 1)[-1]}"
    ) as run:
        mlflow.set_tags({**lineage.collect(params), "mlgate.stage": "train"})
        mlflow.log_params(logged_params(params))
        mlflow.log_metrics({"train_rows": len(train), "fit_seconds": fit_seconds})
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            pyfunc_predict_fn=predict_fn(params),
            serialization_format="cloudpickle",
            conda_env=model_environment(),
        )
    print(f"train: logged run {run.info.run_id} to {params.tracking_uri}")
    return {"run_id": run.info.run_id, "model_id": info.model_id, "model_uri": info.model_uri}
