"""`mlgate serve` without --bento serves the project's newest bento: the store's `latest`
pointer read from disk (no bentoml import on the way to the server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlgate.config import load_params
from mlgate.serving.build import latest_bento

ROOT = Path(__file__).resolve().parents[2]


def test_the_pointer_names_the_bento(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = load_params(ROOT / "params.yaml")
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    bentos = tmp_path / "bentos" / params.model_name
    for version in ("older", "newer"):
        (bentos / version).mkdir(parents=True)
        (bentos / version / "bento.yaml").write_text(f"version: {version}\n")
    (bentos / "latest").write_text("newer\n")
    monkeypatch.delitem(sys.modules, "bentoml", raising=False)
    assert latest_bento(params) == f"{params.model_name}:newer"
    assert "bentoml" not in sys.modules  # answered from the file alone


def test_a_stale_pointer_asks_bentomls_store(tmp_path: Path) -> None:
    """A pointer to a deleted bento is not trusted: BentoML's store answers (here: none).
    In a process of its own: BentoML reads BENTOML_HOME once, at import."""
    params = load_params(ROOT / "params.yaml")
    bentos = tmp_path / "bentos" / params.model_name
    bentos.mkdir(parents=True)
    (bentos / "latest").write_text("deleted\n")
    code = (
        "from mlgate.config import load_params; from mlgate.serving.build import latest_bento; "
        f"latest_bento(load_params({str(ROOT / 'params.yaml')!r}))"
    )
    env = {**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "true"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert f"no bento of {params.model_name} yet: run `mlgate build` first" in out.stderr
