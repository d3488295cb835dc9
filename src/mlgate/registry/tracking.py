"""MLflow set-up: a local SQLite store by default, a tracking server by MLFLOW_TRACKING_URI."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
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
    seed_sqlite_store(uri)
    if (store := sqlite_path(uri)) is not None:
        relocate_artifacts(store, params.project.name, Path(params.tracking.artifacts))
    # MLflow also exports both URIs to the environment; mlgate reads MLFLOW_TRACKING_URI as
    # "a shared server was given" (release register's shared_registry, the trial), so the
    # environment is left as the user set it.
    given = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for key, value in given.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
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


# columns of MLflow's SQLite schema that hold artifact locations (absolute file URIs or paths)
ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)


def relocate_artifacts(store: Path, experiment: str, artifacts: Path) -> bool:
    """A local store carried into another folder points its artifacts back at it.

    MLflow records absolute artifact locations. A CI job that downloads the gate job's
    mlflow.db and mlartifacts/ into its own workspace (ml-cd's build job without a tracking
    server; a runner whose work folder differs, as act's per-job folders or another
    self-hosted runner) would otherwise find no model to package ("No such artifact").
    Rewritten only when the experiment's recorded folder is gone and `artifacts` exists here:
    a store in place is never touched. Returns whether it was rewritten."""
    import sqlite3

    if not store.is_file() or not artifacts.is_dir():
        return False
    here = artifacts.resolve().as_uri()
    with contextlib.closing(sqlite3.connect(store)) as db:
        try:
            row = db.execute(
                "SELECT artifact_location FROM experiments WHERE name = ?", (experiment,)
            ).fetchone()
        except sqlite3.Error:  # not (yet) MLflow's schema: MLflow reports it
            return False
        recorded = str(row[0]) if row and row[0] else ""
        if not recorded.startswith("file://") or recorded == here:
            return False
        if Path(recorded.removeprefix("file://")).exists():
            return False
        with db:  # one transaction: every location moves, or none
            for table, column in ARTIFACT_COLUMNS:
                db.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                    f"WHERE {column} LIKE ? ESCAPE '\\'",
                    (here, len(recorded) + 1, _like_prefix(recorded)),
                )
    print(f"tracking: the store's artifacts moved from {recorded} to {here}", file=sys.stderr)
    return True


def _like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def sqlite_path(uri: str) -> Path | None:
    """The file of a `sqlite:///` store URI; None for any other store (or in-memory)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri[len(prefix) :] in ("", ":memory:"):
        return None
    return Path(uri[len(prefix) :].split("?", 1)[0])


def template_store() -> Path:
    """Where an empty, fully migrated MLflow SQLite store is kept for this MLflow version."""
    import mlflow

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mlgate" / f"mlflow-{mlflow.__version__}-empty.db"


def seed_sqlite_store(uri: str) -> bool:
    """Give a new SQLite store MLflow's schema by copying an empty migrated one.

    MLflow makes a new SQLite store by running its 68 schema migrations one by one (~3 s
    here, on every fresh clone's first `train`, in every CI job). The result, before any
    experiment exists, is the same file for one MLflow version: it is made once per machine
    (under ~/.cache/mlgate, keyed by the version) and copied. MLflow then opens the copy as
    any existing store and adds its Default experiment with this project's paths. Any
    failure leaves the store to MLflow, as before; an existing store is never touched."""
    target = sqlite_path(uri)
    if target is None or target.exists():
        return False
    try:
        template = template_store()
        if not template.exists():
            _make_template(template)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(template, staged)
        try:
            os.link(staged, target)  # never replaces a store that appeared meanwhile
        except FileExistsError:
            return False
        finally:
            staged.unlink()
    except Exception:  # a private MLflow API or the cache failed: MLflow makes the store
        return False
    return True


def _make_template(template: Path) -> None:
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    template.parent.mkdir(parents=True, exist_ok=True)
    staged = template.with_name(f".{template.name}.{os.getpid()}.tmp")
    staged.unlink(missing_ok=True)
    engine = sqlalchemy.create_engine(f"sqlite:///{staged}")
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()
    os.replace(staged, template)  # atomic: a concurrent maker's copy is the same file


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


def run_json(client: MlflowClient, run_id: str, artifact: str) -> dict[str, Any]:
    """A JSON object the pipeline logged to a run (evaluation/intervals.json, …); {} when the
    run has none (gated by an older mlgate) or it is not an object."""
    import json
    import tempfile

    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, artifact, tmp)
            loaded = json.loads(Path(path).read_text(encoding="utf-8"))
        except (MlflowException, OSError, ValueError):
            return {}
    return loaded if isinstance(loaded, dict) else {}
