"""`mlgate init` works from an installed wheel (not only from a checkout): the wheel ships
the template, and the project it makes records the release to update from."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run

pytestmark = pytest.mark.slow
TEMPLATE = "src/mlgate/template"


def test_init_from_the_installed_wheel(churn_csv: Path, tmp_path: Path) -> None:
    run(["uv", "build", "--wheel", "--out-dir", str(tmp_path / "dist")], ROOT)
    wheel = next((tmp_path / "dist").glob("mlgate-*.whl"))
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("mlgate/template/")}
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", TEMPLATE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    assert shipped == {t.removeprefix("src/") for t in tracked if t}

    venv = tmp_path / "venv"
    run(["uv", "venv", "-q", str(venv)], tmp_path)
    run(
        ["uv", "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(wheel)],
        tmp_path,
    )
    project = tmp_path / "churn-model"
    # --mlgate-path: the test is offline; a real user's project installs the release tag
    run(
        [
            str(venv / "bin" / "mlgate"),
            "init",
            str(project),
            "--no-input",
            "--data",
            str(churn_csv),
            "--target",
            "churned",
            "--mlgate-path",
            str(ROOT),
        ],
        tmp_path,
    )
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_src_path"] == "https://github.com/OWNER/mlgate.git"
    assert answers["_commit"] == answers["mlgate_ref"] == "v0.1.0"
    assert "class LabelledRecord" in (project / "src/churn_model/schema.py").read_text()
    assert run(["git", "status", "--porcelain"], project).stdout == ""
