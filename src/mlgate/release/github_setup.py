"""`mlgate github setup`: the staging and production environments (reviewers, main-only branch
policy) and main's protection (the required check, approvals), made idempotently."""

from __future__ import annotations

import contextlib
import operator
from typing import TYPE_CHECKING, Any

from mlgate.errors import MlgateError
from mlgate.names import ENVIRONMENTS, PRODUCTION
from mlgate.release.github import DEFAULT_CHECK, GitHub, GitHubError, quote

if TYPE_CHECKING:
    from collections.abc import Iterator


PLAN_FALLBACK = (
    "GitHub offers required reviewers on environments only for public repositories, and for "
    "private ones on GitHub Enterprise. Fallback (docs/WORKFLOWS.md#plan-fallback): rerun with "
    "`mlgate github setup --no-reviewers`, which keeps the main-only deployment branch policy, "
    "and call ml-cd.yml with `production: false`, so production is released only by a person "
    "who starts the cd workflow by hand (workflow_dispatch, write access required)."
)


def resolve_reviewers(gh: GitHub, specs: list[str]) -> list[dict[str, Any]]:
    """`user:LOGIN` or `team:ORG/SLUG` (a bare name is a user) -> the API's reviewer objects."""
    if len(specs) > 6:
        raise MlgateError(f"GitHub allows at most 6 required reviewers; got {len(specs)}")
    reviewers = []
    for spec in specs:
        kind, _, name = spec.partition(":") if ":" in spec else ("user", "", spec)
        if kind == "user":
            user = gh.request("GET", f"/users/{quote(name)}")
            reviewers.append({"type": "User", "id": user["id"]})
        elif kind == "team" and "/" in name:
            org, slug = name.split("/", 1)
            team = gh.request("GET", f"/orgs/{quote(org)}/teams/{quote(slug)}")
            reviewers.append({"type": "Team", "id": team["id"]})
        else:
            raise MlgateError(f"reviewer {spec!r}: expected user:LOGIN or team:ORG/SLUG")
    return reviewers


def environment_payload(
    name: str, reviewers: list[dict[str, Any]], allow_self_review: bool = False
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "deployment_branch_policy": {"protected_branches": False, "custom_branch_policies": True},
        # GitHub's default is true: a repository admin could deploy past the rules
        "can_admins_bypass": False,
    }
    if name == PRODUCTION:
        payload["reviewers"] = reviewers
        payload["prevent_self_review"] = bool(reviewers) and not allow_self_review
    return payload


def self_review_warning(
    gh: GitHub, reviewers: list[dict[str, Any]], allow_self_review: bool
) -> str | None:
    """The two ways one person and prevent-self-review go wrong, said before anything changes."""
    if allow_self_review:
        return (
            "--allow-self-review: whoever merges to main (or starts a rollback) may approve "
            "that production deployment themselves; one person can release alone"
        )
    if len(reviewers) != 1 or reviewers[0]["type"] != "User":
        return None
    me = gh.get_or_none("/user") or {}
    if me.get("id") != reviewers[0]["id"]:
        return None
    return (
        f"you ({me.get('login')}) are the only required reviewer and prevent-self-review is on: "
        "you cannot approve a production deployment you triggered (every cd run of a commit "
        "you merged, every rollback you start). Add a second reviewer, or rerun with "
        "--allow-self-review if you are the only maintainer"
    )


def _current_environment(env: dict[str, Any]) -> dict[str, Any]:
    """The parts of GET /environments/{name} that environment_payload sets."""
    current: dict[str, Any] = {
        "deployment_branch_policy": env.get("deployment_branch_policy"),
        "can_admins_bypass": env.get("can_admins_bypass", True),  # GitHub's default
    }
    for rule in env.get("protection_rules") or []:
        if rule.get("type") == "required_reviewers":
            current["reviewers"] = [
                {"type": r["type"], "id": r["reviewer"]["id"]} for r in rule.get("reviewers", [])
            ]
            current["prevent_self_review"] = bool(rule.get("prevent_self_review"))
    return current


def _differs(desired: dict[str, Any], current: dict[str, Any]) -> bool:
    for key, want in desired.items():
        have = current.get(key)
        if key == "reviewers":
            key_of = operator.itemgetter("type", "id")
            if sorted(map(key_of, want)) != sorted(map(key_of, have or [])):
                return True
        elif key == "prevent_self_review":
            if bool(have) != want:
                return True
        elif have != want:
            return True
    return False


