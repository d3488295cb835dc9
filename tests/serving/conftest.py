"""One bento built from the trained repo and one real `bentoml serve` for all serving tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import VENV_BIN, free_port, run, tool_env

READY_DELAY = "2"  # seconds the service holds /readyz at 503 after start-up, to observe it
START_TIMEOUT = 90


def bentoml_env(home: Path, **extra: str) -> dict[str, str]:
    return {"BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true", **extra}


@dataclass
class Server:
    url: str
    feedback: Path
    proc: subprocess.Popen[bytes]
    log: Path
    # what /livez and /readyz answered while the service was starting: (livez, readyz)
    startup: list[tuple[int, int]] = field(default_factory=list)

    def call(self, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method="POST" if data is not None else "GET",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode()
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, text

    def status(self, path: str) -> int:
        try:
            return self.call(path)[0]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0


@pytest.fixture(scope="session")
def bento(trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """`mlgate build` of the registered candidate into a private BentoML home, as CI runs it."""
    home = tmp_path_factory.mktemp("bentoml-home")
    output = home / "github_output"
    proc = run(
        ["mlgate", "build", "--model", "candidate"],
        trained_repo,
        **bentoml_env(home, GITHUB_OUTPUT=str(output)),
    )
    tag = proc.stdout.strip().rsplit("bento ", 1)[-1]
    # the CD job reads the tag from the step output to run `bentoml containerize <tag>`
    assert output.read_text() == f"bento_tag={tag}\n"
    # A newer model of the same name in the shared store (another build): the bento must
    # keep serving its own model, not `latest`.
    decoy = (
        "import bentoml\n"
        "with bentoml.models.create('mlgate-model', metadata={'decoy': True}) as m:\n"
        "    pass\n"
    )
    run([str(VENV_BIN / "python"), "-c", decoy], trained_repo, **bentoml_env(home))
    return tag, home


@pytest.fixture(scope="session")
def server(
    bento: tuple[str, Path], trained_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    tag, home = bento
    feedback = tmp_path_factory.mktemp("feedback")
    log = tmp_path_factory.mktemp("server-log") / "serve.log"
    port = free_port()
    env = tool_env(
        **bentoml_env(
            home, MLGATE_FEEDBACK_DIR=str(feedback), MLGATE_READY_DELAY_SECONDS=READY_DELAY
        )
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "bentoml"), "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
            cwd=trained_repo,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so the whole process group (workers) can be stopped
        )
    srv = Server(f"http://127.0.0.1:{port}", feedback, proc, log)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            live, ready = srv.status("/livez"), srv.status("/readyz")
            srv.startup.append((live, ready))
            if ready == 200:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"bentoml serve did not become ready:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)
        yield srv
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started with start_new_session=True, its workers included."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
