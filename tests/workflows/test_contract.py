"""The workflow YAML's contract: promotion graph, triggers, security rules, documented interface."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlgate.cli import build_parser
from mlgate.scaffold.source import this_release
from tests.conftest import ROOT

WF = ROOT / ".github/workflows"
DOCS = ROOT / "docs/WORKFLOWS.md"
REUSABLE = ("ml-ci.yml", "ml-cd.yml", "ml-rollback.yml", "ml-batch.yml")
CALLERS = {
    "ci.yml": "ml-ci.yml",
    "cd.yml": "ml-cd.yml",
    "rollback.yml": "ml-rollback.yml",
    "batch.yml": "ml-batch.yml",
}
ALL = sorted(p.name for p in WF.glob("*.yml"))
PIN = re.compile(r"uses:\s*(?P<ref>[\w.-]+/[\w./-]+)@(?P<sha>\S+)\s*(?:#\s*(?P<tag>v\S+))?")


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WF / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def triggers(name: str) -> set[str]:
    on = load(name)["on"]
    return {on} if isinstance(on, str) else set(on)


def needs(job: dict[str, Any]) -> set[str]:
    n = job.get("needs", [])
    return {n} if isinstance(n, str) else set(n)


def steps(name: str) -> list[dict[str, Any]]:
    docs = [load(name)] if name != "action" else []
    if name == "action":
        return yaml.safe_load((ROOT / ".github/actions/setup/action.yml").read_text())["runs"][
            "steps"
        ]
    return [s for d in docs for job in d["jobs"].values() for s in job.get("steps", [])]


# ---------------------------------------------------------------- promotion graph


def test_production_requires_staging_requires_build_requires_gate() -> None:
    jobs = load("ml-cd.yml")["jobs"]
    assert "staging" in needs(jobs["production"])
    assert "build" in needs(jobs["staging"])
    assert "gate" in needs(jobs["build"])
    assert needs(jobs["gate"]) == set()
    # the same image digest travels: staging and production deploy build's output
    for env in ("staging", "production"):
        deploy = next(s for s in jobs[env]["steps"] if s.get("id") == "deploy")
        assert deploy["env"]["IMAGE"] == "${{ needs.build.outputs.image }}"


def test_environments_bind_the_deploying_jobs() -> None:
    cd = load("ml-cd.yml")["jobs"]
    assert cd["staging"]["environment"]["name"] == "staging"
    assert cd["production"]["environment"]["name"] == "production"
    rollback = load("ml-rollback.yml")["jobs"]
    assert rollback["rollback"]["environment"]["name"] == "production"
    assert "target" in needs(rollback["rollback"]) and "environment" not in rollback["target"]
    assert "workflow_dispatch" in triggers("rollback.yml")
    # nothing else deploys
    for name in ALL:
        for job_id, job in load(name)["jobs"].items():
            uses_deploy = any("mlgate deploy" in (s.get("run") or "") for s in job.get("steps", []))
            if uses_deploy:
                assert "environment" in job, f"{name}:{job_id} deploys outside an environment"


def test_pr_gate_triggers_on_pull_request_only() -> None:
    assert triggers("ci.yml") == {"pull_request", "merge_group"}  # merge queue: same check
    for name in REUSABLE:
        assert triggers(name) == {"workflow_call"}
    for name in ALL:
        assert "pull_request_target" not in triggers(name)
    ci = load("ml-ci.yml")["jobs"]
    assert needs(ci["gate"]) == {"lint", "test", "pipeline"}
    assert ci["gate"]["name"] == "gate"  # the required check "<caller job> / gate"


def test_callers_call_the_reusable_workflows_with_declared_inputs() -> None:
    for caller, reusable in CALLERS.items():
        (job,) = load(caller)["jobs"].values()
        assert job["uses"] == f"./.github/workflows/{reusable}"
        call = load(reusable)["on"]["workflow_call"]
        assert set(job.get("with", {})) <= set(call.get("inputs", {}))
        assert job.get("secrets") != "inherit"
        assert set(job.get("secrets", {})) <= set(call.get("secrets", {}))
        required = {k for k, v in call.get("inputs", {}).items() if v.get("required")}
        assert required <= set(job.get("with", {}))


# ---------------------------------------------------------------- security


def test_least_privilege_everywhere() -> None:
    for name in ALL:
        wf = load(name)
        assert wf["permissions"] == {}, f"{name}: top-level permissions must be {{}}"
        for job_id, job in wf["jobs"].items():
            assert "permissions" in job, f"{name}:{job_id} must state its permissions"
            for scope, level in (job["permissions"] or {}).items():
                assert level in ("read", "write"), (name, job_id, scope)
                # the promotion workflows never write code, issues or settings
                if level == "write" and (name in REUSABLE or name in CALLERS):
                    assert scope in {"pull-requests", "packages", "deployments", "id-token"}, (
                        f"{name}:{job_id} writes {scope}"
                    )
    ci = load("ml-ci.yml")["jobs"]
    # the jobs that run the PR's code get no write token
    for job_id in ("lint", "test", "pipeline"):
        assert ci[job_id]["permissions"] == {"contents": "read"}


def test_every_action_is_pinned_to_a_commit_with_its_version() -> None:
    files = [*WF.glob("*.yml"), *(ROOT / ".github/actions").glob("*/action.yml")]
    seen = 0
    for path in files:
        for line in path.read_text().splitlines():
            if not re.match(r"^\s*(- )?uses:", line) or "uses: ./" in line:
                continue
            m = PIN.search(line)
            assert m, f"{path.name}: cannot parse {line.strip()!r}"
            assert re.fullmatch(r"[0-9a-f]{40}", m["sha"]), f"{path.name}: not a full SHA: {line}"
            assert m["tag"], f"{path.name}: say the version in a comment: {line.strip()}"
            seen += 1
    assert seen > 10


def test_checkouts_do_not_persist_credentials() -> None:
    for name in [*ALL, "action"]:
        for step in steps(name):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, name


def test_no_expressions_inside_shell_and_no_inherited_secrets() -> None:
    for name in [*ALL, "action"]:
        for step in steps(name):
            assert "${{" not in (step.get("run") or ""), f"{name}: {step.get('name')}"
    for path in WF.glob("*.yml"):
        assert "secrets: inherit" not in path.read_text()


def test_concurrency_cancels_pr_runs_but_never_a_deployment() -> None:
    """Staging and production queue separately (an approval wait never holds staging), a
    rollback queues with production deployments only, nothing that deploys is cancelled."""
    assert load("ml-ci.yml")["concurrency"]["cancel-in-progress"] is True
    cd, rollback = load("ml-cd.yml"), load("ml-rollback.yml")
    assert "concurrency" not in cd and "concurrency" not in rollback
    staging = cd["jobs"]["staging"]["concurrency"]
    production = cd["jobs"]["production"]["concurrency"]
    back = rollback["jobs"]["rollback"]["concurrency"]
    for group in (staging, production, back):
        assert group["cancel-in-progress"] is False
    assert staging["group"] != production["group"]
    assert back["group"] == production["group"], "a rollback never races a production deploy"
    for caller in CALLERS:  # a caller-level group equal to the reusable one would deadlock
        assert "concurrency" not in load(caller)


def test_production_fails_closed_and_refuses_stale_runs_before_deploying() -> None:
    """The first step that can change production is preceded by `github check-release`
    (approval on record, main's head, staging's image); the opt-out is an explicit input."""
    cd = load("ml-cd.yml")
    for env in ("staging", "production"):
        runs = [s.get("run") or "" for s in cd["jobs"][env]["steps"]]
        check = next(i for i, r in enumerate(runs) if "mlgate github check-release" in r)
        deploy = next(i for i, r in enumerate(runs) if "mlgate deploy" in r)
        assert check < deploy, env
        assert f"--env {env}" in runs[check]
    spec = cd["on"]["workflow_call"]["inputs"]["allow-unreviewed-production"]
    assert spec["type"] == "boolean" and spec["default"] is False


def test_rollback_restores_image_and_alias_from_one_record() -> None:
    jobs = load("ml-rollback.yml")["jobs"]
    steps = {s.get("name", ""): s for s in jobs["rollback"]["steps"]}
    deploy = next(s for s in steps.values() if s.get("id") == "deploy")
    alias = next(s for s in steps.values() if "release promote" in (s.get("run") or ""))
    assert deploy["env"]["IMAGE"] == alias["env"]["IMAGE"] == "${{ needs.target.outputs.image }}"
    assert alias["env"]["VERSION"] == "${{ needs.target.outputs.version }}"
    assert not any("release rollback" in (s.get("run") or "") for s in steps.values())


# ---------------------------------------------------------------- documented interface


def test_every_input_secret_and_output_is_documented() -> None:
    docs = DOCS.read_text()
    for name in (*REUSABLE, "ml-monitor.yml", "ml-retrain.yml"):
        call = load(name)["on"]["workflow_call"]
        section = docs.split(f"### `{name}`", 1)
        assert len(section) == 2, f"docs/WORKFLOWS.md has no section for {name}"
        body = section[1].split("\n### ", 1)[0]
        for kind in ("inputs", "secrets", "outputs"):
            for key, spec in call.get(kind, {}).items():
                assert spec.get("description"), f"{name} {kind}.{key} has no description"
                assert f"| `{key}` |" in body, f"docs/WORKFLOWS.md {name}: {kind}.{key} missing"
                if kind == "inputs":
                    assert spec["type"] in ("string", "boolean", "number")
                    assert spec.get("required") or "default" in spec, f"{name}: {key} default"
                if kind == "outputs":
                    assert spec["value"].startswith("${{ jobs.")
        assert f"uses: {this_release().repo}/.github/workflows/{name}@" in body, (
            f"{name}: caller example"
        )


# ---------------------------------------------------------------- commands exist


# What a runner may put in these variables (for options with choices); anything else: "1".
SAMPLE = {"PIPELINE": "failure", "PARAMS": "params.yaml", "ALLOW_UNREVIEWED": "false",
          "TRIGGER": "drift", "ENGINE": "local",
          # values the CLI checks where they enter (mlgate.values): an image by digest
          "IMAGE": "ghcr.io/acme/credit-model@sha256:" + "a" * 64}  # fmt: skip


def _commands(script: str) -> list[list[str]]:
    """`mlgate …` invocations in a run script, with "$VARS" replaced by a placeholder."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():  # continued lines are one command
        m = re.search(r"\bmlgate\s+(.*)$", line)
        if m and "uv run" in line:
            args = re.sub(r'"\$([A-Z_]+)"', lambda v: SAMPLE.get(v[1], "1"), m.group(1))
            found.append(shlex.split(args))
    return found


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z][\w-]*):", text, re.M))


