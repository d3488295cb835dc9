"""`mlgate github …` against a local fake GitHub API: exact requests, idempotence, errors."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlgate.cli import main
from tests.conftest import VENV_BIN
from tests.workflows.fake_github import FakeGitHub, serve

REPO = "acme/credit-model"
ENV = f"/repos/{REPO}/environments"
PROTECTION = f"/repos/{REPO}/branches/main/protection"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    gh = FakeGitHub(repo=REPO)
    server, url = serve(gh)
    monkeypatch.setenv("GITHUB_API_URL", url)
    monkeypatch.setenv("GITHUB_TOKEN", "test-token")
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    yield gh
    server.shutdown()
    server.server_close()


def setup(*extra: str) -> int:
    return main(
        ["github", "setup", "--reviewer", "alice", "--reviewer", "team:acme/ml-leads", *extra]
    )


BRANCH_POLICY = {"protected_branches": False, "custom_branch_policies": True}


def test_first_setup_sends_the_documented_requests(
    fake: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert setup() == 0
    assert fake.mutations == [
        (
            "PUT",
            f"{ENV}/staging",
            {"deployment_branch_policy": BRANCH_POLICY, "can_admins_bypass": False},
        ),
        ("POST", f"{ENV}/staging/deployment-branch-policies", {"name": "main", "type": "branch"}),
        (
            "PUT",
            f"{ENV}/production",
            {
                "deployment_branch_policy": BRANCH_POLICY,
                "can_admins_bypass": False,  # GitHub's default (true) lets admins skip review
                "reviewers": [{"type": "User", "id": 101}, {"type": "Team", "id": 201}],
                "prevent_self_review": True,
            },
        ),
        (
            "POST",
            f"{ENV}/production/deployment-branch-policies",
            {"name": "main", "type": "branch"},
        ),
        (
            "PUT",
            PROTECTION,
            {
                "required_status_checks": {"strict": True, "checks": [{"context": "ml / gate"}]},
                "enforce_admins": True,
                "required_pull_request_reviews": {"required_approving_review_count": 1},
                "restrictions": None,
            },
        ),
    ]
    looked_up = [r.path for r in fake.requests if r.method == "GET"]
    assert "/users/alice" in looked_up and "/orgs/acme/teams/ml-leads" in looked_up
    assert all(r.auth == "Bearer test-token" for r in fake.requests)
    out = capsys.readouterr().out
    assert "environment production: created" in out and "'ml / gate'" in out


def test_second_setup_changes_nothing(fake: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert setup() == 0
    before = len(fake.mutations)
    capsys.readouterr()
    assert setup() == 0
    assert len(fake.mutations) == before
    assert "already matches; nothing changed" in capsys.readouterr().out


def test_setup_repairs_drift(fake: FakeGitHub) -> None:
    """A reviewer removed by hand, a stray branch policy and a missing check are put back."""
    assert setup() == 0
    fake.environments["production"]["protection_rules"][0]["reviewers"].pop()
    fake.branch_policies["production"].append({"id": 7, "name": "release/*", "type": "branch"})
    fake.protection["main"]["required_status_checks"]["contexts"] = ["lint"]
    fake.protection["main"]["required_status_checks"]["checks"] = [{"context": "lint"}]
    fake.requests.clear()
    assert setup() == 0
    assert [(m, p) for m, p, _ in fake.mutations] == [
        ("PUT", f"{ENV}/production"),
        ("DELETE", f"{ENV}/production/deployment-branch-policies/7"),
        ("POST", f"{PROTECTION}/required_status_checks/contexts"),
    ]
    assert fake.mutations[-1][2] == ["ml / gate"]


def test_private_repo_without_the_plan_gets_the_fallback(
    fake: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.private = True
    fake.plan_allows_reviewers = False
    assert setup() == 2
    err = capsys.readouterr().err
    assert "private and its plan does not allow required reviewers" in err
    assert "--no-reviewers" in err and "production: false" in err
    # the fallback itself works on the same repository
    assert main(["github", "setup", "--no-reviewers"]) == 0
    assert fake.environments["production"]["deployment_branch_policy"] == BRANCH_POLICY


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (403, "needs a token with admin rights"),
        (404, "check the repository name"),
        (422, "GitHub rejected the payload"),
    ],
)
def test_api_errors_become_clear_messages(
    fake: FakeGitHub, capsys: pytest.CaptureFixture[str], status: int, hint: str
) -> None:
    fake.fail[("PUT", f"{ENV}/staging")] = (status, "Resource not accessible by integration")
    assert setup() == 2
    err = capsys.readouterr().err
    assert f"PUT {ENV}/staging answered {status}" in err
    assert "Resource not accessible by integration" in err and hint in err
    assert "Traceback" not in err


def test_unknown_reviewer_is_named(fake: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["github", "setup", "--reviewer", "nobody"]) == 2
    assert "GET /users/nobody answered 404" in capsys.readouterr().err


def test_report_comment_is_created_once_then_updated(fake: FakeGitHub, tmp_path: Path) -> None:
    fake.comments[7] = [{"id": 1, "body": "LGTM"}]
    report = tmp_path / "report.md"
    report.write_text("## mlgate report\nfirst push\n")
    assert main(["github", "comment", "--pr", "7", "--body-file", str(report)]) == 0
    report.write_text("## mlgate report\nsecond push\n")
    assert main(["github", "comment", "--pr", "7", "--body-file", str(report)]) == 0
    bodies = [c["body"] for c in fake.comments[7]]
    assert len(bodies) == 2 and bodies[0] == "LGTM"
    assert "second push" in bodies[1] and "first push" not in bodies[1]
    methods = [(m, p) for m, p, _ in fake.mutations]
    assert methods == [
        ("POST", f"/repos/{REPO}/issues/7/comments"),
        ("PATCH", f"/repos/{REPO}/issues/comments/{fake.comments[7][1]['id']}"),
    ]


def test_deployments_are_recorded_and_rollback_finds_the_previous_one(
    fake: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    monkeypatch.setenv("GITHUB_RUN_ID", "555")
    fake.approvals["555"] = [  # the shape of GET /actions/runs/{id}/approvals
        {"state": "approved", "user": {"login": "alice"}, "environments": [{"name": "production"}]},
        {"state": "rejected", "user": {"login": "bob"}, "environments": [{"name": "production"}]},
        {"state": "approved", "user": {"login": "carol"}, "environments": [{"name": "staging"}]},
    ]
    for sha, digest, version in (("a1", "1" * 64, "3"), ("b2", "2" * 64, "4")):
        image = f"ghcr.io/acme/credit-model@sha256:{digest}"
        argv = ["github", "record-deployment", "--env", "production", "--image", image]
        assert main([*argv, "--model-version", version, "--ref", sha]) == 0
    # GitHub's own deployment for the job's environment (no payload) must be ignored
    fake.deployments.append({"id": 9999, "ref": "b2", "environment": "production", "payload": {}})
    first = fake.mutations[0]
    assert first[1] == f"/repos/{REPO}/deployments"
    assert first[2]["payload"] == {
        "image": f"ghcr.io/acme/credit-model@sha256:{'1' * 64}",
        "model_version": "3",
        "commit": "a1",
        "run_id": "555",
        "approved_by": ["alice"],
    }
    assert first[2]["environment"] == "production" and first[2]["ref"] == "a1"
    assert fake.mutations[1][2]["state"] == "success"
    assert any(r.path == f"/repos/{REPO}/actions/runs/555/approvals" for r in fake.requests)
    out.write_text("")
    assert main(["github", "previous-deployment", "--env", "production"]) == 0
    assert out.read_text().splitlines() == [
        f"image=ghcr.io/acme/credit-model@sha256:{'1' * 64}",
        "model_version=3",
        "ref=a1",
    ]


def test_one_person_repository_needs_no_approving_review(fake: FakeGitHub) -> None:
    assert setup("--approvals", "0") == 0
    put = next(body for method, path, body in fake.mutations if path == PROTECTION)
    assert put["required_pull_request_reviews"] is None
    assert put["required_status_checks"]["checks"] == [{"context": "ml / gate"}]


def test_an_oversized_report_is_cut_to_a_comment_github_accepts(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    report = tmp_path / "report.md"
    report.write_text("## mlgate report\n" + "x" * 70_000)
    assert main(["github", "comment", "--pr", "3", "--body-file", str(report)]) == 0
    body = fake.comments[3][0]["body"]
    assert len(body) <= 65_536 and body.endswith("the full report is in the job summary.\n")


def test_setup_turns_an_admin_bypass_back_off(fake: FakeGitHub) -> None:
    assert setup() == 0
    fake.environments["production"]["can_admins_bypass"] = True  # someone flipped it in the UI
    fake.requests.clear()
    assert setup() == 0
    (put,) = [b for m, p, b in fake.mutations if p == f"{ENV}/production"]
    assert put["can_admins_bypass"] is False


def test_a_solo_reviewer_is_warned_and_may_allow_self_review(
    fake: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.viewer = "alice"
    assert main(["github", "setup", "--reviewer", "alice"]) == 0
    out = capsys.readouterr().out
    assert "WARNING you (alice) are the only required reviewer" in out
    assert "--allow-self-review" in out
    assert fake.environments["production"]["protection_rules"][0]["prevent_self_review"] is True
    assert main(["github", "setup", "--reviewer", "alice", "--allow-self-review"]) == 0
    out = capsys.readouterr().out
    assert "one person can release alone" in out
    assert fake.environments["production"]["protection_rules"][0]["prevent_self_review"] is False
    # a reviewer who is not the person running setup: no warning
    fake.viewer = "carol"
    assert main(["github", "setup", "--reviewer", "alice"]) == 0
    assert "WARNING" not in capsys.readouterr().out


def _record(fake: FakeGitHub, env: str, image: str, version: str, sha: str) -> None:
    argv = ["github", "record-deployment", "--env", env, "--image", image, "--ref", sha]
    assert main([*argv, "--model-version", version]) == 0


IMG = "ghcr.io/acme/credit-model@sha256:"


def check(*extra: str) -> int:
    return main(["github", "check-release", "--image", IMG + "2" * 64, "--sha", "b2", *extra])


@pytest.fixture
def staged(fake: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> FakeGitHub:
    monkeypatch.setenv("GITHUB_RUN_ID", "777")
    _record(fake, "staging", IMG + "1" * 64, "3", "a1")
    _record(fake, "staging", IMG + "2" * 64, "4", "b2")
    return fake


def test_production_fails_closed_without_an_approval_on_record(
    staged: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check("--env", "production") == 2
    err = capsys.readouterr().err
    assert "no approval of the production environment is on record for run 777" in err
    assert "mlgate github setup" in err and "allow-unreviewed-production" in err
    # the documented opt-out lets it through, and says so
    assert check("--env", "production", "--allow-unreviewed", "true") == 0
    assert "NOT approved by anyone" in capsys.readouterr().out
    staged.approvals["777"] = [
        {"state": "approved", "user": {"login": "bob"}, "environments": [{"name": "production"}]}
    ]
    assert check("--env", "production") == 0
    assert "approved by bob" in capsys.readouterr().out


def test_a_stale_or_re_run_run_cannot_deploy_an_old_commit(
    staged: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    staged.approvals["777"] = [
        {"state": "approved", "user": {"login": "bob"}, "environments": [{"name": "production"}]}
    ]
    staged.heads["main"] = "c3"  # a newer merge landed after this run started
    for env in ("staging", "production"):
        assert check("--env", env) == 2
        assert "this run delivers b2, but main is now at c3" in capsys.readouterr().err
    staged.heads["main"] = "b2"
    # staging moved on to another image (e.g. a re-run redeployed it): production refuses
    _record(staged, "staging", IMG + "9" * 64, "5", "b2")
    assert check("--env", "production") == 2
    assert f"staging runs {IMG + '9' * 64}, not {IMG + '2' * 64}" in capsys.readouterr().err
    assert check("--env", "staging") == 0


def test_two_rollbacks_take_image_and_model_version_from_one_record(
    fake: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v1, v2, v3 released; rollback #1 restores v2; rollback #2 returns to v3, the image AND
    the model version of one record (never v3's image with v1's alias)."""
    out = tmp_path / "out"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    for n in ("1", "2", "3"):
        _record(fake, "production", IMG + n * 64, n, f"sha{n}")

    def target() -> dict[str, str]:
        out.write_text("")
        assert main(["github", "previous-deployment", "--env", "production"]) == 0
        return dict(line.split("=", 1) for line in out.read_text().splitlines())

    first = target()
    assert (first["image"], first["model_version"]) == (IMG + "2" * 64, "2")
    _record(fake, "production", first["image"], first["model_version"], first["ref"])
    second = target()
    assert (second["image"], second["model_version"]) == (IMG + "3" * 64, "3")


