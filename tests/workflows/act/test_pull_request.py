"""Scenario 1: a pull request that passes, run by act through ci.yml -> ml-ci.yml."""

from __future__ import annotations

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
