"""The data version: data/ against the .dvc file that pins it, and no failing data pinned.

`mlgate data pull` (what `make data` runs) fetches the pinned data, or keeps local changes
and says so; a failed `validate` puts the .dvc file back to its committed version.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from mlgate import io
from mlgate.errors import MlgateError

if TYPE_CHECKING:
    from mlgate.config import Params

RECORD = "dvc add {out} && dvc push {file} && git add {file} && git commit -m 'data: <why>'"
GO_BACK = "dvc checkout --force {file}"


def pin_of(raw: Path) -> tuple[Path, str] | None:
    """(the .dvc file tracking `raw`, its tracked path), looked up beside `raw` and its
    parents: data/x.csv is pinned by data/x.csv.dvc or data.dvc."""
    raw = Path(raw)
    for tracked in (raw, *raw.parents):
        if not tracked.name or str(tracked) == ".":
            break
        dvcfile = tracked.with_name(tracked.name + ".dvc")
        if dvcfile.is_file():
            outs = (yaml.safe_load(dvcfile.read_text()) or {}).get("outs") or [{}]
            return dvcfile, str(outs[0].get("path", tracked.name))
    return None


def _dvc(*args: str) -> subprocess.CompletedProcess[str]:
    """DVC of mlgate's own environment (`.venv/bin/mlgate` works without activating it)."""
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=io.DVC_DEADLINE,
    )


def workspace_state(dvcfile: Path) -> set[str]:
    """How the pinned path differs from its pin, as `dvc status` says it: {} when it matches,
    {"modified"} for local changes, {"deleted"} or {"not in cache"} when it is to be pulled."""
    status = _dvc("status", "--json", str(dvcfile))
    if status.returncode != 0:
        raise MlgateError(f"`dvc status {dvcfile}` failed:\n{status.stderr.strip()}")
    return {
        state
        for entry in json.loads(status.stdout or "{}").get(str(dvcfile), [])
        if isinstance(entry, dict)
        for state in entry.get("changed outs", {}).values()
    }


def local_changes(out: str) -> list[str]:
    """Files under the pinned path that differ from the pin ("modified: data/x.csv")."""
    granular = _dvc("data", "status", "--granular", "--json", "--untracked-files=no")
    uncommitted = json.loads(granular.stdout or "{}").get("uncommitted", {})
    prefix = out.rstrip("/") + "/"
    files = [
        f"{kind}: {path}"
        for kind, paths in uncommitted.items()
        for path in paths
        if path.startswith(prefix) and not path.endswith("/")
    ]
    return files or [f"modified: {out}"]


def pull(params: Params) -> int:
    """Make the pinned data present; keep local changes to it (saying so) rather than fail."""
    pin = pin_of(params.data.raw)
    if pin is None:
        raise MlgateError(f"{params.data.raw} is not tracked by DVC: run `dvc add` on it")
    dvcfile, out = pin
    state = workspace_state(dvcfile)
    if not state:
        return 0
    if "modified" in state:
        changes = local_changes(out)
        shown = "\n".join(f"    {c}" for c in changes[:10])
        more = f"\n    … {len(changes) - 10} more" if len(changes) > 10 else ""
        print(
            f"data: {out}/ differs from {dvcfile}; the pipeline runs on your local data:\n"
            f"{shown}{more}\n"
            f"  Once `mlgate validate` accepts it, record it as a new data version:\n"
            f"    {RECORD.format(out=out, file=dvcfile)}\n"
            f"  To go back to the data {dvcfile} pins: {GO_BACK.format(file=dvcfile)}"
        )
        return 0
    fetched = _dvc("pull", str(dvcfile))
    if fetched.returncode != 0:
        raise MlgateError(
            f"`dvc pull {dvcfile}` failed:\n{(fetched.stderr or fetched.stdout).strip()}"
        )
    return 0


def committed_version(path: Path) -> str | None:
    """The file as the last commit has it (None outside git, or when never committed)."""
    try:
        shown = subprocess.run(
            ["git", "show", f"HEAD:./{path}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except FileNotFoundError:
        return None
    return shown.stdout if shown.returncode == 0 else None


def unpin_failed(raw: Path) -> str:
    """After data failed its contract: put its .dvc file back to the committed version (as
    `dvc repro` records changed data before validate runs, it may pin the failing data) and
    say how to go on or go back. Returns the note for the user."""
    pin = pin_of(raw)
    if pin is None:
        return ""
    dvcfile, _ = pin
    note = ""
    committed = committed_version(dvcfile)
    if committed is not None and committed != dvcfile.read_text():
        io.write_text(dvcfile, committed)
        note = f"{dvcfile} is put back to its committed version: the failing data stays unpinned.\n"
    return (
        f"{note}Your files in {raw.parent}/ are untouched: fix them and run again, or go back "
        f"to the committed data with `{GO_BACK.format(file=dvcfile)}`."
    )
