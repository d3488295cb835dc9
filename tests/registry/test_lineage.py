"""Lineage: the data hash DVC pins, and a dirty flag that ignores the pipeline's own outputs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlgate.registry import lineage

ROOT = Path(__file__).resolve().parents[2]


def test_the_data_hash_is_the_one_data_dvc_pins():
    assert lineage.data_hash(ROOT / "data.dvc").endswith(".dir")
    assert lineage.data_hash(ROOT / "missing.dvc") is None


def test_pipeline_outputs_come_from_dvc_yaml():
    outs = lineage.pipeline_outputs(ROOT / "dvc.yaml")
    assert {"dvc.lock", "artifacts/metrics.json", "artifacts/model/model.joblib"} <= outs
    assert "params.yaml" not in outs


@pytest.fixture
def git_repo(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    (tmp_path / "params.yaml").write_text("a: 1\n")
    (tmp_path / "dvc.lock").write_text("x\n")
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"],
    ):
        subprocess.run(cmd, cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_tree_whose_only_changes_are_pipeline_outputs_is_clean(git_repo):
    assert lineage.git_dirty() is False
    (git_repo / "dvc.lock").write_text("y\n")
    assert lineage.git_dirty() is False
    assert len(lineage.git_commit()) == 40


def test_a_changed_input_makes_the_tree_dirty(git_repo):
    (git_repo / "params.yaml").write_text("a: 2\n")
    assert lineage.git_dirty() is True
