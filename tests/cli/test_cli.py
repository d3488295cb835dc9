"""The CLI: helpful --help for every command, and readable errors without tracebacks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlgate.cli import build_parser, main
from tests.conftest import VENV_BIN, tool_env

ROOT = Path(__file__).resolve().parents[2]


def commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


@pytest.mark.parametrize("command", commands())
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mlgate {command}")
    assert len(out.splitlines()) > 3


def test_a_missing_params_file_is_one_line_on_stderr(tmp_path, capsys):
    code = main(["validate", "--params", str(tmp_path / "nope.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("mlgate validate: error: ")
    assert "not found" in err and "Traceback" not in err


def test_a_bad_reference_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(ROOT.joinpath("params.yaml").read_text())
    assert main(["lineage", "credit-risk"]) == 2
    assert "expected NAME@ALIAS or NAME/VERSION" in capsys.readouterr().err


def write_to_closed_pipe(cmd: list[str], cwd: Path) -> tuple[int, str]:
    """Run a command whose reader is gone before the first byte (`mlgate … | head`, where
    head has exited): every write hits a closed pipe. The exit code and stderr."""
    with subprocess.Popen(
        cmd, cwd=cwd, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout and proc.stderr
        proc.stdout.close()
        err = proc.stderr.read().decode()
        return proc.wait(timeout=120), err


@pytest.mark.parametrize("args", [["--help"], ["lineage", "--help"]])
def test_help_into_a_closed_pipe_ends_quietly(args, tmp_path):
    code, err = write_to_closed_pipe([str(VENV_BIN / "mlgate"), *args], tmp_path)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert code in (0, 141)  # argparse gives up writing help by itself


@pytest.mark.slow
def test_a_command_into_a_closed_pipe_ends_quietly(trained_repo):
    cmd = [str(VENV_BIN / "mlgate"), "lineage", "credit-risk@candidate"]
    code, err = write_to_closed_pipe(cmd, trained_repo)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert code == 141  # 128 + SIGPIPE, as `cat` ends when the reader goes away
