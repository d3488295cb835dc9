"""mlgate in a bento is source without package metadata: its version travels beside it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import mlgate
from mlgate.serving.build import build_context
from tests.conftest import ROOT


def test_mlgate_imports_with_its_version_where_it_has_no_package_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # build_context copies the project's src/, as `mlgate build` does
    context = build_context(tmp_path / "context")
    # -S: no site-packages, so no installed mlgate and no metadata, as in the image
    probe = "import importlib.metadata as m, mlgate\n"
    probe += "try:\n    m.version('mlgate'); print('metadata found')\n"
    probe += "except m.PackageNotFoundError:\n    print(mlgate.__version__)\n"
    proc = subprocess.run(
        [sys.executable, "-S", "-c", probe], cwd=context, capture_output=True, text=True
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, mlgate.__version__), proc.stderr
