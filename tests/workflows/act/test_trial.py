"""Scenario 3b: the trial stage of ml-cd (deploy.trial.mode), run by act through cd.yml.

Seven pushes to main, each approved; every image is built by `bentoml containerize`, pushed to
the registry on 127.0.0.1 and run by digest by the Docker daemon, its feedback records written
into a volume on the host (the trial's FEEDBACK_URL). The first has no champion, so it goes
straight to production (and says why). The second runs the candidate in the shadow of the
champion while this test plays production traffic against the trial container, then posts the
late labels to /outcome: `mlgate compare` finds the candidate non-inferior and the job promotes
it (its own image, alias production). The third candidate fails on every row (the service's
test-only fault switch, in the images' bentofile and switched on through the volume): the
job aborts, the champion's image runs again, the alias stays, and the job fails. The fourth
goes canary with that failing candidate answering nearly every request: the trial image fails
its smoke test, so the champion is restored at once (deploy/trial.py's restore) and the job
fails. The fifth sees no traffic: at max_minutes the trial aborts to the champion. The sixth
is overtaken: production moves while its production job reads its approvals, and the job
refuses before deploying anything. The seventh is promoted on the evidence, but its own image
fails its smoke test: the champion is restored (trial.py's second restore). Every step is a
deployment record.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlgate.config import load_params
from mlgate.pipeline import data
from tests.conftest import run
from tests.serving.fault import FAULT_ENV, HOOK
from tests.workflows.act.conftest import clone_on_github, fake_github, push_event
from tests.workflows.act.road import ActRun, Repo, Road
from tests.workflows.act.test_delivery import records_in
from tests.workflows.fake_github import FakeGitHub

MODEL = "credit-trial"  # its own registered model: the session's MLflow server is shared
ROWS = 240  # above compare.min_rows (200) and min_outcomes (100), the defaults
DELIVERED = {"gate": "success", "build": "success", "staging": "success", "production": "success"}
FAULT_IN_IMAGE = "/home/bentoml/feedback/challenger-fault"  # in the production volume

pytestmark = pytest.mark.usefixtures("docker_road")


def approval(login: str = "bob") -> dict[str, Any]:
    return {"state": "approved", "user": {"login": login},
            "environments": [{"name": "production"}], "comment": "ship it"}  # fmt: skip


def registry(road: Road) -> MlflowClient:
    """The road's MLflow server as tracking store and model registry."""
    return MlflowClient(tracking_uri=road.mlflow_url, registry_uri=road.mlflow_url)


def alias(road: Road, name: str) -> str | None:
    try:
        return registry(road).get_model_version_by_alias(MODEL, name).version
    except MlflowException:
        return None


def with_trial(params_text: str, mode: str = "shadow") -> str:
    raw = yaml.safe_load(params_text)
    raw["project"]["name"] = MODEL
    # seconds, not minutes: the traffic below arrives within one; max_minutes bounds a hang
    raw["deploy"]["trial"] = {"mode": mode, "min_minutes": 0, "max_minutes": 8,
                              "poll_seconds": 3}  # fmt: skip
    if mode == "canary":  # the challenger answers nearly every request
        raw["serving"]["strategy"]["share"] = 0.99
    return yaml.safe_dump(raw, sort_keys=False)


def with_fault_switch(bentofile_text: str) -> str:
    """The test-only fault switch in the image (tests/serving/challenger_fault, carried in the
    bento's src/ and first on PYTHONPATH); its file is in the feedback volume, so the test
    turns the challenger's failure on and off from the host."""
    raw = yaml.safe_load(bentofile_text)
    raw["include"].append(f"{HOOK.name}/*.py")
    raw["envs"] += [
        {"name": FAULT_ENV, "value": FAULT_IN_IMAGE},
        {"name": "PYTHONPATH", "value": f"/home/bentoml/bento/src/{HOOK.name}"},
    ]
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

    def __init__(self, road: Road, repo: Repo, rows: list[tuple[dict[str, Any], Any]]) -> None:
        super().__init__(daemon=True)
        self.road, self.sha, self.rows = road, repo.sha, rows
        self.repository = f"{road.registry}/{repo.name}"
        self.stop = threading.Event()
        self.sent = 0
        self.problems: list[str] = []

    def trial_container(self) -> dict[str, Any] | None:
        """Production's container once it runs the trial image (pushed as SHA-trial)."""
        digest = self.road.registry_tags(self.repository).get(f"{self.sha}-trial")
        running = self.road.running(self.repository, "production")
        if digest is None or running is None:
            return None
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


