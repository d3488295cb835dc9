"""Scenario 3: a push to main, run by act through cd.yml -> ml-cd.yml.

build once -> staging (deploy, smoke and contract test against a real `bentoml serve`, alias
staging) -> production only with an approval on record (same digest, alias production, a
deployment record naming the approver); without one the production job refuses.
"""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.workflows.act.conftest import push_event
from tests.workflows.act.road import Repo, Road
from tests.workflows.fake_github import FakeGitHub

MODEL = "credit-risk"  # project.name in params.yaml
DELIVERED = {"gate": "success", "build": "success", "staging": "success", "production": "success"}


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


def pulled(road: Road, since: int) -> list[str]:
    return [c[-1] for c in road.docker_calls()[since:] if c[:2] == ["docker", "pull"]]


def test_push_to_main_builds_once_and_promotes_the_same_digest_with_an_approval(
    road: Road, github: FakeGitHub, credit_repo: Repo
) -> None:
    github.approvals["4101"] = [approval("bob")]
    calls_before = len(road.docker_calls())

    run = road.act(credit_repo, "push", ".github/workflows/cd.yml", push_event(credit_repo),
                   run_id="4101")  # fmt: skip
    assert run.jobs == DELIVERED, run.explain()
    assert github.refused == [], "every request within its job's permissions"
    image, version = run.outputs["build"]["image"], run.outputs["build"]["version"]
    assert "@sha256:" in image, run.explain()

    # M1: the pipeline artifact (downloadable by anyone signed in, in a public repository)
    # holds the model and the reports, and not one row of data
    uploaded = run.uploaded("ml-cd-pipeline")
    assert "artifacts/model/model.joblib" in uploaded and "dvc.lock" in uploaded, uploaded
    rows = [f for f in uploaded if f.startswith("artifacts/data/") or f.endswith(".parquet")]
    assert rows == [], f"data in the delivery artifact: {rows}"
    builds = [c for c in road.docker_calls()[calls_before:] if "build" in c[1:3]]
    assert len(builds) == 1, f"the image is built once: {builds}"
    assert pulled(road, calls_before) == [image, image], "staging and production run one digest"
    assert "smoke: pass" in run.log("staging") and "smoke: pass" in run.log("production")

    assert alias(road, "staging") == version
    assert alias(road, "production") == version

    records = [d for d in github.deployments if d.get("payload", {}).get("image")]
    assert [(d["environment"], d["payload"]["image"]) for d in records] == [
        ("staging", image),
        ("production", image),
    ]
    production = records[-1]["payload"]
    assert production["approved_by"] == ["bob"]
    assert production["model_version"] == version
    assert production["commit"] == credit_repo.sha
    running = road.containers()["mlgate-production"]
    assert running["image"] == image


class ProductionDeployedWithoutApproval(AssertionError):
    """Production deployed without an approval on record (review finding M1, now fixed)."""


def test_without_an_approval_the_production_job_refuses(
    road: Road, github: FakeGitHub, credit_repo: Repo
) -> None:
    production_before = alias(road, "production")
    calls_before = len(road.docker_calls())

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
    assert not [c for c in road.docker_calls()[calls_before:] if c[:2] == ["docker", "run"]
                and "mlgate-production" in c]  # fmt: skip
    assert alias(road, "production") == production_before
    assert [d for d in github.deployments if d["environment"] == "production"] == []
    tagged = [c for c in road.docker_calls()[calls_before:] if c[1] == "tag"]
    assert not any(c[-1].endswith(":production") for c in tagged), tagged
