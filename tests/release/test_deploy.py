"""Deploy side: Kubernetes manifests, the smoke/contract test over real HTTP, skips said aloud."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from mlgate.cli import main
from mlgate.config import load_params
from mlgate.errors import MlgateError
from mlgate.pipeline.data import input_schema
from mlgate.release.config import deploy_config
from mlgate.release.smoke import sample_rows, smoke_test
from mlgate.release.targets import image_repository, render_manifests
from tests.conftest import ROOT, run

DIGEST = "ghcr.io/acme/credit-model@sha256:" + "a" * 64


@pytest.fixture
def params(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(ROOT)
    return load_params(ROOT / "params.yaml")


def test_manifests_carry_probes_resources_autoscaling_and_the_digest(params: Any) -> None:
    cfg = deploy_config(params.deploy)
    docs = {
        d["kind"]: d for d in yaml.safe_load_all(render_manifests("production", DIGEST, cfg, "m"))
    }
    assert set(docs) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    dep = docs["Deployment"]
    assert dep["metadata"]["namespace"] == "ml-production"
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["image"] == DIGEST
    assert container["readinessProbe"]["httpGet"]["path"] == cfg.health.ready
    assert container["livenessProbe"]["httpGet"]["path"] == cfg.health.live
    assert container["ports"][0]["containerPort"] == cfg.port
    assert set(container["resources"]) == {"requests", "limits"}
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["scaleTargetRef"]["name"] == dep["metadata"]["name"] == "m"
    staging = render_manifests("staging", DIGEST, cfg, "m")
    assert "namespace: ml-staging" in staging and "namespace: ml-production" not in staging


def test_unknown_manifest_placeholder_is_named(params: Any, tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("kind: ConfigMap\nname: ${NOPE}\n")
    with pytest.raises(MlgateError, match="unknown placeholder 'NOPE'"):
        render_manifests("staging", DIGEST, deploy_config(params.deploy), "m", tmp_path)


def test_deploy_config_errors_name_the_key() -> None:
    with pytest.raises(MlgateError, match=r"deploy\.target"):
        deploy_config({"target": "heroku"})


def test_image_repository_strips_tag_and_digest() -> None:
    assert image_repository(DIGEST) == "ghcr.io/acme/credit-model"
    assert image_repository("localhost:5000/m:1.0") == "localhost:5000/m"


# ---------------------------------------------------------------- the smoke test


# The columns the real service requires: its contract is the schema without the target.
CONTRACT_COLUMNS = list(input_schema(load_params(ROOT / "params.yaml")).columns)


class Service(BaseHTTPRequestHandler):
    """Plays a model service: health endpoints and /predict with a strict request contract."""

    crash = False
    seen: ClassVar[list[Any]] = []  # replaced per test by the fixture

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200 if self.path in ("/livez", "/readyz", "/metrics") else 404, {})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        row = body.get("applicant", {})
        if self.crash:
            self._send(500, {"error": "boom"})
        elif missing := sorted(set(CONTRACT_COLUMNS) - set(row)):
            self._send(400, {"error": f"{missing}: missing"})
        else:
            self._send(200, {"probability": 0.7})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def service() -> Iterator[tuple[str, type[Service]]]:
    handler = type("S", (Service,), {"crash": False, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_smoke_test_passes_a_healthy_service_with_real_rows(params: Any, service: Any) -> None:
    url, handler = service
    cfg = deploy_config(params.deploy)
    rows = sample_rows(params, cfg.smoke.rows)
    # the service's contract (schema minus target), not only the features: `sex` is required
    assert len(rows) == 5 and set(rows[0]) == set(input_schema(params).columns)
    assert set(params.features.all) < set(rows[0])
    passed = smoke_test(url, rows, cfg)
    assert any("missing field -> 400" in p for p in passed)
    assert handler.seen[0] == {"applicant": rows[0]}


def test_smoke_test_fails_a_crashing_service_listing_every_failure(
    params: Any, service: Any
) -> None:
    url, handler = service
    handler.crash = True
    cfg = deploy_config(params.deploy)
    with pytest.raises(MlgateError) as err:
        smoke_test(url, sample_rows(params, 2), cfg)
    text = str(err.value)
    assert "FAIL POST /predict row 0 -> 500" in text and "want 4xx" in text
    assert "pass GET /livez -> 200" in text


def test_smoke_cli_against_a_live_url(params: Any, service: Any) -> None:
    url, _ = service
    assert main(["smoke", "--url", url]) == 0


def test_deploy_refuses_a_tag_instead_of_a_digest(
    params: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deploy", "--env", "staging", "--image", "ghcr.io/acme/m:latest"]) == 2
    assert "deploy an image by digest" in capsys.readouterr().err


def test_kubernetes_deploy_without_kubeconfig_says_what_to_set(
    params: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    custom = tmp_path / "params.yaml"
    text = (ROOT / "params.yaml").read_text().replace("  target: local", "  target: kubernetes")
    custom.write_text(text)
    argv = ["deploy", "--params", str(custom), "--env", "staging", "--image", DIGEST]
    assert main(argv) == 2
    assert "KUBECONFIG is not set" in capsys.readouterr().err


def test_alias_moves_are_skipped_aloud_without_a_tracking_server(
    params: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["release", "promote", "--version", "3", "--to", "staging"]) == 0
    assert main(["release", "rollback"]) == 0
    out = capsys.readouterr().out
    assert "no MLFLOW_TRACKING_URI secret" in out and "moving alias 'staging' is skipped" in out
    assert "moving alias production back is skipped" in out


# What `mlgate release image` does in its one process: build a bento, then another (the trial
# bento), then start other processes (containerize).
RELEASE_BUILDS = """
import json, os
from mlgate.config import load_params
from mlgate.release.deploy import build_bento
from mlgate.serving.build import MODEL_ENV

