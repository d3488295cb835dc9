"""Batch scoring by hand, run by act through batch.yml -> ml-batch.yml.

The production model is made on the host against the road's MLflow server with the commands
the cd jobs run (`dvc repro`, `mlgate release register`), then alias `production` is set on
it; the workflow scores a file with broken rows (scored rows, quarantine counted, summary and
output as artifacts), then a file that is not the table (the job fails, saying why, no output).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import VENV_BIN, run
from tests.workflows.act.road import UV_DIR, Repo, Road
from tests.workflows.act.test_delivery import MODEL
from tests.workflows.fake_github import FakeGitHub

BROKEN = {2: ("age", "130"), 4: ("sex", "robot")}


def dispatch_event(repo: Repo, inputs: dict[str, str]) -> dict:
    owner, name = repo.name.split("/")
    return {
        "inputs": inputs,
        "ref": "refs/heads/main",
        "repository": {"full_name": repo.name, "name": name, "owner": {"login": owner}},
    }


@pytest.fixture
def production_model(road: Road, github: FakeGitHub, credit_repo: Repo, tmp_path: Path) -> str:
    """The trained model registered and aliased `production`; returns its version."""
    out = tmp_path / "github_output"
    out.touch()
    env = {
        "PATH": os.pathsep.join([str(VENV_BIN), str(UV_DIR), os.environ["PATH"]]),
        "MLFLOW_TRACKING_URI": road.mlflow_url,
        "GITHUB_REPOSITORY": credit_repo.name,
        "GITHUB_SHA": credit_repo.sha,
        "GITHUB_OUTPUT": str(out),
    }
    repo = credit_repo.path
    run(["dvc", "pull", "--quiet", "data.dvc"], repo, **env)
    run(["dvc", "repro", "--force"], repo, **env)
    run(["mlgate", "release", "register"], repo, **env)
    version = dict(line.split("=", 1) for line in out.read_text().splitlines())["version"]
    client = MlflowClient(tracking_uri=road.mlflow_url, registry_uri=road.mlflow_url)
    client.set_registered_model_alias(MODEL, "production", version)
    return version


def test_batch_scores_with_production_quarantines_broken_rows_and_refuses_a_wrong_table(
    road: Road, credit_repo: Repo, production_model: str, tmp_path: Path
) -> None:
    rows = pd.read_parquet(credit_repo.path / "artifacts/data/test.parquet").astype(str)
    for row, (column, value) in BROKEN.items():
        rows.loc[row, column] = value
    batch = tmp_path / "applications.csv"
    rows.to_csv(batch, index=False)

    inputs = {"input": str(batch), "model": "production", "output": "artifacts/batch/nightly"}
    event = dispatch_event(credit_repo, inputs)
    result = road.act(credit_repo, "workflow_dispatch", ".github/workflows/batch.yml", event,
                      inputs=inputs)  # fmt: skip
    assert result.jobs.get("predict") == "success", result.explain()
    artifacts = road.home / f"run-{road.run_count}" / "artifacts"
    summary = json.loads((artifacts / "batch-summary/summary.json").read_text())
    assert summary["model"]["version"] == production_model
    assert summary["rows_read"] == len(rows)
    assert summary["rows_quarantined"] == len(BROKEN)
    assert summary["rows_scored"] == len(rows) - len(BROKEN)
    quarantined = pd.read_parquet(artifacts / "batch-summary/quarantine.parquet")
    assert quarantined["row"].tolist() == sorted(BROKEN)
    scored = pd.read_parquet(artifacts / "batch-output/scored.parquet")
    assert len(scored) == summary["rows_scored"]
    assert set(scored["model_version"]) == {production_model}
    assert result.outputs["predict"]["rows_quarantined"] == str(len(BROKEN))
    run_tags = (
        MlflowClient(tracking_uri=road.mlflow_url).get_run(summary["mlflow_run_id"]).data.tags
    )
    assert run_tags["mlgate.model_version"] == production_model

    # a file that is not the table: the job fails saying so, and leaves no output
    rows.drop(columns=["age"]).to_csv(batch, index=False)
    result = road.act(credit_repo, "workflow_dispatch", ".github/workflows/batch.yml", event,
                      inputs=inputs)  # fmt: skip
    assert result.jobs.get("predict") == "failure", result.explain()
    assert "not the table the model scores: missing column(s) 'age'" in result.log("predict")
    artifacts = road.home / f"run-{road.run_count}" / "artifacts"
    assert not (artifacts / "batch-summary").exists()
    assert not (artifacts / "batch-output").exists()
