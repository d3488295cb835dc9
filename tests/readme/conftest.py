"""A fresh clone of this repository after `make run`, on a PATH with no uv: what a new user
has after the README's first command. One per session, shared by the README tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, VENV_BIN


def plain_path() -> str:
    """The PATH of a machine that never installed uv: every folder holding a `uv` removed,
    and nothing of this checkout (its .venv, its .tools)."""
    keep = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        here = Path(folder).resolve() if folder else None
        if here is None or (here / "uv").exists() or here == VENV_BIN.resolve():
            continue
        if here.is_relative_to(ROOT.resolve()):
            continue
        keep.append(folder)
    path = os.pathsep.join(keep)
    assert shutil.which("uv", path=path) is None
    assert shutil.which("python3", path=path) and shutil.which("make", path=path)
    return path


@dataclass
class Clone:
    root: Path
    env: dict[str, str]
    make_run: subprocess.CompletedProcess[str]

    def sh(self, script: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run a README line as a user types it in bash, in the clone."""
        proc = subprocess.run(
            ["bash", "-c", script],
            cwd=self.root,
            env={**self.env, **extra},
            capture_output=True,
            text=True,
            timeout=900,
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"{script!r} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
                f"\n--- stderr\n{proc.stderr[-4000:]}"
            )
        return proc


@pytest.fixture(scope="session")
def fresh_clone(tmp_path_factory: pytest.TempPathFactory) -> Clone:
    """`git clone` of this repository's HEAD (what a new user gets; commit to test a change),
    then `make run` with a plain PATH. Session-wide: tests may change it only in the order
    of one test (test_readme runs the README top to bottom)."""
    base = tmp_path_factory.mktemp("fresh")
    root = base / "mlgate"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(root)], check=True, timeout=300)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "GITHUB_", "UV_", "VIRTUAL_ENV", "PYTHONPATH"))
    }
    env.update(PATH=plain_path(), BENTOML_HOME=str(base / "bentoml"), HOME=os.environ["HOME"])
    clone = Clone(root, env, subprocess.CompletedProcess([], 0))
    clone.make_run = clone.sh("make run")
    return clone