@dataclass
class Champion:
    """The module's repository after its first delivery: version 1 in production, no trial."""

    github: FakeGitHub
    repo: Repo
    repository: str  # the image repository in the road's registry
    feedback: Path  # production's volume on the host: the trial's FEEDBACK_URL
    rows: list[tuple[dict[str, Any], Any]]
    first: ActRun | None = None  # the first delivery: no champion yet, straight to production
    first_sha: str = ""
    first_refused: tuple[str, ...] = ()  # requests the fake GitHub refused during it
    runs: int = 5100

    @property
    def secret(self) -> list[str]:
        return ["-s", f"MLGATE_FEEDBACK_URL={self.feedback}"]

    def running(self, road: Road) -> str:
        """The image production's container was started from (by digest), on its volume."""
        container = road.running(self.repository, "production")
        assert container is not None, "nothing runs as production"
        assert container["feedback"] == str(self.feedback), container
        return container["image"]

    def push(self, message: str, changes: dict[str, str | None]) -> str:
        """Commit and push to main; returns the run id of its (approved) delivery."""
        self.repo.edit(message, changes)
        self.repo.push("main")
        self.runs += 1
        self.github.approvals[str(self.runs)] = [approval()]
        return str(self.runs)

    def fault(self, on: bool, says: str = "raise") -> None:
        """The fault switch, read by the service in the container (its volume): the challenger
        raises while it says `raise`; see tests/serving/challenger_fault for what else."""
        switch = self.feedback / "challenger-fault"
        if on:
            switch.write_text(says)
        else:
            switch.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def champion(docker_road: Road, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Champion]:
    """One repository for the module and its first delivery, made once: every trial needs a
    champion in production, and a real delivery makes it (then each test's push trials against
    whatever production runs by then)."""
    road = docker_road
    with fake_github(road, "trial") as github:
        repo = clone_on_github(road, github, tmp_path_factory.mktemp("trial") / "clone")
        params, bentofile = repo.path / "params.yaml", repo.path / "bentofile.yaml"
        # the switch is in every image from the first (an env line early in the Dockerfile:
        # added later, it would rebuild every layer after it); off until its file exists
        hook = f"src/{HOOK.name}/sitecustomize.py"
        repo.edit("Trial new models in the shadow of production",
                  {"params.yaml": with_trial(params.read_text()),
                   "bentofile.yaml": with_fault_switch(bentofile.read_text()),
                   hook: (HOOK / "sitecustomize.py").read_text()})  # fmt: skip
        repo.push("main")
        made = Champion(github, repo, f"{road.registry}/{repo.name}",
                        road.home / "feedback" / repo.name / "production",
                        labelled_rows(repo))  # fmt: skip

        # no champion yet: straight to production, and the log says why there is no trial
        made.runs += 1
        github.approvals[str(made.runs)] = [approval()]
        made.first_sha = repo.sha
        made.first = deliver(road, repo, str(made.runs), extra=made.secret)
        made.first_refused = tuple(str(r) for r in github.refused)
        assert made.first.jobs == DELIVERED, made.first.explain()
        yield made


