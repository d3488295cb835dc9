"""Cross-file check of every caller against the reusable workflow it calls, as GitHub checks
it when a run starts (the linters read one file at a time and cannot): the caller grants
every permission the called jobs request, passes only declared inputs and secrets and every
required one, and reads only outputs that exist. Callers: this repository's ci, cd, rollback,
monitor, retrain and batch, and the six a real `mlgate init` renders for a small data set.
No network."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, run

WF = ROOT / ".github/workflows"
LEVEL = {"none": 0, "read": 1, "write": 2}
# GitHub's token scopes; `read-all`/`write-all` expand to every one of them.
SCOPES = [
    *("actions", "attestations", "checks", "contents", "deployments", "discussions"),
    *("id-token", "issues", "models", "packages", "pages", "pull-requests"),
    *("repository-projects", "security-events", "statuses"),
]
NAME = {v: k for k, v in LEVEL.items()}
USES = re.compile(
    r"^(?:\./\.github/workflows/|[\w.-]+/[\w.-]+/\.github/workflows/)(?P<file>[\w.-]+\.ya?ml)(?:@(?P<ref>\S+))?$"
)


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def granted(permissions: Any) -> dict[str, int]:
    """A `permissions:` value as scope -> level (what a job or a caller job gets)."""
    if permissions in ("read-all", "write-all"):
        level = LEVEL[permissions.split("-")[0]]
        return dict.fromkeys(SCOPES, level)
    return {scope: LEVEL[level] for scope, level in (permissions or {}).items()}


def called(uses: str) -> Path:
    m = USES.match(uses)
    assert m, f"cannot read the called workflow of `uses: {uses}`"
    path = WF / m["file"]
    assert path.is_file(), f"`uses: {uses}`: mlgate has no {m['file']}"
    return path


def problems(caller: Path) -> list[str]:
    """Every way the caller's reusable-workflow jobs disagree with the workflows they call."""
    found: list[str] = []
    wf = load(caller)
    callers = {k: j for k, j in wf["jobs"].items() if "uses" in j}
    assert callers, f"{caller}: calls no reusable workflow"
    for job_id, job in callers.items():
        where = f"{caller.name}:{job_id}"
        target = called(job["uses"])
        reusable = load(target)
        call = reusable["on"]["workflow_call"] or {}
        # permissions: a called job never gets more than its caller job grants
        if "permissions" not in job:
            found.append(f"{where}: states no permissions (the repository default applies)")
        grant = granted(job.get("permissions"))
        for called_id, called_job in reusable["jobs"].items():
            for scope, level in granted(called_job.get("permissions")).items():
                if grant.get(scope, 0) < level:
                    found.append(
                        f"{where}: {target.name} job {called_id!r} requests {scope}: "
                        f"{NAME[level]}, the caller grants {NAME[grant.get(scope, 0)]}"
                    )
        # inputs and secrets: declared, and every required one passed
        for kind, given in (("inputs", job.get("with") or {}), ("secrets", job.get("secrets"))):
            if given == "inherit":
                found.append(f"{where}: secrets: inherit (pass each secret by name)")
                continue
            declared = call.get(kind) or {}
            for key in sorted(set(given or {}) - set(declared)):
                found.append(f"{where}: passes {kind[:-1]} {key!r}, {target.name} declares none")
            for key, spec in declared.items():
                if (spec or {}).get("required") and key not in (given or {}):
                    found.append(f"{where}: does not pass required {kind[:-1]} {key!r}")
        # outputs the caller reads of this job
        outputs = call.get("outputs") or {}
        text = caller.read_text()
        for name in re.findall(rf"needs\.{re.escape(job_id)}\.outputs\.([\w-]+)", text):
            if name not in outputs:
                found.append(f"{where}: reads output {name!r}, {target.name} has none")
    return found


def internal_problems(path: Path) -> list[str]:
    """A reusable workflow's own outputs point at job outputs that exist."""
    wf = load(path)
    found = []
    jobs = wf["jobs"]
    outputs = (wf["on"].get("workflow_call") or {}).get("outputs") or {}
    for name, spec in outputs.items():
        for job_id, out in re.findall(r"jobs\.([\w-]+)\.outputs\.([\w-]+)", spec["value"]):
            if out not in (jobs.get(job_id, {}).get("outputs") or {}):
                found.append(f"{path.name}: output {name!r} reads jobs.{job_id}.outputs.{out}")
    text = path.read_text()
    for job_id, out in re.findall(r"needs\.([\w-]+)\.outputs\.([\w-]+)", text):
        if out not in (jobs.get(job_id, {}).get("outputs") or {}):
            found.append(f"{path.name}: reads needs.{job_id}.outputs.{out}, which is not set")
    return found


