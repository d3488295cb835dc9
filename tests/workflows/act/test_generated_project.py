"""Scenario 6: a repository made by `mlgate init` drives the road through a pinned release.

Its callers name `OWNER/NAME/.github/workflows/ml-*.yml@vX.Y.Z` (this mlgate's release:
`this_release()`, from pyproject's Repository URL and version). That release is a snapshot of
this checkout, tagged locally: act maps the `uses:` reference to it (`--local-repository`) and
the jobs' checkout of mlgate's set-up action (`mlgate-repository`/`mlgate-ref`) fetches the tag
from its bare repository. The project is made by a real `mlgate init --mlgate-path` (offline:
its lock installs this checkout); the default path, a published release's wheel and template,
is covered by tests/scaffold/test_release.py.

The project predicts one of three classes (wine cultivars): the binary road is the example's, so
this one carries multiclass through the pull request, the report, the delivery and the served
answer (each class's probability and the decided class).

Scenario 1 (a passing pull request: `ml / gate` succeeds, one report comment) and scenario 3
(push to main: its real image built once, pulled and run by digest in staging with the smoke
test, production with an approval on record) run with the project's own lint and test commands,
unchanged. The pull request is review finding M3's, the team's usual one once it pushes its
stage outputs: they come from the DVC remote (a pull request whose runner rebuilds every stage
is the example's, tests/workflows/act/test_pull_request.py).
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient

from mlgate.scaffold.source import Release, this_release
from tests.conftest import run
from tests.scaffold.conftest import mlgate_init
from tests.scaffold.test_init_multiclass import CULTIVARS, wine_frame
from tests.workflows.act.conftest import pr_event, push_event, with_registry
from tests.workflows.act.road import UV_DIR, ActRun, RemoteHeads, Repo, Road, git, snapshot
from tests.workflows.act.test_delivery import DELIVERED, approval
from tests.workflows.act.test_pull_request import MARKER
from tests.workflows.fake_github import FakeGitHub

pytestmark = pytest.mark.usefixtures("docker_road")


@dataclass
class Published:
    """This checkout as the release the generated callers pin: a local tag and a folder."""

    release: Release
    tree: Path  # a snapshot of this checkout, tagged; its bare repository is under remotes/

    def act(self, road: Road, repo: Repo, event: str, workflow: str, payload: dict,
            run_id: str | None = None) -> ActRun:  # fmt: skip
        ref = f"{self.release.repo}@{self.release.tag}"
        return road.act(repo, event, workflow, payload, run_id=run_id, actions_from=self.tree,
                        extra=["--local-repository", f"{ref}={self.tree}"])  # fmt: skip

    def set_up_from_the_tag(self, run: ActRun) -> bool:
        """Every job that set up fetched mlgate's set-up action at the tag (checkout stand-in)."""
        lines = [line for line in run.log().splitlines() if line.startswith("checkout stand-in:")]
        into_mlgate = [
            line for line in lines if line.split(" -> ")[-1].split()[0].endswith(".mlgate")
        ]
        wanted = f"checkout stand-in: {self.release.repo}@{self.release.tag} "
        return bool(into_mlgate) and all(line.startswith(wanted) for line in into_mlgate)


