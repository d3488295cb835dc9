"""Time every `mlgate` process a `dvc repro` starts, from outside: start to exit, peak RSS.

A wrapper named `mlgate`, first on PATH, forks the real one, waits for it with os.wait4
and appends one JSON line per process to a log. Used by benchmarks/pipeline.py and scale.py.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

WRAPPER = """#!{python} -I
import json, os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv({real!r}, [{real!r}, *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
record = dict(command=sys.argv[1:], seconds=time.perf_counter() - started,
              peak_rss_mb=usage.ru_maxrss / 1024, status=os.waitstatus_to_exitcode(status))
with open({log!r}, "a") as fh:
    fh.write(json.dumps(record) + "\\n")
sys.exit(record["status"])
"""


def timed_env(env: dict[str, str], folder: Path) -> tuple[dict[str, str], Path]:
    """`env` with the timing wrapper first on PATH, and the log it writes to."""
    real = shutil.which("mlgate", path=env["PATH"])
    if real is None:
        sys.exit("mlgate is not on PATH: run `make install` first")
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "stages.jsonl"
    wrapper = folder / "mlgate"
    wrapper.write_text(WRAPPER.format(python=sys.executable, real=real, log=str(log)))
    wrapper.chmod(0o755)
    return {**env, "PATH": f"{folder}{os.pathsep}{env['PATH']}"}, log


def read_log(log: Path) -> dict[str, dict]:
    """{command: record} for every process logged (the last one of each command)."""
    if not log.exists():
        return {}
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return {r["command"][0]: r for r in records}
