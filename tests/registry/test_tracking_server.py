"""MLFLOW_TRACKING_URI points everything at a real `mlflow server` on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import copy_repo, free_port, run, start_mlflow_server, stop_group

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield url
    stop_group(proc)


def test_pipeline_and_registry_use_the_server(mlflow_server, tmp_path):
    repo = copy_repo(tmp_path)
    run(["dvc", "repro"], repo, MLFLOW_TRACKING_URI=mlflow_server)
    run(["mlgate", "register"], repo, MLFLOW_TRACKING_URI=mlflow_server)
    assert not (repo / "mlflow.db").exists(), "nothing may go to the local store"

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    version = client.get_model_version_by_alias("credit-risk", "candidate")
    run_ = client.get_run(version.run_id)
    assert run_.data.metrics["test_roc_auc"] > 0.7
    assert run_.data.tags["mlgate.gate_passed"] == "true"
    assert version.tags["mlgate.data_hash"].endswith(".dir")
    # the model's artifacts went through the server and load back
    import mlflow.sklearn

    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.sklearn.load_model("models:/credit-risk@candidate")
    assert hasattr(model, "predict_proba")


def test_an_unreachable_server_is_a_clear_error_and_leaves_no_model(trained_repo, tmp_path):
    import shutil

    repo = Path(shutil.copytree(trained_repo, tmp_path / "repo", symlinks=True))
    model = repo / "artifacts/model/model.joblib"
    model.unlink()
    dead = f"http://127.0.0.1:{free_port()}"

    out = run(["mlgate", "train"], repo, check=False, MLFLOW_TRACKING_URI=dead)

    assert out.returncode != 0
    assert out.stderr.startswith("mlgate train: error: ")
    assert dead in out.stderr
    assert "Traceback" not in out.stderr
    assert not model.exists()
