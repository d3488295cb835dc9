"""The Kubernetes manifests `mlgate deploy` applies, validated against Kubernetes' own schemas
(kubernetes-validate, offline, --strict: an unknown field is an error) for both environments
and the oldest and newest Kubernetes versions mlgate supports (docs/WORKFLOWS.md)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlgate.config import load_params
from mlgate.release.config import deploy_config
from mlgate.release.targets import render_manifests
from tests.conftest import ROOT, VENV_BIN

SUPPORTED = ("1.29.0", "1.37.0")  # oldest, newest: docs/WORKFLOWS.md#deployment-targets
DIGEST = "ghcr.io/acme/credit-risk@sha256:" + "ab" * 32


def validate(manifests: str, version: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"manifests-{version}.yaml"
    path.write_text(manifests, encoding="utf-8")
    cmd = [str(VENV_BIN / "kubernetes-validate"), "--strict", "-k", version, str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def deploy(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(ROOT)  # deploy.kubernetes.manifests is relative to the repository
    return deploy_config(load_params(ROOT / "params.yaml").deploy)


@pytest.mark.parametrize("version", SUPPORTED)
@pytest.mark.parametrize("env", ["staging", "production"])
def test_rendered_manifests_are_valid_kubernetes(
    deploy: Any, env: str, version: str, tmp_path: Path
) -> None:
    manifests = render_manifests(env, DIGEST, deploy, "credit-risk")
    proc = validate(manifests, version, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # every document was checked against a schema (none skipped as an unknown kind)
    kinds = sorted(d["kind"].lower() for d in yaml.safe_load_all(manifests))
    passed = sorted(
        re.findall(
            rf"passed for resource (\w+)/credit-risk against version {version[:-2]}$",
            proc.stdout,
            re.M,
        )
    )
    assert passed == kinds == ["deployment", "horizontalpodautoscaler", "service"], proc.stdout


def test_a_misspelt_field_fails_validation(deploy: Any, tmp_path: Path) -> None:
    manifests = render_manifests("staging", DIGEST, deploy, "credit-risk")
    broken = manifests.replace("readinessProbe:", "readynessProbe:", 1)
    assert broken != manifests
    proc = validate(broken, SUPPORTED[-1], tmp_path)
    assert proc.returncode == 1 and "readynessProbe" in proc.stdout + proc.stderr, proc.stdout