def test_a_rollback_never_returns_to_a_trials_two_model_deployment(
    fake: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v1 alone, then a trial of v2 beside it (stage trial), then v2 promoted: the rollback
    target is v1 alone; and a trial cut short (its job died) rolls back to v1 as well."""
    from mlgate.release.deployments import previous_deployment, record_deployment
    from mlgate.release.github import GitHub

    gh = GitHub.from_env()
    record_deployment(gh, REPO, "production", "sha1", IMG + "1" * 64, "1")
    trial = {"stage": "trial", "champion_version": "1"}
    record_deployment(gh, REPO, "production", "sha2", IMG + "a" * 64, "2", extra=trial)
    assert fake.deployments[-1]["payload"]["stage"] == "trial"
    cut_short = previous_deployment(gh, REPO, "production")
    assert (cut_short["image"], cut_short["model_version"]) == (IMG + "1" * 64, "1")
    promoted = {"stage": "promoted", "trial": {"verdict": "promote"}}
    record_deployment(gh, REPO, "production", "sha2", IMG + "2" * 64, "2", extra=promoted)
    target = previous_deployment(gh, REPO, "production")
    assert (target["image"], target["model_version"]) == (IMG + "1" * 64, "1")


def test_setup_before_the_first_push_creates_the_environments_and_says_to_rerun(
    fake: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    """The documented order: environments before main exists (the first push's cd run would
    otherwise create them unprotected), the branch rule on a second run after the push."""
    fake.heads.clear()  # an empty repository: no main yet
    assert setup() == 0
    assert set(fake.environments) == {"staging", "production"}
    assert not any(path == PROTECTION for _, path, _ in fake.mutations)
    assert "branch main: not on GitHub yet" in capsys.readouterr().out
    fake.heads["main"] = "a1"
    assert setup() == 0
    assert any(path == PROTECTION for _, path, _ in fake.mutations)


def test_a_free_private_repository_is_told_its_plan_lacks_branch_protection(
    fake: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.private = True
    upgrade = "Upgrade to GitHub Pro or make this repository public to enable this feature."
    fake.fail[("PUT", PROTECTION)] = (403, upgrade)
    assert main(["github", "setup", "--no-reviewers"]) == 2
    err = capsys.readouterr().err
    assert "is private and GitHub refused protecting branch main (403)" in err
    assert "Free plan" in err and upgrade in err and "Traceback" not in err


def test_the_drift_issue_is_opened_once_and_a_pull_request_with_the_label_does_not_count(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    body = tmp_path / "summary.md"
    body.write_text("# Production monitoring\n\n**Drift detected**: age.\n")
    fake.heads = {"main": "b1", "mlgate/retrain": "b2"}
    fake.labels["drift"] = {"name": "drift"}
    fake.issues.append({"number": 1, "state": "open", "title": "a PR", "body": "",
                        "labels": [{"name": "drift"}], "pull_request": {},
                        "head": {"ref": "mlgate/retrain"}})  # fmt: skip
    args = ["github", "drift-issue", "--title", "Drift", "--body-file", str(body)]

    assert main(args) == 0
    assert [(m, p) for m, p, _ in fake.mutations] == [("POST", f"/repos/{REPO}/issues")]
    assert fake.issues[1]["number"] == 2 and fake.issues[1]["labels"] == [{"name": "drift"}]

    fake.requests.clear()
    assert main(args) == 0
    assert fake.mutations == [
        ("POST", f"/repos/{REPO}/issues/2/comments", {"body": body.read_text()})
    ]


def test_the_retraining_pull_request_is_opened_once_then_its_body_replaced(
    fake: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.heads = {"main": "b1", "mlgate/retrain": "b2"}
    body = tmp_path / "refresh.md"
    args = ["github", "pull-request", "--head", "mlgate/retrain", "--title", "Retrain",
            "--body-file", str(body)]  # fmt: skip
    body.write_text("first version")
    assert main(args) == 0
    body.write_text("second version")
    assert main(args) == 0

    [pull] = fake.pulls
    assert pull["body"] == "second version" and pull["base"]["ref"] == "main"
    assert [(m, p) for m, p, _ in fake.mutations] == [
        ("POST", f"/repos/{REPO}/pulls"),
        ("PATCH", f"/repos/{REPO}/pulls/{pull['number']}"),
    ]
    lists = [r.query for r in fake.requests if r.method == "GET"]
    assert lists == ["head=acme%3Amlgate%2Fretrain&state=open&per_page=1"] * 2
    assert "opened #1" in capsys.readouterr().out


def test_a_missing_body_file_is_a_clear_error(
    fake: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.md"
    code = main(["github", "drift-issue", "--title", "T", "--body-file", str(missing)])
    assert code == 2 and f"cannot read the body file {missing}" in capsys.readouterr().err
    assert fake.requests == []


def test_a_trial_refuses_before_deploying_anything_without_its_evidence(
    fake: FakeGitHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No FEEDBACK_URL (nothing to decide from) or an image not by digest: exit 2, no
    deployment recorded, nothing deployed (the act scenario test_trial.py runs the rest)."""
    import yaml

    from tests.conftest import ROOT

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["deploy"]["trial"]["mode"] = "shadow"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("GITHUB_SHA", "b2")
    argv = ["release", "trial", "--params", str(params), "--version", "4",
            "--image", IMG + "2" * 64, "--trial-image", IMG + "t" * 64,
            "--champion-version", "3", "--champion-image", IMG + "1" * 64]  # fmt: skip
    monkeypatch.delenv("FEEDBACK_URL", raising=False)
    assert main(argv) == 2
    assert "FEEDBACK_URL is empty: set the repository secret MLGATE_FEEDBACK_URL" in (
        capsys.readouterr().err
    )
    monkeypatch.setenv("FEEDBACK_URL", str(tmp_path / "feedback"))
    assert main([*argv[:-1], "ghcr.io/acme/credit-model:production"]) == 2
    assert "--champion-image: an image by digest is needed" in capsys.readouterr().err
    assert fake.deployments == [] and fake.mutations == []


def test_only_an_approval_of_this_environment_in_state_approved_releases_production(
    staged: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    staged.approvals["777"] = [
        {"state": "rejected", "user": {"login": "bob"}, "environments": [{"name": "production"}]},
        {"state": "approved", "user": {"login": "carol"}, "environments": [{"name": "staging"}]},
    ]
    assert check("--env", "production") == 2
    assert "no approval of the production environment is on record" in capsys.readouterr().err


def test_lists_are_followed_past_their_first_page(fake: FakeGitHub, tmp_path: Path) -> None:
    """GitHub pages every list (at most 100 a page): the report comment on page 2 is edited,
    not duplicated; a rollback target behind 100 of GitHub's own per-job deployments is found."""
    fake.comments[7] = [{"id": n, "body": f"comment {n}"} for n in range(1, 121)]
    fake.comments[7][110]["body"] = "<!-- mlgate-report -->\nold"
    report = tmp_path / "report.md"
    report.write_text("## mlgate report\nnew\n")
    assert main(["github", "comment", "--pr", "7", "--body-file", str(report)]) == 0
    assert [(m, p) for m, p, _ in fake.mutations] == [
        ("PATCH", f"/repos/{REPO}/issues/comments/111")
    ]

    from mlgate.release.deployments import previous_deployment, record_deployment
    from mlgate.release.github import GitHub

    gh = GitHub.from_env()
    record_deployment(gh, REPO, "production", "sha1", IMG + "1" * 64, "1")
    record_deployment(gh, REPO, "production", "sha2", IMG + "2" * 64, "2")
    for n in range(100):  # GitHub's own record of each job bound to the environment
        fake.deployments.append({"id": 50_000 + n, "ref": "sha2", "environment": "production"})
    target = previous_deployment(gh, REPO, "production")
    assert (target["image"], target["model_version"]) == (IMG + "1" * 64, "1")
    assert any("page=2" in r.query for r in fake.requests if r.path.endswith("/deployments"))


def _as_job(fake: FakeGitHub, url: str, permissions: dict[str, str] | None, *argv: str) -> str:
    """Run `mlgate github …` as a workflow job would: its own process, holding the job token
    (permissions None: a token the fake never issued)."""
    fake.job_token = "ghs_job" if permissions is not None else "ghs_another"
    fake.job_permissions = {("ml-cd", "production"): permissions or {}}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "PYTEST"))}
    env.update(GITHUB_API_URL=url, GITHUB_TOKEN="ghs_job", GITHUB_REPOSITORY=REPO,
               GITHUB_WORKFLOW="ml-cd", GITHUB_JOB="production", GITHUB_RUN_ID="777")  # fmt: skip
    proc = subprocess.run(
        [str(VENV_BIN / "mlgate"), "github", *argv], env=env, capture_output=True, text=True
    )
    return f"exit {proc.returncode}\n{proc.stderr}"