# ---------------------------------------------------------------- the callers


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The caller workflows of a project made by a real `mlgate init` of a small data set."""
    from tests.scaffold.conftest import churn_frame

    base = tmp_path_factory.mktemp("init")
    data = base / "churn.csv"
    churn_frame(n=120).to_csv(data, index=False)
    path = os.pathsep.join([str(Path(sys.executable).parent), str(ROOT / ".tools/bin")])
    dest = base / "churn-model"
    run(
        [
            *(str(Path(sys.executable).parent / "mlgate"), "init", str(dest), "--no-input"),
            *("--data", str(data), "--target", "churned", "--sensitive", "gender"),
            *("--mlgate-repo", "acme/mlgate", "--mlgate-path", str(ROOT)),
        ],
        base,
        PATH=f"{path}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return dest / ".github/workflows"


OWN = ("ci.yml", "cd.yml", "rollback.yml", "monitor.yml", "retrain.yml", "batch.yml")
TEMPLATE = ("ci.yml", "cd.yml", "rollback.yml", "monitor.yml", "retrain.yml", "batch.yml")


@pytest.mark.parametrize("name", OWN)
def test_this_repositorys_callers_match_what_they_call(name: str) -> None:
    assert problems(WF / name) == []


@pytest.mark.parametrize("name", TEMPLATE)
def test_generated_projects_callers_match_what_they_call(rendered: Path, name: str) -> None:
    assert problems(rendered / name) == []


def test_generated_callers_pin_the_set_up_action_to_the_called_ref(rendered: Path) -> None:
    """`mlgate-repository`/`mlgate-ref` repeat the `uses:` repository and ref (m7): a
    mismatch would run another release's set-up action."""
    for name in TEMPLATE:
        for job in load(rendered / name)["jobs"].values():
            repo, ref = job["uses"].split("/.github/workflows/")[0], job["uses"].split("@")[1]
            assert job["with"]["mlgate-repository"] == repo, name
            assert str(job["with"]["mlgate-ref"]) == ref, name


@pytest.mark.parametrize(
    "name",
    [
        "ml-ci.yml",
        "ml-cd.yml",
        "ml-rollback.yml",
        "ml-monitor.yml",
        "ml-retrain.yml",
        "ml-batch.yml",
    ],
)
def test_reusable_workflows_read_only_outputs_that_exist(name: str) -> None:
    assert internal_problems(WF / name) == []


# ---------------------------------------------------------------- the check itself can fail


def test_the_check_finds_each_kind_of_mismatch(tmp_path: Path) -> None:
    caller = tmp_path / "bad.yml"
    caller.write_text(
        yaml.safe_dump(
            {
                "on": {"push": {}},
                "permissions": {},
                "jobs": {
                    "ml": {
                        "uses": "acme/mlgate/.github/workflows/ml-rollback.yml@v1",
                        "permissions": {"contents": "read", "deployments": "read"},
                        "with": {"no-such-input": "x"},
                        "secrets": {"NO_SUCH_SECRET": "x"},
                    },
                    "after": {
                        "needs": "ml",
                        "runs-on": "ubuntu-latest",
                        "steps": [{"run": "echo ${{ needs.ml.outputs.no-such-output }}"}],
                    },
                },
            }
        )
    )
    found = "\n".join(problems(caller))
    assert "requests deployments: write, the caller grants read" in found
    assert "requests id-token: write, the caller grants none" in found
    assert "passes input 'no-such-input'" in found
    assert "passes secret 'NO_SUCH_SECRET'" in found
    assert "does not pass required input 'reason'" in found
    assert "reads output 'no-such-output'" in found


def check_names(callers: Path, names: tuple[str, ...]) -> list[str]:
    """Every check-run name the callers' jobs publish: "<caller job id> / <called job name>"."""
    found = []
    for name in names:
        for job_id, job in load(callers / name)["jobs"].items():
            if "uses" not in job:
                found.append(job.get("name") or job_id)
                continue
            for callee_id, callee in load(called(job["uses"]))["jobs"].items():
                found.append(f"{job_id} / {callee.get('name') or callee_id}")
    return found


def test_one_workflow_alone_publishes_the_required_check(rendered: Path) -> None:
    """Branch protection matches a required check by name only, and a skipped job reports
    success: a second `ml / gate` (cd's, skipped off main) could stand in for CI's (M2)."""
    from mlgate.release.github import DEFAULT_CHECK

    for callers, names in ((WF, OWN), (rendered, TEMPLATE)):
        assert check_names(callers, names).count(DEFAULT_CHECK) == 1, callers


def test_the_act_harness_grants_each_job_its_effective_permissions(rendered: Path) -> None:
    """The token the fake GitHub checks carries caller ∩ callee, for a remote `uses:` too."""
    from tests.workflows.act.road import job_permissions

    table = job_permissions(rendered / "cd.yml", rendered.parent.parent, ROOT)
    assert table[("ml-cd", "production")] == {
        "contents": "read",
        "packages": "write",
        "deployments": "write",
        "actions": "read",
        "id-token": "write",
    }
    assert table[("ml-cd", "build")] == {"contents": "read", "packages": "write"}
    ci = job_permissions(WF / "ci.yml", ROOT, ROOT)
    assert ci[("ml-ci", "gate")] == {} and ci[("ml-ci", "report")]["pull-requests"] == "write"
