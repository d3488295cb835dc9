"""What `mlgate build` puts into the bento for its image: mlgate's version beside its source
(a bento carries no package metadata), and no compiler layer unless asked for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import mlgate
from mlgate.serving.build import build_context, model_packages, without_build_tools
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


def test_the_compiler_layer_is_dropped_and_every_other_command_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bentoml._internal.container.frontend.dockerfile import CONTAINER_METADATA

    compilers = CONTAINER_METADATA["debian"]["default_install_command"]
    bento_yaml = tmp_path / "bento.yaml"
    info = {
        "name": "m",
        "image": {"base_image": "python:3.11-slim", "commands": [compilers, "echo kept"]},
    }
    bento_yaml.write_text(yaml.safe_dump(info, sort_keys=False))
    without_build_tools(bento_yaml)
    assert yaml.safe_load(bento_yaml.read_text())["image"] == {
        "base_image": "python:3.11-slim",
        "commands": ["echo kept"],
    }
    # a BentoML that adds no such layer: said, and the bento left as it was
    before = bento_yaml.read_text()
    without_build_tools(bento_yaml)
    assert bento_yaml.read_text() == before
    assert "compiler layer was not found" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("estimator", "wanted"),
    [
        ("lightgbm.sklearn.LGBMClassifier", (["lightgbm"], ["libgomp1"])),
        # the import name is not the distribution's; xgboost-cpu carries its own libgomp
        ("xgboost.sklearn.XGBClassifier", (["xgboost-cpu"], [])),
        ("credit_risk.model.Own", ([], [])),  # the project's own package travels in src/
    ],
)
def test_the_image_gets_the_distribution_the_estimator_came_from(
    estimator: str, wanted: tuple[list[str], list[str]]
) -> None:
    assert model_packages(estimator, ROOT / "src") == wanted
