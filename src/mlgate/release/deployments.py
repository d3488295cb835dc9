"""GitHub deployments as the release record: what was deployed where (image by digest, model
version), who approved it, the previous one to roll back to, and the release check."""

from __future__ import annotations

import contextlib
import json
import os
import re
from typing import TYPE_CHECKING, Any

from mlgate import values
from mlgate.errors import MlgateError
from mlgate.names import PRODUCTION, STAGING
from mlgate.release import github
from mlgate.release.github import GitHub, need, quote

if TYPE_CHECKING:
    from collections.abc import Iterator


def record_deployment(
    gh: GitHub,
    repo: str,
    environment: str,
    ref: str,
    image: str,
    model_version: str,
    url: str = "",
    description: str = "",
    extra: dict[str, Any] | None = None,
) -> int:
    """A GitHub deployment (payload: image digest, model version, commit, approvers, and
    `extra`, e.g. a trial's stage), successful."""
    payload: dict[str, Any] = {"image": image, "model_version": model_version, "commit": ref}
    payload.update(extra or {})
    run_id = os.environ.get("GITHUB_RUN_ID")
    if run_id:
        payload["run_id"] = run_id
        payload["approved_by"] = approvers(gh, repo, run_id, environment)
    dep = gh.request(
        "POST",
        f"/repos/{repo}/deployments",
        {
            "ref": ref,
            "environment": environment,
            "auto_merge": False,
            "required_contexts": [],  # the gate already ran; this records, it does not gate
            "payload": payload,
            "description": (description or f"model {model_version}, {image}")[:140],
            "production_environment": environment == PRODUCTION,
        },
        expect=dict,
    )
    dep_id = need(dep, "id", what=f"POST /repos/{repo}/deployments", kind=int)
    status: dict[str, Any] = {"state": "success", "auto_inactive": True}
    if url:
        status["environment_url"] = url
    gh.request("POST", f"/repos/{repo}/deployments/{dep_id}/statuses", status, expect=dict)
    return dep_id


def approvers(gh: GitHub, repo: str, run_id: str, environment: str) -> list[str]:
    """Who approved this run's deployment to `environment` (needs `actions: read`)."""
    path = f"/repos/{repo}/actions/runs/{run_id}/approvals"
    reviews = gh.request("GET", path, expect=list)
    return sorted(
        {
            need(r, "user", "login", what=f"GET {path}", kind=str)
            for r in reviews
            if r.get("state") == "approved"
            and any(e.get("name") == environment for e in r.get("environments", []))
        }
    )


def recorded_deployments(gh: GitHub, repo: str, environment: str) -> Iterator[dict[str, Any]]:
    """mlgate's successful deployment records of `environment`, newest first, page by page
    (GitHub's own per-job deployments, which carry no image, are skipped)."""
    for page in range(1, github.MAX_PAGES + 1):
        path = f"/repos/{repo}/deployments?environment={quote(environment)}&per_page=100"
        deps = gh.request("GET", f"{path}&page={page}", expect=list)
        for dep in deps:  # newest first
            payload = dep.get("payload") or {}
            if isinstance(payload, str):  # GitHub keeps a payload sent as a string as one
                with contextlib.suppress(ValueError):
                    payload = json.loads(payload or "{}")
            if not isinstance(payload, dict) or not payload.get("image"):
                continue  # not one of mlgate's records
            dep_id = need(dep, "id", what=f"GET {path}", kind=int)
            status_path = f"/repos/{repo}/deployments/{dep_id}/statuses?per_page=1"
            statuses = gh.request("GET", status_path, expect=list)
            if statuses and statuses[0].get("state") in ("success", "inactive"):
                ref = need(dep, "ref", what=f"GET {path}", kind=str)
                yield {"id": dep_id, "ref": ref, **payload}
        if len(deps) < 100:
            return
    raise MlgateError(
        f"{repo} has more than {github.MAX_PAGES} pages of {environment} deployments: "
        "refused rather than read without end"
    )


