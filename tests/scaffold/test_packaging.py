"""`mlgate init` works from an installed wheel (not only from a checkout): the wheel ships
the template, and the project it makes pins that release and records it to update from.
The wheel is served as a GitHub release asset by a local server (tests/scaffold/conftest.py)."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run

pytestmark = pytest.mark.slow
TEMPLATE = "src/mlgate/template"


def test_init_from_the_installed_wheel(
    churn_csv: Path, tmp_path: Path, server: tuple[str, Path]
) -> None:
    base, served = server
    tag = f"v{importlib.metadata.version('mlgate')}"
    assets = served / "acme" / "mlgate" / "releases" / "download" / tag
    run(["uv", "build", "--wheel", "--out-dir", str(assets)], ROOT)
    wheel = next(assets.glob("mlgate-*.whl"))
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
    # no --mlgate-path: the default, a release (only the host of its repository differs)
    url = f"{base}/acme/mlgate"
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
            "--mlgate-repo",
            url,
        ],
        tmp_path,
    )
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert (answers["_src_path"], answers["_commit"]) == (f"{url}.git", tag)
    lock = (project / "uv.lock").read_text()
    assert f'source = {{ url = "{url}/releases/download/{tag}/{wheel.name}" }}' in lock
    assert str(ROOT) not in lock and "{ path = " not in lock
    assert re.findall(r"editable = \"([^\"]*)\"", lock) == ["."]  # the project itself only
    assert "class LabelledRecord" in (project / "src/churn_model/schema.py").read_text()
    assert run(["git", "status", "--porcelain"], project).stdout == ""