params = load_params("params.yaml")
tags = [build_bento(params, "candidate"), build_bento(params, "candidate")]
print(json.dumps({"tags": tags, "left": [k for k in MODEL_ENV.values() if k in os.environ]}))
"""


@pytest.mark.slow
def test_release_image_builds_each_bento_with_its_own_model_in_one_process(
    trained_repo: Path, tmp_path: Path
) -> None:
    """In one process (its own here: BentoML keeps its store per process), as release image
    builds: the second bento names the models it was built with, not the first one's, and no
    model name is left in the environment for the processes started after."""
    import yaml

    from tests.conftest import VENV_BIN
    from tests.serving.conftest import bentoml_env

    home = tmp_path / "bentoml"
    proc = run([str(VENV_BIN / "python"), "-c", RELEASE_BUILDS], trained_repo, **bentoml_env(home))
    said = json.loads(proc.stdout.strip().splitlines()[-1])
    assert said["left"] == []
    assert all(tag.startswith("credit-risk:") for tag in said["tags"])
    recorded = [
        yaml.safe_load((home / "bentos" / tag.replace(":", "/") / "bento.yaml").read_text())
        for tag in said["tags"]
    ]
    (first,), (second,) = (
        [m["tag"] for s in bento["services"] for m in s.get("models") or []] for bento in recorded
    )
    # each build saved its own copy of the model: the second bento names the second one
    assert first != second
    for tag in (first, second):
        assert (home / "models" / tag.replace(":", "/")).is_dir(), tag


def test_a_docker_failure_is_reported_with_dockers_own_words(
    params: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Here Docker has no daemon (as on a runner without Docker): the user sees why, no trace."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert main(["deploy", "--env", "staging", "--image", DIGEST]) == 2
    err = capsys.readouterr().err
    assert f"`docker pull --quiet {DIGEST}` exited" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_release_register_without_a_server_says_the_version_is_not_shared(
    repo: Path, tmp_path: Path
) -> None:
    """No MLFLOW_TRACKING_URI: the version lives in this job's store only. (MLflow exports the
    local store's URI to the environment when mlgate connects; that once made this output say
    true, and the trial look for a champion in a throw-away store.)"""
    outputs = tmp_path / "output"
    outputs.touch()
    proc = run(["mlgate", "release", "register"], repo, GITHUB_OUTPUT=str(outputs))
    assert "no MLFLOW_TRACKING_URI secret" in proc.stdout
    assert outputs.read_text().splitlines()[-1] == "shared_registry=false"
