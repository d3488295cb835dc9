"""Deployment targets: `local` (run the image on this machine, publish the tag) and `kubernetes`.

A target is a class with the four steps of `Target` below, named in TARGETS (and in
config.Deploy.target); release.deploy drives every target the same way: a session, deploy,
reach it for the smoke test, publish once the test passed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import string
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mlgate.errors import MlgateError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mlgate.release.config import Deploy

# BentoML's image ends with `USER bentoml`, a name: with runAsNonRoot the kubelet can only
# verify a numeric user, so the manifests name BentoML's uid/gid (bentoml's BENTO_UID_GID).
BENTO_UID = 1034
# bentofile.yaml's MLGATE_FEEDBACK_DIR: where the service in the image writes its records
FEEDBACK_IN_IMAGE = "/home/bentoml/feedback"


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def sh(
    cmd: list[str], stdin: str | None = None, capture: bool = True, secrets: tuple[str, ...] = ()
) -> str:
    """Run a tool; a non-zero exit becomes an MlgateError quoting its output (with any of
    `secrets` replaced by ***)."""
    if shutil.which(cmd[0]) is None:
        raise MlgateError(f"`{cmd[0]}` is not installed or not on PATH")
    proc = subprocess.run(cmd, input=stdin, capture_output=capture, text=True, check=False)
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout or "").strip()
        message = f"`{' '.join(cmd)}` exited {proc.returncode}:\n{said}"
        raise MlgateError(_redact(message, secrets))
    return (proc.stdout or "").strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def image_repository(image: str) -> str:
    """`ghcr.io/o/r@sha256:…` or `ghcr.io/o/r:tag` -> `ghcr.io/o/r`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


# ---------------------------------------------------------------- local


def local_container(image: str, env: str) -> str:
    """The container that runs `env` of this image's repository on this machine: one per
    repository and environment, so projects deploying on one runner never replace each other's."""
    return f"{image_repository(image).rsplit('/', 1)[-1]}-{env}"


def deploy_local(env: str, image: str, cfg: Deploy, feedback: Path | None = None) -> str:
    """Run the digest here, to be tested; returns the URL. Nothing is published yet: the
    `:ENV` tag moves only after the smoke test passed (publish_local). The service's feedback
    records land in `feedback` on this machine (a volume), where monitor and trial read them.

    MLGATE_DOCKER_NETWORK=host (a daemon without a bridge network, as scripts/docker_local.py
    starts one): the container shares the host's network and listens on the free port."""
    sh(["docker", "pull", "--quiet", image])
    name = local_container(image, env)
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    port = _free_port()
    if os.environ.get("MLGATE_DOCKER_NETWORK") == "host":
        network = ["--network", "host", "-e", f"PORT={port}"]
    else:
        network = ["-p", f"127.0.0.1:{port}:{cfg.port}"]
    volume = []
    if feedback is not None:
        feedback.mkdir(parents=True, exist_ok=True)
        # the image's user (BentoML's, not the runner's) writes there
        feedback.chmod(0o777)
        volume = ["-v", f"{feedback.resolve()}:{FEEDBACK_IN_IMAGE}"]
    sh(["docker", "run", "-d", "--name", name, *network, *volume, image])
    return f"http://127.0.0.1:{port}"


def publish_local(env: str, image: str) -> str:
    """Point `REPO:ENV` at the tested digest in the registry; returns the tag."""
    tag = f"{image_repository(image)}:{env}"
    sh(["docker", "tag", image, tag])
    sh(["docker", "push", "--quiet", tag])
    return tag


# ---------------------------------------------------------------- kubernetes


def render_manifests(
    env: str, image: str, cfg: Deploy, project: str, manifests: Path | None = None
) -> str:
    """The manifests in deploy/k8s with ${…} filled in, as one multi-document YAML."""
    k = cfg.kubernetes
    folder = manifests or k.manifests
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise MlgateError(f"no Kubernetes manifests (*.yaml) in {folder}")
    values = {
        "NAME": k.name or project,
        "NAMESPACE": k.namespace.of(env),
        "ENVIRONMENT": env,
        "IMAGE": image,
        "PORT": str(cfg.port),
        "LIVE_PATH": cfg.health.live,
        "READY_PATH": cfg.health.ready,
        "MIN_REPLICAS": str(k.replicas.get("min", 1)),
        "MAX_REPLICAS": str(k.replicas.get("max", 1)),
        "CPU_TARGET": str(k.cpu_target),
        "CPU_REQUEST": k.resources["requests"]["cpu"],
        "MEMORY_REQUEST": k.resources["requests"]["memory"],
        "CPU_LIMIT": k.resources["limits"]["cpu"],
        "MEMORY_LIMIT": k.resources["limits"]["memory"],
        "RUN_AS_USER": str(BENTO_UID),
        "IMAGE_PULL_SECRETS": json.dumps(
            [{"name": k.image_pull_secret}] if k.image_pull_secret else []
        ),
    }
    docs = []
    for f in files:
        try:
            docs.append(string.Template(f.read_text(encoding="utf-8")).substitute(values))
        except (KeyError, ValueError) as err:
            raise MlgateError(f"{f}: unknown placeholder {err} (known: {sorted(values)})") from None
    return "\n---\n".join(d.strip() for d in docs) + "\n"