def test_every_mlgate_command_a_workflow_runs_exists() -> None:
    parser = build_parser()
    calls = [c for name in ALL for s in steps(name) for c in _commands(s.get("run") or "")]
    assert len(calls) >= 10
    for argv in calls:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"a workflow runs `mlgate {' '.join(argv)}`, which the CLI rejects")


def test_every_make_target_a_workflow_runs_exists() -> None:
    targets = _make_targets()
    commands = []
    for name in ALL:
        wf = load(name)
        for spec in (
            wf["on"].get("workflow_call", {}).get("inputs", {}).values()
            if isinstance(wf["on"], dict)
            else []
        ):
            if str(spec.get("default", "")).startswith("make "):
                commands.append(spec["default"])
        for job in wf["jobs"].values():
            commands += [v for v in job.get("with", {}).values() if str(v).startswith("make ")]
    assert commands
    for command in commands:
        for target in command.split()[1:]:
            assert target in targets, f"`{command}`: Makefile has no target {target!r}"


def test_the_setup_action_the_workflows_use_exists() -> None:
    for name in REUSABLE:
        for step in steps(name):
            if step.get("uses", "").startswith("./.mlgate/"):
                local = ROOT / step["uses"].removeprefix("./.mlgate/") / "action.yml"
                assert local.exists(), step["uses"]


