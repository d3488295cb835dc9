"""The CLI: helpful --help for every command, and readable errors without tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlgate.cli import build_parser, main

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
