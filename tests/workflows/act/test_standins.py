"""The stand-ins cover exactly the pinned actions: a bumped pin stops the harness loudly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.workflows.act.road import STANDIN_FOR, HarnessError, local_repository_args


def test_every_pinned_action_has_a_stand_in() -> None:
    args = local_repository_args(ROOT)
    mapped = {a.split("=", 1)[0] for a in args[1::2]}
    assert mapped == set(STANDIN_FOR), "a stand-in no workflow uses anymore: remove it"


def test_a_bumped_pin_without_its_stand_in_fails_before_act_runs(tmp_path: Path) -> None:
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    ci = tmp_path / ".github/workflows/ml-ci.yml"
    old = next(pin for pin in STANDIN_FOR if pin.startswith("actions/checkout@"))
    assert old in ci.read_text()
    ci.write_text(ci.read_text().replace(old, "actions/checkout@" + "0" * 40))
    with pytest.raises(HarnessError, match=r"actions/checkout@0{40} is pinned .* no stand-in"):
        local_repository_args(tmp_path)


def kubectl_standin(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(__file__).parent / "standins/docker.py"
    return subprocess.run(
        [sys.executable, str(script), "kubectl", *args],
        env={**os.environ, "MLGATE_ACT_DOCKER": str(tmp_path)},
        capture_output=True,
        text=True,
    )


def test_kubectl_standin_answers_the_namespace_check_as_kubectl_does(tmp_path: Path) -> None:
    # `mlgate deploy` (target kubernetes) asks for the namespace before applying anything
    found = kubectl_standin(tmp_path, "get", "namespace", "ml-production", "-o", "name")
    assert (found.returncode, found.stdout) == (0, "namespace/ml-production\n")
    missing = kubectl_standin(tmp_path, "get", "namespace", "ml-nowhere", "-o", "name")
    assert missing.returncode == 1
    assert 'namespaces "ml-nowhere" not found' in missing.stderr
