"""`mlgate lineage NAME@production`, deployment half: what ml-cd's promote step keeps with the
version (image digest, environment, time, run URL, approvers), read back from a real MLflow
store; the approvers come from the fake GitHub's approvals of the run, as GitHub answers them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run
from tests.workflows.fake_github import FakeGitHub, serve

pytestmark = pytest.mark.slow

REPO = "acme/credit-model"
IMAGE = "registry.example/credit-risk@sha256:" + "ab" * 32
RUN_ID = "4242"


def review(login: str, env: str, state: str = "approved") -> dict:
    return {"state": state, "user": {"login": login}, "environments": [{"name": env}]}


def promote_in_ci(repo: Path, fake: FakeGitHub, *extra: str) -> str:
    """`mlgate release promote` to staging, then production, as ml-cd's steps run it (run
    id, repository, job token, API URL); returns what the production promotion printed."""
    server, url = serve(fake)
    ci = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
        "GITHUB_TOKEN": "test-token",
        "GITHUB_API_URL": url,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_RUN_ID": RUN_ID,
        "GITHUB_SERVER_URL": "https://github.example",
    }
    try:
        for env in ("staging", "production"):
            promote = ["mlgate", "release", "promote", "--version", "1", "--to", env]
            out = run([*promote, "--image", IMAGE, *extra], repo, **ci)
    finally:
        server.shutdown()
        server.server_close()
    return out.stdout


def test_lineage_of_production_names_the_image_the_approvers_and_the_run(
    trained_repo: Path, tmp_path: Path
) -> None:
    repo = Path(shutil.copytree(trained_repo, tmp_path / "repo", symlinks=True))
    fake = FakeGitHub(repo=REPO)
    # bob approved production; carol's approval was of staging, dave's was rejected
    fake.approvals[RUN_ID] = [
        review("bob", "production"),
        review("carol", "staging"),
        review("dave", "production", state="rejected"),
    ]
    promote_in_ci(repo, fake, "--note", f"cd run {RUN_ID}")
    approvals = f"/repos/{REPO}/actions/runs/{RUN_ID}/approvals"
    assert [r.path for r in fake.requests] == [approvals]  # production only asks

    info = json.loads(run(["mlgate", "lineage", "credit-risk@production", "--json"], repo).stdout)
    prod, staging = info["deployments"]["production"], info["deployments"]["staging"]
    run_url = f"https://github.example/{REPO}/actions/runs/{RUN_ID}"
    assert prod["image"] == IMAGE and prod["environment"] == "production"
    assert prod["approved_by"] == ["bob"]
    assert prod["run_url"] == run_url and staging["run_url"] == run_url
    assert "approved_by" not in staging  # staging needs no review
    assert prod["deployed_at"].endswith("Z") and prod["deployed_at"] >= staging["deployed_at"]

    text = run(["mlgate", "lineage", "credit-risk@production"], repo).stdout
    assert f"    production: {IMAGE}\n      at {prod['deployed_at']}, approved by bob\n" in text
    assert f"      run {run_url}" in text


def test_a_refused_approvals_lookup_still_promotes_and_says_so(
    trained_repo: Path, tmp_path: Path
) -> None:
    repo = Path(shutil.copytree(trained_repo, tmp_path / "repo", symlinks=True))
    fake = FakeGitHub(repo=REPO)
    fake.fail[("GET", f"/repos/{REPO}/actions/runs/{RUN_ID}/approvals")] = (
        403,
        "Resource not accessible by integration",
    )
    out = promote_in_ci(repo, fake)
    assert "approvers not recorded" in out and "403" in out
    info = json.loads(run(["mlgate", "lineage", "credit-risk/1", "--json"], repo).stdout)
    assert info["aliases"] == ["candidate", "production", "staging"]
    assert info["deployments"]["production"]["image"] == IMAGE
    assert "approved_by" not in info["deployments"]["production"]
