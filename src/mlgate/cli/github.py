"""The `mlgate github …` commands: repository set-up, PR comment, drift issue, deployments."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from mlgate import values
from mlgate.actions import append_summary, write_outputs
from mlgate.errors import MlgateError
from mlgate.names import ENVIRONMENTS, PRODUCTION
from mlgate.release.deployments import check_release, previous_deployment, record_deployment
from mlgate.release.github import (
    DEFAULT_CHECK,
    GitHub,
    drift_issue,
    read_body,
    repo_from_env,
    upsert_comment,
    upsert_pull_request,
)
from mlgate.release.github_setup import PLAN_FALLBACK, setup


def _setup(args: argparse.Namespace) -> int:
    gh = GitHub.from_env()
    repo = repo_from_env(args.repo)
    changes = setup(
        gh,
        repo,
        args.reviewer,
        args.branch,
        args.check,
        args.no_reviewers,
        args.approvals,
        args.allow_self_review,
    )
    for line in changes:
        print(f"github setup: {line}")
    if not changes:
        print(f"github setup: {repo} already matches; nothing changed")
    if args.no_reviewers:
        print(f"github setup: production has no required reviewers.\n{PLAN_FALLBACK}")
    return 0


def _comment(args: argparse.Namespace) -> int:
    gh = GitHub.from_env()
    repo = repo_from_env(args.repo)
    body = Path(args.body_file).read_text(encoding="utf-8")
    what, cid = upsert_comment(gh, repo, args.pr, body)
    print(f"github comment: {what} comment {cid} on #{args.pr}")
    return 0


def _drift_issue(args: argparse.Namespace) -> int:
    gh = GitHub.from_env()
    repo = repo_from_env(args.repo)
    what, number = drift_issue(gh, repo, args.title, read_body(args.body_file))
    print(f"github drift-issue: {what} #{number}")
    write_outputs(number=str(number))
    return 0


def _pull_request(args: argparse.Namespace) -> int:
    gh = GitHub.from_env()
    repo = repo_from_env(args.repo)
    body = read_body(args.body_file)
    what, number = upsert_pull_request(gh, repo, args.head, args.base, args.title, body)
    print(f"github pull-request: {what} #{number} ({args.head} -> {args.base})")
    write_outputs(number=str(number))
    return 0


def _record(args: argparse.Namespace) -> int:
    gh = GitHub.from_env()
    repo = repo_from_env(args.repo)
    ref = args.ref or os.environ.get("GITHUB_SHA", "")
    if not ref:
        raise MlgateError("pass --ref (or set GITHUB_SHA): the commit that was deployed")
    dep = record_deployment(gh, repo, args.env, ref, args.image, args.model_version, args.url)
    print(f"github deployment: {args.env} deployment {dep} recorded ({args.image})")
    write_outputs(deployment_id=str(dep))
    return 0


def _previous(args: argparse.Namespace) -> int:
    gh = GitHub.from_env()
    prev = previous_deployment(gh, repo_from_env(args.repo), args.env)
    if args.expect_image and prev["image"] != args.expect_image:
        raise MlgateError(
            f"refusing the rollback: {args.env} moved while it waited. The target is now "
            f"{prev['image']}, not {args.expect_image} (a deployment ran in between); start "
            "the rollback again if it is still wanted"
        )
    line = (
        f"{args.env} before the current one was {prev['image']} "
        f"(model {prev.get('model_version', '?')}, commit {prev['ref']})"
    )
    print(f"github previous-deployment: {line}")
    append_summary(f"### Rollback target\n\n{line}\n")
    write_outputs(
        image=prev["image"], model_version=str(prev.get("model_version", "")), ref=prev["ref"]
    )
    return 0


def _check_release(args: argparse.Namespace) -> int:
    gh = GitHub.from_env()
    sha = args.sha or os.environ.get("GITHUB_SHA", "")
    if not sha:
        raise MlgateError("pass --sha (or set GITHUB_SHA): the commit this run delivers")
    held = check_release(
        gh,
        repo_from_env(args.repo),
        args.env,
        args.image,
        sha,
        args.branch,
        args.allow_unreviewed == "true",
    )
    print(f"github check-release: {args.env}: " + "; ".join(held))
    return 0


def _setup_parser(
    ghsub: Any, common: argparse.ArgumentParser, repo: argparse.ArgumentParser
) -> None:
    p = ghsub.add_parser(
        "setup",
        parents=[repo],
        help="create/update the staging and production environments and the gate check",
        description="Idempotently create or update environments `staging` and `production` "
        "(production: required reviewers, prevent self-review; both: deployments from BRANCH "
        "only) and protect BRANCH so the gate check is required. Prints what changed.",
    )
    reviewers = p.add_mutually_exclusive_group()  # both would leave production unreviewed
    reviewers.add_argument(
        "--reviewer",
        action="append",
        default=[],
        metavar="user:LOGIN|team:ORG/SLUG",
        help="a required reviewer of production (repeatable, at most 6)",
    )
    reviewers.add_argument(
        "--no-reviewers", action="store_true", help="the plan fallback (see docs)"
    )
    p.add_argument(
        "--branch", type=values.name, default="main", help="the deployment branch (default: main)"
    )
    p.add_argument(
        "--check",
        type=values.name,
        default=DEFAULT_CHECK,
        help="required check (default: %(default)s)",
    )
    p.add_argument(
        "--approvals",
        type=int,
        default=1,
        choices=range(7),
        metavar="N",
        help="approving reviews a PR needs when the branch is first protected (0-6, "
        "default: %(default)s; 0 suits a one-person repository)",
    )
    p.add_argument(
        "--allow-self-review",
        action="store_true",
        help="let a reviewer approve a production deployment they triggered (a solo "
        "maintainer; without it a lone reviewer can never approve their own merges)",
    )
    p.set_defaults(handler=_setup)


def _comment_parser(
    ghsub: Any, common: argparse.ArgumentParser, repo: argparse.ArgumentParser
) -> None:
    p = ghsub.add_parser(
        "comment",
        parents=[repo],
        help="create or update the one mlgate report comment on a pull request",
    )
    p.add_argument("--pr", type=int, required=True, help="pull request number")
    p.add_argument("--body-file", type=Path, required=True, help="the Markdown report")
    p.set_defaults(handler=_comment)


def _drift_issue_parser(
    ghsub: Any, common: argparse.ArgumentParser, repo: argparse.ArgumentParser
) -> None:
    p = ghsub.add_parser(
        "drift-issue",
        parents=[repo],
        help="open the one `drift` issue, or comment on it while it is open",
        description="Keep ONE open issue labelled `drift` (the label is created if missing): "
        "open it with TITLE and the body file, or add the body as a comment when one is open "
        "(needs issues: write).",
    )
    p.add_argument("--title", required=True, help="title of a new issue")
    p.add_argument("--body-file", type=Path, required=True, help="the Markdown drift summary")
    p.set_defaults(handler=_drift_issue)


def _pull_request_parser(
    ghsub: Any, common: argparse.ArgumentParser, repo: argparse.ArgumentParser
) -> None:
    p = ghsub.add_parser(
        "pull-request",
        parents=[repo],
        help="open the one pull request from a branch, or update its title and body",
        description="Keep ONE open pull request from HEAD into BASE: open it, or, when one is "
        "open from HEAD, replace its title and body (needs pull-requests: write). Pull requests "
        "opened with a workflow's GITHUB_TOKEN start no workflow run: use a GitHub App "
        "installation token or a fine-grained PAT (docs/WORKFLOWS.md#continuous-training).",
    )
    p.add_argument("--head", required=True, help="the branch with the changes")
    p.add_argument("--base", default="main", help="the target branch (default: %(default)s)")
    p.add_argument("--title", required=True, help="the pull request's title")
    p.add_argument("--body-file", type=Path, required=True, help="the Markdown body")
    p.set_defaults(handler=_pull_request)


def _record_deployment_parser(
    ghsub: Any, common: argparse.ArgumentParser, repo: argparse.ArgumentParser
) -> None:
    p = ghsub.add_parser(
        "record-deployment",
        parents=[repo],
        help="record a successful deployment (image digest, model version, commit)",
    )
    p.add_argument("--env", required=True, choices=ENVIRONMENTS)
    p.add_argument(
        "--image", required=True, type=values.image_by_digest, help="REGISTRY/REPO@sha256:…"
    )
    p.add_argument(
        "--model-version",
        type=values.optional_version,
        default="",
        help="the registered model version",
    )
    p.add_argument("--ref", default="", help="the commit (default: $GITHUB_SHA)")
    p.add_argument("--url", default="", help="the environment's URL")
    p.set_defaults(handler=_record)


def _previous_deployment_parser(
    ghsub: Any, common: argparse.ArgumentParser, repo: argparse.ArgumentParser
) -> None:
    p = ghsub.add_parser(
        "previous-deployment",
        parents=[repo],
        help="the image and model of the deployment before the current one",
    )
    p.add_argument("--env", default=PRODUCTION, choices=ENVIRONMENTS)
    p.add_argument(
        "--expect-image",
        default="",
        help="fail unless the target is still this image (production did not move meanwhile)",
    )
    p.set_defaults(handler=_previous)


def _check_release_parser(
    ghsub: Any, common: argparse.ArgumentParser, repo: argparse.ArgumentParser
) -> None:
    p = ghsub.add_parser(
        "check-release",
        parents=[repo],
        help="refuse a stale, re-run or unapproved deployment before it starts",
        description="Exit non-zero unless BRANCH's head is the commit this run delivers and, "
        "for production, staging's newest deployment record is IMAGE and a reviewer approved "
        "this run (needs contents, deployments and actions read).",
    )
    p.add_argument("--env", required=True, choices=ENVIRONMENTS)
    p.add_argument(
        "--image",
        required=True,
        type=values.image_by_digest,
        help="the image by digest about to be deployed",
    )
    p.add_argument("--sha", default="", help="the commit delivered (default: $GITHUB_SHA)")
    p.add_argument(
        "--branch", type=values.name, default="main", help="the deployment branch (default: main)"
    )
    p.add_argument(
        "--allow-unreviewed",
        choices=("true", "false"),
        default="false",
        help="true: deploy production without an approval on record (repositories that "
        "cannot have required reviewers; docs/WORKFLOWS.md#plan-fallback). Default: false",
    )
    p.set_defaults(handler=_check_release)


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    gh = sub.add_parser(
        "github",
        help="GitHub as code: environments, required check, PR comment, deployments",
        description="Talk to the GitHub REST API (GITHUB_API_URL, GITHUB_TOKEN, "
        "GITHUB_REPOSITORY as on a runner).",
    )
    ghsub = gh.add_subparsers(dest="github_command", metavar="COMMAND", required=True)
    repo = argparse.ArgumentParser(add_help=False)
    repo.add_argument("--repo", help="OWNER/NAME (default: $GITHUB_REPOSITORY)")
    for parser in (
        _setup_parser,
        _comment_parser,
        _drift_issue_parser,
        _pull_request_parser,
        _record_deployment_parser,
        _previous_deployment_parser,
        _check_release_parser,
    ):
        parser(ghsub, common, repo)
