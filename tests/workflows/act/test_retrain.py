"""Continuous training under act: drift -> monitor.yml's retrain job -> ml-retrain.yml -> ONE
pull request whose body is the data summary and whose branch changes data.dvc; a second run
with no new data does nothing.

data.source is a warehouse export on the host (an absolute path); the DVC remote is a folder
on the host too, so the pushed data version can be checked after the job's workspace is gone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import yaml

from tests.workflows.act.conftest import pr_event
from tests.workflows.act.road import Repo, Road, git
from tests.workflows.act.test_monitor import write_traffic
from tests.workflows.fake_github import FakeGitHub

TOKEN = "ghs_app_installation_token"  # what a GitHub App installation token looks like
BRANCH = "mlgate/retrain"


def dispatch(repo: Repo, inputs: dict[str, str]) -> dict:
    owner, name = repo.name.split("/")
    return {"inputs": inputs, "ref": "refs/heads/main",
            "repository": {"full_name": repo.name, "name": name, "owner": {"login": owner},
                           "default_branch": "main"}}  # fmt: skip


def with_source_and_remote(repo: Repo, home: Path) -> Path:
    """data.source -> home/export.csv with 60 new rows; the DVC remote -> home/dvc-remote."""
    remote = home / "dvc-remote"
    shutil.copytree(repo.path / ".dvc/example-remote", remote)
    config = (repo.path / ".dvc/config").read_text()
    rows = pd.read_csv(repo.path / "data/german_credit.csv").head(60)
    rows["credit_amount"] += 7  # new applications, not repeats
    export = home / "export.csv"
    rows.to_csv(export, index=False)
    params = (repo.path / "params.yaml").read_text()
    repo.edit(
        "data.source: the nightly export; the DVC remote on the host",
        {
            "params.yaml": params.replace(
                "  contract:", f"  source:\n    path: {export}\n  contract:"
            ),
            ".dvc/config": config.replace("url = example-remote", f"url = {remote}"),
        },
    )
    repo.push("main")
    return remote


def test_drift_opens_one_retraining_pull_request_and_no_new_data_does_nothing(
    road: Road, github: FakeGitHub, credit_repo: Repo, tmp_path: Path
) -> None:
    repo = credit_repo
    github.tokens[TOKEN] = {"contents": "write", "pull-requests": "write"}  # the App's grant
    traffic = write_traffic(repo, tmp_path / "traffic", drift=True)  # pulls data into the clone
    remote = with_source_and_remote(repo, tmp_path)
    main_dvc = yaml.safe_load((repo.path / "data.dvc").read_text())

    first = road.act(repo, "workflow_dispatch", ".github/workflows/monitor.yml",
                     dispatch(repo, {"on-drift": "issue", "retrain": "true"}),
                     inputs={"on-drift": "issue", "retrain": "true"},
                     extra=["-s", f"MLGATE_FEEDBACK_URL={traffic}",
                            "-s", f"MLGATE_RETRAIN_TOKEN={TOKEN}"])  # fmt: skip
    assert first.jobs.get("retrain") == "success", first.explain()
    assert first.outputs["monitor"]["outcome"] == "drift", first.explain()
    assert first.outputs["retrain"]["changed"] == "true", first.explain()

    [pull] = github.pulls
    assert (pull["head"]["ref"], pull["base"]["ref"]) == (BRANCH, "main")
    assert "# New data version" in pull["body"] and "trigger: **drift**" in pull["body"]
    assert "1000 → 1060 (+60 added" in pull["body"]
    opened = [r for r in github.requests if r.method == "POST" and r.path.endswith("/pulls")]
    assert [r.auth for r in opened] == [f"Bearer {TOKEN}"], "CI starts only for such a token"
    assert pull["starts_workflows"], "opened with GITHUB_TOKEN: GitHub would start no CI run"

    pushed = yaml.safe_load(git(repo.remote, "show", f"{BRANCH}:data.dvc"))
    version = pushed["outs"][0]["md5"]
    assert version != main_dvc["outs"][0]["md5"]
    assert pushed["meta"]["refresh"]["trigger"] == "drift"
    assert (remote / "files/md5" / version[:2] / version[2:]).is_file(), "data version pushed"
    branch_sha = git(repo.remote, "rev-parse", BRANCH)

    # The pull request GitHub then starts CI on (it was opened with a token that does that):
    # ci.yml on the retraining branch retrains on the new data version and the gate judges it.
    git(repo.path, "fetch", "-q", str(repo.remote), f"{BRANCH}:{BRANCH}")
    repo.switch(BRANCH)
    github.requests.clear()
    ci = road.act(repo, "pull_request", ".github/workflows/ci.yml",
                  pr_event(repo, pull["number"], BRANCH))  # fmt: skip
    assert ci.jobs.get("pipeline") == "success", ci.explain()
    assert ci.jobs.get("gate") == "success", ci.explain()
    assert "1060" in ci.log("pipeline"), "validate read the new data version"
    [comment] = github.comments[pull["number"]]  # the PR report on the retraining PR
    assert "<!-- mlgate-report -->" in comment["body"]
    repo.switch("main")

    github.requests.clear()
    token = ["-s", f"MLGATE_RETRAIN_TOKEN={TOKEN}"]
    second = road.act(repo, "workflow_dispatch", ".github/workflows/retrain.yml",
                      dispatch(repo, {}), extra=token)  # fmt: skip
    assert second.jobs.get("retrain") == "success", second.explain()
    assert second.outputs["retrain"]["changed"] == "false", second.explain()
    assert "already proposes data version" in second.log("retrain")
    assert github.mutations == [] and len(github.pulls) == 1
    assert git(repo.remote, "rev-parse", BRANCH) == branch_sha, "the branch is left alone"


def test_an_empty_retrain_token_fails_before_anything_is_pushed(
    road: Road, github: FakeGitHub, credit_repo: Repo
) -> None:
    """B1: no silent fall-back to GITHUB_TOKEN, whose pull request would start no CI (an unset
    MLGATE_RETRAIN_TOKEN, or an App token handed over as a job output, which arrives empty)."""
    run = road.act(credit_repo, "workflow_dispatch", ".github/workflows/retrain.yml",
                   dispatch(credit_repo, {}))  # fmt: skip
    assert run.jobs.get("retrain") == "failure", run.explain()
    assert "RETRAIN_TOKEN is empty" in run.log("retrain"), run.explain()
    assert github.requests == [] and github.pulls == []
    assert BRANCH not in git(credit_repo.remote, "branch", "--list")
