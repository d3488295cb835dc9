"""The test-only challenger fault switch (challenger_fault/sitecustomize.py) for a server."""

from __future__ import annotations

import os
from pathlib import Path

HOOK = Path(__file__).resolve().parent / "challenger_fault"
FAULT_ENV = "MLGATE_TEST_CHALLENGER_FAULT_FILE"


def challenger_fault_env(switch: Path) -> dict[str, str]:
    """The environment of a served bento whose challenger raises (or sleeps) while the file
    `switch` says `raise` (`sleep:<seconds>`): the hook's folder first on PYTHONPATH."""
    given = os.environ.get("PYTHONPATH")
    return {
        FAULT_ENV: str(switch),
        "PYTHONPATH": os.pathsep.join([str(HOOK), *([given] if given else [])]),
    }
