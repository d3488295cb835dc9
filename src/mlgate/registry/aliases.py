"""The model registry: register gated models, move aliases, roll back, answer lineage."""

from __future__ import annotations

import getpass
import json
import os
from typing import TYPE_CHECKING, Any

from mlgate import io
from mlgate.actions import utc_now
from mlgate.errors import MlgateError, shown
from mlgate.names import CANDIDATE, CHALLENGER, PRODUCTION, STAGING
from mlgate.registry import lineage, tracking

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from mlgate.config import Params

HISTORY_TAG = "mlgate.alias_history"
DEPLOYED = "mlgate.deployment."  # + environment: JSON of the deployment (release promote)
HISTORY_KEEP = 30  # MLflow caps a tag value's length; 30 entries fit comfortably
CANDIDATE = CANDIDATE


def _now() -> str:
    return utc_now()


def _actor() -> str:
    return os.environ.get("GITHUB_ACTOR") or getpass.getuser()


def _mlflow_error() -> type[Exception]:
    from mlflow.exceptions import MlflowException

    return MlflowException


# ---------------------------------------------------------------- register


def register(params: Params) -> str:
    """Register the last pipeline run's model; returns its version. Checks come first."""
    record = io.read_json(params.train.run, "training run record")
    run_id = record["run_id"]
    report = io.read_json(params.gate.report, "gate report")
    if report.get("run_id") != run_id:
        raise MlgateError(
            f"{params.gate.report} belongs to run {report.get('run_id')}, but the model "
            f"is from run {run_id}: run `dvc repro` so the gate judges this model"
        )
    if not report.get("passed"):
        failed = ", ".join(c["name"] for c in report["checks"] if not c["passed"])
        raise MlgateError(f"refusing to register run {run_id}: the gate failed ({failed})")

    client = tracking.connect(params)
    run = _get_run(client, run_id)
    _refuse_stale(run.data.tags, params)
    name = params.model_name
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        version = str(max(int(v.version) for v in existing))
        print(f"register: run {run_id} is already {name} version {version}; nothing to do")
        return version

    # Lineage as trained (commit, data, params), plus the dvc.lock the run ended with.
    tags = {k: v for k, v in run.data.tags.items() if k.startswith("mlgate.")}
    tags.pop("mlgate.stage", None)
    lock = lineage.file_sha256("dvc.lock")
    if lock:
        tags["mlgate.dvc_lock_hash"] = lock
    tags["mlgate.gate_passed"] = "true"
    for check in report["checks"]:
        tags[f"mlgate.gate.{check['name']}"] = _verdict(check)
    tags = {k: v for k, v in tags.items() if v}
    _ensure_registered_model(client, name)
    mv = client.create_model_version(
        name, source=record["model_uri"], run_id=run_id, tags=tags, model_id=record["model_id"]
    )
    client.set_registered_model_alias(name, CANDIDATE, mv.version)
    _append_history(client, name, CANDIDATE, str(mv.version), "register", "")
    print(f"register: {name} version {mv.version} from run {run_id}; {CANDIDATE} -> {mv.version}")
    return str(mv.version)


def _verdict(check: dict[str, Any]) -> str:
    """A gate check as lineage shows it: "pass: 0.0833 [0.0041, 0.2125] <= 0.1 (uncertain)"."""
    bound = "" if check["threshold"] is None else f" {check['op']} {check['threshold']}"
    ci = check.get("interval")
    interval = f" [{ci[0]}, {ci[1]}]" if ci else ""
    unsure = " (uncertain)" if check.get("verdict") == "uncertain" else ""
    return f"{'pass' if check['passed'] else 'fail'}: {check['value']}{interval}{bound}{unsure}"


def _get_run(client: MlflowClient, run_id: str) -> Any:
    try:
        return client.get_run(run_id)
    except _mlflow_error():
        raise MlgateError(
            f"training run {run_id} is not in the tracking store {tracking.current_uri()}: "
            "rerun the pipeline against this store (`dvc repro --force train`)"
        ) from None


def _refuse_stale(run_tags: dict[str, str], params: Params) -> None:
    """The model must come from the params and data in the working tree now."""
    checks = {
        "mlgate.params_hash": (params.fingerprint(), "params.yaml"),
        "mlgate.data_hash": (lineage.data_hash(), "data.dvc"),
    }
    for tag, (now, what) in checks.items():
        if run_tags.get(tag) and now and run_tags[tag] != now:
            raise MlgateError(f"{what} changed since the model was trained: run `dvc repro` first")


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except _mlflow_error():
        client.create_registered_model(name, description="Registered by mlgate.")


