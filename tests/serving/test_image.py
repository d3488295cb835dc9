"""The serving image as production runs it: `bentoml containerize` of the bento `mlgate build`
made, pushed to a registry on 127.0.0.1, pulled by digest and run with the Deployment's user,
capabilities and memory limit, a volume for the feedback; then scored over HTTP.

The Docker daemon and the registry are real (scripts/docker_local.py: the `docker` that
answers, else Debian's dockerd + containerd + docker-registry started for this session)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from mlgate.config import load_params
from mlgate.release.config import deploy_config
from mlgate.release.targets import render_manifests
from mlgate.serving.feedback import read_records
from tests.conftest import ROOT, VENV_BIN, free_port, run
from tests.serving.conftest import Endpoint, bentoml_env
from tests.serving.test_openapi_conformance import schemathesis_passes
from tests.serving.test_service import GOOD, served_test_split, with_

pytestmark = pytest.mark.slow

FEEDBACK_IN_IMAGE = "/home/bentoml/feedback"  # bentofile.yaml's MLGATE_FEEDBACK_DIR


@pytest.fixture(scope="session")
def docker(docker_daemon: dict[str, str]) -> dict[str, str]:
    """The test run's Docker daemon and registry (tests/conftest.py: shared with the act road,
    so the image's layers are built once): the environment a client needs."""
    env = dict(docker_daemon)
    # the client that comes with the daemon the script started, after this venv's tools
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", os.environ["PATH"])])
    return env


def pod_spec(repo: Path, image: str) -> dict[str, Any]:
    """The production Deployment's pod spec, rendered as `mlgate deploy` renders it."""
    params = load_params(repo / "params.yaml")
    rendered = render_manifests(
        "production", image, deploy_config(params.deploy), "m", repo / "deploy/k8s"
    )
    (deployment,) = (d for d in yaml.safe_load_all(rendered) if d["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (512Mi, 1Gi, 1G) in bytes, for `docker run --memory`."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return int(float(quantity.removesuffix(unit)) * factor)
    return int(quantity)


def wait_ready(endpoint: Endpoint, container: str, env: dict[str, str], seconds: float) -> None:
    """Until /readyz answers 200; fails with the container's log when it exits or never does."""
    deadline = time.monotonic() + seconds
    while endpoint.status("/readyz") != 200:
        state = docker_out(["inspect", "--format", "{{.State.Status}}", container], env)
        if state != "running" or time.monotonic() > deadline:
            logs = subprocess.run(
                ["docker", "logs", container], capture_output=True, text=True, env=env
            )
            pytest.fail(
                f"the container is {state}, /readyz never answered 200:\n"
                f"{(logs.stdout + logs.stderr)[-4000:]}"
            )
        time.sleep(0.2)


def docker_out(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> str:
    return run(["docker", *args], cwd, **env).stdout.strip()


def test_the_image_runs_as_the_pod_spec_and_serves_the_model(
    bento: tuple[str, Path],
    trained_repo: Path,
    docker: dict[str, str],
    tmp_path: Path,
) -> None:
    tag, home = bento
    host_network = docker.get("MLGATE_DOCKER_NETWORK") == "host"
    image = f"{docker['MLGATE_REGISTRY']}/mlgate-model:{tag.rsplit(':', 1)[-1]}"

    # Built by BentoML's own Dockerfile, pushed, and gone from the daemon: the run pulls it
    build_opts = ["--opt", "network=host"] if host_network else []
    run(
        ["bentoml", "containerize", tag, "--image-tag", image, *build_opts],
        trained_repo,
        **bentoml_env(home, DOCKER_BUILDKIT="0"),
        **docker,
    )
    # serving.build_tools: false (the default): no compiler layer, every package is a wheel
    layers = docker_out(["history", "--no-trunc", "--format", "{{.CreatedBy}}", image], docker)
    assert "build-essential" not in layers, layers
    docker_out(["push", "--quiet", image], docker)
    digest = docker_out(["inspect", "--format", "{{index .RepoDigests 0}}", image], docker)
    assert digest.startswith(f"{image.rsplit(':', 1)[0]}@sha256:"), digest
    docker_out(["rmi", image], docker)
    docker_out(["pull", "--quiet", digest], docker)

    pod = pod_spec(trained_repo, digest)
    (spec,) = pod["containers"]
    user = f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    assert spec["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert spec["securityContext"]["allowPrivilegeEscalation"] is False
    feedback = tmp_path / "feedback"
    feedback.mkdir()
    uid, gid = map(int, user.split(":"))
    os.chown(feedback, uid, gid)  # as a volume's fsGroup would: the service's user writes there
    port = free_port()
    network = (
        ["--network", "host", "-e", f"PORT={port}"]
        if host_network
        else ["-p", f"127.0.0.1:{port}:{spec['ports'][0]['containerPort']}"]
    )
    container = f"mlgate-image-test-{port}"
    started = time.monotonic()
    docker_out(
        [
            "run", "-d", "--name", container,
            "--user", user,
            "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            "--memory", str(memory_bytes(spec["resources"]["limits"]["memory"])),
            "-v", f"{feedback}:{FEEDBACK_IN_IMAGE}",
            *network,
            digest,
        ],
        docker,
    )  # fmt: skip
    try:
        served = Endpoint(f"http://127.0.0.1:{port}")
        wait_ready(served, container, docker, seconds=120)
        ready = time.monotonic() - started

        rows, expected, body = served_test_split(served, trained_repo)
        assert np.allclose([p["probability"] for p in body["predictions"]], expected, atol=1e-9)
        status, one = served.call("/predict", {"applicant": rows[0]})
        assert status == 200 and one["probability"] == pytest.approx(expected[0], abs=1e-9)

        status, answer = served.call("/predict", {"applicant": with_(age="thirty")})
        assert status == 400
        assert any(d["loc"] == ["applicant", "age"] for d in answer["detail"]), answer

        deadline = time.monotonic() + 60  # the sink flushes every few seconds
        while time.monotonic() < deadline:
            records = read_records(feedback)
            mine = [r for r in records if r.get("request_id") == one["request_id"]]
            errors = [r for r in records if r["kind"] == "error" and r["status"] == 400]
            if mine and errors:
                break
            time.sleep(0.5)
        assert len(mine) == 1 and mine[0]["inputs"] == rows[0], records[-3:]
        assert len([r for r in records if r.get("request_id") == body["request_id"]]) == len(rows)
        assert errors, records[-3:]
        assert served.call("/predict", {"applicant": GOOD})[0] == 200
        # the API the image serves is the one its document says (issue 23 item 5)
        schemathesis_passes(served.url, tmp_path)
        # reported, not asserted (docs/SERVING.md#the-image quotes them): `pytest -s`
        size = int(docker_out(["image", "inspect", "--format", "{{.Size}}", digest], docker))
        memory = docker_out(
            ["stats", "--no-stream", "--format", "{{.MemUsage}}", container], docker
        )
        print(f"\nimage {size / 1e6:.0f} MB, run to ready {ready:.1f} s, memory {memory}")
    finally:
        subprocess.run(
            ["docker", "stop", container], env={**os.environ, **docker}, capture_output=True
        )
    state = json.loads(docker_out(["inspect", "--format", "{{json .State}}", container], docker))
    docker_out(["rm", container], docker)
    assert (state["ExitCode"], state["OOMKilled"]) == (0, False), state
