"""GitHub's REST API as mlgate uses it: one client (deadlines, paging, errors naming the endpoint),
the PR report comment, the drift issue and the retraining pull request."""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.errors import MlgateError, shown
from mlgate.io import read_bounded

if TYPE_CHECKING:
    pass

API_VERSION = "2022-11-28"
COMMENT_MARKER = "<!-- mlgate-report -->"
DEFAULT_CHECK = "ml / gate"  # "<caller job id> / <reusable job name>" as GitHub names it
# Every call ends: a socket that stays silent this long, a whole request (body included) this
# long, a body this large, a listing this many pages of 100 (GitHub's own lists stop far sooner)
SOCKET_TIMEOUT = 30.0
REQUEST_DEADLINE = 60.0
MAX_BODY = 20 * 1024 * 1024
MAX_PAGES = 50


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


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def repo_from_env(repo: str | None) -> str:
    repo = repo or os.environ.get("GITHUB_REPOSITORY")
    if not repo or repo.count("/") != 1:
        raise MlgateError("name the repository as OWNER/NAME (--repo or GITHUB_REPOSITORY)")
    return repo


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
    path = f"/repos/{repo}/pulls?head={quote(f'{owner}:{head}')}&state=open&per_page=1"
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


# ---------------------------------------------------------------- comment and issue bodies


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
