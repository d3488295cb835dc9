"""GitHub as code: environments, the required gate check, the PR report comment, deployments."""

from __future__ import annotations

import contextlib
import json
import operator
import os
import re
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate import values
from mlgate.errors import MlgateError, shown
from mlgate.io import read_bounded
from mlgate.names import ENVIRONMENTS, PRODUCTION, STAGING

if TYPE_CHECKING:
    from collections.abc import Iterator

API_VERSION = "2022-11-28"
COMMENT_MARKER = "<!-- mlgate-report -->"
DEFAULT_CHECK = "ml / gate"  # "<caller job id> / <reusable job name>" as GitHub names it
# Every call ends: a socket that stays silent this long, a whole request (body included) this
# long, a body this large, a listing this many pages of 100 (GitHub's own lists stop far sooner)
SOCKET_TIMEOUT = 30.0
REQUEST_DEADLINE = 60.0
MAX_BODY = 20 * 1024 * 1024
MAX_PAGES = 50
PLAN_FALLBACK = (
    "GitHub offers required reviewers on environments only for public repositories, and for "
    "private ones on GitHub Enterprise. Fallback (docs/WORKFLOWS.md#plan-fallback): rerun with "
    "`mlgate github setup --no-reviewers`, which keeps the main-only deployment branch policy, "
    "and call ml-cd.yml with `production: false`, so production is released only by a person "
    "who starts the cd workflow by hand (workflow_dispatch, write access required)."
)


class GitHubError(MlgateError):
    """The GitHub API refused a request; the message says what to do about it."""

    def __init__(self, status: int, method: str, path: str, message: str) -> None:
        self.status = status
        super().__init__(_explain(status, method, path, message))


def _explain(status: int, method: str, path: str, message: str) -> str:
    what = f"GitHub API {method} {path} answered {status}: {message}"
    hint = {
        401: "the token was rejected: set GITHUB_TOKEN to a valid token",
        403: "the token may not do this: `github setup` needs a token with admin rights on the "
        "repository (fine-grained: Administration and Environments read/write); a workflow's "
        "GITHUB_TOKEN needs the permission named in the job",
        404: "not found: check the repository name (--repo / GITHUB_REPOSITORY), that the token "
        "can see it, and, for branch protection, that the branch exists",
        422: "GitHub rejected the payload",
    }.get(status)
    return f"{what}\n  {hint}" if hint else what


@dataclass
class GitHub:
    """A minimal REST client: JSON in, JSON out, errors as GitHubError."""

    token: str
    api_url: str = "https://api.github.com"
    log: list[str] | None = None

    @classmethod
    def from_env(cls) -> GitHub:
        token = os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN")
        if not token:
            raise MlgateError("set GITHUB_TOKEN (or GH_TOKEN) to a GitHub token")
        return cls(token=token, api_url=os.environ.get("GITHUB_API_URL", cls.api_url))

    def request(
        self, method: str, path: str, payload: Any = None, expect: type | None = None
    ) -> Any:
        """The answer's JSON; with `expect` (dict or list of dicts) anything else is refused."""
        import http.client  # lazy: `mlgate --help` should not pay for http.client
        import urllib.error
        import urllib.request

        url = self.api_url.rstrip("/") + path
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/vnd.github+json")
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("X-GitHub-Api-Version", API_VERSION)
        req.add_header("User-Agent", "mlgate")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        endpoint = f"GitHub API {method} {shown(path, 120)[1:-1]}"
        deadline = time.monotonic() + REQUEST_DEADLINE
        try:
            with urllib.request.urlopen(req, timeout=SOCKET_TIMEOUT) as resp:
                status = resp.status
                body = read_bounded(resp, deadline, endpoint, MAX_BODY)
        except urllib.error.HTTPError as err:
            text = read_bounded(err, deadline, endpoint, MAX_BODY) if err.fp else b""
            raise GitHubError(err.code, method, path, _api_message(text)) from None
        except urllib.error.URLError as err:
            reason = shown(str(err.reason), 200)[1:-1]
            raise MlgateError(f"cannot reach the GitHub API at {self.api_url}: {reason}") from None
        except (OSError, http.client.HTTPException) as err:  # reset, timed out, not HTTP
            raise MlgateError(
                f"{endpoint} failed: {type(err).__name__} {shown(str(err), 200)[1:-1]}"
            ) from None
        try:
            answer = json.loads(body) if body else None
        except ValueError:  # an HTML error page, a proxy's answer, a truncated body
            raise MlgateError(
                f"{endpoint} answered {status} with a body that is not JSON: "
                f"{shown(body[:200].decode(errors='replace'))}"
            ) from None
        if expect is not None:
            ok = isinstance(answer, expect)
            if ok and expect is list:  # GitHub's lists are lists of objects
                ok = all(isinstance(item, dict) for item in answer)
            if not ok:
                wanted = "an object" if expect is dict else "a list of objects"
                raise MlgateError(
                    f"{endpoint} answered {status} with {shown(answer, 60)} where {wanted} "
                    "was expected: not what GitHub sends (a proxy? GITHUB_API_URL?)"
                )
        return answer

    def get_or_none(self, path: str) -> Any:
        try:
            return self.request("GET", path)
        except GitHubError as err:
            if err.status == 404:
                return None
            raise

    def paginate(self, path: str, key: str | None = None) -> list[Any]:
        items: list[Any] = []
        sep = "&" if "?" in path else "?"
        for page in range(1, MAX_PAGES + 1):
            got = self.request("GET", f"{path}{sep}per_page=100&page={page}")
            batch = got.get(key) if key and isinstance(got, dict) else got
            if not isinstance(batch, list) or not all(isinstance(i, dict) for i in batch):
                where = f"a list of objects under {key!r}" if key else "a list of objects"
                raise MlgateError(
                    f"GitHub API GET {shown(path, 120)[1:-1]} answered "
                    f"{type(got).__name__} where {where} was expected"
                )
            items.extend(batch)
            if len(batch) < 100:
                return items
        raise MlgateError(
            f"GitHub API GET {shown(path, 120)[1:-1]} has more than {MAX_PAGES} pages "
            f"({len(items):,} items): refused rather than read without end"
        )


