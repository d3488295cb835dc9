"""Pipeline benchmark: cold `make run` on a fresh clone, stage times, no-op repro, overhead.

Stage times are whole processes, start to exit, measured from outside (stagetimes.py) in a
forced `dvc repro` after the cold run: every stage runs, evaluate too (in the cold run DVC
skips it when the retrained model is byte-identical to the one dvc.lock records).
Prints figures; asserts nothing (the machine's speed drifts, so compare within one run).
Usage: python benchmarks/pipeline.py [--keep]   (from the repository root, via `make bench`)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stagetimes import read_log, timed_env

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("validate", "split", "train", "evaluate", "gate")


def timed(cmd: list[str] | str, cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          shell=isinstance(cmd, str))  # fmt: skip
    took = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return took, proc.stdout + proc.stderr


def python_seconds(code: str, cwd: Path, env: dict[str, str], repeat: int = 3) -> float:
    """Median wall time of a fresh interpreter running `code`."""
    py = str(cwd / ".venv/bin/python")
    return statistics.median(timed([py, "-c", code], cwd, env)[0] for _ in range(repeat))


def in_process(cwd: Path, env: dict[str, str]) -> dict[str, float]:
    """Fit, predict, validation and MLflow logging, each timed inside one interpreter."""
    code = r"""
import json, tempfile, time, os
t = time.perf_counter
from mlgate.config import load_params
from mlgate.pipeline import data
from mlgate.registry import tracking
from mlgate.pipeline.stages import split, train, evaluate
p = load_params()
s = t(); frame = data.load(p.data.raw, p); validation = t() - s
tr, te = split.split_frame(frame, p)
model = train.build_pipeline(p)
s = t(); train.fit_pipeline(model, tr, p); fit = t() - s
s = t(); evaluate.evaluate(model, te, p); evaluation = t() - s
s = t(); model.predict_proba(te[p.features.all]); predict = t() - s
os.environ["MLFLOW_TRACKING_URI"] = "sqlite:///" + tempfile.mkdtemp() + "/bench.db"
s = t(); tracking.connect(p); store = t() - s
s = t(); train.log_to_mlflow(model, tr, p, fit); logging = t() - s
res = dict(validation=validation, fit=fit, evaluation=evaluation, predict=predict,
           new_store=store, mlflow_log=logging)
print("BENCH " + json.dumps(res))
"""
    import json

    _, out = timed([str(cwd / ".venv/bin/python"), "-c", code], cwd, env)
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    return json.loads(line.removeprefix("BENCH "))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout  # fmt: skip
    if dirty:
        print("note: uncommitted changes are not in the clone; the clone is of HEAD")
    tmp = Path(tempfile.mkdtemp(prefix="mlgate-bench-"))
    clone = tmp / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)

    cold, _ = timed(["make", "run"], clone, env)
    env_run = {**env, "PATH": f"{clone / '.venv/bin'}{os.pathsep}{env['PATH']}"}
    env_timed, log = timed_env(env_run, tmp / "timer")
    timed(["dvc", "repro", "--force"], clone, env_timed)
    stages = read_log(log)
    stage_times = {name: stages[name]["seconds"] for name in STAGES if name in stages}
    noop = [timed(["dvc", "repro"], clone, env_run)[0] for _ in range(3)]
    bare = python_seconds("pass", clone, env_run)
    imports = {
        "mlgate CLI": python_seconds("import mlgate.cli", clone, env_run) - bare,
        "pandas+sklearn+pandera": python_seconds(
            "import pandas, sklearn.pipeline, pandera.pandas", clone, env_run) - bare,
        "mlflow": python_seconds("import mlflow, mlflow.sklearn", clone, env_run) - bare,
    }  # fmt: skip
    work = in_process(clone, env_run)

    stages_total = sum(stage_times.values())
    useful = work["fit"] + work["predict"] * 2  # evaluate predicts; gate predicts the champion
    print("\n== mlgate pipeline benchmark (German credit, 1000 rows) ==")
    print(f"cold `make run` on a fresh clone (uv cache warm):  {cold:6.1f} s")
    print("stage processes, start to exit (a forced `dvc repro` after it), peak RSS:")
    for name in STAGES:
        if name in stages:
            seconds, rss = stages[name]["seconds"], stages[name]["peak_rss_mb"]
            print(f"  {name:<9} {seconds:6.2f} s  {rss:5.0f} MB")
        else:
            print(f"  {name:<9}    —    did not run")
    print(f"  {'total':<9} {stages_total:6.2f} s")
    print(f"no-op `dvc repro` (median of 3):                   {statistics.median(noop):6.2f} s")
    print(f"python start-up:                                   {bare:6.2f} s")
    print("import cost per process:")
    for name, seconds in imports.items():
        print(f"  {name:<24} {seconds:6.2f} s")
    print("in-process work:")
    for name, seconds in work.items():
        print(f"  {name:<24} {seconds:6.3f} s")
    share = useful / stages_total if stages_total else float("nan")
    print(f"fitting + predicting: {useful:.2f} s of {stages_total:.1f} s stage time "
          f"= {share:.1%}; framework overhead (start-up, imports, validation, MLflow, I/O) "
          f"= {1 - share:.1%}")  # fmt: skip
    if args.keep:
        print(f"clone kept at {clone}")
    else:
        subprocess.run(["rm", "-rf", str(tmp)], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
