"""The trial's fetch replaces only a folder it made: `--feedback-dir .` once deleted the project."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlgate.errors import MlgateError
from mlgate.release.trial import FETCHED, fetch


def test_fetch_replaces_its_own_folder_and_refuses_any_other(tmp_path: Path) -> None:
    sink = tmp_path / "sink"
    sink.mkdir()
    (sink / "predictions-1.jsonl").write_text('{"a": 1}\n')
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "params.yaml").write_text("mine\n")

    with pytest.raises(MlgateError, match="exists and the trial did not make it"):
        fetch(str(sink), mine)
    assert (mine / "params.yaml").read_text() == "mine\n"

    folder = tmp_path / "trial-feedback"
    assert fetch(str(sink), folder) == ""
    assert sorted(p.name for p in folder.iterdir()) == [FETCHED, "predictions-1.jsonl"]
    (sink / "predictions-2.jsonl").write_text('{"a": 2}\n')
    assert fetch(str(sink), folder) == ""  # its own folder: replaced by the newer copy
    assert sorted(p.name for p in folder.iterdir()) == [
        FETCHED,
        "predictions-1.jsonl",
        "predictions-2.jsonl",
    ]