def need(answer: Any, *keys: str, what: str, kind: type = object) -> Any:
    """answer[k1][k2]…, or a one-line error naming the request (`what`) and the missing field:
    a proxy's or a broken server's `{}` is not a KeyError deep in mlgate."""
    value = answer
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise MlgateError(f"GitHub API {what} answered without {'.'.join(keys)!r}")
        value = value[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MlgateError(
            f"GitHub API {what} answered {'.'.join(keys)} = {shown(value, 60)}, "
            f"not a {kind.__name__}"
        )
    return value


def _api_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return shown(body[:300].decode(errors="replace"), 200)
    if not isinstance(data, dict):
        return shown(data, 200)
    msg = shown(str(data.get("message", "")), 300)[1:-1]
    errors = data.get("errors")
    if errors:
        msg += " " + shown(json.dumps(errors), 300)[1:-1]
    return msg


def repo_from_env(repo: str | None) -> str:
    repo = repo or os.environ.get("GITHUB_REPOSITORY")
    if not repo or repo.count("/") != 1:
        raise MlgateError("name the repository as OWNER/NAME (--repo or GITHUB_REPOSITORY)")
    return repo


# ---------------------------------------------------------------- setup


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def resolve_reviewers(gh: GitHub, specs: list[str]) -> list[dict[str, Any]]:
    """`user:LOGIN` or `team:ORG/SLUG` (a bare name is a user) -> the API's reviewer objects."""
    if len(specs) > 6:
        raise MlgateError(f"GitHub allows at most 6 required reviewers; got {len(specs)}")
    reviewers = []
    for spec in specs:
        kind, _, name = spec.partition(":") if ":" in spec else ("user", "", spec)
        if kind == "user":
            user = gh.request("GET", f"/users/{_quote(name)}")
            reviewers.append({"type": "User", "id": user["id"]})
        elif kind == "team" and "/" in name:
            org, slug = name.split("/", 1)
            team = gh.request("GET", f"/orgs/{_quote(org)}/teams/{_quote(slug)}")
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
        base = f"/repos/{repo}/environments/{_quote(env)}"
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
    if gh.get_or_none(f"/repos/{repo}/branches/{_quote(branch)}") is None:
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
    path = f"/repos/{repo}/environments/{_quote(env)}/deployment-branch-policies"
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
    base = f"/repos/{repo}/branches/{_quote(branch)}/protection"
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


# ---------------------------------------------------------------- PR comment


COMMENT_LIMIT = 65_536  # GitHub refuses longer issue comments (422)


def upsert_comment(gh: GitHub, repo: str, number: int, body: str) -> tuple[str, int]:
    """One report comment per PR, found by its marker and edited in place on every push."""
    body = f"{COMMENT_MARKER}\n{body}" if COMMENT_MARKER not in body else body
    if len(body) > COMMENT_LIMIT:
        note = "\n\n… cut to fit a GitHub comment: the full report is in the job summary.\n"
        body = body[: COMMENT_LIMIT - len(note)] + note
    comments = gh.paginate(f"/repos/{repo}/issues/{number}/comments")
    for c in comments:
        if COMMENT_MARKER in (c.get("body") or ""):
            cid = need(c, "id", what=f"GET /repos/{repo}/issues/{number}/comments", kind=int)
            gh.request("PATCH", f"/repos/{repo}/issues/comments/{cid}", {"body": body})
            return "updated", cid
    path = f"/repos/{repo}/issues/{number}/comments"
    created = gh.request("POST", path, {"body": body}, expect=dict)
    return "created", need(created, "id", what=f"POST {path}", kind=int)


# ---------------------------------------------------------------- drift issue, retraining PR

DRIFT_LABEL = {"name": "drift", "color": "D93F0B", "description": "mlgate monitor found drift"}


def drift_issue(gh: GitHub, repo: str, title: str, body: str) -> tuple[str, int]:
    """ONE open issue labelled `drift`: created the first day, commented on while drift lasts."""
    label = DRIFT_LABEL["name"]
    path = f"/repos/{repo}/issues?labels={label}&state=open"
    issues = gh.paginate(path)  # every page: the oldest drift issue may be behind 100 others
    open_issues = [i for i in issues if "pull_request" not in i]  # the list holds PRs too
    if open_issues:
        number = min(need(i, "number", what=f"GET {path}", kind=int) for i in open_issues)
        gh.request("POST", f"/repos/{repo}/issues/{number}/comments", {"body": body})
        return "commented on", number
    if gh.get_or_none(f"/repos/{repo}/labels/{label}") is None:
        gh.request("POST", f"/repos/{repo}/labels", DRIFT_LABEL)
    created = gh.request(
        "POST",
        f"/repos/{repo}/issues",
        {"title": title, "body": body, "labels": [label]},
        expect=dict,
    )
    return "opened", need(created, "number", what=f"POST /repos/{repo}/issues", kind=int)


def upsert_pull_request(
    gh: GitHub, repo: str, head: str, base: str, title: str, body: str
) -> tuple[str, int]:
    """ONE open pull request from branch `head`: opened once, its title and body updated after."""
    owner = repo.split("/")[0]
    path = f"/repos/{repo}/pulls?head={_quote(f'{owner}:{head}')}&state=open&per_page=1"
    found = gh.request("GET", path, expect=list)
    if found:
        number = need(found[0], "number", what=f"GET {path}", kind=int)
        gh.request("PATCH", f"/repos/{repo}/pulls/{number}", {"title": title, "body": body})
        return "updated", number
    created = gh.request(
        "POST",
        f"/repos/{repo}/pulls",
        {"title": title, "head": head, "base": base, "body": body, "maintainer_can_modify": True},
        expect=dict,
    )
    return "opened", need(created, "number", what=f"POST /repos/{repo}/pulls", kind=int)


# ---------------------------------------------------------------- deployments


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
    for page in range(1, MAX_PAGES + 1):
        path = f"/repos/{repo}/deployments?environment={_quote(environment)}&per_page=100"
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
        f"{repo} has more than {MAX_PAGES} pages of {environment} deployments: "
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
    path = f"/repos/{repo}/branches/{_quote(branch)}"
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


# ---------------------------------------------------------------- outputs and CLI


def read_body(path: Path) -> str:
    """A comment or issue body from a file, cut to fit GitHub's limit (the job summary has all)."""
    try:
        body = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise MlgateError(f"cannot read the body file {path}: {err.strerror}") from None
    if len(body) > COMMENT_LIMIT:
        note = "\n\n… cut to fit GitHub's limit: the full text is in the job summary.\n"
        body = body[: COMMENT_LIMIT - len(note)] + note
    return body
