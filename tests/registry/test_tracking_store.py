"""A new SQLite tracking store is seeded from an empty migrated copy: the same store MLflow
would have made, in milliseconds instead of running its migrations again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mlgate.registry import tracking

pytestmark = pytest.mark.slow  # runs MLflow's real migrations once


def schema(db: Path) -> list[tuple[str, str, list[str]]]:
    """Every table and index with its definition's clauses. Sorted: MLflow's own migrations
    emit a table's constraints in a different order from one run to the next."""
    with sqlite3.connect(db) as con:
        rows = con.execute("select type, name, sql from sqlite_master").fetchall()
    return sorted(
        (kind, name, sorted(line.strip().rstrip(",") for line in (sql or "").splitlines()))
        for kind, name, sql in rows
    )


def rows(db: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as con:
        return con.execute(query).fetchall()


def store_uri(db: Path) -> str:
    """An absolute store URI. MLflow keeps one SQLAlchemy engine per URI string for the life of
    the process, with its connections open: a relative `sqlite:///mlflow.db` that another test
    of this worker opened in its own directory still answers from that test's file, and ours is
    never made (the full parallel suite failed that way, by order)."""
    return f"sqlite:///{db}"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "cache"


def test_a_seeded_store_is_the_store_mlflow_makes(cache: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    assert tracking.seed_sqlite_store("sqlite:///project/mlflow.db")
    template = tracking.template_store()
    assert template.parent == cache / "mlgate" and template.exists()
    made_at = template.stat().st_mtime_ns
    # MLflow's own way, beside it
    MlflowClient(store_uri(tmp_path / "own.db")).search_experiments()
    seeded = tmp_path / "project/mlflow.db"
    MlflowClient(store_uri(seeded)).search_experiments()  # MLflow opens it as any store
    assert schema(seeded) == schema(tmp_path / "own.db")
    version = "select version_num from alembic_version"
    assert rows(seeded, version) == rows(tmp_path / "own.db", version)
    # the Default experiment is MLflow's, made now, with this project's paths
    assert rows(seeded, "select name, artifact_location from experiments") == [
        ("Default", (tmp_path / "mlruns/0").as_posix())
    ]
    # the template is made once per MLflow version, then only copied
    assert tracking.seed_sqlite_store("sqlite:///other/mlflow.db")
    assert template.stat().st_mtime_ns == made_at
    assert rows(tmp_path / "other/mlflow.db", "select count(*) from experiments") == [(0,)]


def test_an_existing_store_and_other_stores_are_left_alone(cache: Path, tmp_path: Path) -> None:
    store = tmp_path / "mlflow.db"
    store.write_bytes(b"not touched")
    assert not tracking.seed_sqlite_store("sqlite:///mlflow.db")
    assert store.read_bytes() == b"not touched"
    for uri in ("http://127.0.0.1:5000", "sqlite:///:memory:", "postgresql://db/mlflow"):
        assert not tracking.seed_sqlite_store(uri)
    assert not (cache / "mlgate").exists()


def test_a_broken_cache_leaves_the_store_to_mlflow(cache: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    cache.parent.mkdir(exist_ok=True)
    cache.write_text("a file where the cache directory should be")
    store = tmp_path / "mlflow.db"
    assert not tracking.seed_sqlite_store(store_uri(store))
    assert not store.exists()
    MlflowClient(store_uri(store)).search_experiments()  # MLflow migrates it itself
    assert rows(tmp_path / "mlflow.db", "select name from experiments") == [("Default",)]


def test_a_store_carried_into_another_folder_finds_its_artifacts(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ml-cd's build job without a tracking server downloads the gate job's mlflow.db and
    mlartifacts/ into its own workspace: MLflow recorded the gate job's absolute folder, so the
    model could not be found there ("No such artifact"). connect() points them here."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from mlgate.config import load_params

    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    gate_job, build_job = tmp_path / "gate-job", tmp_path / "build-job"
    gate_job.mkdir()
    monkeypatch.chdir(gate_job)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri(gate_job / "mlflow.db"))
    tracking.connect(params)
    with mlflow.start_run() as run:
        mlflow.log_text("the model", "model/file.txt")
    gate_job.rename(build_job)
    monkeypatch.chdir(build_job)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri(build_job / "mlflow.db"))
    # without the move, MLflow looks in the gate job's folder, which is gone
    stale = mlflow.MlflowClient(store_uri(build_job / "mlflow.db"))
    with pytest.raises((MlflowException, OSError)):
        stale.download_artifacts(run.info.run_id, "model/file.txt", str(tmp_path / "stale"))

    client = tracking.connect(params)
    got = client.download_artifacts(run.info.run_id, "model/file.txt", str(tmp_path / "out"))
    assert Path(got).read_text() == "the model"
    here = (build_job / "mlartifacts").resolve().as_uri()
    assert client.get_run(run.info.run_id).info.artifact_uri.startswith(here)
    # a store in place is never touched
    assert not tracking.relocate_artifacts(
        build_job / "mlflow.db", params.project.name, build_job / "mlartifacts"
    )
