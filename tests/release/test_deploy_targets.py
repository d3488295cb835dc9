"""Deploy targets against recording `docker`/`kubectl` stand-ins on PATH: what is run, in which
order, with which credentials; the smoke test is replaced (it is tested over HTTP elsewhere)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlgate.cli import main
from mlgate.errors import MlgateError
from mlgate.release import smoke
from tests.conftest import ROOT

DIGEST = "ghcr.io/acme/credit-model@sha256:" + "a" * 64
TOKEN = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LW9pZGMtY2xhaW1z.c2lnbmF0dXJl"  # a fake

# One script plays both tools: it appends {tool, argv, KUBECONFIG, the kubeconfig files'
# contents} to $STANDIN_LOG and fails (echoing its kubeconfig, as a verbose tool might) when
# $STANDIN_FAIL is a substring of its command line.
STANDIN = f"""#!{sys.executable}
import json, os, sys
tool = os.path.basename(sys.argv[0])
paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
files = [open(p).read() if os.path.exists(p) else "" for p in paths]
entry = {{"tool": tool, "argv": sys.argv[1:], "kubeconfig": paths, "files": files}}
with open(os.environ["STANDIN_LOG"], "a") as fh:
    fh.write(json.dumps(entry) + "\\n")
line = " ".join(sys.argv[1:])
fail = os.environ.get("STANDIN_FAIL")
if fail and fail in line:
    sys.stderr.write("error: " + line + " failed; config: " + " ".join(files) + "\\n")
    sys.exit(1)
if sys.argv[1:4] == ["config", "view", "--minify"]:
    print(json.dumps({{"contexts": [{{"name": "ci", "context": {{"cluster": "prod"}}}}]}}))
elif sys.argv[1:3] == ["run", "-d"]:
    print("c0ffee")
