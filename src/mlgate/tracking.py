"""MLflow set-up: a local SQLite store by default, a tracking server by MLFLOW_TRACKING_URI."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.errors import MlgateError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlgate.config import Params


def connect(params: Params) -> MlflowClient:
    """Point MLflow at the configured store and make sure the experiment exists."""
    # Quiet MLflow's and alembic's start-up chatter (schema migrations on a new SQLite file).
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow retries an unreachable server for minutes by default; fail within seconds.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = params.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = params.project.name
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            location = None
            if not _is_remote(uri):
                location = Path(params.tracking.artifacts).resolve().as_uri()
            client.create_experiment(name, artifact_location=location)
    except MlflowException as err:
        raise MlgateError(f"MLflow tracking store {uri} is not usable: {err.message}") from None
    except OSError as err:  # connection refused, DNS, …: requests' errors are OSErrors
        raise MlgateError(f"cannot reach the MLflow tracking server at {uri}: {err}") from None
    mlflow.set_experiment(name)
    return client


def current_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def resume_run(run_id: str) -> Any:
    """Reopen the training run; a clear error when this store has never seen it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.start_run(run_id=run_id)
    except MlflowException as err:
        raise MlgateError(
            f"training run {run_id} is not in the tracking store {mlflow.get_tracking_uri()} "
            f"({err.error_code}). The train stage was probably restored from DVC's cache of a "
            "run made against another store: rerun it with `dvc repro --force train`."
        ) from None


def _is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))