# ---------------------------------------------------------------- aliases


def history(client: MlflowClient, name: str) -> list[dict[str, str]]:
    model = client.get_registered_model(name)
    raw = (model.tags or {}).get(HISTORY_TAG)
    return json.loads(raw) if raw else []


def _append_history(
    client: MlflowClient, name: str, alias: str, version: str, action: str, note: str
) -> None:
    entries = history(client, name)
    entries.append(
        {
            "alias": alias,
            "version": version,
            "action": action,
            "at": _now(),
            "by": _actor(),
            **({"note": note} if note else {}),
        }
    )
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(entries[-HISTORY_KEEP:]))


def alias_stack(entries: list[dict[str, str]], alias: str) -> list[str]:
    """Versions the alias has held, oldest first; a rollback pops the current one."""
    stack: list[str] = []
    for e in entries:
        if e["alias"] != alias:
            continue
        if e["action"] == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != e["version"]:
                stack.append(e["version"])
        elif not stack or stack[-1] != e["version"]:
            stack.append(e["version"])
    return stack


def _version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    try:
        return client.get_model_version(name, str(version))
    except _mlflow_error():
        raise MlgateError(f"{name} has no version {version}") from None


def promote(params: Params, version: str, to: str, note: str = "") -> None:
    client = tracking.connect(params)
    name = params.model_name
    mv = _version(client, name, version)
    tags = mv.tags or {}
    if tags.get("mlgate.gate_passed") != "true":
        raise MlgateError(f"{name} version {version} did not pass its gates; refusing to promote")
    if to == PRODUCTION and "mlgate.staged_at" not in tags:
        raise MlgateError(
            f"{name} version {version} was never in staging; promote it --to staging first"
        )
    current = alias_version(client, name, to)
    if current == str(version):
        print(f"promote: {to} is already {name} version {version}; nothing to do")
        return
    client.set_registered_model_alias(name, to, str(version))
    stamp = {STAGING: "staged_at", PRODUCTION: "released_at", CHALLENGER: "challenger_at"}
    client.set_model_version_tag(name, str(version), f"mlgate.{stamp[to]}", _now())
    _append_history(client, name, to, str(version), "promote", note)
    before = f" (was {current})" if current else ""
    print(f"promote: {name} {to} -> version {version}{before}")


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except _mlflow_error():
        return None


def rollback(params: Params, alias: str = PRODUCTION, note: str = "") -> str:
    client = tracking.connect(params)
    name = params.model_name
    try:
        entries = history(client, name)
    except _mlflow_error():
        raise MlgateError(f"no registered model named {name!r}") from None
    stack = alias_stack(entries, alias)
    current = alias_version(client, name, alias)
    if current is None:
        raise MlgateError(f"no version of {name} holds alias {alias!r}: nothing to roll back")
    if len(stack) < 2 or stack[-1] != current:
        raise MlgateError(
            f"{alias} is version {current} and the history holds no earlier {alias} version "
            "to return to"
        )
    previous = stack[-2]
    _version(client, name, previous)  # still there?
    client.set_registered_model_alias(name, alias, previous)
    _append_history(client, name, alias, previous, "rollback", note or f"from version {current}")
    print(f"rollback: {name} {alias} -> version {previous} (was {current})")
    return previous


# ---------------------------------------------------------------- lineage


def parse_ref(ref: str, default_name: str) -> tuple[str, str | None, str | None]:
    """NAME@ALIAS or NAME/VERSION -> (name, alias, version); checked before any network."""
    if "@" in ref:
        name, alias = ref.split("@", 1)
        if alias:
            return name or default_name, alias, None
    else:
        name, _, version = ref.rpartition("/")
        if version.isdigit():
            return name or default_name, None, version
    raise MlgateError(f"{shown(ref)}: expected NAME@ALIAS or NAME/VERSION")


def resolve(client: MlflowClient, ref: tuple[str, str | None, str | None]) -> ModelVersion:
    name, alias, version = ref
    if alias is None:
        return _version(client, name, str(version))
    try:
        return client.get_model_version_by_alias(name, alias)
    except _mlflow_error():
        raise MlgateError(f"no version of {name} holds alias {alias!r}") from None