"""


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """docker and kubectl stand-ins first on PATH; returns their log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker", "kubectl"):
        path = bin_dir / tool
        path.write_text(STANDIN)
        path.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_LOG", str(log))
    monkeypatch.delenv("STANDIN_FAIL", raising=False)
    monkeypatch.chdir(ROOT)  # the raw data gives the smoke-test rows
    return log


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def smoke_result(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The smoke test's verdict, set per test (None: pass)."""
    verdict: dict[str, Any] = {"fail": None, "urls": []}

    def fake(
        url: str, rows: list[dict[str, Any]], cfg: Any, field: str = "", required: Any = None
    ) -> list[str]:
        verdict["urls"].append(url)
        log = Path(os.environ["STANDIN_LOG"])
        if cfg.target == "kubernetes":  # as a real test would: wait until port-forward is up
            for _ in range(200):
                if "port-forward" in log.read_text():
                    break
                time.sleep(0.05)
        if verdict["fail"]:
            raise MlgateError(verdict["fail"])
        return ["GET /livez -> 200"]

    monkeypatch.setattr(smoke, "smoke_test", fake)
    return verdict


# ---------------------------------------------------------------- local: publish after the test


def test_local_target_publishes_the_env_tag_only_after_the_smoke_test_passed(
    tools: Path, smoke_result: dict[str, Any]
) -> None:
    assert main(["deploy", "--env", "production", "--image", DIGEST]) == 0
    docker = [c["argv"][0] for c in calls(tools) if c["tool"] == "docker"]
    assert docker == ["pull", "rm", "run", "tag", "push"]
    (tag,) = [c["argv"] for c in calls(tools) if c["argv"][0] == "tag"]
    assert tag == ["tag", DIGEST, "ghcr.io/acme/credit-model:production"]
    assert smoke_result["urls"][0].startswith("http://127.0.0.1:")


def test_a_failed_smoke_test_leaves_the_published_tag_alone(
    tools: Path, smoke_result: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    smoke_result["fail"] = "FAIL POST /predict row 0 -> 500"
    assert main(["deploy", "--env", "production", "--image", DIGEST]) == 2
    assert "FAIL POST /predict row 0 -> 500" in capsys.readouterr().err
    docker = [c["argv"][0] for c in calls(tools) if c["tool"] == "docker"]
    assert "run" in docker
    assert "tag" not in docker and "push" not in docker  # :production still names the old image


# ---------------------------------------------------------------- kubernetes: OIDC, namespaces


@pytest.fixture
def oidc(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """GitHub's OIDC token endpoint as a runner sees it; records the audiences asked for."""
    asked: list[str] = []

    class Issuer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            assert self.headers["Authorization"] == "Bearer request-token"
            body = json.dumps({"value": TOKEN}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Issuer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/token?api-version=2.0"
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", url)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    yield asked
    server.shutdown()
    server.server_close()


AUDIENCE = "https://k8s.acme.example"


@dataclass
class Cluster:
    """A kubernetes-target deploy against the stand-ins: its params, kubeconfig and log."""

    log: Path
    asked: list[str]  # OIDC audiences requested
    tmp: Path
    monkeypatch: pytest.MonkeyPatch

    def deploy(self, env: str, kubeconfig: bool = True, **kubernetes: Any) -> int:
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["deploy"]["target"] = "kubernetes"
        params["deploy"]["kubernetes"].update(kubernetes)
        path = self.tmp / "params.yaml"
        path.write_text(yaml.safe_dump(params))
        given = self.tmp / "kubeconfig"  # as the workflow writes it: no credential in it
        given.write_text("apiVersion: v1\nkind: Config\ncurrent-context: ci\n")
        if kubeconfig:
            self.monkeypatch.setenv("KUBECONFIG", str(given))
        else:
            self.monkeypatch.delenv("KUBECONFIG", raising=False)
        return main(["deploy", "--params", str(path), "--env", env, "--image", DIGEST])


@pytest.fixture
def cluster(
    tools: Path,
    smoke_result: dict[str, Any],
    oidc: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Cluster:
    return Cluster(tools, oidc, tmp_path, monkeypatch)


def test_oidc_token_reaches_kubectl_in_a_private_kubeconfig_never_in_argv(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cluster.deploy("staging", oidc_audience=AUDIENCE) == 0
    out = capsys.readouterr().out
    assert f"::add-mask::{TOKEN}" in out  # masked in the GitHub log before first use
    assert out.count(TOKEN) == 1
    assert cluster.asked == [f"/token?api-version=2.0&audience={AUDIENCE}"]
    kubectl = [c for c in calls(cluster.log) if c["tool"] == "kubectl"]
    verbs = [c["argv"][0] for c in kubectl]
    assert verbs == ["config", "get", "apply", "rollout", "port-forward"]
    for call in kubectl:
        assert not any(TOKEN in a for a in call["argv"]), call["argv"]
    # apply, rollout and the smoke test's port-forward authenticate the same way: the token
    # kubeconfig first (kubectl merges, first file wins), then the given one
    given = str(cluster.tmp / "kubeconfig")
    authed = [c for c in kubectl if c["argv"][0] != "config"]
    for call in authed:
        assert call["kubeconfig"][1] == given
        merged = json.loads(call["files"][0])
        assert merged["users"] == [{"name": "mlgate-oidc", "user": {"token": TOKEN}}]
        assert merged["contexts"][0] == {
            "name": "ci",
            "context": {"cluster": "prod", "user": "mlgate-oidc"},
        }
    token_file = Path(authed[0]["kubeconfig"][0])
    assert not token_file.exists(), "the token file is removed after the deploy"
    assert os.environ["KUBECONFIG"] == given


def test_a_kubectl_failure_never_prints_the_token(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.monkeypatch.setenv("STANDIN_FAIL", "rollout")
    assert cluster.deploy("production", oidc_audience=AUDIENCE) == 2
    err = capsys.readouterr().err
    assert "rollout status deployment/" in err and "exited 1" in err
    assert TOKEN not in err and "***" in err  # the tool echoed it; the message does not


def test_a_missing_namespace_is_named_with_the_command_that_creates_it(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.monkeypatch.setenv("STANDIN_FAIL", "get namespace ml-production")
    assert cluster.deploy("production") == 2
    err = capsys.readouterr().err
    assert "namespace 'ml-production' (deploy.kubernetes.namespace.production)" in err
    assert "kubectl create namespace ml-production" in err
    assert [c["argv"][0] for c in calls(cluster.log)] == ["get"]  # nothing applied


def test_oidc_without_a_kubeconfig_says_what_to_set(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cluster.deploy("staging", kubeconfig=False, oidc_audience=AUDIENCE) == 2
    err = capsys.readouterr().err
    assert "KUBECONFIG is not set" in err and "Traceback" not in err
    assert cluster.asked == [] and calls(cluster.log) == []  # no token fetched, nothing run


def test_manifests_run_as_bentomls_numeric_user_with_an_optional_pull_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlgate.config import load_params
    from mlgate.release.config import deploy_config
    from mlgate.release.targets import render_manifests

    monkeypatch.chdir(ROOT)
    cfg = deploy_config(load_params(ROOT / "params.yaml").deploy)

    def pod(config: Any) -> dict[str, Any]:
        docs = yaml.safe_load_all(render_manifests("staging", DIGEST, config, "m"))
        dep = next(d for d in docs if d["kind"] == "Deployment")
        return dep["spec"]["template"]["spec"]

    spec = pod(cfg)
    # bentoml's Dockerfile: `USER bentoml`, uid/gid BENTO_UID_GID
    from bentoml._internal.container.generate import BENTO_UID_GID

    ctx = spec["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == ctx["runAsGroup"] == BENTO_UID_GID
    assert spec["imagePullSecrets"] == []
    private = cfg.model_copy(
        update={"kubernetes": cfg.kubernetes.model_copy(update={"image_pull_secret": "ghcr"})}
    )
    assert pod(private)["imagePullSecrets"] == [{"name": "ghcr"}]
