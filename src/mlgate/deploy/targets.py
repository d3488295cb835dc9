"""Deployment targets: `local` (run the image on this machine, publish the tag) and `kubernetes`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import string
import subprocess
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.errors import MlgateError

if TYPE_CHECKING:
    from mlgate.deploy.config import Deploy


def sh(cmd: list[str], stdin: str | None = None, capture: bool = True) -> str:
    """Run a tool; a non-zero exit becomes an MlgateError quoting its output."""
    if shutil.which(cmd[0]) is None:
        raise MlgateError(f"`{cmd[0]}` is not installed or not on PATH")
    proc = subprocess.run(cmd, input=stdin, capture_output=capture, text=True, check=False)
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout or "").strip()
        raise MlgateError(f"`{' '.join(cmd)}` exited {proc.returncode}:\n{said}")
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


def deploy_local(env: str, image: str, cfg: Deploy, publish: bool = True) -> str:
    """Tag the digest as `:ENV` in the registry and run it here; returns the URL to test."""
    repo = image_repository(image)
    sh(["docker", "pull", "--quiet", image])
    if publish:
        sh(["docker", "tag", image, f"{repo}:{env}"])
        sh(["docker", "push", "--quiet", f"{repo}:{env}"])
    name = f"mlgate-{env}"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    port = _free_port()
    sh(["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:{cfg.port}", image])
    return f"http://127.0.0.1:{port}"


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
    }
    docs = []
    for f in files:
        try:
            docs.append(string.Template(f.read_text(encoding="utf-8")).substitute(values))
        except (KeyError, ValueError) as err:
            raise MlgateError(f"{f}: unknown placeholder {err} (known: {sorted(values)})") from None
    return "\n---\n".join(d.strip() for d in docs) + "\n"


def _kubectl(args: list[str], cfg: Deploy, stdin: str | None = None) -> str:
    cmd = ["kubectl", *args]
    token = oidc_token(cfg.kubernetes.oidc_audience) if cfg.kubernetes.oidc_audience else ""
    if token:
        cmd.insert(1, f"--token={token}")
    return sh(cmd, stdin=stdin)


def oidc_token(audience: str) -> str:
    """The job's GitHub OIDC token (needs `permissions: id-token: write`)."""
    url = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL")
    bearer = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if not url or not bearer:
        raise MlgateError(
            "deploy.kubernetes.oidc_audience is set but no OIDC token is available: "
            "the job needs `permissions: id-token: write`"
        )
    req = urllib.request.Request(f"{url}&audience={audience}")
    req.add_header("Authorization", f"Bearer {bearer}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return str(json.load(resp)["value"])


def deploy_kubernetes(env: str, image: str, cfg: Deploy, project: str) -> str:
    """kubectl apply the rendered manifests and wait for the rollout; returns the URL."""
    if not os.environ.get("KUBECONFIG"):
        raise MlgateError(
            f"KUBECONFIG is not set: the {env} job writes the kubeconfig secret to a file "
            "and points KUBECONFIG at it (see docs/WORKFLOWS.md#kubernetes)"
        )
    k = cfg.kubernetes
    name = k.name or project
    manifests = render_manifests(env, image, cfg, project)
    print(_kubectl(["apply", "-f", "-"], cfg, stdin=manifests))
    print(
        _kubectl(
            [
                "rollout",
                "status",
                f"deployment/{name}",
                "-n",
                k.namespace.of(env),
                f"--timeout={k.rollout_timeout}",
            ],
            cfg,
        )
    )
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