def setup(
    gh: GitHub,
    repo: str,
    reviewers: list[str],
    branch: str = "main",
    check: str = DEFAULT_CHECK,
    no_reviewers: bool = False,
    approvals: int = 1,
    allow_self_review: bool = False,
) -> list[str]:
    """Make environments and branch rule match the design; returns what changed."""
    if not reviewers and not no_reviewers:
        raise MlgateError(
            "production needs at least one required reviewer: pass --reviewer user:LOGIN or "
            "--reviewer team:ORG/SLUG (or --no-reviewers for the plan fallback)"
        )
    info = gh.request("GET", f"/repos/{repo}")
    ids = [] if no_reviewers else resolve_reviewers(gh, reviewers)
    warning = None if no_reviewers else self_review_warning(gh, ids, allow_self_review)
    if warning:
        print(f"github setup: WARNING {warning}")
    changes: list[str] = []
    for env in ENVIRONMENTS:
        base = f"/repos/{repo}/environments/{quote(env)}"
        desired = environment_payload(env, ids, allow_self_review)
        existing = gh.get_or_none(base)
        if existing is None or _differs(desired, _current_environment(existing)):
            try:
                gh.request("PUT", base, desired)
            except GitHubError as err:
                if (
                    desired.get("reviewers")
                    and info.get("private")
                    and err.status in (403, 404, 422)
                ):
                    raise MlgateError(
                        f"{repo} is private and its plan does not allow required reviewers on "
                        f"environment {env!r} (GitHub answered {err.status}).\n{PLAN_FALLBACK}"
                    ) from None
                raise
            what = "created" if existing is None else "updated"
            detail = ", branch policy: custom"
            if env == PRODUCTION:
                detail += (
                    f", reviewers: {len(ids)}, "
                    f"prevent self-review: {desired['prevent_self_review']}"
                )
            detail += ", admins cannot bypass"
            changes.append(f"environment {env}: {what}{detail}")
        with _plan_limits(info, repo, f"the deployment branch policy of {env!r}"):
            changes += _branch_policy(gh, repo, env, branch)
    if gh.get_or_none(f"/repos/{repo}/branches/{quote(branch)}") is None:
        # The environments must exist before the first push to main (whose cd run would
        # otherwise create them unprotected); the branch rule needs the branch.
        changes.append(
            f"branch {branch}: not on GitHub yet, so not protected: push it, then run "
            "`mlgate github setup` again for the required check"
        )
    else:
        with _plan_limits(info, repo, f"protecting branch {branch}"):
            changes += _protect(gh, repo, branch, check, approvals)
    return changes


@contextlib.contextmanager
def _plan_limits(info: dict[str, Any], repo: str, what: str) -> Iterator[None]:
    """A 403 on a private repository is usually its plan, not the token: say so."""
    try:
        yield
    except GitHubError as err:
        if info.get("private") and err.status == 403:
            raise MlgateError(
                f"{repo} is private and GitHub refused {what} (403). On the Free plan private "
                "repositories have no branch protection and no environment deployment branch "
                "policies: make the repository public or move it to a plan that has them "
                "(docs/WORKFLOWS.md#plan-fallback). Until then production is guarded only by "
                f"the fail-closed check of the cd workflow.\n{err}"
            ) from None
        raise


def _branch_policy(gh: GitHub, repo: str, env: str, branch: str) -> list[str]:
    path = f"/repos/{repo}/environments/{quote(env)}/deployment-branch-policies"
    policies = gh.paginate(path, key="branch_policies")
    changes = []
    if not any(p["name"] == branch and p.get("type", "branch") == "branch" for p in policies):
        gh.request("POST", path, {"name": branch, "type": "branch"})
        changes.append(f"environment {env}: deployments allowed from branch {branch!r}")
    for p in policies:
        if not (p["name"] == branch and p.get("type", "branch") == "branch"):
            # "main only": any other branch or tag pattern could deploy unreviewed code
            gh.request("DELETE", f"{path}/{p['id']}")
            changes.append(f"environment {env}: removed deployment policy {p['name']!r}")
    return changes


def _protect(gh: GitHub, repo: str, branch: str, check: str, approvals: int) -> list[str]:
    base = f"/repos/{repo}/branches/{quote(branch)}/protection"
    current = gh.get_or_none(base)
    if current is None:
        gh.request(
            "PUT",
            base,
            {
                "required_status_checks": {"strict": True, "checks": [{"context": check}]},
                "enforce_admins": True,
                "required_pull_request_reviews": (
                    {"required_approving_review_count": approvals} if approvals else None
                ),
                "restrictions": None,
            },
        )
        return [
            f"branch {branch}: protected; pull requests need check {check!r} "
            f"and {approvals} approving review(s)"
        ]
    checks = current.get("required_status_checks")
    if checks is None:
        gh.request(
            "PATCH",
            f"{base}/required_status_checks",
            {"strict": True, "checks": [{"context": check}]},
        )
        return [f"branch {branch}: check {check!r} is now required"]
    contexts = set(checks.get("contexts") or []) | {
        c["context"] for c in checks.get("checks") or []
    }
    if check not in contexts:
        gh.request("POST", f"{base}/required_status_checks/contexts", [check])
        return [f"branch {branch}: check {check!r} added to the required checks"]
    return []