def test_mlgate_build_exists_for_release_image() -> None:
    """`mlgate release image` runs `mlgate build --model N` and reads the bento tag it reports."""
    build_parser().parse_args(["build", "--params", "params.yaml", "--model", "3"])


def test_docs_summary_fits_the_readme() -> None:
    head = DOCS.read_text().split("<!-- readme-summary:end -->", 1)
    assert len(head) == 2
    summary = head[0].split("<!-- readme-summary:start -->", 1)[1].strip().splitlines()
    assert 0 < len(summary) <= 15
    assert Path(DOCS).exists()


# ---------------------------------------------------------------- what leaves the runner


def test_the_cd_artifact_carries_no_data() -> None:
    """The files themselves are checked in the act delivery scenario (test_delivery.py)."""
    (upload,) = [
        s
        for s in load("ml-cd.yml")["jobs"]["gate"]["steps"]
        if str(s.get("uses", "")).startswith("actions/upload-artifact")
    ]
    paths = upload["with"]["path"].split()
    assert "!artifacts/data/**" in paths and upload["with"]["retention-days"] == 7
    # the build job rebuilds the split it needs from the DVC-pinned data instead
    runs = [s.get("run") or "" for s in load("ml-cd.yml")["jobs"]["build"]["steps"]]
    assert any("dvc repro split" in r for r in runs)


