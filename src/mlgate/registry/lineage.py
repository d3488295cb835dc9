"""Provenance: which commit, which data, which params, which pipeline produced a model."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from mlgate.config import Params


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout  # unstripped: porcelain output starts with meaningful spaces


def git_commit() -> str | None:
    sha = _git("rev-parse", "HEAD")
    return sha.strip() if sha else None


def git_dirty() -> bool | None:
    """Do the pipeline's inputs differ from the commit? Its own outputs don't count:
    `dvc repro` rewrites dvc.lock and the metrics while it runs."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    if status is None:
        return None
    changed = {line[3:].split(" -> ")[-1].strip('"') for line in status.splitlines() if line}
    return bool(changed - pipeline_outputs())


def pipeline_outputs(dvc_yaml: Path | str = "dvc.yaml") -> set[str]:
    """dvc.lock and every out, metric and plot file that dvc.yaml declares."""
    try:
        with Path(dvc_yaml).open(encoding="utf-8") as fh:
            stages = (yaml.safe_load(fh) or {}).get("stages", {})
    except FileNotFoundError:
        return {"dvc.lock"}
    outputs = {"dvc.lock"}
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                outputs.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return outputs


def file_sha256(path: Path | str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def data_hash(dvc_file: Path | str = "data.dvc") -> str | None:
    """The content hash DVC pins for the data (the md5 of the `data/` directory)."""
    try:
        with Path(dvc_file).open(encoding="utf-8") as fh:
            meta = yaml.safe_load(fh)
    except FileNotFoundError:
        return None
    outs = (meta or {}).get("outs") or [{}]
    return outs[0].get("md5")


def data_refresh(dvc_file: Path | str = "data.dvc") -> dict[str, str]:
    """What made this data version, as `mlgate data refresh` recorded it in the .dvc file's
    meta: the trigger (schedule, drift, dispatch, manual), when, and from which source."""
    try:
        with Path(dvc_file).open(encoding="utf-8") as fh:
            meta = (yaml.safe_load(fh) or {}).get("meta") or {}
    except FileNotFoundError:
        return {}
    refresh = meta.get("refresh") or {}
    return {
        f"mlgate.data_{k}": str(refresh[k]) for k in ("trigger", "at", "source") if k in refresh
    }


def project_package(params: Params) -> str:
    """The project's own package (src/<package>): where its schema, and its feature code or
    estimator class if it has them, live."""
    return params.data.schema_ref.partition(".")[0].partition(":")[0]


def code_hash(package: str, src: Path | str = "src") -> str | None:
    """sha256 over src/<package>'s Python files (paths and contents): the project code a model
    was trained with; None when there is no such folder."""
    root = Path(src) / package
    if not root.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def collect(params: Params) -> dict[str, str]:
    """Lineage as flat MLflow tags (`mlgate.*`); unknown values are left out, not invented.

    dvc.lock is not here: during `dvc repro` it still describes the previous run, so
    `register` adds its hash once the pipeline has finished."""
    tags = {
        "mlgate.git_commit": git_commit(),
        "mlgate.git_dirty": _bool(git_dirty()),
        "mlgate.data_hash": data_hash(),
        "mlgate.params_hash": params.fingerprint(),
        "mlgate.code_hash": code_hash(project_package(params)),
        **data_refresh(),
    }
    return {k: v for k, v in tags.items() if v is not None}


def _bool(value: bool | None) -> str | None:
    return None if value is None else str(value).lower()