# What a rollback may deploy and write to $GITHUB_OUTPUT: an image pinned by digest, a
# version number, a commit; a record with anything else (a newline would add outputs) is refused.
RECORD_FIELDS = {
    "image": values.IMAGE_BY_DIGEST,
    "model_version": re.compile(r"[1-9][0-9]*"),
    "ref": re.compile(r"[0-9A-Za-z._/-]+"),
}


def previous_deployment(gh: GitHub, repo: str, environment: str) -> dict[str, Any]:
    """The successful deployment before the current one: what a rollback restores (image AND
    model version, from the same record). A record of the image production runs now is never
    a target (a re-run deployment, or the champion a trial was aborted back to: a rollback
    to it would change nothing), nor a trial's two-model deployment (payload stage `trial`):
    before a trial, production ran the champion alone, and a trial cut short (its job died)
    is rolled back to that champion."""
    records = recorded_deployments(gh, repo, environment)
    current = next(records, None)
    found = None
    if current is not None:
        found = next(
            (r for r in records if r.get("stage") != "trial" and r["image"] != current["image"]),
            None,
        )
    if current is None or found is None:
        raise MlgateError(
            f"{repo} has no successful {environment} deployment of another image than the "
            "current one: nothing to roll back to"
        )
    for name, pattern in RECORD_FIELDS.items():
        if not pattern.fullmatch(str(found.get(name, ""))):
            raise MlgateError(
                f"refusing the rollback target: deployment {found['id']} of {environment} has "
                f"{name} {str(found.get(name, ''))[:80]!r}, not a {name} mlgate records "
                "(deployment records can be written by anyone with write access)"
            )
    return found


def check_release(
    gh: GitHub,
    repo: str,
    environment: str,
    image: str,
    sha: str,
    branch: str = "main",
    allow_unreviewed: bool = False,
) -> list[str]:
    """Refuse a deployment a stale, re-run or unapproved run would make; returns what held.

    - the run delivers the head of `branch` (a re-run of an old run, or a run overtaken by a
      newer merge, never deploys an older commit);
    - production only: the newest staging record is this image (what is promoted is what
      staging runs and was tested), and a reviewer approved this run's production job.
    """
    path = f"/repos/{repo}/branches/{quote(branch)}"
    head = need(gh.request("GET", path), "commit", "sha", what=f"GET {path}", kind=str)
    if head != sha:
        raise MlgateError(
            f"refusing to deploy to {environment}: this run delivers {sha[:12]}, but {branch} "
            f"is now at {head[:12]}. A newer commit supersedes it (a re-run of an old run never "
            "promotes an old version); its own cd run delivers it."
        )
    held = [f"{branch} is at {sha[:12]}, the commit this run delivers"]
    if environment != PRODUCTION:
        return held
    staged = next(recorded_deployments(gh, repo, STAGING), None)
    if staged is None or staged["image"] != image:
        now = staged["image"] if staged else "nothing"
        raise MlgateError(
            f"refusing to deploy to production: staging runs {now}, not {image}. Only the "
            "image staging runs (and was smoke-tested there) is promoted."
        )
    held.append(f"staging runs {image}")
    run_id = os.environ.get("GITHUB_RUN_ID")
    approved = approvers(gh, repo, run_id, environment) if run_id else []
    if approved:
        held.append(f"approved by {', '.join(approved)}")
    elif allow_unreviewed:
        held.append(
            "NOT approved by anyone: allow-unreviewed-production is set (the plan fallback)"
        )
    else:
        raise MlgateError(
            f"refusing to deploy to production: no approval of the production environment is "
            f"on record for run {run_id or '(no GITHUB_RUN_ID)'}. The environment has no "
            "required reviewers: run `mlgate github setup --reviewer …` (docs/WORKFLOWS.md, "
            "First push to GitHub), then re-run this job. A repository that cannot have "
            "reviewers (private, below GitHub Enterprise) sets the ml-cd input "
            "allow-unreviewed-production: true and protects production another way."
        )
    return held