def test_a_job_token_may_do_only_what_its_job_permissions_grant(staged: FakeGitHub) -> None:
    """A workflow's GITHUB_TOKEN holds the job's effective permissions: without `actions:
    read` the approvals cannot be read (GitHub answers 403) and production cannot release."""
    staged.approvals["777"] = [
        {"state": "approved", "user": {"login": "bob"}, "environments": [{"name": "production"}]}
    ]
    url = os.environ["GITHUB_API_URL"]
    argv = ("check-release", "--env", "production", "--image", IMG + "2" * 64, "--sha", "b2")
    everything = {"contents": "read", "deployments": "write", "actions": "read"}
    assert _as_job(staged, url, everything, *argv).startswith("exit 0")
    lacking = {k: v for k, v in everything.items() if k != "actions"}
    refused = _as_job(staged, url, lacking, *argv)
    assert refused.startswith("exit 2") and "answered 403" in refused, refused
    assert "Resource not accessible by integration" in refused
    assert staged.refused == [
        ("ml-cd/production", "GET", f"/repos/{REPO}/actions/runs/777/approvals")
    ]
    unknown = _as_job(staged, url, None, *argv)  # GitHub's 401 for a token it never issued
    assert unknown.startswith("exit 2") and "answered 401" in unknown, unknown


