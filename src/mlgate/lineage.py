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
    return out.stdout.strip()


def git_commit() -> str | None:
    return _git("rev-parse", "HEAD")


def git_dirty() -> bool | None:
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


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


def collect(params: Params) -> dict[str, str]:
    """Lineage as flat MLflow tags (`mlgate.*`); unknown values are left out, not invented.

    dvc.lock is not here: during `dvc repro` it still describes the previous run, so
    `register` adds its hash once the pipeline has finished."""
    tags = {
        "mlgate.git_commit": git_commit(),
        "mlgate.git_dirty": _bool(git_dirty()),
        "mlgate.data_hash": data_hash(),
        "mlgate.params_hash": params.fingerprint(),
    }
    return {k: v for k, v in tags.items() if v is not None}


def _bool(value: bool | None) -> str | None:
    return None if value is None else str(value).lower()
