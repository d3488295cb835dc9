"""Scenario 1: a pull request that passes, run by act through ci.yml -> ml-ci.yml."""

from __future__ import annotations

import pytest

from tests.workflows.act.conftest import pr_event
from tests.workflows.act.road import Repo, Road
from tests.workflows.fake_github import FakeGitHub

MARKER = "<!-- mlgate-report -->"


def test_a_pull_request_gets_one_report_comment_updated_when_the_next_push_fails_the_gate(
    road: Road, github: FakeGitHub, credit_repo: Repo
) -> None:
    """Scenario 1, then scenario 2's model-gate failure as the same pull request's next push:
    the first push passes and gets the one report comment; the second raises the gate's bar
    out of reach, fails `ml / gate`, and the same comment is updated to say which gate failed
    (the word `roc_auc` alone appears in any report's tables: the verdict line names it)."""
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
    assert "✅ pipeline gates passed" in first_body, first_body

    params = (repo.path / "params.yaml").read_text()
    bar = "roc_auc: 0.7"  # 0.70 as written; 0.7 once a fixture has rewritten the YAML
    assert bar in params, f"params.yaml no longer has {bar!r}: update the scenario"
    repo.edit("Raise the bar out of reach", {"params.yaml": params.replace(bar, "roc_auc: 0.99")})
    repo.push("feature")
    github.requests.clear()
    second = road.act(
        repo, "pull_request", ".github/workflows/ci.yml", pr_event(repo, 7, "feature")
    )
    assert second.jobs.get("pipeline") == "failure", second.explain()
    assert second.jobs.get("gate") == "failure", second.explain()
    assert second.outputs["gate"]["passed"] == "false", second.explain()
    assert second.jobs.get("report") == "success", second.explain()
    assert "roc_auc" in second.log("pipeline"), second.explain()
    assert len(github.comments[7]) == 1, "the second push must update the comment, not add one"
    assert [(m, p) for m, p, _ in github.mutations] == [
        ("PATCH", f"/repos/{repo.name}/issues/comments/{comments[0]['id']}")
    ]
    body = github.comments[7][0]["body"]
    assert MARKER in first_body and MARKER in body
    assert "**❌ gate FAILED: roc_auc**" in body, body


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
    """The comment's verdict line says why (the word `age` alone appears in any report's
    tables); the pipeline log names the failed contract check. (The model-gate failure is the
    next push of the passing pull request above.) Registering
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
