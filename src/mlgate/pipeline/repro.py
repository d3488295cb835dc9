"""`mlgate repro`: dvc repro on a runner; retrains when the committed run is not in the store,
and always judges here: evaluate and gate rerun against the registry's production of now."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from mlgate.errors import MlgateError

if TYPE_CHECKING:
    from mlgate.config import Params


def run_in_store(params: Params) -> tuple[str | None, bool]:
    """(run id in the committed run record, whether this tracking store knows that run)."""
    if not params.train.run.exists():
        return None, True
    from mlflow.exceptions import MlflowException

    from mlgate import io
    from mlgate.registry import tracking

    run_id = io.read_json(params.train.run, "training run record").get("run_id")
    client = tracking.connect(params)
    try:
        client.get_run(run_id)
    except MlflowException:
        return run_id, False
    return run_id, True


JUDGE = ["evaluate", "gate"]  # the stages whose verdict must be made here, never committed


def repro(params: Params) -> int:
    """Evaluate, gate and register resume the training run: it must be in this store.

    A committed `run.json` usually names a run on the author's laptop. On a fresh runner (or a
    tracking server that never saw it) the whole pipeline is rerun, so the model that is gated
    and registered was trained here, from this commit. When the store knows the run (a shared
    server), `dvc repro` would skip every unchanged stage and keep the committed `gate.json`:
    a champion comparison made on the laptop, against the production of then, or a verdict
    edited by hand. So evaluate and gate always run again here.
    """
    run_id, known = run_in_store(params)
    cmd = ["dvc", "repro"]
    if not known:
        print(
            f"repro: training run {run_id} (from {params.train.run}) is not in the tracking "
            "store: retraining here (`dvc repro --force`) so the lineage points at this commit"
        )
        cmd.append("--force")
    try:
        code = subprocess.run(cmd, check=False).returncode
        if code != 0 or not known:
            return code
        print(
            f"repro: judging here: `dvc repro --force --single-item {' '.join(JUDGE)}` (a "
            "verdict computed elsewhere, against another production, never counts)"
        )
        return subprocess.run(
            ["dvc", "repro", "--force", "--single-item", *JUDGE], check=False
        ).returncode
    except FileNotFoundError:
        raise MlgateError("`dvc` is not on PATH: run inside the project environment") from None
