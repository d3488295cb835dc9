"""The workflow harness: act runs the real workflow files on this host, offline.

Stand-ins only where GitHub or a cluster would be: the pinned third-party actions (standins/,
mapped by their exact pinned SHA), `kubectl` (standins/kubectl.py) and the GitHub REST API
(tests/workflows/fake_github.py). Everything else is real: git, `uv sync`, `dvc repro` against
the repo-local remote, an `mlflow server`, `mlgate build`, and, for a road given a Docker daemon
(Road.docker), `bentoml containerize`, the registry on 127.0.0.1 and the image running in
`docker run`. A road without one has no `docker` at all: a job that calls it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tests.conftest import ROOT, VENV_BIN

if TYPE_CHECKING:
    from tests.workflows.fake_github import FakeGitHub

HERE = Path(__file__).resolve().parent
STANDINS = HERE / "standins"
ACT = VENV_BIN / "act"
REPO = "acme/credit-model"
UV_DIR = ROOT / ".tools/bin"

# Each pinned action and the stand-in that plays it. A pin bumped in a workflow without its
# stand-in being checked against the new version fails here, before act could fetch anything.
STANDIN_FOR = {
    "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1": "checkout",  # v7.0.1
    "actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f": "upload-artifact",  # v7.0.0
    # v8.0.1
    "actions/download-artifact@3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c": "download-artifact",
    "actions/cache@27d5ce7f107fe9357f9df03efb73ab90386fccae": "cache",  # v5.0.5
    "astral-sh/setup-uv@20cfd1bf945f4377ade1205e4dbc17946fc9a30d": "setup-uv",  # v10.0.1
}
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*([\w.-]+/[\w.-]+)(?:/[^@\s]*)?@([0-9a-f]{40})\b", re.M)


JOB_TOKEN = "ghs_harness"  # the GITHUB_TOKEN act hands every job (the fake tells jobs apart)
# GitHub's restricted default for a workflow that sets no `permissions:` (metadata is always read)
DEFAULT_PERMISSIONS = {"contents": "read", "packages": "read"}
SCOPES = ("actions", "attestations", "checks", "contents", "deployments", "discussions",
          "id-token", "issues", "models", "packages", "pages", "pull-requests",
          "repository-projects", "security-events", "statuses")  # fmt: skip


class HarnessError(AssertionError):
    pass


def _permissions(spec: Any, inherited: dict[str, str]) -> dict[str, str]:
    if spec is None:
        return dict(inherited)
    if spec in ("read-all", "write-all"):
        return dict.fromkeys(SCOPES, spec.removesuffix("-all"))
    return {scope: level for scope, level in spec.items() if level != "none"}


def _intersect(a: dict[str, str], b: dict[str, str]) -> dict[str, str]:
    rank = {"read": 1, "write": 2}
    return {s: min(a[s], b[s], key=rank.__getitem__) for s in a.keys() & b.keys()}


def job_permissions(workflow: Path, repo: Path, actions: Path) -> dict[tuple[str, str], dict]:
    """(workflow name, job id) -> the job's effective GITHUB_TOKEN permissions, as GitHub
    derives them: a job's `permissions:` or its workflow's (or the restricted default); a job of
    a called workflow gets its own (or its workflow's) cut down to the calling job's: the
    caller's ∩ the callee's. `uses: ./…` is read from repo, `uses: owner/name/…@ref` from
    actions (the tree act maps that reference to)."""
    spec = yaml.safe_load(workflow.read_text())
    top = _permissions(spec.get("permissions"), DEFAULT_PERMISSIONS)
    table: dict[tuple[str, str], dict] = {}
    for job_id, job in spec["jobs"].items():
        granted = _permissions(job.get("permissions"), top)
        uses = job.get("uses")
        if not uses:
            table[(spec.get("name") or workflow.name, job_id)] = granted
            continue
        local = uses.startswith("./")
        path = (repo / uses[2:]) if local else actions / uses.split("@")[0].split("/", 2)[2]
        callee = yaml.safe_load(path.read_text())
        callee_top = _permissions(callee.get("permissions"), granted)
        for callee_id, callee_job in callee["jobs"].items():
            key = (callee.get("name") or path.name, callee_id)
            own = _permissions(callee_job.get("permissions"), callee_top)
            effective = _intersect(granted, own)
            if table.get(key, effective) != effective:
                raise HarnessError(f"{workflow}: two jobs call {path.name} with other permissions")
            table[key] = effective
    return table


STEP_OUTPUT = re.compile(r"steps\.([\w-]+)\.outputs\.([\w-]+)")


def job_outputs(*roots: Path) -> set[tuple[str, str, str]]:
    """(job id, step id, output) of every step output a job of roots' workflows hands on as a
    job output (`jobs.<id>.outputs`), the values GitHub's runner checks for secrets."""
    found = set()
    for root in roots:
        for workflow in root.glob(".github/workflows/*.yml"):
            jobs = (yaml.safe_load(workflow.read_text()) or {}).get("jobs") or {}
            for job_id, job in jobs.items():
                for expression in (job.get("outputs") or {}).values():
                    found |= {(job_id, *m) for m in STEP_OUTPUT.findall(str(expression))}
    return found


def masked_job_outputs(
    records: list[dict[str, Any]], handed_on: set[tuple[str, str, str]]
) -> list[str]:
    """The job outputs GitHub would drop: their step output holds a value act masks in its log
    (a secret, or an ::add-mask:: value); act itself hands them on unchanged."""
    dropped = []
    for r in records:
        if r.get("command") != "set-output":
            continue
        value, shown = r.get("arg", ""), r.get("msg", "")
        step = (r.get("stepID") or [""])[0]
        if (r.get("jobID", ""), step, r.get("name", "")) not in handed_on:
            continue
        if "***" in shown and "***" not in value:
            dropped.append(f"{r['jobID']}.{r['name']} (step {step})")
    return dropped


def pinned_actions(root: Path) -> set[str]:
    """Every `OWNER/REPO@SHA` a workflow or composite action under root/.github uses."""
    files = [*root.glob(".github/workflows/*.yml"), *root.glob(".github/actions/*/action.yml")]
    return {f"{m[0]}@{m[1]}" for f in files for m in USES.findall(f.read_text())}


def local_repository_args(root: Path) -> list[str]:
    args = []
    for pin in sorted(pinned_actions(root)):
        if pin not in STANDIN_FOR:
            raise HarnessError(
                f"{pin} is pinned in {root}/.github but has no stand-in: check the stand-in in "
                f"{STANDINS} against that version, then map its SHA in STANDIN_FOR ({__file__})"
            )
        args += ["--local-repository", f"{pin}={STANDINS / STANDIN_FOR[pin]}"]
    return args


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(f"git {' '.join(args)} in {repo}: {proc.stderr}")
    return proc.stdout.strip()


def snapshot(dest: Path) -> Path:
    """The working tree as git sees it (tracked, or untracked and not ignored) in dest."""
    files = git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    return dest


class RemoteHeads(Mapping[str, str]):
    """Branch -> sha of the bare 'GitHub' remote, read live: what GET /branches/{b} answers."""

    def __init__(self, remote: Path) -> None:
        self.remote = remote

    def _branches(self) -> dict[str, str]:
        out = git(self.remote, "for-each-ref", "--format=%(refname:short) %(objectname)",
                  "refs/heads")  # fmt: skip
        return dict(line.split() for line in out.splitlines())

    def __getitem__(self, branch: str) -> str:
        return self._branches()[branch]

    def __iter__(self) -> Iterator[str]:
        return iter(self._branches())

    def __len__(self) -> int:
        return len(self._branches())


@dataclass
class Repo:
    """A developer's clone (act's working directory) and the bare 'GitHub' remote it pushes to.

    origin's fetch URL is github.com so act derives github.repository from it; pushes and the
    checkout stand-in go to the bare repository under remotes/.
    """

    path: Path
    remote: Path
    name: str = REPO

    @classmethod
    def create(cls, path: Path, remotes: Path, name: str = REPO) -> Repo:
        remote = remotes / f"{name}.git"
        made_elsewhere = (path / ".git").is_dir()  # e.g. by `mlgate init`: its history is kept
        if not made_elsewhere:
            git(path, "init", "-q", "-b", "main")
        git(path, "config", "user.name", "Alice")
        git(path, "config", "user.email", "alice@example.com")
        if not made_elsewhere:
            git(path, "add", "-A")
            git(path, "commit", "-qm", "initial")
        remote.parent.mkdir(parents=True, exist_ok=True)
        git(path.parent, "init", "-q", "--bare", str(remote))
        git(remote, "config", "uploadpack.allowAnySHA1InWant", "true")
        git(path, "remote", "add", "origin", f"https://github.com/{name}.git")
        git(path, "remote", "set-url", "--push", "origin", str(remote))
        repo = cls(path, remote, name)
        repo.push("main")
        return repo

    def edit(self, message: str, changes: dict[str, str | None], branch: str = "") -> str:
        """Commit changes (path -> new text, None deletes) on branch (created from HEAD)."""
        if branch and git(self.path, "branch", "--show-current") != branch:
            git(self.path, "checkout", "-q", "-B", branch)
        for rel, text in changes.items():
            if text is None:
                git(self.path, "rm", "-q", rel)
            else:
                (self.path / rel).parent.mkdir(parents=True, exist_ok=True)
                (self.path / rel).write_text(text)
                git(self.path, "add", rel)
        git(self.path, "commit", "-qm", message)
        return self.sha

    def switch(self, branch: str) -> None:
        git(self.path, "checkout", "-q", branch)

    def push(self, branch: str) -> None:
        git(self.path, "push", "-q", "--force", "origin", f"HEAD:refs/heads/{branch}")

    @property
    def sha(self) -> str:
        return git(self.path, "rev-parse", "HEAD")


@dataclass
class ActRun:
    """One `act` run: job results, step outputs and messages, parsed from `act --json`."""

    returncode: int
    records: list[dict[str, Any]]
    stderr: str
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> success/failure/skipped
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)  # job id -> name -> value
    artifacts: Path | None = None  # the uploaded artifacts, one folder each (upload stand-in)

    def uploaded(self, name: str) -> list[str]:
        """The files artifact `name` holds (paths inside it), as the upload stand-in kept them."""
        assert self.artifacts is not None
        root = self.artifacts / name
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    def __post_init__(self) -> None:
        for r in self.records:
            job = r.get("jobID", "")
            if "jobResult" in r:
                self.jobs[job] = r["jobResult"]
            if r.get("command") == "set-output":
                self.outputs.setdefault(job, {})[r["name"]] = r.get("arg", "")

    def log(self, job: str | None = None) -> str:
        return "\n".join(
            r.get("msg", "") for r in self.records if job is None or r.get("jobID") == job
        )

    def explain(self) -> str:
        """What to print when an assertion about this run fails: results and the job logs."""
        failed = [j for j, res in self.jobs.items() if res == "failure"] or list(self.jobs)
        tail = "\n".join(f"--- {j}\n{self.log(j)[-4000:]}" for j in failed)
        return f"act exited {self.returncode}; jobs {self.jobs}\n{tail}\n{self.stderr[-2000:]}"