@pytest.fixture(scope="session")
def published(road: Road) -> Published:
    release = this_release()
    tree = snapshot(road.home / "mlgate-release")
    repo = Repo.create(tree, road.home / "remotes", name=release.repo)
    git(tree, "tag", release.tag)
    git(tree, "push", "-q", "origin", f"refs/tags/{release.tag}")
    return Published(release, repo.path)


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A three-class model repository (wine cultivars) made by `mlgate init`, once per session
    (init syncs a venv). Three classes on purpose: the binary road is the example's (every
    other scenario), so this one carries multiclass through the PR, delivery and serving."""
    base = tmp_path_factory.mktemp("generated")
    data = base / "input" / "wine.csv"
    data.parent.mkdir()
    wine_frame().to_csv(data, index=False)
    path = base / "wine"
    init = mlgate_init(path, "--data", data, "--target", "cultivar", "--sensitive", "region")
    assert "multiclass of 'cultivar', 3 classes" in init.stdout, init.stdout
    with_own_model_code(path)
    return path


def with_own_model_code(path: Path) -> None:
    """What a team does next (issue 27's road): `uv add lightgbm`, LightGBM as the estimator,
    and its own feature in the generated hook (src/<package>/features.py: the commented
    ratio switched on, its column named under features.derived); committed."""
    package = next(p.name for p in (path / "src").iterdir() if (p / "features.py").exists())
    hook = path / "src" / package / "features.py"
    ratio = 'out["alcohol_per_malic_acid"] = frame["alcohol"] / frame["malic_acid"]'
    code, n = re.subn(rf"^(\s+)# ({re.escape(ratio)}.*)$", r"\1\2", hook.read_text(), flags=re.M)
    assert n == 1, "the generated feature hook's example moved: update the test"
    hook.write_text(code)
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["features"] |= {
        "transform": f"{package}.features:features",
        "derived": {"numeric": ["alcohol_per_malic_acid"], "categorical": []},
    }
    params["train"] |= {"estimator": "lightgbm.LGBMClassifier",
                        "hyperparameters": {"n_estimators": 60, "num_leaves": 7,
                                            "min_child_samples": 5, "verbose": -1}}  # fmt: skip
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run([str(UV_DIR / "uv"), "add", "-q", "lightgbm"], path, UV_OFFLINE="1")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "LightGBM over our own feature (uv add lightgbm)")


@pytest.fixture
def project(
    road: Road, github: FakeGitHub, published: Published, generated: Path, tmp_path: Path
) -> Repo:
    """A copy of the generated repository (its git history, not its venv: every job syncs
    its own), on 'GitHub' as github.repo."""
    path = tmp_path / "wine"
    shutil.copytree(generated, path, symlinks=True, ignore=shutil.ignore_patterns(".venv"))
    caller = (path / ".github/workflows/ci.yml").read_text()
    pinned = f"uses: {published.release.repo}/.github/workflows/ml-ci.yml@{published.release.tag}"
    assert pinned in caller, caller
    repo = Repo.create(path, road.home / "remotes", name=github.repo)
    if road.docker is not None:
        with_registry(
            path, road.image_repository(github.repo), road.home / "feedback" / github.repo
        )
        git(path, "commit", "-qam", "Images to the registry this runner can reach")
        repo.push("main")
    github.heads = RemoteHeads(repo.remote)
    return repo


def predict(url: str, record: dict[str, Any]) -> dict[str, Any]:
    """One POST /predict (the generated service's body: {"record": …})."""
    req = urllib.request.Request(f"{url}/predict", data=json.dumps({"record": record}).encode(),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_a_generated_project_delivers_to_production_with_an_approval(
    road: Road, github: FakeGitHub, published: Published, project: Repo
) -> None:
    model = yaml.safe_load((project.path / "params.yaml").read_text())["project"]["name"]
    github.approvals["6101"] = [approval("bob")]

    run = published.act(road, project, "push", ".github/workflows/cd.yml", push_event(project),
                        run_id="6101")  # fmt: skip
    assert run.jobs == DELIVERED, run.explain()
    assert published.set_up_from_the_tag(run), run.explain()
    image, version = run.outputs["build"]["image"], run.outputs["build"]["version"]
    repository, digest = image.split("@")
    tags = road.registry_tags(repository)
    assert tags == {project.sha: digest, "staging": digest, "production": digest}, tags
    for env in ("staging", "production"):  # one digest, pulled and started by it
        container = road.running(repository, env)
        assert container is not None and container["image"] == image, (env, container)
    assert "smoke: pass" in run.log("staging") and "smoke: pass" in run.log("production")
    # production answers each class's probability and the decided class, as the model does
    container = road.running(repository, "production")
    assert container is not None
    row = wine_frame().drop(columns=["cultivar"]).iloc[[0]]  # the contract: sensitive too
    answer = predict(container["url"], json.loads(row.to_json(orient="records"))[0])
    probabilities = answer["probabilities"]
    assert set(probabilities) == set(CULTIVARS), answer
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6), answer
    assert answer["class"] == max(probabilities, key=probabilities.get), answer

    client = MlflowClient(tracking_uri=road.mlflow_url, registry_uri=road.mlflow_url)
    assert client.get_model_version_by_alias(model, "production").version == version
    records = [d for d in github.deployments if d.get("payload", {}).get("image")]
    assert [(d["environment"], d["payload"]["image"]) for d in records] == [
        ("staging", image),
        ("production", image),
    ]
    assert records[-1]["payload"]["approved_by"] == ["bob"]
    assert records[-1]["payload"]["commit"] == project.sha


def test_a_pull_request_whose_stage_outputs_come_from_the_dvc_remote_passes_its_tests(
    road: Road, github: FakeGitHub, published: Published, project: Repo
) -> None:
    """Review finding M3: the team ran the pipeline and pushed its outputs (docs/CUSTOMIZING.md:
    `dvc push` to shared storage), so a runner's set-up restores them from the DVC remote. A
    pull request that only moves the gate's bar reruns evaluate and gate, which resume the
    training run named in the committed run.json: a run of the author's machine, unknown to the
    runner's fresh store. The project's `make repro test` must retrain there (`mlgate repro`);
    plain `dvc repro` stops with "training run … is not in the tracking store"."""
    # the author's machine: the pipeline (its own MLflow store), outputs pushed and committed;
    # this mlgate with the project's package on the path (its .venv is not copied)
    run(["mlgate", "repro"], project.path, PYTHONPATH=str(project.path / "src"))
    run(["dvc", "push", "-q"], project.path)
    git(project.path, "add", "-A")
    git(project.path, "commit", "-qm", "Pipeline outputs, pushed to the DVC remote")
    project.push("main")
    params = (project.path / "params.yaml").read_text()
    bar = yaml.safe_load(params)["gate"]["min_metrics"]["roc_auc_ovr"]  # init's, from a first model
    moved, n = re.subn(rf"^(\s+roc_auc_ovr: ){bar}\b", rf"\g<1>{bar - 0.01:.2f}", params,
                       flags=re.M)  # fmt: skip
    assert n == 1, "the generated gate's bar moved: update the test"
    project.edit("Lower the gate's bar", {"params.yaml": moved}, branch="bar")
    project.push("bar")

    result = published.act(road, project, "pull_request", ".github/workflows/ci.yml",
                           pr_event(project, 4, "bar"))  # fmt: skip
    pulled = "Pull data and cached stage outputs"
    assert pulled in result.log("test"), result.explain()
    assert "is not in the tracking store: retraining here" in result.log("test"), result.explain()
    assert result.jobs == {
        "lint": "success",  # the project's own `make lint`
        "test": "success",  # its `make repro test`, with the outputs from the remote
        "pipeline": "success",
        "gate": "success",
        "report": "success",
    }, result.explain()
    assert result.outputs["gate"]["passed"] == "true", result.explain()
    assert published.set_up_from_the_tag(result), result.explain()
    assert [(m, p) for m, p, _ in github.mutations] == [
        ("POST", f"/repos/{project.name}/issues/4/comments")
    ]
    [comment] = github.comments[4]
    assert MARKER in comment["body"]