def test_the_registry_user_is_never_a_secret() -> None:
    """The runner drops a job output containing any secret value; the user is often the
    image's namespace, which would silently empty the `image` output."""
    for name in ALL:
        assert "secrets.REGISTRY_USERNAME" not in (WF / name).read_text(), name
    for name in ("ml-cd.yml", "ml-rollback.yml"):
        assert "registry-username" in load(name)["on"]["workflow_call"]["inputs"]


def test_uv_and_python_are_pinned_in_ci() -> None:
    action = yaml.safe_load((ROOT / ".github/actions/setup/action.yml").read_text())
    assert re.fullmatch(r"\d+\.\d+\.\d+", action["inputs"]["uv-version"]["default"])
    python = action["inputs"]["python-version"]["default"]
    bento = yaml.safe_load((ROOT / "bentofile.yaml").read_text())["docker"]["python_version"]
    assert python == bento  # the environment CI tests is the one the image runs
    (setup_uv,) = [s for s in action["runs"]["steps"] if "setup-uv" in str(s.get("uses"))]
    assert setup_uv["with"]["version"] == "${{ inputs.uv-version }}"
    assert setup_uv["with"]["python-version"] == "${{ inputs.python-version }}"


def test_generated_projects_run_their_model_tests_in_ci() -> None:
    """A fresh runner has no model: the template's test job trains it, and its model tests
    fail (not skip) in CI when the model is missing."""
    template = ROOT / "src/mlgate/template/project"
    ci = (template / ".github/workflows/ci.yml.jinja").read_text()
    assert re.search(r"test-command: make repro test\b", ci)
    assert 'os.environ.get("CI")' in (template / "tests/conftest.py.jinja").read_text()


def test_ci_registers_nothing() -> None:
    """A pull request's run never registers a model (what ml-ci runs is the PR author's code):
    no ml-ci step calls `mlgate release`; the cd gate's refusal to register a failed gate is
    registry.register's (tests/pipeline/test_repro.py)."""
    runs = [
        step.get("run") or ""
        for job in load("ml-ci.yml")["jobs"].values()
        for step in job.get("steps", [])
    ]
    assert runs and not [r for r in runs if "mlgate release" in r or "register" in r]
