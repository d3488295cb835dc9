"""One bento built from the trained repo and one real `bentoml serve` for all serving tests."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, VENV_BIN, free_port, made_once, run, stop_group, tool_env

START_TIMEOUT = 90


def bentoml_env(home: Path, **extra: str) -> dict[str, str]:
    return {"BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true", **extra}


@dataclass
class Endpoint:
    """A served API at `url` (a `bentoml serve` here, or the image in a container)."""

    url: str

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


@dataclass
class Server(Endpoint):
    feedback: Path
    proc: subprocess.Popen[bytes]
    log: Path
    # what /livez and /readyz answered while the service was starting: (livez, readyz)
    startup: list[tuple[int, int]] = field(default_factory=list)

    def mapped_files(self, workers_only: bool = False) -> tuple[int, set[str]]:
        """(how many processes, the files mapped into them): `bentoml serve` and its workers,
        or its workers alone."""
        import psutil

        server = psutil.Process(self.proc.pid)
        workers = server.children(recursive=True)
        processes = workers if workers_only else [server, *workers]
        return len(processes), {m.path for p in processes for m in p.memory_maps()}


@pytest.fixture(scope="session")
def example_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding what the pipeline's validate, split and train stages write for the
    example (artifacts/data/{train,test}.parquet, artifacts/model/model.joblib, at params'
    paths), made in-process by the stages' own functions: the scorers' tests need the model
    and its data, not DVC or MLflow, and run in the fast tier (trained_repo takes a minute)."""
    import joblib

    from mlgate.config import load_params
    from mlgate.pipeline import data
    from mlgate.pipeline.stages import split, train

    folder = tmp_path_factory.mktemp("example-model")
    params = load_params(ROOT / "params.yaml")
    validated = folder / "validated.parquet"
    data.save(data.load(ROOT / params.data.raw, params), validated)  # validate
    train_split, test_split = split.split_frame(data.load(validated, params), params)
    for part, path in ((train_split, params.split.train), (test_split, params.split.test)):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        data.save(part, folder / path)
    model = train.fit(data.load(folder / params.split.train, params), params)
    (folder / params.train.model).parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / params.train.model)
    return folder


@pytest.fixture(scope="session")
def bento(trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """`mlgate build` of the registered candidate into a private BentoML home, as CI runs it.

    With serving.scorer: onnx, so the served tests run the ONNX Runtime path over HTTP (under
    `auto` the example's binary logistic regression takes the NumPy path: test_scorer.py).

    Built once per run and shared by every xdist worker (made_once): the served tests, the
    image test and the project-home test read it on whichever worker they run. Read-only:
    a test that builds or deletes bentos uses a home of its own (`home`)."""
    with made_once(tmp_path_factory, "bentoml-home") as (home, to_make):
        if to_make:
            (home / "tag").write_text(build_bento(trained_repo, home), encoding="utf-8")
    return (home / "tag").read_text(encoding="utf-8"), home


def build_bento(trained_repo: Path, home: Path) -> str:
    """The bento's tag, built into `home` (see `bento`)."""
    output = home / "github_output"
    with (trained_repo / "params.yaml").open(encoding="utf-8") as fh:
        params = yaml.safe_load(fh)
    params["serving"]["scorer"] = "onnx"
    params_file = home / "params-onnx.yaml"
    params_file.write_text(yaml.safe_dump(params), encoding="utf-8")
    proc = run(
        ["mlgate", "build", "--model", "candidate", "--params", str(params_file)],
        trained_repo,
        **bentoml_env(home, GITHUB_OUTPUT=str(output)),
    )
    assert "build: scorer onnx: ONNX Runtime (max |Δ|" in proc.stdout
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
    return tag


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BentoML home for one test module's own builds (champion/challenger bentos)."""
    return tmp_path_factory.mktemp("bentoml-home")


@contextmanager
def serving(
    tag: str,
    home: Path,
    cwd: Path,
    tmp_path_factory: pytest.TempPathFactory,
    **extra_env: str,
) -> Iterator[Server]:
    """`bentoml serve TAG` on a free port of 127.0.0.1, once ready; stopped on exit."""
    feedback = tmp_path_factory.mktemp("feedback")
    log = tmp_path_factory.mktemp("server-log") / "serve.log"
    port = free_port()
    # The workers stay not ready while this file exists: the test sees the 503, then lets go.
    hold = log.parent / "hold-readiness"
    hold.touch()
    env = tool_env(
        **bentoml_env(
            home, MLGATE_FEEDBACK_DIR=str(feedback), MLGATE_READY_HOLD_FILE=str(hold), **extra_env
        )
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "bentoml"), "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
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
            if (live, ready) == (200, 503):
                hold.unlink(missing_ok=True)
            if ready == 200:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"bentoml serve did not become ready:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)
        yield srv
    finally:
        stop_group(proc)


@pytest.fixture(scope="session")
def server(
    bento: tuple[str, Path], trained_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    tag, home = bento
    with serving(tag, home, trained_repo, tmp_path_factory) as srv:
        yield srv


@contextmanager
def version_two_served(
    trained_repo: Path,
    home: Path,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    params_update: dict[str, dict[str, Any]],
    files: dict[str, str] | None = None,
) -> Iterator[tuple[Path, str, Server]]:
    """A copy of the trained repo with FILES written and params sections updated, whose
    version 2 (gates relaxed: a test model, not a candidate) is trained by `dvc repro`,
    registered, built and served: (the repo, what the build printed on stdout and stderr,
    the server)."""
    import shutil

    repo = tmp_path_factory.mktemp(name) / "repo"
    shutil.copytree(trained_repo, repo, symlinks=True)
    for path, text in (files or {}).items():
        (repo / path).write_text(text)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for section, values in params_update.items():
        params[section].update(values)
    params["gate"].update(min_metrics={}, max_fairness_gap={}, champion=None)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the copy's own package first (the shared .venv has the checkout's installed)
    env = {"PYTHONPATH": str(repo / "src")}
    run(["dvc", "repro"], repo, **env)
    assert "credit-risk version 2" in run(["mlgate", "register"], repo, **env).stdout
    built = run(["mlgate", "build", "--model", "2"], repo, **bentoml_env(home), **env)
    tag = built.stdout.strip().rsplit("bento ", 1)[-1]
    with serving(tag, home, repo, tmp_path_factory) as srv:
        yield repo, built.stdout + built.stderr, srv


def built_bento(home: Path, printed: str) -> tuple[Path, dict[str, Any]]:
    """The folder of the bento `mlgate build` printed (", bento name:version") in the BentoML
    home, and its bento.yaml."""
    tag = re.search(r", bento (\S+)", printed)
    assert tag, printed
    name, _, ver = tag[1].partition(":")
    folder = home / "bentos" / name / ver
    return folder, yaml.safe_load((folder / "bento.yaml").read_text())
