"""Scenario 3: a push to main, run by act through cd.yml -> ml-cd.yml.

build once (`bentoml containerize`, pushed to the registry on 127.0.0.1) -> staging (pulled by
digest, run by the Docker daemon, smoke and contract test over HTTP, tag :staging, alias
staging) -> production only with an approval on record (same digest, tag :production, alias
production, a deployment record naming the approver); without one the production job refuses.
"""

from __future__ import annotations

import json
import time

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlgate.serving.feedback import read_records
from tests.conftest import run as run_command
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


def test_push_to_main_builds_once_and_promotes_the_same_digest_with_an_approval(
    road: Road, github: FakeGitHub, credit_repo: Repo
) -> None:
    github.approvals["4101"] = [approval("bob")]

    run = road.act(credit_repo, "push", ".github/workflows/cd.yml", push_event(credit_repo),
                   run_id="4101")  # fmt: skip
    assert run.jobs == DELIVERED, run.explain()
    assert github.refused == [], "every request within its job's permissions"
    image, version = run.outputs["build"]["image"], run.outputs["build"]["version"]
    repository, digest = image.split("@")
    assert repository == f"{road.registry}/{credit_repo.name}", image

    # M1: the pipeline artifact (downloadable by anyone signed in, in a public repository)
    # holds the model and the reports, and not one row of data
    uploaded = run.uploaded("ml-cd-pipeline")
    assert "artifacts/model/model.joblib" in uploaded and "dvc.lock" in uploaded, uploaded
    rows = [f for f in uploaded if f.startswith("artifacts/data/") or f.endswith(".parquet")]
    assert rows == [], f"data in the delivery artifact: {rows}"

    # one image, built once and pushed: the commit's tag, then :staging and :production moved
    # to that digest by the deploys that tested it
    tags = road.registry_tags(repository)
    assert tags == {credit_repo.sha: digest, "staging": digest, "production": digest}, tags
    built = road.docker_out("images", "--no-trunc", "--format", "{{.ID}}", repository)
    assert len(set(built.split())) == 1, f"the image is built once: {built}"
    # both environments run that digest, pulled and started by it
    for env in ("staging", "production"):
        container = road.running(repository, env)
        assert container is not None and container["image"] == image, (env, container)
    assert "smoke: pass" in run.log("staging") and "smoke: pass" in run.log("production")
    # the smoke test's requests were recorded by the service in the container, on the host
    production = road.running(repository, "production")
    assert production is not None
    feedback = road.home / "feedback" / credit_repo.name / "production"
    assert production["feedback"] == str(feedback), production
    assert records_in(production["feedback"]), f"no feedback records in {feedback}"

    assert alias(road, "staging") == version
    assert alias(road, "production") == version

    records = [d for d in github.deployments if d.get("payload", {}).get("image")]
    assert [(d["environment"], d["payload"]["image"]) for d in records] == [
        ("staging", image),
        ("production", image),
    ]
    payload = records[-1]["payload"]
    assert payload["approved_by"] == ["bob"]
    assert payload["model_version"] == version
    assert payload["commit"] == credit_repo.sha

    # provenance in one command, deployment half: the registry alone answers it
    lineage = run_command(
        ["mlgate", "lineage", f"{MODEL}@production", "--json"],
        credit_repo.path,
        MLFLOW_TRACKING_URI=road.mlflow_url,
    )
    deployed = json.loads(lineage.stdout)["deployments"]
    assert deployed["production"]["image"] == image, deployed
    assert deployed["production"]["approved_by"] == ["bob"], deployed
    assert deployed["production"]["run_url"].startswith("https://github.com/"), deployed
    assert deployed["staging"]["image"] == image, deployed


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
