"""Scenario 3b: the trial stage of ml-cd (deploy.trial.mode), run by act through cd.yml.

Three pushes to main, each approved. The first has no champion, so it goes straight to
production (and says why). The second runs the candidate in the shadow of the champion while
this test plays production traffic against the real `bentoml serve` behind the docker
stand-in, then posts the late labels to /outcome: `mlgate compare` finds the candidate
non-inferior and the job promotes it (its own image, alias production). The third candidate
fails on every row (the test-only fault switch of the service): the job aborts, the
champion's image runs again, the alias stays, and the job fails. Every step is a deployment
record.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlgate.config import load_params
from mlgate.pipeline import data
from tests.conftest import run
from tests.serving.fault import challenger_fault_env
from tests.workflows.act.conftest import push_event
from tests.workflows.act.road import ActRun, Repo, Road
from tests.workflows.fake_github import FakeGitHub

MODEL = "credit-trial"  # its own registered model: the session's MLflow server is shared
ROWS = 240  # above compare.min_rows (200) and min_outcomes (100), the defaults
DELIVERED = {"gate": "success", "build": "success", "staging": "success", "production": "success"}


def approval(login: str = "bob") -> dict[str, Any]:
    return {"state": "approved", "user": {"login": login},
            "environments": [{"name": "production"}], "comment": "ship it"}  # fmt: skip


def alias(road: Road, name: str) -> str | None:
    client = MlflowClient(tracking_uri=road.mlflow_url, registry_uri=road.mlflow_url)
    try:
        return client.get_model_version_by_alias(MODEL, name).version
    except MlflowException:
        return None


def with_trial(params_text: str) -> str:
    raw = yaml.safe_load(params_text)
    raw["project"]["name"] = MODEL
    # seconds, not minutes: the traffic below arrives within one; max_minutes bounds a hang
    raw["deploy"]["trial"] = {"mode": "shadow", "min_minutes": 0, "max_minutes": 8,
                              "poll_seconds": 3}  # fmt: skip
    return yaml.safe_dump(raw, sort_keys=False)


def labelled_rows(repo: Repo) -> list[tuple[dict[str, Any], Any]]:
    """ROWS rows of the example data as the service takes them, with their true labels."""
    run(["dvc", "pull", "--quiet", "data.dvc"], repo.path)
    params = load_params(repo.path / "params.yaml")
    frame = data.load(repo.path / params.data.raw, params).head(ROWS)
    inputs = frame[list(data.input_schema(params).columns)]
    labels = frame[params.data.target].tolist()
    records = json.loads(inputs.to_json(orient="records"))
    return list(zip(records, labels, strict=True))


def call(url: str, path: str, body: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            status, text = err.code, err.read().decode()
    except OSError as err:  # not listening yet
        return 0, str(err)
    try:
        return status, json.loads(text)
    except ValueError:  # /readyz answers plain text
        return status, text


class Traffic(threading.Thread):
    """Production's users while the trial runs: once the trial image serves, every row is
    scored on /predict, then its label arrives on /outcome."""

    def __init__(self, road: Road, sha: str, rows: list[tuple[dict[str, Any], Any]]) -> None:
        super().__init__(daemon=True)
        self.road, self.sha, self.rows = road, sha, rows
        self.stop = threading.Event()
        self.sent = 0
        self.problems: list[str] = []

    def trial_container(self) -> dict[str, Any] | None:
        state_file = self.road.docker_home / "state.json"
        if not state_file.exists():
            return None
        state = json.loads(state_file.read_text())
        trial = next((ref for ref in state["registry"] if ref.endswith(f":{self.sha}-trial")), None)
        running = state["containers"].get("mlgate-production")
        if trial is None or running is None:
            return None
        digest = state["registry"][trial]["digest"]
        return running if running["image"].endswith(f"@{digest}") else None

    def run(self) -> None:
        try:
            self.play()
        except Exception as err:  # reported by the test, not lost in the thread
            self.problems.append(f"traffic failed: {err!r}")

    def play(self) -> None:
        while not self.stop.is_set():
            container = self.trial_container()
            if container and call(container["url"], "/readyz")[0] == 200:
                break
            time.sleep(0.5)
        else:
            return
        url = container["url"]
        answered = []
        for record, label in self.rows:
            status, answer = call(url, "/predict", {"applicant": record})
            if status != 200:
                self.problems.append(f"/predict {status}: {answer}")
                continue
            answered.append((answer["request_id"], label))
        for request_id, label in answered:
            status, answer = call(url, "/outcome", {"request_id": request_id, "outcome": label})
            if status != 200:
                self.problems.append(f"/outcome {status}: {answer}")
            else:
                self.sent += 1


def deliver(road: Road, repo: Repo, run_id: str, traffic: Traffic | None = None,
            extra: list[str] | None = None) -> ActRun:  # fmt: skip
    if traffic is not None:
        traffic.start()
    try:
        return road.act(repo, "push", ".github/workflows/cd.yml", push_event(repo),
                        run_id=run_id, extra=extra)  # fmt: skip
    finally:
        if traffic is not None:
            traffic.stop.set()
            traffic.join(timeout=60)


def production_records(github: FakeGitHub) -> list[dict[str, Any]]:
    return [d["payload"] for d in github.deployments
            if d["environment"] == "production" and d.get("payload", {}).get("image")]  # fmt: skip


def test_a_trial_promotes_a_sound_candidate_and_aborts_a_failing_one(
    road: Road, github: FakeGitHub, credit_repo: Repo, tmp_path: Path
) -> None:
    feedback = road.docker_home / "containers" / "mlgate-production" / "feedback"
    secret = ["-s", f"MLGATE_FEEDBACK_URL={feedback}"]
    params = credit_repo.path / "params.yaml"
    credit_repo.edit("Trial new models in the shadow of production",
                     {"params.yaml": with_trial(params.read_text())})  # fmt: skip
    credit_repo.push("main")
    rows = labelled_rows(credit_repo)

    # 1. no champion yet: straight to production, and the log says why there is no trial
    github.approvals["5101"] = [approval()]
    first = deliver(road, credit_repo, "5101", extra=secret)
    assert first.jobs == DELIVERED, first.explain()
    assert "no model holds alias production yet" in first.log("build"), first.explain()
    v1, image1 = first.outputs["build"]["version"], first.outputs["build"]["image"]
    assert first.outputs["build"].get("trial_image", "") == ""
    assert alias(road, "production") == v1

    # 2. a sound candidate in the shadow of v1: the evidence promotes it
    credit_repo.edit("Document the trial", {"TRIAL.md": "shadow first\n"})
    credit_repo.push("main")
    github.approvals["5102"] = [approval()]
    traffic = Traffic(road, credit_repo.sha, rows)
    second = deliver(road, credit_repo, "5102", traffic, extra=secret)
    assert not traffic.problems, traffic.problems[:5]
    assert traffic.sent == ROWS, f"{traffic.sent} outcomes posted\n{second.explain()}"
    assert second.jobs == DELIVERED, second.explain()
    built = second.outputs["build"]
    v2, image2, trial2 = built["version"], built["image"], built["trial_image"]
    assert (built["champion_version"], built["champion_image"]) == (v1, image1)
    assert "@sha256:" in trial2 and trial2 != image2, second.explain()
    log = second.log("production")
    assert "trial: shadow: champion version" in log and ": promote - " in log, second.explain()
    assert alias(road, "production") == v2
    assert road.containers()["mlgate-production"]["image"] == image2  # the candidate alone
    stages = [(r.get("stage"), r["model_version"], r["image"]) for r in production_records(github)]
    assert stages[-2:] == [("trial", v2, trial2), ("promoted", v2, image2)], stages
    promoted = production_records(github)[-1]
    assert promoted["trial"]["verdict"] == "promote" and promoted["approved_by"] == ["bob"]

    # 3. a candidate that fails on every row: aborted, v2 serves again, the job fails
    fault = tmp_path / "challenger-fault"
    fault.write_text("raise")
    credit_repo.edit("Try another model", {"TRIAL.md": "and again\n"})
    credit_repo.push("main")
    github.approvals["5103"] = [approval()]
    traffic = Traffic(road, credit_repo.sha, rows)
    # the test-only hook (tests/serving/fault.py) reaches the served trial through the job's env
    failing = [arg for k, v in challenger_fault_env(fault).items() for arg in ("--env", f"{k}={v}")]
    third = deliver(road, credit_repo, "5103", traffic, extra=[*secret, *failing])
    assert third.jobs.get("production") == "failure", third.explain()
    v3 = third.outputs["build"]["version"]
    log = third.log("production")
    assert "trial aborted: challenger error rate" in log, third.explain()
    assert alias(road, "production") == v2, "an aborted trial never moves production"
    assert road.containers()["mlgate-production"]["image"] == image2  # the champion again
    stages = [(r.get("stage"), r["model_version"]) for r in production_records(github)]
    assert stages[-2:] == [("trial", v3), ("aborted", v2)], stages
    aborted = production_records(github)[-1]
    assert aborted["trial"]["verdict"] == "abort" and aborted["candidate"] == v3
