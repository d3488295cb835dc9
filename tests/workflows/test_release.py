"""The release workflow publishes only what projects will pin: scripts/check_release.py (its
check step) run as the workflow runs it, on a real build of this repository."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run

with (ROOT / "pyproject.toml").open("rb") as _fh:
    PROJECT = tomllib.load(_fh)["project"]
VERSION = PROJECT["version"]
URL = PROJECT["urls"]["Repository"]
SCRIPT = [sys.executable, str(ROOT / "scripts/check_release.py")]


def check(*args: str, dist: Path | None = None) -> tuple[int, str, str]:
    cmd = [*SCRIPT, "--root", str(ROOT), *args]
    if dist is not None:
        cmd += ["--dist", str(dist)]
    proc = run(cmd, ROOT, check=False)
    return proc.returncode, proc.stdout.strip(), proc.stderr


def pushed(tag: str, url: str = URL) -> list[str]:
    return ["--event", "push", "--ref", f"refs/tags/{tag}", "--ref-name", tag,
            "--repository-url", url]  # fmt: skip


def test_the_tag_must_be_the_version_and_the_repository_this_one() -> None:
    assert check(*pushed(f"v{VERSION}")) == (0, f"v{VERSION}", "")
    code, _, err = check(*pushed("v9.9.9"))
    assert code == 1 and f"tag v9.9.9 is not v{VERSION}, pyproject.toml's version" in err
    code, _, err = check(*pushed(f"v{VERSION}", "https://github.com/someone/fork"))
    assert code == 1 and f"Repository is {URL}, but this release is made in" in err


def test_a_manual_release_tags_main_only() -> None:
    manual = ["--event", "workflow_dispatch", "--version", VERSION, "--repository-url", URL]
    main = ["--ref", "refs/heads/main", "--ref-name", "main"]
    assert check(*manual, *main)[:2] == (0, f"v{VERSION}")
    code, _, err = check(*manual, "--ref", "refs/heads/feature", "--ref-name", "feature")
    assert code == 1 and "a release is made from main, not refs/heads/feature" in err


def test_the_workflow_runs_the_check_before_publishing() -> None:
    wf = yaml.safe_load((ROOT / ".github/workflows/release.yml").read_text())
    build, publish = wf["jobs"]["build"], wf["jobs"]["publish"]
    assert publish["needs"] == "build"
    runs = [s.get("run", "") for s in build["steps"]]
    checks = [i for i, r in enumerate(runs) if "scripts/check_release.py" in r]
    built = next(i for i, r in enumerate(runs) if r.startswith("uv build"))
    assert checks[0] < built < checks[1] and "--dist dist" in runs[checks[1]]
    assert build["permissions"] == {"contents": "read"}
    assert publish["permissions"] == {"contents": "write"}


@pytest.mark.slow
def test_the_built_files_are_the_ones_projects_pin(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(["uv", "build", "--quiet", "--out-dir", str(dist)], ROOT)
    assert check(*pushed(f"v{VERSION}"), dist=dist)[:2] == (0, f"v{VERSION}")
    (dist / "mlgate-0.0.1-py3-none-any.whl").write_bytes(b"")  # a stray file: refused
    code, _, err = check(*pushed(f"v{VERSION}"), dist=dist)
    assert code == 1 and "mlgate-0.0.1-py3-none-any.whl" in err
