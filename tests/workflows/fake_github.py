"""A local HTTP server playing the parts of the GitHub REST API mlgate uses; it records requests.

Paths and payload shapes follow GitHub's documentation (REST API 2022-11-28): environments,
deployment branch policies, branch protection, issue comments, deployments, users and teams.

As strict as GitHub where mlgate could be wrong: every request is authorised (an unknown token
is 401; a workflow's GITHUB_TOKEN holds only its job's effective `permissions:` and anything
else is GitHub's 403), and lists are paged (`per_page`, default 30, at most 100, `Link`).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

# What GitHub answers a GITHUB_TOKEN (an installation token) that lacks the permission.
NOT_ACCESSIBLE = {
    "message": "Resource not accessible by integration",
    "documentation_url": "https://docs.github.com/rest",
    "status": "403",
}
LEVEL = {"read": 1, "write": 2}
# A route's need: alternatives, any one suffices ((scope, level), ...); () is `metadata: read`,
# which every token holds; USER_ONLY is an endpoint an installation token is never let into.
Need = tuple[tuple[str, str], ...]
USER_ONLY: Need = (("<a user's token>", "read"),)
ISSUES_OR_PRS_READ: Need = (("issues", "read"), ("pull-requests", "read"))
ISSUES_OR_PRS_WRITE: Need = (("issues", "write"), ("pull-requests", "write"))

PLAN_MESSAGE = (
    "Failed to create the environment protection rule. Please ensure the billing plan "
    "include the required reviewers protection rule."
)


@dataclass
class Request:
    method: str
    path: str  # without the query string
    query: str
    body: Any
    auth: str
    job: str = ""  # "workflow/job" of the act job that made it (the job token only)


@dataclass
class FakeGitHub:
    repo: str = "acme/credit-model"
    private: bool = False
    plan_allows_reviewers: bool = True
    users: dict[str, int] = field(default_factory=lambda: {"alice": 101, "bob": 102, "carol": 103})
    teams: dict[str, int] = field(default_factory=lambda: {"acme/ml-leads": 201})
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)
    branch_policies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    protection: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    statuses: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    approvals: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # run id -> reviews
    issues: list[dict[str, Any]] = field(default_factory=list)  # issues and pull requests
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    viewer: str = "carol"  # who the token belongs to (GET /user)
    heads: Mapping[str, str] = field(default_factory=lambda: {"main": "b2"})  # branch -> sha
    fail: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    # Tokens: users' and Apps' tokens with their permissions (None: a repository admin's
    # classic token, allowed everything); `job_token` is the GITHUB_TOKEN act hands every job,
    # and `job_permissions` what it may do in each job: (workflow name, job id) -> scope ->
    # read/write, the job's effective permissions (road.job_permissions).
    tokens: dict[str, dict[str, str] | None] = field(default_factory=lambda: {"test-token": None})
    job_token: str = ""
    job_permissions: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # (job, method, path)
    # The world moving while a job runs: called with (method, path) before each request is
    # answered (a test moves production while a delivery reads its approvals).
    on_request: Callable[[str, str], None] | None = None
    _next_id: int = 1000

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    @property
    def mutations(self) -> list[tuple[str, str, Any]]:
        return [(r.method, r.path, r.body) for r in self.requests if r.method != "GET"]

    # ------------------------------------------------------------ routing

    def handle(
        self, method: str, path: str, body: Any, auth: str = "Bearer test-token", job: str = ""
    ) -> tuple[int, Any]:
        """Answer one request made with Authorization `auth`; `job` is "workflow/job" of the
        act job that made it (when made with the job token)."""
        if self.on_request is not None:
            self.on_request(method, path)
        if (method, path) in self.fail:
            status, message = self.fail[(method, path)]
            return status, {"message": message, "documentation_url": "https://docs.github.com"}
        repo = re.escape(self.repo)
        routes: list[tuple[str, str, Any, Need]] = [
            ("GET", rf"/repos/{repo}", self._repo, ()),
            ("GET", r"/users/(?P<login>[^/]+)", self._user, ()),
            ("GET", r"/user", self._viewer, USER_ONLY),
            ("GET", rf"/repos/{repo}/branches/(?P<b>[^/]+)", self._branch, (("contents", "read"),)),
            ("GET", r"/orgs/(?P<org>[^/]+)/teams/(?P<slug>[^/]+)", self._team, USER_ONLY),
            (
                "GET",
                rf"/repos/{repo}/environments/(?P<env>[^/]+)",
                self._get_env,
                (("actions", "read"),),
            ),
            (
                "PUT",
                rf"/repos/{repo}/environments/(?P<env>[^/]+)",
                self._put_env,
                (("administration", "write"),),
            ),
            (
                "GET",
                rf"/repos/{repo}/environments/(?P<env>[^/]+)/deployment-branch-policies",
                self._list_policies,
                (("administration", "read"),),
            ),
            (
                "POST",
                rf"/repos/{repo}/environments/(?P<env>[^/]+)/deployment-branch-policies",
                self._add_policy,
                (("administration", "write"),),
            ),
            (
                "DELETE",
                rf"/repos/{repo}/environments/(?P<env>[^/]+)/deployment-branch-policies/(?P<id>\d+)",
                self._delete_policy,
                (("administration", "write"),),
            ),
            (
                "GET",
                rf"/repos/{repo}/branches/(?P<b>[^/]+)/protection",
                self._get_protection,
                (("administration", "read"),),
            ),
            (
                "PUT",
                rf"/repos/{repo}/branches/(?P<b>[^/]+)/protection",
                self._put_protection,
                (("administration", "write"),),
            ),
            (
                "PATCH",
                rf"/repos/{repo}/branches/(?P<b>[^/]+)/protection/required_status_checks",
                self._patch_checks,
                (("administration", "write"),),
            ),
            (
                "POST",
                rf"/repos/{repo}/branches/(?P<b>[^/]+)/protection/required_status_checks/contexts",
                self._add_contexts,
                (("administration", "write"),),
            ),
            (
                "GET",
                rf"/repos/{repo}/issues/(?P<n>\d+)/comments",
                self._list_comments,
                ISSUES_OR_PRS_READ,
            ),
            (
                "POST",
                rf"/repos/{repo}/issues/(?P<n>\d+)/comments",
                self._add_comment,
                ISSUES_OR_PRS_WRITE,
            ),
            (
                "PATCH",
                rf"/repos/{repo}/issues/comments/(?P<id>\d+)",
                self._edit_comment,
                ISSUES_OR_PRS_WRITE,
            ),
            (
                "GET",
                rf"/repos/{repo}/deployments",
                self._list_deployments,
                (("deployments", "read"),),
            ),
            (
                "POST",
                rf"/repos/{repo}/deployments",
                self._add_deployment,
                (("deployments", "write"),),
            ),
            (
                "GET",
                rf"/repos/{repo}/deployments/(?P<id>\d+)/statuses",
                self._list_statuses,
                (("deployments", "read"),),
            ),
            (
                "POST",
                rf"/repos/{repo}/deployments/(?P<id>\d+)/statuses",
                self._add_status,
                (("deployments", "write"),),
            ),
            (
                "GET",
                rf"/repos/{repo}/actions/runs/(?P<run>\d+)/approvals",
                self._approvals,
                (("actions", "read"),),
            ),
            ("GET", rf"/repos/{repo}/issues", self._list_issues, ISSUES_OR_PRS_READ),
            ("POST", rf"/repos/{repo}/issues", self._add_issue, (("issues", "write"),)),
            ("GET", rf"/repos/{repo}/labels/(?P<name>[^/]+)", self._get_label, ISSUES_OR_PRS_READ),
            ("POST", rf"/repos/{repo}/labels", self._add_label, ISSUES_OR_PRS_WRITE),
            ("GET", rf"/repos/{repo}/pulls", self._list_pulls, (("pull-requests", "read"),)),
            ("POST", rf"/repos/{repo}/pulls", self._add_pull, (("pull-requests", "write"),)),
            (
                "PATCH",
                rf"/repos/{repo}/pulls/(?P<n>\d+)",
                self._edit_pull,
                (("pull-requests", "write"),),
            ),
        ]
        for verb, pattern, fn, need in routes:
            m = re.fullmatch(pattern, path)
            if verb == method and m:
                self._by_job_token = bool(self.job_token) and self.job_token in auth
                refused = self._authorize(auth, job, need)
                if refused:
                    self.refused.append((job, method, path))
                    return refused
                return fn(body, **{k: unquote(v) for k, v in m.groupdict().items()})
        return 404, {"message": "Not Found"}

    def _authorize(self, auth: str, job: str, need: Need) -> tuple[int, Any] | None:
        """None when the token may; else GitHub's answer (401 unknown token, 403 lacking)."""
        token = auth.removeprefix("Bearer ").removeprefix("token ")
        if self.job_token and token == self.job_token:
            workflow, _, job_id = job.partition("/")
            if (workflow, job_id) not in self.job_permissions:
                return 500, {"message": f"fake GitHub: no permissions known for job {job!r}"}
            granted: dict[str, str] | None = self.job_permissions[(workflow, job_id)]
            if need == USER_ONLY:
                return 403, NOT_ACCESSIBLE
        elif token in self.tokens:
            granted = self.tokens[token]
        else:
            return 401, {
                "message": "Bad credentials",
                "documentation_url": "https://docs.github.com/rest",
            }
        if granted is None or not need:
            return None
        if any(LEVEL.get(granted.get(scope, ""), 0) >= LEVEL[level] for scope, level in need):
            return None
        return 403, NOT_ACCESSIBLE

    def page(self, items: list[Any]) -> list[Any]:
        """One page of a list, as GitHub pages it (per_page: default 30, at most 100); the
        `Link` header of the response names the next and last pages."""
        per_page = min(int(self._query.get("per_page", 30)), 100)
        number = int(self._query.get("page", 1))
        last = max(1, -(-len(items) // per_page))
        links = []
        if number < last:
            links.append(f'<{{url}}page={number + 1}>; rel="next"')
            links.append(f'<{{url}}page={last}>; rel="last"')
        self._link = ", ".join(links)
        return items[(number - 1) * per_page : number * per_page]

    def _repo(self, body: Any) -> tuple[int, Any]:
        return 200, {"full_name": self.repo, "private": self.private}

    def _user(self, body: Any, login: str) -> tuple[int, Any]:
        if login not in self.users:
            return 404, {"message": "Not Found"}
        return 200, {"login": login, "id": self.users[login], "type": "User"}

    def _viewer(self, body: Any) -> tuple[int, Any]:
        return self._user(body, self.viewer)

    def _branch(self, body: Any, b: str) -> tuple[int, Any]:
        if b not in self.heads:
            return 404, {"message": "Branch not found"}
        return 200, {"name": b, "commit": {"sha": self.heads[b]}}

    def _team(self, body: Any, org: str, slug: str) -> tuple[int, Any]:
        key = f"{org}/{slug}"
        if key not in self.teams:
            return 404, {"message": "Not Found"}
        return 200, {"slug": slug, "id": self.teams[key]}

    def _get_env(self, body: Any, env: str) -> tuple[int, Any]:
        if env not in self.environments:
            return 404, {"message": "Not Found"}
        return 200, self.environments[env]

    def _put_env(self, body: Any, env: str) -> tuple[int, Any]:
        reviewers = body.get("reviewers") or []
        if reviewers and self.private and not self.plan_allows_reviewers:
            return 422, {"message": PLAN_MESSAGE}
        rules: list[dict[str, Any]] = []
        if reviewers:
            rules.append(
                {
                    "id": self.new_id(),
                    "type": "required_reviewers",
                    "prevent_self_review": bool(body.get("prevent_self_review")),
                    "reviewers": [
                        {"type": r["type"], "reviewer": {"id": r["id"]}} for r in reviewers
                    ],
                }
            )
        rules.append({"id": self.new_id(), "type": "branch_policy"})
        self.environments[env] = {
            "id": self.new_id(),
            "name": env,
            "protection_rules": rules,
            "deployment_branch_policy": body.get("deployment_branch_policy"),
            "can_admins_bypass": body.get("can_admins_bypass", True),
        }
        return 200, self.environments[env]

    def _list_policies(self, body: Any, env: str) -> tuple[int, Any]:
        if env not in self.environments:
            return 404, {"message": "Not Found"}
        policies = self.branch_policies.get(env, [])
        return 200, {"total_count": len(policies), "branch_policies": self.page(policies)}

    def _add_policy(self, body: Any, env: str) -> tuple[int, Any]:
        policy = {"id": self.new_id(), "name": body["name"], "type": body.get("type", "branch")}
        self.branch_policies.setdefault(env, []).append(policy)
        return 200, policy

    def _delete_policy(self, body: Any, env: str, id: str) -> tuple[int, Any]:
        self.branch_policies[env] = [
            p for p in self.branch_policies.get(env, []) if p["id"] != int(id)
        ]
        return 204, None

    def _get_protection(self, body: Any, b: str) -> tuple[int, Any]:
        if b not in self.protection:
            return 404, {"message": "Branch not protected"}
        return 200, self.protection[b]

    def _put_protection(self, body: Any, b: str) -> tuple[int, Any]:
        checks = body["required_status_checks"]
        self.protection[b] = {
            "required_status_checks": {
                "strict": checks["strict"],
                "contexts": [c["context"] for c in checks.get("checks", [])],
                "checks": [{"context": c["context"], "app_id": None} for c in checks["checks"]],
            }
        }
        return 200, self.protection[b]

    def _patch_checks(self, body: Any, b: str) -> tuple[int, Any]:
        contexts = [c["context"] for c in body.get("checks", [])]
        self.protection[b]["required_status_checks"] = {
            "strict": body["strict"],
            "contexts": contexts,
            "checks": [{"context": c, "app_id": None} for c in contexts],
        }
        return 200, self.protection[b]["required_status_checks"]

    def _add_contexts(self, body: Any, b: str) -> tuple[int, Any]:
        checks = self.protection[b]["required_status_checks"]
        checks["contexts"] = [*checks["contexts"], *body]
        return 200, checks["contexts"]

    def _list_comments(self, body: Any, n: str) -> tuple[int, Any]:
        return 200, self.page(self.comments.get(int(n), []))

    def _add_comment(self, body: Any, n: str) -> tuple[int, Any]:
        comment = {"id": self.new_id(), "body": body["body"]}
        self.comments.setdefault(int(n), []).append(comment)
        return 201, comment

    def _edit_comment(self, body: Any, id: str) -> tuple[int, Any]:
        for comments in self.comments.values():
            for c in comments:
                if c["id"] == int(id):
                    c["body"] = body["body"]
                    return 200, c
        return 404, {"message": "Not Found"}

    def _list_deployments(self, body: Any) -> tuple[int, Any]:
        env = self._query.get("environment")
        deps = [d for d in self.deployments if env is None or d["environment"] == env]
        return 200, self.page(list(reversed(deps)))  # newest first, as GitHub lists them

    def _add_deployment(self, body: Any) -> tuple[int, Any]:
        dep = {"id": self.new_id(), **body}
        self.deployments.append(dep)
        return 201, dep

    def _list_statuses(self, body: Any, id: str) -> tuple[int, Any]:
        return 200, self.page(list(reversed(self.statuses.get(int(id), []))))

    def _add_status(self, body: Any, id: str) -> tuple[int, Any]:
        status = {"id": self.new_id(), **body}
        self.statuses.setdefault(int(id), []).append(status)
        return 201, status

    def _approvals(self, body: Any, run: str) -> tuple[int, Any]:
        return 200, self.approvals.get(run, [])

    # Issues and pull requests share one number sequence, as on GitHub; the issues list
    # includes pull requests (they carry a `pull_request` key).
    def _list_issues(self, body: Any) -> tuple[int, Any]:
        labels = [x for x in unquote(self._query.get("labels", "")).split(",") if x]
        state = self._query.get("state", "open")
        found = [
            i
            for i in self.issues
            if (state == "all" or i["state"] == state)
            and all(x in [lb["name"] for lb in i["labels"]] for x in labels)
        ]
        return 200, self.page(list(reversed(found)))

    def _add_issue(self, body: Any) -> tuple[int, Any]:
        missing = [x for x in body.get("labels", []) if x not in self.labels]
        if missing:  # GitHub creates them silently; the workflow must not rely on that
            return 422, {"message": f"labels {missing} do not exist in this fake"}
        issue = {
            "number": len(self.issues) + 1,
            "state": "open",
            "title": body["title"],
            "body": body.get("body", ""),
            "labels": [self.labels[x] for x in body.get("labels", [])],
        }
        self.issues.append(issue)
        return 201, issue

    def _get_label(self, body: Any, name: str) -> tuple[int, Any]:
        return (200, self.labels[name]) if name in self.labels else (404, {"message": "Not Found"})

    def _add_label(self, body: Any) -> tuple[int, Any]:
        if body["name"] in self.labels:
            return 422, {"message": "Validation Failed", "errors": [{"code": "already_exists"}]}
        self.labels[body["name"]] = dict(body)
        return 201, self.labels[body["name"]]

    @property
    def pulls(self) -> list[dict[str, Any]]:
        return [i for i in self.issues if "pull_request" in i]

    def _list_pulls(self, body: Any) -> tuple[int, Any]:
        head = unquote(self._query.get("head", ""))
        state = self._query.get("state", "open")
        found = [
            p
            for p in self.pulls
            if (state == "all" or p["state"] == state)
            and (not head or f"{self.repo.split('/')[0]}:{p['head']['ref']}" == head)
        ]
        return 200, self.page(list(reversed(found)))

    def _add_pull(self, body: Any) -> tuple[int, Any]:
        if body["head"] not in self.heads:
            return 422, {"message": f"Validation Failed: no branch {body['head']}"}
        pull = {
            "number": len(self.issues) + 1,
            "state": "open",
            "title": body["title"],
            "body": body.get("body", ""),
            "labels": [],
            "head": {"ref": body["head"], "sha": self.heads[body["head"]]},
            "base": {"ref": body["base"]},
            "pull_request": {},
            # GitHub: events made with a workflow's GITHUB_TOKEN start no workflow run (the
            # pull_request run that would report `ml / gate` never comes); other tokens do
            "starts_workflows": not self._by_job_token,
        }
        self.issues.append(pull)
        return 201, pull

    def _edit_pull(self, body: Any, n: str) -> tuple[int, Any]:
        for p in self.pulls:
            if p["number"] == int(n):
                p.update({k: v for k, v in body.items() if k in ("title", "body", "state")})
                return 200, p
        return 404, {"message": "Not Found"}

    _query: dict[str, str] = field(default_factory=dict)
    _link: str = ""
    _by_job_token: bool = False


def _tcp_inode(client_port: int, server_port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            next(fh)
            for line in fh:
                f = line.split()
                local, remote = int(f[1].rsplit(":", 1)[1], 16), int(f[2].rsplit(":", 1)[1], 16)
                if (local, remote) == (client_port, server_port):
                    return f[9]
    return None


def calling_job(client_port: int, server_port: int) -> str:
    """ "workflow/job" (GITHUB_WORKFLOW/GITHUB_JOB) of the process on this host holding the
    client end of the connection: act hands every job the same GITHUB_TOKEN string, where GitHub
    mints one per job, so the fake tells the jobs apart by who called (Linux /proc; act runs its
    jobs on this host). "" when no process is found."""
    inode = _tcp_inode(client_port, server_port)
    if inode is None:
        return ""
    target = f"socket:[{inode}]"
    for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int, reverse=True):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if not any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in fds):
                continue
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = dict(kv.split(b"=", 1) for kv in fh.read().split(b"\0") if b"=" in kv)
        except OSError:  # the process ended, or an fd closed while we looked
            continue
        return (
            env.get(b"GITHUB_WORKFLOW", b"").decode() + "/" + env.get(b"GITHUB_JOB", b"").decode()
        )
    return ""


def serve(fake: FakeGitHub) -> tuple[ThreadingHTTPServer, str]:
    """Start the fake on 127.0.0.1 (a free port) in a daemon thread; returns (server, base URL)."""
    lock = threading.Lock()  # one request at a time through the fake's state

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            auth = self.headers.get("Authorization", "")
            job = ""
            if fake.job_token and fake.job_token in auth:
                job = calling_job(self.client_address[1], self.server.server_address[1])
            with lock:
                fake.requests.append(
                    Request(self.command, parts.path, parts.query, body, auth, job)
                )
                fake._query = dict(q.split("=", 1) for q in parts.query.split("&") if "=" in q)
                fake._link = ""
                status, payload = fake.handle(self.command, parts.path, body, auth, job)
                link = fake._link
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if link:
                query = "&".join(q for q in parts.query.split("&") if not q.startswith("page="))
                url = f"{base}{parts.path}?{query + '&' if query else ''}"
                self.send_header("Link", link.replace("{url}", url))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, base
