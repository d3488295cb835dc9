"""Scenario 4: two rollbacks in a row, run by act through rollback.yml -> ml-rollback.yml.

Production history is made with the commands the cd jobs run (register, image, promote,
record-deployment) on the host against the same MLflow server, Docker daemon, registry and fake
GitHub: versions A, B, C, each its own image, promoted in that order. After each rollback, the
container production runs (pulled by digest), the registry's :production tag and the
`production` alias must name the same model version.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import VENV_BIN, run
from tests.workflows.act.road import UV_DIR, Repo, Road
from tests.workflows.act.test_delivery import MODEL, alias, approval
from tests.workflows.fake_github import FakeGitHub

pytestmark = pytest.mark.usefixtures("docker_road")

HISTORY_TOKEN = "ghs_history"


def outputs(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    path.write_text("")
    return dict(line.split("=", 1) for line in lines if "=" in line)


def dispatch_event(repo: Repo, reason: str) -> dict:
    owner, name = repo.name.split("/")
    return {
        "inputs": {"reason": reason},
        "ref": "refs/heads/main",
        "repository": {"full_name": repo.name, "name": name, "owner": {"login": owner}},
    }


@pytest.fixture
def production_history(
    road: Road, github: FakeGitHub, credit_repo: Repo, tmp_path: Path
) -> dict[str, str]:
    """Three versions promoted to production one after another; returns image -> version."""
    # the cd jobs' grant, for the commands run here on the host in their place
    github.tokens[HISTORY_TOKEN] = {"contents": "read", "deployments": "write", "actions": "read"}
    out = tmp_path / "github_output"
    out.touch()
    env = {
        "PATH": os.pathsep.join(
            [*road.path_head(), str(VENV_BIN), str(UV_DIR), os.environ["PATH"]]
        ),
        "UV_OFFLINE": "1",  # bentoml locks the bento's requirements with uv, from its cache
        "MLFLOW_TRACKING_URI": road.mlflow_url,
        **road.docker_env(),
        "BENTOML_HOME": str(road.home / "bentoml"),
        "GITHUB_API_URL": road.github_url,
        "GITHUB_TOKEN": HISTORY_TOKEN,
        "GITHUB_REPOSITORY": credit_repo.name,
        "GITHUB_SHA": credit_repo.sha,
        "GITHUB_OUTPUT": str(out),
    }
    repo = credit_repo.path
    run(["dvc", "pull", "--quiet", "data.dvc"], repo, **env)
    run(["dvc", "repro", "--force"], repo, **env)
    run(["mlgate", "release", "register"], repo, **env)
    first = outputs(out)["version"]
    client = MlflowClient(tracking_uri=road.mlflow_url, registry_uri=road.mlflow_url)
    v = client.get_model_version(MODEL, first)
    versions = [first] + [
        client.create_model_version(
            MODEL, v.source, v.run_id, tags=v.tags, model_id=v.source.removeprefix("models:/")
        ).version
        for _ in range(2)
    ]
    images = {}
    for version in versions:
        # deploy.image in params: the road's registry
        run(["mlgate", "release", "image", "--version", version, "--tag", f"v{version}"],
            repo, **env)  # fmt: skip
        image = outputs(out)["image"]
        images[image] = version
        for to in ("staging", "production"):
            run(["mlgate", "release", "promote", "--version", version, "--image", image,
                 "--to", to, "--note", "history"], repo, **env)  # fmt: skip
        run(["mlgate", "github", "record-deployment", "--env", "production", "--image", image,
             "--model-version", version], repo, **env)  # fmt: skip
    assert alias(road, "production") == versions[-1]
    return images


class ImageAndAliasDiverge(AssertionError):
    """Running image and alias name different versions (review finding M3, now fixed)."""


def test_two_rollbacks_leave_the_running_image_and_the_alias_on_one_version(
    road: Road, github: FakeGitHub, credit_repo: Repo, production_history: dict[str, str]
) -> None:
    """History A, B, C: the first rollback restores B; the second returns to C (the record
    before the current one: a rollback of a rollback, like reverting a revert). Each is
    approved, recorded with its approver, and leaves image and alias on one version."""
    _a, b, c = list(production_history)  # images, in the order they were promoted
    for attempt, expected in ((1, b), (2, c)):
        reason = f"rollback {attempt}"
        event = dispatch_event(credit_repo, reason)
        run_id = f"810{attempt}"
        github.approvals[run_id] = [approval("bob")]
        result = road.act(credit_repo, "workflow_dispatch", ".github/workflows/rollback.yml",
                          event, inputs={"reason": reason}, run_id=run_id)  # fmt: skip
        assert result.jobs.get("rollback") == "success", result.explain()
        assert github.refused == [], "every request within its job's permissions"
        repository, digest = expected.split("@")
        container = road.running(repository, "production")
        running = container["image"] if container else None
        assert running == expected, f"rollback {attempt} restored {running}, not {expected}"
        assert road.registry_tags(repository)["production"] == digest, ":production moved back"
        if alias(road, "production") != production_history[running]:
            raise ImageAndAliasDiverge(
                f"after rollback {attempt}: production runs version {production_history[running]}"
                f" ({running}) but alias production names {alias(road, 'production')}"
            )
        record = github.deployments[-1]
        assert record["environment"] == "production", record
        assert record["payload"]["image"] == expected, record
        assert record["payload"]["model_version"] == production_history[expected], record
        assert record["payload"]["approved_by"] == ["bob"], record
