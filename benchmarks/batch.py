"""Batch scoring benchmark: `mlgate predict` vs the bare Pipeline's predict_proba, one run.

Run from the repository root after `make run` (a registered model and its MLflow store):

    python benchmarks/batch.py [--model candidate] [--rows 1000000,10000000] [--spark]

For each size, rows are resampled (seeded) from the validated data into one Parquet file.
Each contender runs in its own process, so peak RSS (ru_maxrss of the child) is its own:
- floor: the registered Pipeline's predict_proba on the same rows already in memory;
- local: `mlgate predict --engine local` (validation on, quarantine, outputs, MLflow run);
- spark (with --spark): `mlgate predict --engine spark --spark-master local[2]` (the driver's
  RSS; Spark's JVM and Python workers are separate processes, reported as "children").
rows/s counts the rows' work (reading, checking, scoring, writing for mlgate; the
predict_proba call for the floor), not start-up; wall time is the whole process.
The machine's speed drifts: compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path.cwd()
BIN = Path(sys.executable).parent

FLOOR = """
import json, sys, time, resource
import mlflow.sklearn, pandas as pd
from mlgate import tracking
from mlgate.config import load_params
from mlgate.model import positive_scores
from mlgate.serving.build import resolve_version
params = load_params()
mv = resolve_version(params, sys.argv[2])
model = mlflow.sklearn.load_model(f"models:/{mv.name}/{mv.version}")
frame = pd.read_parquet(sys.argv[1])[list(params.features.all)]
started = time.perf_counter()
positive_scores(model, frame, params.data.positive_label)
seconds = time.perf_counter() - started
print(json.dumps({"rows": len(frame), "seconds": seconds}))
"""


def make_input(rows: int, folder: Path) -> Path:
    import pandas as pd

    from mlgate.config import load_params

    params = load_params()
    data = pd.read_csv(params.data.validated).drop(columns=[params.data.target])
    path = folder / f"rows-{rows}.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetWriter(path, pa.Schema.from_pandas(data, preserve_index=False)) as writer:
        done = 0
        while done < rows:  # in slices, so making 10 M rows does not need them all in memory
            n = min(1_000_000, rows - done)
            part = data.sample(n, replace=True, random_state=done).reset_index(drop=True)
            writer.write_table(pa.Table.from_pandas(part, preserve_index=False))
            done += n
    return path


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) of the command's process tree's largest process, stdout."""
    script = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "w = time.perf_counter() - t\n"
        "sys.stdout.write(p.stdout)\n"
        "sys.stderr.write(p.stderr[-3000:] if p.returncode else '')\n"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(f'@@ {w} {r} {p.returncode}')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, *cmd], capture_output=True, text=True, cwd=ROOT
    )
    marker = proc.stdout.strip().splitlines()[-1].split()
    wall, rss_kb, code = float(marker[1]), int(marker[2]), int(marker[3])
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{proc.stderr}")
    return wall, rss_kb / 1024, proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="candidate")
    parser.add_argument("--rows", default="1000000", help="comma-separated sizes")
    parser.add_argument("--spark", action="store_true", help="also Spark local[2]")
    args = parser.parse_args()
    mlgate = str(BIN / "mlgate")
    results = []
    with tempfile.TemporaryDirectory(prefix="mlgate-bench-batch-") as tmp:
        for rows in (int(r) for r in args.rows.split(",")):
            path = make_input(rows, Path(tmp))
            wall, rss, out = timed([sys.executable, "-c", FLOOR, str(path), args.model])
            floor = json.loads(out.strip().splitlines()[-2])  # the line before the @@ marker
            results.append(
                ("floor: Pipeline.predict_proba", rows, rows / floor["seconds"], wall, rss)
            )
            engines = [("local", [])]
            if args.spark:
                engines.append(
                    ("spark local[2]", ["--engine", "spark", "--spark-master", "local[2]"])
                )
            for name, extra in engines:
                out_dir = Path(tmp) / f"out-{rows}-{name.split()[0]}"
                cmd = [
                    mlgate,
                    "predict",
                    "--model",
                    args.model,
                    "--input",
                    str(path),
                    "--output",
                    str(out_dir),
                    *extra,
                ]
                wall, rss, _ = timed(cmd)
                summary = json.loads((out_dir / "summary.json").read_text())
                results.append(
                    (f"mlgate predict {name}", rows, summary["rows_per_second"], wall, rss)
                )
    print(f"\n{'contender':<34} {'rows':>11} {'rows/s':>11} {'wall s':>8} {'peak RSS MB':>12}")
    for name, rows, rate, wall, rss in results:
        print(f"{name:<34} {rows:>11,} {rate:>11,.0f} {wall:>8.1f} {rss:>12.0f}")
    floors = {rows: rate for name, rows, rate, _, _ in results if name.startswith("floor")}
    for name, rows, rate, _, _ in results:
        if not name.startswith("floor"):
            print(f"{name} at {rows:,} rows: {rate / floors[rows]:.0%} of the floor's rows/s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    raise SystemExit(main())
