"""Scenario 1: a pull request that passes, run by act through ci.yml -> ml-ci.yml."""

from __future__ import annotations

import pytest

from tests.workflows.act.conftest import pr_event
from tests.workflows.act.road import Repo, Road
from tests.workflows.fake_github import FakeGitHub

MARKER = "<!-- mlgate-report -->"


def test_a_passing_pull_request_gets_one_report_comment_updated_on_the_next_push(
    road: Road, github: FakeGitHub, credit_repo: Repo
) -> None:
    repo = credit_repo
    readme = (repo.path / "README.md").read_text()
    repo.edit("docs: a line", {"README.md": readme + "\nA line.\n"}, branch="feature")
    repo.push("feature")

    first = road.act(repo, "pull_request", ".github/workflows/ci.yml", pr_event(repo, 7, "feature"))
    assert first.jobs.get("gate") == "success", first.explain()
    assert first.outputs["gate"]["passed"] == "true", first.explain()
    assert first.jobs.get("report") == "success", first.explain()
    comments = github.comments.get(7, [])
    assert len(comments) == 1, github.mutations
    assert [(m, p) for m, p, _ in github.mutations] == [
        ("POST", f"/repos/{repo.name}/issues/7/comments")
    ]
    first_body = comments[0]["body"]

    repo.edit("docs: another line", {"README.md": readme + "\nA line.\nAnother.\n"})
    repo.push("feature")
    github.requests.clear()
    second = road.act(
        repo, "pull_request", ".github/workflows/ci.yml", pr_event(repo, 7, "feature")
    )
    assert second.jobs.get("gate") == "success", second.explain()
    assert len(github.comments[7]) == 1, "the second push must update the comment, not add one"
    assert [(m, p) for m, p, _ in github.mutations] == [
        ("PATCH", f"/repos/{repo.name}/issues/comments/{comments[0]['id']}")
    ]
    assert MARKER in first_body and MARKER in github.comments[7][0]["body"]


@pytest.mark.parametrize(
    ("path", "old", "new", "verdict", "named"),
    [
        pytest.param(
            "src/credit_risk/schema.py",
            "pa.Field(ge=18, le=100,",
            "pa.Field(ge=18, le=30,",
            "**❌ the pipeline failed before the gate (see the `pipeline` job log)",
            "column 'age' fails less_than_or_equal_to(30)",
            id="data-contract",
        ),
        pytest.param(
            "params.yaml",
            "roc_auc: 0.7",  # 0.70 as written; 0.7 once a fixture has rewritten the YAML
            "roc_auc: 0.99",
            "**❌ gate FAILED: roc_auc**",
            "roc_auc",
            id="model-gate",
        ),
    ],
)
def test_a_failing_pull_request_fails_ml_gate_and_says_which_check_failed(
    road: Road,
    github: FakeGitHub,
    credit_repo: Repo,
    path: str,
    old: str,
    new: str,
    verdict: str,
    named: str,
) -> None:
    """The comment's verdict line says why (the words `age` or `roc_auc` alone appear in any
    report's tables); the pipeline log names the failed contract check or gate. Registering
    nothing is ml-ci's shape (no register step: test_contract.py) and registry.register's
    refusal of a failed gate (tests/pipeline/test_repro.py)."""
    repo = credit_repo
    text = (repo.path / path).read_text()
    assert old in text, f"{path} no longer has {old!r}: update the scenario"
    repo.edit(f"break: {new}", {path: text.replace(old, new)}, branch="breaking")
    repo.push("breaking")

    run = road.act(repo, "pull_request", ".github/workflows/ci.yml", pr_event(repo, 8, "breaking"))
    assert run.jobs.get("pipeline") == "failure", run.explain()
    assert run.jobs.get("gate") == "failure", run.explain()
    assert run.outputs["gate"]["passed"] == "false", run.explain()
    assert run.jobs.get("report") == "success", run.explain()
    [comment] = github.comments[8]
    assert verdict in comment["body"], comment["body"]
    assert named in run.log("pipeline"), run.explain()