def test_the_first_delivery_builds_once_and_promotes_the_same_digest_with_an_approval(
    road: Road, champion: Champion
) -> None:
    """Scenario 3 (ml-cd through cd.yml), the first push of a repository: build once, staging,
    production with an approval on record. Runs first in this module, on the delivery that
    makes the module's champion (one real delivery serves both)."""
    github, repo, first = champion.github, champion.repo, champion.first
    assert first is not None
    assert champion.first_refused == (), "every request within its job's permissions"
    # no champion yet: straight to production, and the log says why there is no trial
    assert "no model holds alias production yet" in first.log("build"), first.explain()
    assert first.outputs["build"].get("trial_image", "") == ""
    image, version = first.outputs["build"]["image"], first.outputs["build"]["version"]
    repository, digest = image.split("@")
    assert repository == champion.repository, image

    # M1: the pipeline artifact (downloadable by anyone signed in, in a public repository)
    # holds the model and the reports, and not one row of data
    uploaded = first.uploaded("ml-cd-pipeline")
    assert "artifacts/model/model.joblib" in uploaded and "dvc.lock" in uploaded, uploaded
    rows = [f for f in uploaded if f.startswith("artifacts/data/") or f.endswith(".parquet")]
    assert rows == [], f"data in the delivery artifact: {rows}"

    # one image, built once and pushed: the commit's tag, then :staging and :production moved
    # to that digest by the deploys that tested it
    tags = road.registry_tags(repository)
    assert tags == {champion.first_sha: digest, "staging": digest, "production": digest}, tags
    built = road.docker_out("images", "--no-trunc", "--format", "{{.ID}}", repository)
    assert len(set(built.split())) == 1, f"the image is built once: {built}"
    # both environments run that digest, pulled and started by it
    for env in ("staging", "production"):
        container = road.running(repository, env)
        assert container is not None and container["image"] == image, (env, container)
    assert "smoke: pass" in first.log("staging") and "smoke: pass" in first.log("production")
    # the smoke test's requests were recorded by the service in the container, on the host
    assert champion.running(road) == image  # on production's volume, champion.feedback
    assert records_in(str(champion.feedback)), f"no feedback records in {champion.feedback}"

    assert alias(road, "staging") == version
    assert alias(road, "production") == version

    records = [d for d in github.deployments if d.get("payload", {}).get("image")]
    assert [(d["environment"], d["payload"]["image"]) for d in records] == [
        ("staging", image),
        ("production", image),
    ]
    payload = records[-1]["payload"]
    assert payload["approved_by"] == ["bob"]
    assert payload["model_version"] == version
    assert payload["commit"] == champion.first_sha

    # provenance in one command, deployment half: the registry alone answers it
    lineage = run(
        ["mlgate", "lineage", f"{MODEL}@production", "--json"],
        repo.path,
        MLFLOW_TRACKING_URI=road.mlflow_url,
    )
    deployed = json.loads(lineage.stdout)["deployments"]
    assert deployed["production"]["image"] == image, deployed
    assert deployed["production"]["approved_by"] == ["bob"], deployed
    assert deployed["production"]["run_url"].startswith("https://github.com/"), deployed
    assert deployed["staging"]["image"] == image, deployed


def production_now(road: Road) -> tuple[str, str]:
    """(version, image) production holds: alias production and the image it was promoted with."""
    client = registry(road)
    version = client.get_model_version_by_alias(MODEL, "production")
    return version.version, version.tags["mlgate.image"]


