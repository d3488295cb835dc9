"""Scenario 5: the monitor, run by act through monitor.yml -> ml-monitor.yml (schedule).

Recorded traffic reaches the job as the repository secret MLGATE_FEEDBACK_URL (a folder here;
`dvc get-url` reads it as it reads s3://…): feedback records in the serving sink's format,
scored by the same Pipeline the job trains. Drift opens ONE `drift` issue and the next day's
run comments on it; no drift opens nothing; no traffic says so and still uploads the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlgate.config import load_params
from mlgate.pipeline import data
from mlgate.pipeline.model import positive_scores
from mlgate.pipeline.stages.split import split_frame
from mlgate.pipeline.stages.train import fit
from tests.conftest import run
from tests.workflows.act.road import ActRun, Repo, Road
from tests.workflows.fake_github import FakeGitHub

MONITOR = ".github/workflows/monitor.yml"


def write_traffic(repo: Repo, folder: Path, drift: bool) -> Path:
    """200 feedback records: test-split rows (shifted, with drift) and the model's scores."""
    run(["dvc", "pull", "--quiet", "data.dvc"], repo.path)
    params = load_params(repo.path / "params.yaml")
    frame = data.load(repo.path / params.data.raw, params)
    train, test = split_frame(frame, params)
    model = fit(train, params)  # what the job's `dvc repro` fits: same data, split and seed
    rows = test.head(200).copy()
    if drift:  # older applicants asking for far more, for longer
        rows["age"] = (rows["age"] + 20).clip(upper=75)
        rows["credit_amount"] = rows["credit_amount"] * 4
        rows["duration"] = rows["duration"] * 2
    scores = positive_scores(model, rows[params.features.all], params.data.positive_label)
    inputs = rows[list(data.input_schema(params).columns)]
    folder.mkdir(parents=True)
    with (folder / "predictions-host-1-1-0001.jsonl").open("w") as fh:
        for i, (record, p) in enumerate(zip(inputs.to_dict("records"), scores, strict=True)):
            line = {"schema": 1, "kind": "prediction", "request_id": f"r{i}", "row": 0,
                    "endpoint": "predict", "model_version": "1", "inputs": record,
                    "probability": float(p), "decision": int(p >= 0.5)}  # fmt: skip
            fh.write(json.dumps(line, default=_plain) + "\n")
    return folder


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else str(value)


def monitor(road: Road, repo: Repo, traffic: Path | None, day: str) -> ActRun:
    owner, name = repo.name.split("/")
    event = {"schedule": "17 5 * * *",
             "repository": {"full_name": repo.name, "name": name, "owner": {"login": owner},
                            "default_branch": "main"}}  # fmt: skip
    extra = ["-s", f"MLGATE_FEEDBACK_URL={traffic}"] if traffic else []
    result = road.act(repo, "schedule", MONITOR, event, run_id=day, extra=extra)
    assert result.jobs.get("monitor") == "success", result.explain()
    return result


def report(road: Road) -> Path:
    """The monitor-report artifact of the last act run."""
    return road.home / f"run-{road.run_count}" / "artifacts" / "monitor-report"


def test_drift_opens_one_issue_and_the_next_day_comments_on_it(
    road: Road, github: FakeGitHub, credit_repo: Repo, tmp_path: Path
) -> None:
    traffic = write_traffic(credit_repo, tmp_path / "traffic", drift=True)
    repo = github.repo

    first = monitor(road, credit_repo, traffic, day="5001")
    assert first.outputs["monitor"]["outcome"] == "drift", first.explain()
    assert first.jobs.get("issue") == "success", first.explain()
    assert json.loads((report(road) / "drift.json").read_text())["drift"] is True
    assert [(r.method, r.path, r.query) for r in github.requests] == [
        ("GET", f"/repos/{repo}/issues", "labels=drift&state=open&per_page=100&page=1"),
        ("GET", f"/repos/{repo}/labels/drift", ""),
        ("POST", f"/repos/{repo}/labels", ""),
        ("POST", f"/repos/{repo}/issues", ""),
    ]
    [issue] = github.issues
    assert issue["labels"][0]["name"] == "drift"
    assert issue["title"].startswith("Drift detected in production traffic")
    assert "**Drift detected**" in issue["body"] and "age" in issue["body"]
    assert "/actions/runs/5001" in issue["body"]  # the link to the full report

    github.requests.clear()
    second = monitor(road, credit_repo, traffic, day="5002")
    assert second.jobs.get("issue") == "success", second.explain()
    assert [(r.method, r.path) for r in github.requests] == [
        ("GET", f"/repos/{repo}/issues"),
        ("POST", f"/repos/{repo}/issues/{issue['number']}/comments"),
    ]
    assert len(github.issues) == 1, "drift that lasts is commented on, not opened again"
    assert "/actions/runs/5002" in github.comments[issue["number"]][0]["body"]


@pytest.mark.parametrize("traffic", ["no-drift", "no-traffic"])
def test_without_drift_nothing_is_opened_and_the_report_is_kept(
    road: Road, github: FakeGitHub, credit_repo: Repo, tmp_path: Path, traffic: str
) -> None:
    folder = None
    if traffic == "no-drift":
        folder = write_traffic(credit_repo, tmp_path / "traffic", drift=False)

    result = monitor(road, credit_repo, folder, day="5003")
    outputs = result.outputs["monitor"]
    assert (outputs["drift"], outputs["outcome"]) == ("false", traffic), result.explain()
    assert result.jobs.get("issue") in (None, "skipped"), result.explain()
    assert github.requests == [], "no drift: GitHub is not asked anything"
    summary = (report(road) / "summary.md").read_text()
    if traffic == "no-drift":
        assert "**No drift**" in summary
        assert json.loads((report(road) / "drift.json").read_text())["drift"] is False
    else:
        assert "no recorded traffic" in summary and "MLGATE_FEEDBACK_URL" in summary
        assert "no recorded traffic" in result.log("monitor")
        assert "dvc repro" not in result.log("monitor"), "a day without traffic trains nothing"
