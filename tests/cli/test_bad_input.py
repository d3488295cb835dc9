"""Every mlgate command with bad input: a careful and a hostile user's arguments, paths, params
files, and a GitHub API that answers garbage. Each case must end with a one-line error and a
non-zero exit: no traceback, not the internal-error code a bug gets, and nothing written or
removed in the folder it ran in. Deadlines in the client keep drips and stalls short.

In process through `main(argv)` (one interpreter, every command): a case costs milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlgate.cli import build_parser, main
from mlgate.errors import EXIT_INTERNAL
from mlgate.release import github

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "ghcr.io/acme/credit-model@sha256:" + "a" * 64


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every command mlgate has, as its words (`github setup`), from the parser itself: a
    command added later is in the corpus without anyone adding it here."""

    def leaves(parser: argparse.ArgumentParser, words: str) -> Iterator[tuple[str, ...]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield words.strip(), parser
            return
        for name, child in subs[0].choices.items():
            yield from leaves(child, f"{words} {name}")

    return dict(leaves(build_parser(), ""))


# The arguments each command requires, valid in form, so the case is about the bad part.
REQUIRED = {
    "promote": ["1", "--to", "staging"],
    "lineage": ["credit-risk/1"],
    "github comment": ["--pr", "1", "--body-file", "body.md"],
    "github drift-issue": ["--title", "drift", "--body-file", "body.md"],
    "github pull-request": ["--head", "refresh", "--title", "t", "--body-file", "body.md"],
    "github record-deployment": ["--env", "staging", "--image", IMAGE, "--model-version", "3"],
    "github check-release": ["--env", "staging", "--image", IMAGE, "--sha", "b2"],
    "deploy": ["--env", "staging", "--image", IMAGE],
    "smoke": ["--url", "http://127.0.0.1:9"],
    "release promote": ["--to", "staging", "--version", "3"],
    "release image": ["--version", "3", "--tag", "abc"],
    "release trial": [
        *("--version", "4", "--image", IMAGE, "--trial-image", IMAGE),
        *("--champion-version", "3", "--champion-image", IMAGE),
    ],
    "init": ["new-project"],
    "outcomes import": ["outcomes.csv"],
    "predict": ["--input", "rows.csv", "--output", "scored"],
}
ALL = commands()
WITH_PARAMS = sorted(
    w for w, p in ALL.items() if any("--params" in a.option_strings for a in p._actions)
)
GITHUB = sorted(w for w in ALL if w.startswith("github "))


def bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


# --params files a user can get wrong (name -> content; a folder for "folder")
BAD_PARAMS: dict[str, bytes | None] = {
    "folder": None,
    "missing": b"",
    "empty": b"",
    "binary": bytes(range(256)) * 4,
    "list": b"- a\n- b\n",
    "scalar": b"just words\n",
    "invalid-yaml": b"data: [unclosed\n  raw: x: y\n",
    "alias-bomb": bomb().encode(),
    "deep": b"a: " + b"[" * 2_000 + b"]" * 2_000 + b"\n",  # past the recursion limit
    "wrong-shape": b"data: 5\nsplit: [1]\nproject: {name: ''}\n",
    "huge-value": b"project: {name: '" + b"x" * 200_000 + b"'}\n",
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder to run in, with a body file; no GitHub or MLflow from the environment."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "body.md").write_text("a report\n")
    monkeypatch.chdir(work)
    for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "MLFLOW_TRACKING_URI", "MLGATE_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITHUB_TOKEN", "test-token")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/credit-model")
    monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9")  # nothing listens on 9
    monkeypatch.setenv("GITHUB_SHA", "b2")
    return work


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def refused(argv: list[str], folder: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run `mlgate argv`; assert a one-line refusal and an untouched folder; return stderr."""
    before = snapshot(folder)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert code not in (0, None), f"exit 0 on bad input: {argv}\n{err}"
    assert code != EXIT_INTERNAL, f"a bug, not a refusal: {err}"
    assert err.strip(), "refused without saying why"
    assert len(err) < 2_000, f"unbounded message ({len(err):,} chars): {err[:300]}"
    assert snapshot(folder) == before, "the folder changed"
    return err


@pytest.mark.parametrize("case", sorted(BAD_PARAMS))
@pytest.mark.parametrize("command", WITH_PARAMS)
def test_bad_params_file(
    command: str, case: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = workdir / f"{case}.yaml"
    content = BAD_PARAMS[case]
    if content is None:
        params.mkdir()
    elif case != "missing":
        params.write_bytes(content)
    err = refused([*command.split(), *REQUIRED.get(command, []), "--params", str(params)],
                  workdir, capsys)  # fmt: skip
    assert f"{case}.yaml" in err  # the message names the file


UNWRITABLE = {
    "in-proc": "/proc/mlgate-test",
    "under-a-file": "body.md/out",
    "under-dev-null": "/dev/null/out",
    "a-folder": ".",
}


@pytest.mark.parametrize("variable", ["GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"])
@pytest.mark.parametrize("command", sorted(ALL))
def test_unwritable_github_files_are_refused_before_any_work(
    command: str,
    variable: str,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = ("in-proc", "under-a-file", "under-dev-null", "a-folder")[len(command) % 4]
    monkeypatch.setenv(variable, UNWRITABLE[case])
    err = refused([*command.split(), *REQUIRED.get(command, [])], workdir, capsys)
    assert f"${variable}" in err


@pytest.mark.parametrize("case", sorted(UNWRITABLE))
def test_report_output_that_cannot_be_written(
    case: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = workdir / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    err = refused(["report", "--params", str(params), "--output", UNWRITABLE[case]], workdir,
                  capsys)  # fmt: skip
    assert "--output" in err


D = "ghcr.io/acme/credit-model@sha256:"
BAD_VALUES = {
    "promote version with a space": ["promote", " 1", "--to", "staging"],
    "promote Arabic-Indic version": ["promote", "\u0661", "--to", "staging"],
    "promote superscript version": ["promote", "\u00b2", "--to", "staging"],
    "promote version 0": ["promote", "0", "--to", "staging"],
    "release promote version abc": ["release", "promote", "--to", "staging", "--version", "abc"],
    "release promote image by tag": [
        *("release", "promote", "--to", "staging", "--version", "3", "--image", "ghcr.io/a/b:1")
    ],
    "record image by tag": ["github", "record-deployment", "--env", "staging", "--image", "a:b"],
    "record short digest": [
        *("github", "record-deployment", "--env", "staging", "--image", D + "a" * 12)
    ],
    "record upper-case digest": [
        *("github", "record-deployment", "--env", "staging", "--image", D + "A" * 64)
    ],
    "record version abc": [
        *("github", "record-deployment", "--env", "staging", "--image", IMAGE),
        *("--model-version", "abc"),
    ],
    "check-release image by tag": ["github", "check-release", "--env", "staging", "--image", "x"],
    "predict explain 0": ["predict", "--input", "x.csv", "--output", "out", "--explain", "0"],
    "predict explain -2": ["predict", "--input", "x.csv", "--output", "out", "--explain", "-2"],
    "predict explain words": ["predict", "--input", "x.csv", "--output", "out", "--explain", "a"],
    "serve port 70000": ["serve", "--port", "70000"],
    "serve port -1": ["serve", "--port", "-1"],
    "serve port 0": ["serve", "--port", "0"],
    "serve port words": ["serve", "--port", "http"],
    "setup reviewer and no reviewers": [
        *("github", "setup", "--reviewer", "user:alice", "--no-reviewers")
    ],
    "setup empty branch": ["github", "setup", "--branch", ""],
    "setup blank branch": ["github", "setup", "--branch", "  "],
    "setup branch with ..": ["github", "setup", "--branch", "a..b"],
    "setup empty check": ["github", "setup", "--check", ""],
    "check-release empty branch": [
        *("github", "check-release", "--env", "staging", "--image", IMAGE, "--branch", "")
    ],
    "a long unknown command": ["x" * 100_000],
    "promote note of 100,000 characters": [
        "promote",
        "1",
        "--to",
        "staging",
        "--note",
        "n" * 100_000,
    ],
    "rollback note of 3,000 characters": ["rollback", "--note", "n" * 3_000],
    "release promote long note": [
        *("release", "promote", "--to", "staging", "--version", "3", "--note", "n" * 2_001)
    ],
    "comment body is a folder": ["github", "comment", "--pr", "1", "--body-file", "."],
    "comment body is missing": ["github", "comment", "--pr", "1", "--body-file", "nope.md"],
    "drift body is binary": ["github", "drift-issue", "--title", "t", "--body-file", "bin.md"],
    "pull-request body is a folder": [
        *("github", "pull-request", "--head", "h", "--title", "t", "--body-file", ".")
    ],
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_are_refused_where_they_enter(
    case: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "bin.md").write_bytes(b"\xff\xfe\x00binary")
    refused(BAD_VALUES[case], workdir, capsys)


# ---------------------------------------------------------------- a GitHub that answers garbage

DRIP_BYTES = 100_000


class Garbage(BaseHTTPRequestHandler):
    mode = "html"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def answer(self) -> None:
        mode = type(self).mode
        if mode == "stall":  # read the request, answer nothing until the client leaves
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with contextlib.suppress(OSError):
                self.connection.recv(1)
            return
        if mode == "not-http":
            self.wfile.write(b"SSH-2.0-OpenSSH\r\n\r\n")
            return
        status, body = {
            "html": (200, b"<html><body>Unicorn! This page is taking too long</body></html>"),
            "empty": (200, b""),
            "object": (200, b"{}"),
            "list": (200, b"[]"),
            "null": (200, b"null"),
            "error-500": (500, b"<html>Internal Server Error</html>"),
            "error-502-json": (502, b'{"message": "Server Error"}'),
            "error-list": (422, b"[1, 2]"),
            "pages": (200, json.dumps([{}] * 100).encode()),
            "drip": (200, b""),
        }[mode]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(DRIP_BYTES if mode == "drip" else len(body)))
        self.end_headers()
        if mode != "drip":
            self.wfile.write(body)
            return
        with contextlib.suppress(OSError):
            for _ in range(DRIP_BYTES):  # the client's deadline ends it, or a dropped socket
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.02)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer


@pytest.fixture(scope="module")
def garbage_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


MODES = [
    "html", "empty", "object", "list", "null", "error-500", "error-502-json", "error-list",
    "pages", "drip", "stall", "not-http",
]  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("command", GITHUB)
def test_github_answering_garbage(
    command: str,
    mode: str,
    garbage_server: str,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(Garbage, "mode", mode)
    monkeypatch.setenv("GITHUB_API_URL", garbage_server)
    # the client's own bounds, made short so a drip or a stall costs a second here
    monkeypatch.setattr(github, "REQUEST_DEADLINE", 0.5)
    monkeypatch.setattr(github, "SOCKET_TIMEOUT", 0.5)
    monkeypatch.setattr(github, "MAX_PAGES", 3)
    err = refused([*command.split(), *REQUIRED.get(command, [])], workdir, capsys)
    assert "GitHub API" in err or "github" in err.lower()


def test_unreachable_github_is_one_line(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port bound, not listening: the connection is refused
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("GITHUB_API_URL", f"http://127.0.0.1:{s.getsockname()[1]}")
        err = refused(["github", "previous-deployment"], workdir, capsys)
    assert "cannot reach the GitHub API" in err


def test_a_closed_stdout_is_not_a_traceback(tmp_path: Path) -> None:
    """A subprocess: the interpreter starts without fd 1 (`mlgate … >&-`)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from mlgate.cli import main; sys.exit(main())",
         "lineage", "--params", str(tmp_path / "none.yaml"), "x/1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        close_fds=True, pass_fds=(), timeout=120,
        preexec_fn=lambda: __import__("os").close(1),
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode not in (0, EXIT_INTERNAL), proc.stderr


@pytest.mark.parametrize("mode", MODES)
def test_a_smoke_test_of_a_service_answering_garbage_fails_in_one_message(
    mode: str, garbage_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlgate.config import Deploy
    from mlgate.errors import MlgateError
    from mlgate.release import smoke

    monkeypatch.setattr(Garbage, "mode", mode)
    monkeypatch.setattr(smoke, "CALL_DEADLINE", 0.5)
    cfg = Deploy(startup_seconds=1)
    with pytest.raises(MlgateError) as failed:
        smoke.smoke_test(garbage_server, [{"amount": 1}], cfg, field="row")
    assert garbage_server in str(failed.value)
    assert len(str(failed.value)) < 2_000


# ---------------------------------------------------------------- the boundary itself


def test_a_bug_is_one_line_exit_70_and_its_trace_on_request(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlgate.config

    def broken(*args: object) -> None:
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    monkeypatch.setattr(mlgate.config, "load_params", broken)
    assert main(["validate"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "internal error: TypeError" in err and "MLGATE_DEBUG=1" in err
    monkeypatch.setenv("MLGATE_DEBUG", "1")
    assert main(["validate"]) == EXIT_INTERNAL  # the same code, with the whole trace
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in broken" in err


def test_an_os_error_on_a_users_path_names_it(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlgate.config

    def unreadable(path: object = None) -> None:
        raise PermissionError(13, "Permission denied", "data/raw.csv")

    monkeypatch.setattr(mlgate.config, "load_params", unreadable)
    assert main(["validate"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "mlgate validate: error: Permission denied: 'data/raw.csv'"


FEEDBACK = {
    "binary": b"\xff\xfe\x00binary\n",
    "not-objects": b"[1, 2, 3]\n",
    "strings": b'"a"\n"b"\n',
    "predictions without inputs": b'{"kind": "prediction", "probability": 0.5}\n',
    "a score that is text": b'{"kind": "prediction", "inputs": {}, "probability": "high"}\n',
}


@pytest.mark.parametrize(
    ("command", "case"),
    [("monitor", case) for case in sorted(FEEDBACK)]
    # compare reads no inputs: such records only count toward its evidence, and too few give
    # its own verdict, collect (exit 3); not a refusal, so not in this corpus
    + [("compare", case) for case in ("binary", "not-objects", "strings")],
)
def test_feedback_that_is_not_the_services(
    command: str, case: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (workdir / "traffic").mkdir()
    (workdir / "traffic" / "a.jsonl").write_bytes(FEEDBACK[case])
    err = refused([command, "--feedback", "traffic"], workdir, capsys)
    assert "traffic" in err


def test_a_source_command_that_never_ends_is_ended_with_its_children(tmp_path: Path) -> None:
    """`data.source.command` past data.source.command_timeout: the shell and what it started
    are ended (a child holding the output pipe would keep the wait going), nothing is read."""
    from mlgate.errors import MlgateError
    from mlgate.loop import refresh

    pidfile = tmp_path / "child.pid"
    # two children of the shell: one holds the output pipe (killing the shell alone, the wait
    # for the output would last its 60 s), one does not and tells its pid (killing the shell
    # alone, it would run on)
    command = (
        f"sh -c 'echo $$ > {pidfile}; exec sleep 60' </dev/null >/dev/null 2>&1 & "
        "sleep 60 & sleep 60"
    )
    with pytest.raises(MlgateError, match=r"data\.source\.command_timeout"):
        refresh.run_command(command, tmp_path, timeout=1)
    stat = Path(f"/proc/{pidfile.read_text().strip()}/stat")

    def ended() -> bool:  # gone, or a zombie waiting for a reaper (a container's init may not)
        with contextlib.suppress(FileNotFoundError):
            return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
        return True

    for _ in range(100):  # SIGKILL is delivered asynchronously: let the kernel finish the exit
        if ended():
            break
        time.sleep(0.05)
    assert ended()
    assert refresh.run_command("echo fine", tmp_path, timeout=30) == (0, "fine\n")


def test_a_subprocess_past_its_deadline_is_one_line(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlgate.config

    def stalls(*args: object) -> None:
        subprocess.run(["sleep", "30"], timeout=0.2)

    monkeypatch.setattr(mlgate.config, "load_params", stalls)
    assert main(["validate"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "mlgate validate: error: `sleep 30` did not finish in 0.2 s"
    )


DAMAGED = {  # a pipeline output damaged or replaced, and the command that reads it
    "model is not a pickle": ("evaluate", "artifacts/model/model.joblib", b"\x00\xff\xfe\x01"),
    "model is a folder": ("evaluate", "artifacts/model/model.joblib", None),
    "metrics are HTML": ("report", "artifacts/metrics.json", b"<html>502</html>\n"),
    "metrics are a list": ("report", "artifacts/metrics.json", b"[1, 2]\n"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_pipeline_output_is_named(
    case: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command, output, content = DAMAGED[case]
    (workdir / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    path = workdir / output
    path.parent.mkdir(parents=True)
    path.mkdir() if content is None else path.write_bytes(content)
    argv = [command, *(["--output", "report.md"] if command == "report" else [])]
    assert output in refused(argv, workdir, capsys)


@pytest.mark.parametrize("mode", MODES)
def test_an_oidc_token_endpoint_answering_garbage_is_one_error(
    mode: str, garbage_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Kubernetes target's token exchange (deploy.kubernetes.oidc_audience)."""
    from mlgate.errors import MlgateError
    from mlgate.release import targets

    monkeypatch.setattr(Garbage, "mode", mode)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", f"{garbage_server}/token?v=1")
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token")
    monkeypatch.setattr(targets, "OIDC_TIMEOUT", 0.5)
    monkeypatch.setattr(targets, "OIDC_DEADLINE", 0.5)
    with pytest.raises(MlgateError, match="OIDC token request"):
        targets.oidc_token("sts.amazonaws.com")