def test_a_rollback_never_targets_the_image_production_runs_now(fake: FakeGitHub) -> None:
    """M6: after a re-run deployment (v2 recorded twice) or an aborted trial (the champion v2
    recorded again), the target is v1, not the v2 production already runs (a green no-op)."""
    from mlgate.release.deployments import previous_deployment, record_deployment
    from mlgate.release.github import GitHub

    gh = GitHub.from_env()
    record_deployment(gh, REPO, "production", "sha1", IMG + "1" * 64, "1")
    record_deployment(gh, REPO, "production", "sha2", IMG + "2" * 64, "2")
    record_deployment(gh, REPO, "production", "sha2", IMG + "2" * 64, "2")  # a re-run
    assert previous_deployment(gh, REPO, "production")["model_version"] == "1"
    trial = {"stage": "trial", "champion_version": "2"}
    record_deployment(gh, REPO, "production", "sha3", IMG + "3" * 64, "3", extra=trial)
    aborted = {"stage": "aborted", "trial": {"verdict": "abort"}}
    record_deployment(gh, REPO, "production", "sha2", IMG + "2" * 64, "2", extra=aborted)
    target = previous_deployment(gh, REPO, "production")
    assert (target["image"], target["model_version"]) == (IMG + "1" * 64, "1")


def test_a_forged_record_is_never_a_rollback_target(
    fake: FakeGitHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """M5: deployment records are writable by anyone with write access; a payload that is not
    an image by digest (a newline would inject step outputs) is refused, nothing written."""
    out = tmp_path / "out"
    out.write_text("")
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    from mlgate.release.deployments import record_deployment
    from mlgate.release.github import GitHub, repo_from_env

    # written past mlgate (record-deployment refuses such an image): as a forger would, by API
    forged = IMG + "1" * 64 + "\nimage=evil/x:latest"
    record_deployment(GitHub.from_env(), repo_from_env(None), "production", "sha1", forged, "1")
    _record(fake, "production", IMG + "2" * 64, "2", "sha2")
    out.write_text("")
    assert main(["github", "previous-deployment", "--env", "production"]) == 2
    assert "refusing the rollback target" in capsys.readouterr().err
    assert out.read_text() == ""


def test_a_rollback_refuses_when_production_moved_while_it_waited(
    fake: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    """M7: the target job read v1; a delivery of v3 ran before the rollback job's turn."""
    for n in ("1", "2"):
        _record(fake, "production", IMG + n * 64, n, f"sha{n}")
    argv = ["github", "previous-deployment", "--expect-image", IMG + "1" * 64]
    assert main(argv) == 0
    _record(fake, "production", IMG + "3" * 64, "3", "sha3")
    assert main(argv) == 2
    assert "production moved while it waited" in capsys.readouterr().err