def test_a_trial_promotes_a_sound_candidate_and_aborts_a_failing_one(
    road: Road, champion: Champion
) -> None:
    github, repo = champion.github, champion.repo
    params = repo.path / "params.yaml"
    v1, image1 = production_now(road)
    champion.fault(on=False)

    # a sound candidate in the shadow of the champion: the evidence promotes it
    run_id = champion.push("Document the trial", {"TRIAL.md": "shadow first\n",
                           "params.yaml": with_trial(params.read_text())})  # fmt: skip
    traffic = Traffic(road, repo, champion.rows)
    second = deliver(road, repo, run_id, traffic, extra=champion.secret)
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
    assert champion.running(road) == image2  # the candidate alone
    assert road.registry_tags(champion.repository)["production"] == image2.split("@")[1]
    stages = [(r.get("stage"), r["model_version"], r["image"]) for r in production_records(github)]
    assert stages[-2:] == [("trial", v2, trial2), ("promoted", v2, image2)], stages
    promoted = production_records(github)[-1]
    assert promoted["trial"]["verdict"] == "promote" and promoted["approved_by"] == ["bob"]

    # a candidate that fails on every row: aborted, v2 serves again, the job fails
    champion.fault(on=True)
    run_id = champion.push("Try another model", {"TRIAL.md": "and again\n"})
    traffic = Traffic(road, repo, champion.rows)
    third = deliver(road, repo, run_id, traffic, extra=champion.secret)
    assert third.jobs.get("production") == "failure", third.explain()
    v3 = third.outputs["build"]["version"]
    log = third.log("production")
    assert "trial aborted: challenger error rate" in log, third.explain()
    assert alias(road, "production") == v2, "an aborted trial never moves production"
    assert champion.running(road) == image2  # the champion again
    stages = [(r.get("stage"), r["model_version"]) for r in production_records(github)]
    assert stages[-2:] == [("trial", v3), ("aborted", v2)], stages
    aborted = production_records(github)[-1]
    assert aborted["trial"]["verdict"] == "abort" and aborted["candidate"] == v3


def test_a_trial_image_failing_its_smoke_test_restores_the_champion_at_once(
    road: Road, champion: Champion
) -> None:
    """Canary, the failing candidate answering nearly every request: the trial image fails its
    smoke test, and the champion runs again at once (no traffic, no comparison), recorded as the
    end of the trial; the job fails. Without deploy/trial.py's restore, the failing trial image
    would stay live as production."""
    github, params = champion.github, champion.repo.path / "params.yaml"
    version, image = production_now(road)
    champion.fault(on=True)
    before = len(production_records(github))

    run_id = champion.push("Canary the next model",
                           {"params.yaml": with_trial(params.read_text(), "canary")})  # fmt: skip
    run = deliver(road, champion.repo, run_id, extra=champion.secret)
    assert run.jobs.get("production") == "failure", run.explain()
    candidate, trial = run.outputs["build"]["version"], run.outputs["build"]["trial_image"]
    assert "@sha256:" in trial, run.explain()
    log = run.log("production")
    assert "the trial image failed to deploy: restoring the champion" in log, run.explain()
    assert champion.running(road) == image, "the champion runs again, not the failing trial image"
    assert alias(road, "production") == version
    records = production_records(github)
    assert len(records) == before + 1, "nothing recorded for a trial image that never passed"
    last = records[-1]
    assert (last["stage"], last["model_version"], last["image"]) == ("aborted", version, image)
    assert last["candidate"] == candidate and last["trial"]["verdict"] == "abort", last


def test_a_trial_still_collecting_at_max_minutes_aborts_to_the_champion(
    road: Road, champion: Champion
) -> None:
    """No traffic reaches the trial, so `mlgate compare` never has a verdict: at max_minutes
    the trial ends as an abort, the champion runs alone again (recorded as the end of the
    trial) and the job fails. Without trial.py's max_minutes rule the job would poll until
    GitHub kills it at six hours, leaving production split between two models."""
    github, params = champion.github, champion.repo.path / "params.yaml"
    version, image = production_now(road)
    champion.fault(on=False)
    raw = yaml.safe_load(with_trial(params.read_text()))
    raw["deploy"]["trial"]["max_minutes"] = 0.1  # six seconds: two polls
    run_id = champion.push("A trial that sees no traffic",
                           {"params.yaml": yaml.safe_dump(raw, sort_keys=False)})  # fmt: skip
    run = deliver(road, champion.repo, run_id, extra=champion.secret)
    assert run.jobs.get("production") == "failure", run.explain()
    candidate = run.outputs["build"]["version"]
    log = run.log("production")
    # the smoke test's few rows are all it saw: "collect" at every poll, then the time is up
    assert (
        ": collect - " in log and "error: trial aborted: no verdict after max_minutes 0.1" in log
    ), run.explain()
    assert champion.running(road) == image, "the champion runs alone again"
    assert alias(road, "production") == version
    stages = [(r.get("stage"), r["model_version"]) for r in production_records(github)]
    assert stages[-2:] == [("trial", candidate), ("aborted", version)], stages


