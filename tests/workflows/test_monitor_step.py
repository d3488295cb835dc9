"""ml-monitor's drift step, run as the runner runs it (bash -eo pipefail) with a stand-in `uv`
that exits as `mlgate monitor` would: drift is a result (exit 1 -> drift=true, step passes),
an error fails the step, no traffic is a warning."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

WF = yaml.safe_load((ROOT / ".github/workflows/ml-monitor.yml").read_text())
STEPS = WF["jobs"]["monitor"]["steps"]
DRIFT = next(s for s in STEPS if s.get("id") == "monitor")


def run_step(tmp_path: Path, monitor_exit: int, traffic: bool = True) -> tuple[int, dict[str, str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    uv = bin_dir / "uv"  # `uv run --no-sync mlgate monitor …` -> writes the report, exits
    uv.write_text(
        "#!/bin/sh\nmkdir -p artifacts/monitor\n"
        "echo '# drift summary' > artifacts/monitor/summary.md\n"
        f"exit {monitor_exit}\n"
    )
    uv.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    if traffic:
        (work / "feedback").mkdir()
        (work / "feedback/predictions-1.jsonl").write_text("{}\n")
    out, summary = tmp_path / "output", tmp_path / "summary"
    out.touch()
    summary.touch()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(out),
        "GITHUB_STEP_SUMMARY": str(summary),
        "PARAMS": "params.yaml",
        "FEEDBACK_DIR": "feedback",
    }
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", DRIFT["run"]],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    return proc.returncode, outputs


@pytest.mark.parametrize(
    ("code", "step_exit", "drift", "outcome"),
    [(0, 0, "false", "no-drift"), (1, 0, "true", "drift"), (2, 2, None, None)],
)
def test_drift_is_a_result_and_an_error_fails_the_step(
    tmp_path: Path, code: int, step_exit: int, drift: str | None, outcome: str | None
) -> None:
    got, outputs = run_step(tmp_path, code)
    assert got == step_exit
    assert outputs.get("drift") == drift and outputs.get("outcome") == outcome


def test_no_recorded_traffic_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    got, outputs = run_step(tmp_path, 2, traffic=False)
    assert got == 0
    assert outputs == {"drift": "false", "outcome": "no-traffic"}


def test_the_step_runs_mlgate_directly_and_the_report_is_always_kept() -> None:
    assert "make " not in DRIFT["run"]  # make turns the recipe's exit 1 into 2
    assert "mlgate monitor" in DRIFT["run"]
    upload = next(s for s in STEPS if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"
    # one issue: the act scenario (tests/workflows/act/test_monitor.py) asserts its requests
    assert "drift == 'true'" in WF["jobs"]["issue"]["if"]
    assert "mlgate github drift-issue" in WF["jobs"]["issue"]["steps"][-1]["run"]
