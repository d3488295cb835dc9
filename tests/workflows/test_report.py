"""Parity: the PR workflow's own commands, run in a fresh clone, produce the right report.

Two commits in a temporary repository: `main` (the committed base results) and a PR branch
with different params (weaker regularisation, stricter ROC AUC gate). The `run:` scripts of
ml-ci.yml's pipeline and report jobs are executed as written, with the files a runner sets
(GITHUB_STEP_SUMMARY, GITHUB_OUTPUT), against a real MLflow store that holds a production
model, and the comment step against the local fake GitHub API.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, copy_repo, run, tool_env
from tests.workflows.fake_github import FakeGitHub, serve

pytestmark = pytest.mark.slow

REPO = "acme/credit-model"


@dataclass
class PipelineRun:
    clone: Path
    codes: dict[str, int]  # step name -> exit code
    summary: str
    outputs: str
    report: str
    fake: FakeGitHub
    tracking_uri: str


def ci_steps() -> list[dict[str, Any]]:
    jobs = yaml.safe_load((ROOT / ".github/workflows/ml-ci.yml").read_text())["jobs"]
    return [s for job in ("pipeline", "report") for s in jobs[job]["steps"] if "run" in s]


def git(repo: Path, *args: str) -> str:
    return run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], repo).stdout.strip()


@pytest.fixture(scope="module")
def pr_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipelineRun]:
    origin = copy_repo(tmp_path_factory.mktemp("origin"))
    git(origin, "checkout", "-q", "-b", "pr")
    params = origin / "params.yaml"
    text = params.read_text()
    assert "    C: 1.0\n" in text and "    roc_auc: 0.70\n" in text
    # a ROC AUC gate above the whole interval of the model's ROC AUC: a sure failure
    params.write_text(
        text.replace("    C: 1.0\n", "    C: 0.05\n").replace(
            "    roc_auc: 0.70\n", "    roc_auc: 0.85\n"
        )
    )
    git(origin, "commit", "-qam", "PR: weaker regularisation, stricter ROC AUC gate")
    git(origin, "checkout", "-q", "main")

    clone = tmp_path_factory.mktemp("clone") / "repo"
    run(["git", "clone", "-q", str(origin), str(clone)], origin.parent)
    run(["dvc", "pull", "--quiet", "data.dvc"], clone)
    # The production model: main's pipeline, registered and promoted in a real MLflow store.
    uri = f"sqlite:///{clone / 'mlflow.db'}"
    run(["dvc", "repro"], clone, MLFLOW_TRACKING_URI=uri)
    outputs = clone.parent / "register-output"
    run(
        ["mlgate", "release", "register"],
        clone,
        MLFLOW_TRACKING_URI=uri,
        GITHUB_OUTPUT=str(outputs),
    )
    assert outputs.read_text().splitlines() == ["version=1", "shared_registry=true"]
    run(["mlgate", "promote", "1", "--to", "staging"], clone, MLFLOW_TRACKING_URI=uri)
    run(["mlgate", "promote", "1", "--to", "production"], clone, MLFLOW_TRACKING_URI=uri)
    # As on a runner with a tracking server: the store knows the run main's run record names.
    run(["git", "checkout", "-q", "pr"], clone)

    fake = FakeGitHub(repo=REPO)
    server, api = serve(fake)
    runner = clone.parent / "runner"
    runner.mkdir()
    summary, outputs = runner / "summary.md", runner / "output"
    summary.touch()
    outputs.touch()
    values = {  # what the runner puts in each step's `env:`
        "BASE_REF": "main",
        "PARAMS": "params.yaml",
        "PLOTS_URL": "https://github.com/acme/credit-model/actions/runs/1#artifacts",
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_TRACKING_TOKEN": "",
        "MLFLOW_TRACKING_USERNAME": "",
        "MLFLOW_TRACKING_PASSWORD": "",
        "GITHUB_TOKEN": "test-token",
        "PR_NUMBER": "12",
        "PIPELINE": "failure",  # the gate stage failed the pipeline job
    }
    env = tool_env(
        GITHUB_STEP_SUMMARY=str(summary),
        GITHUB_OUTPUT=str(outputs),
        GITHUB_API_URL=api,
        GITHUB_REPOSITORY=REPO,
        UV_PROJECT_ENVIRONMENT=str(ROOT / ".venv"),  # `uv run --no-sync` = the synced env
    )
    codes = {}
    for step in ci_steps():
        step_env = dict(env)
        for key in step.get("env", {}):
            assert key in values, f"parity test does not know how a runner sets {key}"
            step_env[key] = values[key]
        proc = subprocess.run(
            ["bash", "-e", "-c", step["run"]],
            cwd=clone,
            env=step_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        codes[step["name"]] = proc.returncode
        codes[step["name"] + " output"] = proc.stdout + proc.stderr  # type: ignore[assignment]
    yield PipelineRun(
        clone,
        codes,
        summary.read_text(),
        outputs.read_text(),
        (clone / "report.md").read_text(),
        fake,
        uri,
    )
    server.shutdown()
    server.server_close()


def step(r: PipelineRun, prefix: str) -> int:
    name = next(n for n in r.codes if n.startswith(prefix) and not n.endswith(" output"))
    return r.codes[name]


def test_the_gate_fails_the_pipeline_step_and_the_report_still_runs(pr_run: PipelineRun) -> None:
    repro = next(n for n in pr_run.codes if n.startswith("mlgate repro") and n.endswith(" output"))
    assert step(pr_run, "mlgate repro") != 0
    assert "gate: FAILED (roc_auc)" in str(pr_run.codes[repro])
    # the store knows main's training run: only the changed stages ran, no forced retrain
    assert "retraining here" not in str(pr_run.codes[repro])
    assert "Stage 'split' didn't change, skipping" in str(pr_run.codes[repro])
    for prefix in ("dvc plots diff", "mlgate report", "Update the PR comment"):
        assert step(pr_run, prefix) == 0, pr_run.codes
    assert (pr_run.clone / "dvc_plots/index.html").exists()


def test_report_is_the_job_summary_and_sets_outputs(pr_run: PipelineRun) -> None:
    assert pr_run.summary == pr_run.report
    assert "passed=false" in pr_run.outputs.splitlines()
    assert "report=report.md" in pr_run.outputs.splitlines()


def test_report_shows_the_right_deltas_and_verdicts(pr_run: PipelineRun) -> None:
    clone, report = pr_run.clone, pr_run.report
    pr = json.loads((clone / "artifacts/metrics.json").read_text())
    base = json.loads(run(["git", "show", "origin/main:artifacts/metrics.json"], clone).stdout)
    assert pr != base
    assert "**❌ gate FAILED: roc_auc**" in report
    mine = json.loads((clone / "artifacts/intervals.json").read_text())["metrics"]
    shown = run(["git", "show", "origin/main:artifacts/intervals.json"], clone).stdout
    theirs = json.loads(shown)["metrics"]
    for metric in ("roc_auc", "accuracy", "brier"):
        # Δ vs base: both sides' intervals added in quadrature (unpaired), then in words
        d = pr[metric] - base[metric]
        half = (
            (mine[metric][1] - mine[metric][0]) ** 2 + (theirs[metric][1] - theirs[metric][0]) ** 2
        ) ** 0.5 / 2
        lo, hi = round(d - half, 4), round(d + half, 4)
        word = "no detectable change"
        if not lo <= 0 <= hi:
            word = "better" if (lo > 0) != (metric == "brier") else "worse"
        row = (
            f"| {metric} | {pr[metric]:.4f} [{mine[metric][0]:.4f}, {mine[metric][1]:.4f}] "
            f"| {base[metric]:.4f} [{theirs[metric][0]:.4f}, {theirs[metric][1]:.4f}] "
            f"| {d:+.4f} [{lo:+.4f}, {hi:+.4f}] {word} "
            # production is main's model: its gate logged the same intervals to its run
            f"| {base[metric]:.4f} [{theirs[metric][0]:.4f}, {theirs[metric][1]:.4f}] |"
        )
        assert row in report, (row, report)
    gate = json.loads((clone / "artifacts/gate.json").read_text())
    # Δ vs production on the champion metric: the gate's paired interval
    paired = gate["champion"]["difference_interval"]
    d = pr["roc_auc"] - gate["champion"]["roc_auc"]
    assert f"| {d:+.4f} [{paired[0]:+.4f}, {paired[1]:+.4f}] " in report
    roc = next(c for c in gate["checks"] if c["name"] == "roc_auc")
    lo, hi = roc["interval"]
    assert roc["verdict"] == "fail" and hi < 0.85
    value = f"{roc['value']:.4f} [{lo:.4f}, {hi:.4f}]"
    assert f"| `roc_auc` | quality | {value} | >= 0.85 | ❌ fail |" in report
    acc = next(c for c in gate["checks"] if c["name"] == "accuracy")
    assert acc["passed"]
    mark = "⚠️ uncertain, passes" if acc["verdict"] == "uncertain" else "✅ pass"
    assert f"| `accuracy` | quality | {acc['value']:.4f} [" in report and mark in report
    assert "production is version 1" in report  # the champion gate compared with production


def test_report_diffs_params_and_compares_with_production(pr_run: PipelineRun) -> None:
    report = pr_run.report
    assert "| `train.hyperparameters.C` | 1.0 | 0.05 |" in report
    assert "| `gate.min_metrics.roc_auc` | 0.7 | 0.85 |" in report
    assert "`features" not in report  # unchanged params are not listed
    assert "| metric | this PR | base (origin/main) | Δ vs base | production (v1) |" in report


def test_report_has_fairness_data_and_inline_charts(pr_run: PipelineRun) -> None:
    report = pr_run.report
    assert "**sex** — demographic_parity_difference" in report
    assert "| female |" in report and "| 50+ |" in report
    assert "- rows: 1000 (base: 1000)" in report and "- schema: unchanged" in report
    assert report.count("xychart-beta") == 2
    assert "the `ml-report` artifact of [this run](https://github.com/acme/" in report


def test_report_is_posted_as_one_comment(pr_run: PipelineRun) -> None:
    (comment,) = pr_run.fake.comments[12]
    assert comment["body"].startswith("<!-- mlgate-report -->\n## mlgate report")


def test_without_a_tracking_server_production_is_skipped_and_said(
    pr_run: PipelineRun, tmp_path: Path
) -> None:
    out = tmp_path / "report.md"
    proc = run(
        ["mlgate", "report", "--base", "origin/main", "--output", str(out)],
        pr_run.clone,
    )
    assert "gate passed: false" in proc.stdout
    text = out.read_text()
    assert "> production: skipped: no MLFLOW_TRACKING_URI" in text
    assert "| production | Δ vs production |" in text


def test_promote_keeps_the_image_digest_in_the_registry(pr_run: PipelineRun) -> None:
    image = "ghcr.io/acme/credit-model@sha256:" + "b" * 64
    argv = ["mlgate", "release", "promote", "--version", "1", "--to", "production"]
    proc = run([*argv, "--image", image], pr_run.clone, MLFLOW_TRACKING_URI=pr_run.tracking_uri)
    assert "production is already credit-risk version 1; nothing to do" in proc.stdout
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=pr_run.tracking_uri, registry_uri=pr_run.tracking_uri)
    assert client.get_model_version("credit-risk", "1").tags["mlgate.image"] == image


def test_mlgate_repro_detects_a_run_record_from_another_machine(
    pr_run: PipelineRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What makes `mlgate repro` retrain on a runner whose store never saw the committed run."""
    from mlgate.config import load_params
    from mlgate.pipeline.repro import run_in_store

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    record = tmp_path / "artifacts/model/run.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"run_id": "0" * 32, "model_uri": "models:/m-x"}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", pr_run.tracking_uri)
    params = load_params(tmp_path / "params.yaml")
    assert run_in_store(params) == ("0" * 32, False)
    known = json.loads((pr_run.clone / "artifacts/model/run.json").read_text())["run_id"]
    record.write_text(json.dumps({"run_id": known, "model_uri": "models:/m-x"}))
    assert run_in_store(params) == (known, True)
    record.unlink()
    assert run_in_store(params) == (None, True)  # nothing committed: a plain dvc repro


def test_a_pipeline_that_failed_before_the_gate_is_not_reported_as_passing(
    tmp_path: Path,
) -> None:
    """The checkout holds the committed, passing gate.json: a failed pipeline must not use it."""
    out, outputs = tmp_path / "report.md", tmp_path / "output"
    proc = run(
        ["mlgate", "report", "--output", str(out), "--pipeline", "failure"],
        ROOT,
        GITHUB_OUTPUT=str(outputs),
    )
    assert "gate passed: false" in proc.stdout
    assert "passed=false" in outputs.read_text().splitlines()
    text = out.read_text()
    assert "❌ the pipeline failed before the gate" in text and "gate passed" not in text