def lineage_of(params: Params, ref: str) -> dict[str, Any]:
    parsed = parse_ref(ref, params.model_name)
    client = tracking.connect(params)
    mv = resolve(client, parsed)
    run = client.get_run(mv.run_id) if mv.run_id else None
    tags = mv.tags or {}
    entries = [e for e in history(client, mv.name) if e["version"] == str(mv.version)]
    return {
        "name": mv.name,
        "version": str(mv.version),
        "aliases": list(getattr(mv, "aliases", []) or []),
        "run_id": mv.run_id,
        "git_commit": tags.get("mlgate.git_commit"),
        "git_dirty": tags.get("mlgate.git_dirty"),
        "data_hash": tags.get("mlgate.data_hash"),
        "params_hash": tags.get("mlgate.params_hash"),
        "dvc_lock_hash": tags.get("mlgate.dvc_lock_hash"),
        "code_hash": tags.get("mlgate.code_hash"),
        "params": dict(run.data.params) if run else {},
        "metrics": dict(run.data.metrics) if run else {},
        "gates": {
            k.removeprefix("mlgate.gate."): v
            for k, v in tags.items()
            if k.startswith("mlgate.gate.")
        },
        "gate_passed": tags.get("mlgate.gate_passed"),
        "alias_history": entries,
        "deployments": deployments_of(tags),
        # what drives the model, as the gate kept it with the run (evaluate's importance.json)
        "drivers": tracking.run_json(client, mv.run_id, "evaluation/importance.json")
        if mv.run_id
        else {},
    }


def deployments_of(tags: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Environment -> its last deployment of this version (image digest, time, run URL,
    approvers), from tags mlgate.deployment.<env>; an unreadable tag is shown as such."""
    found: dict[str, dict[str, Any]] = {}
    for key, value in sorted(tags.items()):
        if key.startswith(DEPLOYED):
            env = key.removeprefix(DEPLOYED)
            try:
                record = json.loads(value)
            except ValueError:
                record = None
            found[env] = record if isinstance(record, dict) else {"unreadable": value[:200]}
    return found


def lineage_text(params: Params, ref: str, as_json: bool = False) -> str:
    info = lineage_of(params, ref)
    if as_json:
        return json.dumps(info, indent=2)
    lines = [
        f"{info['name']} version {info['version']}"
        + (f"  (aliases: {', '.join(info['aliases'])})" if info["aliases"] else ""),
        f"  run:         {info['run_id']}",
        f"  commit:      {info['git_commit'] or '(unknown)'}"
        + ("  (dirty tree)" if info["git_dirty"] == "true" else ""),
        f"  data hash:   {info['data_hash']}",
        f"  params hash: {info['params_hash']}",
        f"  dvc.lock:    {info['dvc_lock_hash']}",
        f"  code hash:   {info['code_hash'] or '(not recorded)'}",
        "  params:",
        *(f"    {k} = {v}" for k, v in sorted(info["params"].items())),
        "  metrics:",
        *(f"    {k} = {v:.4f}" for k, v in sorted(info["metrics"].items())),
        f"  gates ({'passed' if info['gate_passed'] == 'true' else 'NOT passed'}):",
        *(f"    {k}: {v}" for k, v in sorted(info["gates"].items())),
        "  alias history:",
        *(
            f"    {e['at']}  {e['action']:<8} {e['alias']:<10} by {e['by']}"
            + (f"  ({e['note']})" if e.get("note") else "")
            for e in info["alias_history"]
        ),
        _drivers_line(info["drivers"]),
        *_deployment_lines(info["deployments"]),
    ]
    return "\n".join(lines)


def _drivers_line(drivers: dict[str, Any], top: int = 5) -> str:
    columns = list((drivers.get("columns") or {}).items())
    if not columns:
        return "  drivers:     (not recorded: gated before importance.json)"
    shown = ", ".join(f"{k} {v:.3g}" for k, v in columns[:top])
    more = f", … {len(columns) - top} more" if len(columns) > top else ""
    return f"  drivers:     {shown}{more} ({drivers.get('method', '?')})"


def _deployment_lines(deployments: dict[str, dict[str, Any]]) -> list[str]:
    if not deployments:
        return ["  deployed:    never (by `mlgate release promote` with an image)"]
    lines = ["  deployed:"]
    for env, d in deployments.items():
        approved = d.get("approved_by")
        lines += [
            f"    {env}: {d.get('image', '(unreadable record)')}",
            f"      at {d.get('deployed_at', '?')}"
            + (f", approved by {', '.join(approved)}" if approved else "")
            + (", no approval on record" if approved == [] else ""),
        ]
        if d.get("run_url"):
            lines.append(f"      run {d['run_url']}")
    return lines