@dataclass
class Road:
    """Everything one set of scenarios shares: folders, the MLflow server, act's environment."""

    home: Path
    mlflow_url: str
    github_url: str = ""
    github: FakeGitHub | None = None  # the scenario's fake: told each job's token permissions
    run_count: int = 0
    # the Docker daemon and registry (tests/conftest.py's docker_daemon: DOCKER_HOST,
    # MLGATE_REGISTRY, PATH, …); None: no docker at all (a job that calls it fails)
    docker: dict[str, str] | None = None
    repositories: list[str] = field(default_factory=list)  # image repositories deployed here

    @property
    def registry(self) -> str:
        assert self.docker is not None, "a road without a Docker daemon has no registry"
        return self.docker["MLGATE_REGISTRY"]

    def image_repository(self, repo_name: str) -> str:
        """Where a repository's images go: the registry on 127.0.0.1, as ghcr.io/OWNER/NAME."""
        image = f"{self.registry}/{repo_name}"
        self.repositories.append(image)
        return image

    def docker_env(self) -> dict[str, str]:
        """What a job needs to reach the daemon: its socket, a client of its version first on
        the PATH, a client configuration of the road's own (not the host's ~/.docker)."""
        if self.docker is None:
            return {}
        client = shutil.which("docker", path=self.docker.get("PATH"))
        assert client, f"no docker client on {self.docker.get('PATH')}"
        env = {
            "DOCKER_CONFIG": str(self.home / "docker-config"),
            "DOCKER_BUILDKIT": "0",  # Debian's docker has no buildx
            "MLGATE_DOCKER_CLIENT": str(Path(client).parent),
        }
        env.update({k: v for k, v in self.docker.items() if k in ("DOCKER_HOST",
                    "MLGATE_DOCKER_NETWORK")})  # fmt: skip
        return env

    def bin_dir(self) -> Path:
        """The kubectl stand-in, first on the PATH act's jobs see."""
        bin_dir = self.home / "bin"
        bin_dir.mkdir(exist_ok=True)
        script = bin_dir / "kubectl"
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDINS / "kubectl.py"}" "$@"\n')
        script.chmod(0o755)
        return bin_dir

    def act(
        self,
        repo: Repo,
        event: str,
        workflow: str,
        payload: dict[str, Any],
        inputs: dict[str, str] | None = None,
        run_id: str | None = None,
        actions_from: Path | None = None,
        extra: list[str] | None = None,
        mlflow: bool = True,
    ) -> ActRun:
        """Run `workflow` of repo for `event` with act on the host; never touches the network.
        mlflow=False: no MLFLOW_TRACKING_URI secret (a repository without a tracking server)."""
        self.run_count += 1
        run_dir = self.home / f"run-{self.run_count}"
        (run_dir / "artifacts").mkdir(parents=True)
        event_file = run_dir / "event.json"
        event_file.write_text(json.dumps(payload))
        env = {
            "MLGATE_ACT_STANDINS": str(STANDINS),
            "MLGATE_ACT_REMOTES": str(self.home / "remotes"),
            "MLGATE_ACT_ARTIFACTS": str(run_dir / "artifacts"),
            "MLGATE_ACT_CACHE": str(self.home / "cache"),  # actions/cache's, across runs
            "MLGATE_ACT_PYTHON": sys.executable,
            "MLGATE_ACT_UV_DIR": str(UV_DIR),
            **self.docker_env(),
            "MLGATE_ACT_KUBECTL": str(self.home / "kubectl"),
            "GITHUB_API_URL": self.github_url,
            "GITHUB_RUN_ID": run_id or str(1000 + self.run_count),
            "BENTOML_HOME": str(self.home / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "UV_OFFLINE": "1",  # the uv cache has every locked package: no index is asked
            "UV_PYTHON_DOWNLOADS": "never",
            "DVC_NO_ANALYTICS": "1",
            "DO_NOT_TRACK": "1",
        }
        if self.github is not None:  # what GitHub would mint each job's GITHUB_TOKEN with
            self.github.job_token = JOB_TOKEN
            self.github.job_permissions = job_permissions(
                repo.path / workflow, repo.path, actions_from or repo.path
            )
        secrets = {"GITHUB_TOKEN": JOB_TOKEN}
        if mlflow:
            secrets["MLFLOW_TRACKING_URI"] = self.mlflow_url
        cmd = [
            str(ACT), event, "-W", workflow, "-e", str(event_file), "--json",
            "-P", "ubuntu-latest=-self-hosted", "-P", "ubuntu-24.04=-self-hosted",
            "--action-offline-mode", "--no-skip-checkout", "--no-cache-server",
            "--action-cache-path", str(run_dir / "act"),
            "--actor", "alice",
            *local_repository_args(actions_from or repo.path),
        ]  # fmt: skip
        for k, v in env.items():
            cmd += ["--env", f"{k}={v}"]
        for k, v in secrets.items():
            cmd += ["-s", f"{k}={v}"]
        for k, v in (inputs or {}).items():
            cmd += ["--input", f"{k}={v}"]
        cmd += extra or []
        host_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MLFLOW_", "GITHUB_", "VIRTUAL_ENV", "PYTEST", "UV_"))
            # a runner's make starts fresh: not with the variables of the `make test` running us
            and k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
        }
        path = [p for p in host_env.get("PATH", "").split(os.pathsep) if p != str(VENV_BIN)]
        host_env["PATH"] = os.pathsep.join(self.path_head() + path)
        proc = subprocess.run(
            cmd, cwd=repo.path, env=host_env, capture_output=True, text=True, timeout=900
        )
        records = []
        for line in proc.stdout.splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                records.append({"msg": line})
        (run_dir / "act.jsonl").write_text(proc.stdout)
        run = ActRun(proc.returncode, records, proc.stderr, artifacts=run_dir / "artifacts")
        dropped = masked_job_outputs(records, job_outputs(repo.path, actions_from or repo.path))
        if dropped:
            # act hands them on; GitHub's runner sends them empty, so the jobs after this one
            # would have run with "" where act gave them the value: this run proves nothing
            raise HarnessError(
                "on GitHub these job outputs arrive empty (they hold a secret's or a masked "
                f"value; the runner drops them): {dropped}\n{run.explain()}"
            )
        return run

    def path_head(self) -> list[str]:
        """The stand-ins, then the daemon's docker client: first on a job's PATH."""
        client = self.docker_env().get("MLGATE_DOCKER_CLIENT")
        return [str(self.bin_dir()), *([client] if client else [])]

    def docker_out(self, *args: str) -> str:
        """A docker command against the road's daemon (the harness's own look, not a job's)."""
        env = {**os.environ, **self.docker_env()}
        env["PATH"] = os.pathsep.join([*self.path_head(), env["PATH"]])
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise HarnessError(f"docker {' '.join(args)}: {proc.stderr}")
        return proc.stdout.strip()

    def running(self, repository: str, env: str) -> dict[str, Any] | None:
        """The container the local target runs for repository's env (mlgate's name for it):
        the image reference it was started from, its URL, its feedback volume."""
        name = f"{repository.rsplit('/', 1)[-1]}-{env}"
        try:
            (info,) = json.loads(self.docker_out("inspect", "--type", "container", name))
        except HarnessError:
            return None
        if info["State"]["Status"] != "running":
            return None
        variables = dict(v.split("=", 1) for v in info["Config"]["Env"])
        ports = info["HostConfig"]["PortBindings"] or {}
        port = variables.get("PORT") or next((b[0]["HostPort"] for b in ports.values() if b), "")
        mounts = {m["Destination"]: m["Source"] for m in info["Mounts"]}
        return {
            "name": name,
            "image": info["Config"]["Image"],
            "digest": info["Image"],
            "url": f"http://127.0.0.1:{port}",
            "feedback": mounts.get("/home/bentoml/feedback", ""),
        }

    def registry_tags(self, repository: str) -> dict[str, str]:
        """Tag -> digest of repository in the registry, asked over its HTTP API as a puller
        would (not the daemon's local tags)."""
        import urllib.error
        import urllib.request

        host, _, name = repository.partition("/")
        base = f"http://{host}/v2/{name}"
        try:
            with urllib.request.urlopen(f"{base}/tags/list", timeout=10) as r:
                tags = json.loads(r.read()).get("tags") or []
        except urllib.error.HTTPError as err:
            if err.code == 404:  # nothing pushed yet
                return {}
            raise
        accept = ", ".join([
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.oci.image.index.v1+json",
        ])  # fmt: skip
        digests = {}
        for tag in tags:
            req = urllib.request.Request(f"{base}/manifests/{tag}", method="HEAD",
                                         headers={"Accept": accept})  # fmt: skip
            with urllib.request.urlopen(req, timeout=10) as r:
                digests[tag] = r.headers["Docker-Content-Digest"]
        return digests

    def stop_containers(self) -> None:
        """Remove the containers this road's deliveries started (the daemon is shared)."""
        if self.docker is None:
            return
        for repository in self.repositories:
            for env in ("staging", "production"):
                name = f"{repository.rsplit('/', 1)[-1]}-{env}"
                with contextlib.suppress(HarnessError):
                    self.docker_out("rm", "-f", name)