def next_version(road: Road) -> str:
    """The version the next delivery's register step will give the candidate."""
    client = registry(road)
    versions = client.search_model_versions(f"name = '{MODEL}'")
    return str(max(int(v.version) for v in versions) + 1)


def test_a_trial_against_a_champion_that_has_since_moved_deploys_nothing(
    road: Road, champion: Champion
) -> None:
    """While this delivery's production job reads its approvals, another moves production (the
    alias goes to an older version, as a rollback would): the trial image was built against a
    champion that no longer holds production, so the job refuses before anything is deployed."""
    github = champion.github
    version, image = production_now(road)
    assert int(version) > 1, "needs an older version to move to: the module's earlier pushes"
    moved = str(int(version) - 1)
    records = len(production_records(github))
    champion.fault(on=False)
    run_id = champion.push("A delivery overtaken", {"TRIAL.md": "overtaken\n"})
    client = registry(road)
    seen: list[str] = []

    def move_production(method: str, path: str) -> None:
        if path.endswith(f"/actions/runs/{run_id}/approvals") and not seen:
            seen.append(path)
            client.set_registered_model_alias(MODEL, "production", moved)

    github.on_request = move_production
    try:
        run = deliver(road, champion.repo, run_id, extra=champion.secret)
    finally:
        github.on_request = None
    assert seen, f"the production job never read its approvals\n{run.explain()}"
    assert alias(road, "production") == moved
    client.set_registered_model_alias(MODEL, "production", version)  # as production runs
    assert run.jobs.get("production") == "failure", run.explain()
    assert run.outputs["build"]["champion_version"] == version, run.explain()
    log = run.log("production")
    assert f"production is version {moved} now, not {version}" in log, run.explain()
    assert "nothing was deployed" in log and "Traceback" not in log, run.explain()
    assert champion.running(road) == image, "production untouched"
    assert len(production_records(github)) == records, "nothing recorded"


def test_a_promotion_whose_own_image_fails_to_deploy_restores_the_champion(
    road: Road, champion: Champion
) -> None:
    """The trial's evidence promotes the candidate, but its own image fails its smoke test
    (the candidate's version raises when it serves alone: the fault switch says
    `raise-champion:<version>`): the champion runs alone again at once, recorded as the end
    of the trial, the alias stays, and the job fails. Without trial.py's second restore,
    production would be left running the failing image."""
    github, repo = champion.github, champion.repo
    version, image = production_now(road)
    candidate = next_version(road)
    champion.fault(on=True, says=f"raise-champion:{candidate}")
    try:
        run_id = champion.push("A model whose own image fails", {"TRIAL.md": "own image\n"})
        traffic = Traffic(road, repo, champion.rows)
        run = deliver(road, repo, run_id, traffic, extra=champion.secret)
    finally:
        champion.fault(on=False)
    assert not traffic.problems, traffic.problems[:5]
    assert run.jobs.get("production") == "failure", run.explain()
    assert run.outputs["build"]["version"] == candidate, run.explain()
    log = run.log("production")
    assert ": promote - " in log, run.explain()  # the evidence did promote
    assert "the candidate's own image failed to deploy: restoring the champion" in log, (
        run.explain()
    )
    assert champion.running(road) == image, "the champion alone again, not the failing image"
    assert alias(road, "production") == version
    last = production_records(github)[-1]
    assert (last["stage"], last["model_version"], last["image"]) == ("aborted", version, image)
    assert last["candidate"] == candidate, last
    assert last["trial"]["verdict"] == "abort", last
    assert last["trial"]["reasons"][0].startswith("promotion failed: "), last