def _kubectl(args: list[str], stdin: str | None = None) -> str:
    return sh(["kubectl", *args], stdin=stdin, secrets=_TOKENS)


_TOKENS: tuple[str, ...] = ()  # redacted from every kubectl error message


def _require_kubeconfig(env: str) -> str:
    given = os.environ.get("KUBECONFIG")
    if not given:
        raise MlgateError(
            f"KUBECONFIG is not set: the {env} job writes the kubeconfig secret to a file "
            "and points KUBECONFIG at it (see docs/WORKFLOWS.md#kubernetes)"
        )
    return given


@contextlib.contextmanager
def kube_auth(cfg: Deploy, env: str) -> Iterator[None]:
    """For the duration: every kubectl (apply, rollout, port-forward) authenticates the same way.

    Without oidc_audience: the kubeconfig as given. With it: the job's OIDC token goes into a
    0600 kubeconfig in a private temporary folder, listed FIRST in KUBECONFIG, which kubectl
    merges with the given one (first file wins): a context of the same name, same cluster,
    user `mlgate-oidc` with the token. The token is never in a command line or a message, and
    it is masked in the GitHub log.
    """
    global _TOKENS
    audience = cfg.kubernetes.oidc_audience
    if not audience:
        yield
        return
    given = _require_kubeconfig(env)
    token = oidc_token(audience)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        print(f"::add-mask::{token}", flush=True)
    view = json.loads(_kubectl(["config", "view", "--minify", "-o", "json"]) or "{}")
    contexts = view.get("contexts") or []
    if not contexts:
        raise MlgateError("the kubeconfig has no current context: set current-context")
    context = contexts[0]
    with tempfile.TemporaryDirectory(prefix="mlgate-kube-") as tmp:
        path = Path(tmp) / "oidc-kubeconfig"
        merged = {
            "apiVersion": "v1",
            "kind": "Config",
            "contexts": [
                {
                    "name": context["name"],
                    "context": {**context.get("context", {}), "user": "mlgate-oidc"},
                }
            ],
            "users": [{"name": "mlgate-oidc", "user": {"token": token}}],
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(merged, fh)  # JSON is YAML: kubectl reads it
        os.environ["KUBECONFIG"] = f"{path}{os.pathsep}{given}"
        _TOKENS = (token,)
        try:
            yield
        finally:
            os.environ["KUBECONFIG"] = given
            _TOKENS = ()


OIDC_TIMEOUT = 30.0  # a silent socket
OIDC_DEADLINE = 60.0  # the whole token request, its body included


def oidc_token(audience: str) -> str:
    """The job's GitHub OIDC token (needs `permissions: id-token: write`)."""
    url = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL")
    bearer = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if not url or not bearer:
        raise MlgateError(
            "deploy.kubernetes.oidc_audience is set but no OIDC token is available: "
            "the job needs `permissions: id-token: write`"
        )
    import http.client
    import time

    from mlgate.io import read_bounded

    req = urllib.request.Request(f"{url}&audience={audience}")
    req.add_header("Authorization", f"Bearer {bearer}")
    what = "the OIDC token request (ACTIONS_ID_TOKEN_REQUEST_URL)"
    try:
        with urllib.request.urlopen(req, timeout=OIDC_TIMEOUT) as resp:
            body = read_bounded(resp, time.monotonic() + OIDC_DEADLINE, what, 1_000_000)
    except urllib.error.HTTPError as err:
        raise MlgateError(f"{what} answered {err.code}") from None
    except (OSError, http.client.HTTPException) as err:  # URLError, reset, timed out, not HTTP
        raise MlgateError(f"{what} failed: {type(err).__name__}") from None
    try:
        token = json.loads(body)["value"]
    except (ValueError, KeyError, TypeError):
        token = None
    if not isinstance(token, str) or not token:
        raise MlgateError(f"{what} answered without a token (JSON with a `value` string)")
    return token


def deploy_kubernetes(env: str, image: str, cfg: Deploy, project: str) -> str:
    """kubectl apply the rendered manifests and wait for the rollout; returns the URL."""
    _require_kubeconfig(env)
    k = cfg.kubernetes
    name = k.name or project
    namespace = k.namespace.of(env)
    manifests = render_manifests(env, image, cfg, project)
    try:
        _kubectl(["get", "namespace", namespace, "-o", "name"])
    except MlgateError as err:
        raise MlgateError(
            f"namespace {namespace!r} (deploy.kubernetes.namespace.{env}) is not there or not "
            f"visible: create it once (`kubectl create namespace {namespace}`); mlgate never "
            f"creates namespaces, so the deploy identity needs rights in it only.\n{err}"
        ) from None
    print(_kubectl(["apply", "-f", "-"], stdin=manifests))
    timeout = f"--timeout={k.rollout_timeout}"
    print(_kubectl(["rollout", "status", f"deployment/{name}", "-n", namespace, timeout]))
    return k.url.of(env)


def port_forward(env: str, cfg: Deploy, project: str) -> tuple[subprocess.Popen[Any], str]:
    """`kubectl port-forward` to the Service, for smoke-testing a cluster without ingress."""
    port = _free_port()
    k = cfg.kubernetes
    proc = subprocess.Popen(
        [
            "kubectl",
            "port-forward",
            f"service/{k.name or project}",
            f"{port}:80",
            "-n",
            k.namespace.of(env),
        ],
        stdout=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------- the protocol


class Target(Protocol):
    """Where an image runs: what release.deploy.deploy_image asks of every target."""

    def session(self, env: str) -> contextlib.AbstractContextManager[None]:
        """Held around deploy and the smoke test (kubernetes: one authentication for all)."""
        ...

    def deploy(self, env: str, image: str) -> tuple[str, str]:
        """Run IMAGE (by digest) in ENV; returns (its public URL or "", a URL to test or "")."""
        ...

    def reach(self, env: str) -> contextlib.AbstractContextManager[str]:
        """A URL to smoke-test ENV by, when deploy gave none (kubernetes without ingress)."""
        ...

    def publish(self, env: str, image: str) -> str | None:
        """After the smoke test passed: make IMAGE what ENV names (a tag); None: nothing to do."""
        ...


class Local:
    """`local`: the image runs on this machine only to be tested; `REPO:ENV` is published
    once the test passed."""

    def __init__(self, cfg: Deploy, project: str, feedback: Path) -> None:
        self.cfg = cfg
        self.feedback = feedback  # serving.feedback.path: each environment's records, a volume

    def session(self, env: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def deploy(self, env: str, image: str) -> tuple[str, str]:
        return "", deploy_local(env, image, self.cfg, self.feedback / env)

    def reach(self, env: str) -> contextlib.AbstractContextManager[str]:
        raise MlgateError("the local target is tested where it runs: deploy gives its URL")

    def publish(self, env: str, image: str) -> str | None:
        return publish_local(env, image)


class Kubernetes:
    """`kubernetes`: kubectl apply and roll out; tested at its URL or through a port-forward."""

    def __init__(self, cfg: Deploy, project: str, feedback: Path) -> None:
        self.cfg = cfg
        self.project = project

    def session(self, env: str) -> contextlib.AbstractContextManager[None]:
        return kube_auth(self.cfg, env)

    def deploy(self, env: str, image: str) -> tuple[str, str]:
        url = deploy_kubernetes(env, image, self.cfg, self.project)
        return url, url

    @contextlib.contextmanager
    def reach(self, env: str) -> Iterator[str]:
        forward, url = port_forward(env, self.cfg, self.project)
        try:
            yield url
        finally:
            forward.terminate()
            forward.wait(timeout=10)

    def publish(self, env: str, image: str) -> str | None:
        return None  # the Deployment names the digest: there is no tag to move


TARGETS: dict[str, type[Local] | type[Kubernetes]] = {"local": Local, "kubernetes": Kubernetes}


def target(cfg: Deploy, project: str, feedback: Path) -> Target:
    """The configured target (deploy.target); `feedback` is serving.feedback.path."""
    return TARGETS[cfg.target](cfg, project, feedback)
