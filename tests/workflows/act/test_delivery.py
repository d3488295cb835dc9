"""Scenario 3: a push to main, run by act through cd.yml -> ml-cd.yml.

build once (`bentoml containerize`, pushed to the registry on 127.0.0.1) -> staging (pulled by
digest, run by the Docker daemon, smoke and contract test over HTTP, tag :staging, alias
staging) -> production only with an approval on record (same digest, tag :production, alias
production, a deployment record naming the approver); without one the production job refuses.

The approved first delivery of a repository is asserted in test_trial.py, on the delivery that
makes that module's champion: one real delivery, not two of the same.
"""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlgate.serving.feedback import read_records
from tests.workflows.act.conftest import push_event
from tests.workflows.act.road import Repo, Road
from tests.workflows.fake_github import FakeGitHub

MODEL = "credit-risk"  # project.name in params.yaml
DELIVERED = {"gate": "success", "build": "success", "staging": "success", "production": "success"}

pytestmark = pytest.mark.usefixtures("docker_road")


def approval(login: str, environment: str = "production") -> dict:
    """One entry of GET /repos/{repo}/actions/runs/{run_id}/approvals."""
    return {
        "state": "approved",
        "user": {"login": login},
        "environments": [{"name": environment}],
        "comment": "ship it",
    }


def alias(road: Road, name: str) -> str | None:
    client = MlflowClient(tracking_uri=road.mlflow_url, registry_uri=road.mlflow_url)
    try:
        return client.get_model_version_by_alias(MODEL, name).version
    except MlflowException:  # no such alias (yet)
        return None


def records_in(folder: str, seconds: float = 30) -> list[dict]:
    """The feedback records the service wrote into its volume (it flushes in the background)."""
    deadline = time.monotonic() + seconds
    while not (found := read_records(folder)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


class ProductionDeployedWithoutApproval(AssertionError):
    """Production deployed without an approval on record (review finding M1, now fixed)."""


def test_without_an_approval_the_production_job_refuses(
    road: Road, github: FakeGitHub, credit_repo: Repo
) -> None:
    production_before = alias(road, "production")

    run = road.act(credit_repo, "push", ".github/workflows/cd.yml", push_event(credit_repo),
                   run_id="4102")  # fmt: skip
    assert run.jobs.get("staging") == "success", run.explain()
    if run.jobs.get("production") == "success":
        raise ProductionDeployedWithoutApproval(run.explain())
    assert run.jobs.get("production") == "failure", run.explain()
    # refused for the reason the test names: check-release found no approval of this run
    # (not a step failing for another reason), and before anything was deployed
    refusal = "no approval of the production environment is on record for run 4102"
    assert refusal in run.log("production"), run.explain()
    approvals = f"/repos/{github.repo}/actions/runs/4102/approvals"
    assert "ml-cd/production" in [r.job for r in github.requests if r.path == approvals]
    assert github.refused == []
    repository, digest = run.outputs["build"]["image"].split("@")
    assert road.running(repository, "staging") is not None, "staging runs the image"
    assert road.running(repository, "production") is None, "nothing runs as production"
    assert alias(road, "production") == production_before
    assert [d for d in github.deployments if d["environment"] == "production"] == []
    tags = road.registry_tags(repository)
    assert tags == {credit_repo.sha: digest, "staging": digest}, "no :production tag moved"


def test_without_a_tracking_server_the_image_is_delivered_and_the_aliases_are_skipped(
    road: Road, github: FakeGitHub, credit_repo: Repo
) -> None:
    """The documented fallback (docs/WORKFLOWS.md#with-or-without-an-mlflow-server): no
    MLFLOW_TRACKING_URI secret. The model is registered in the build job's throw-away store
    (the gate job's store, carried into the build job's own folder: act gives each job one), the
    same image reaches production with its deployment record, and every alias move says it is
    skipped instead of failing or writing anywhere."""
    client = MlflowClient(tracking_uri=road.mlflow_url, registry_uri=road.mlflow_url)
    models_before = [m.name for m in client.search_registered_models()]
    production_before = alias(road, "production")
    github.approvals["4103"] = [approval("bob")]

    run = road.act(credit_repo, "push", ".github/workflows/cd.yml", push_event(credit_repo),
                   run_id="4103", mlflow=False)  # fmt: skip
    assert run.jobs == DELIVERED, run.explain()
    image, version = run.outputs["build"]["image"], run.outputs["build"]["version"]
    repository, digest = image.split("@")
    for env in ("staging", "production"):
        skipped = "no MLFLOW_TRACKING_URI secret: there is no shared registry"
        assert skipped in run.log(env), f"{env}: the alias move says why it is skipped"
        container = road.running(repository, env)
        assert container is not None and container["image"] == image, (env, container)
    assert road.registry_tags(repository)["production"] == digest
    records = [d for d in github.deployments if d.get("payload", {}).get("image")]
    assert [(d["environment"], d["payload"]["image"]) for d in records] == [
        ("staging", image),
        ("production", image),
    ]
    assert records[-1]["payload"]["model_version"] == version  # the throw-away store's
    # nothing reached the shared server the other scenarios use
    assert [m.name for m in client.search_registered_models()] == models_before
    assert alias(road, "production") == production_before
