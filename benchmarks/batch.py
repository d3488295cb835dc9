"""Batch scoring benchmark: `mlgate predict` vs the bare Pipeline's predict_proba, one run.

Run from the repository root after `make run` (a registered model and its MLflow store):

    python benchmarks/batch.py [--model candidate] [--rows 1000000,10000000] [--spark]

For each size, rows are resampled (seeded) from the validated data into one Parquet file.
Each contender runs in its own process, so peak RSS (ru_maxrss of the child) is its own:
- floor: the registered Pipeline's predict_proba on the same rows already in memory;
- local: `mlgate predict --engine local` (validation on, quarantine, outputs, MLflow run);
- spark (with --spark): `mlgate predict --engine spark --spark-master local[2]` (the driver's
  RSS; Spark's JVM and Python workers are separate processes, reported as "children");
- mlflow (with --mlflow): `mlflow models predict -m models:/<name>/<version> --env-manager
  local` on the same rows as CSV (it reads JSON or CSV, not Parquet), no validation.
rows/s counts the rows' work (reading, checking, scoring, writing for mlgate; the
predict_proba call for the floor), not start-up; wall time is the whole process. `mlflow
models predict` reports no timing of its own: its rows/s is rows / wall, start-up included,
so the table also gives every contender's rows / wall ("rows/wall s") to compare like with
like.
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
from mlgate.registry import tracking
from mlgate.config import load_params
from mlgate.pipeline.model import positive_scores
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
    from mlgate.config import load_params
    from mlgate.pipeline import data as contract

    params = load_params()
    # plain values (not categories): what a file from elsewhere holds
    data = contract.load(params.data.validated, params).drop(columns=[params.data.target])
    data = data.astype({c: object for c in data.select_dtypes("category").columns})
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


def mlflow_uri(ref: str) -> str:
    """models:/<name>/<version> of the alias or version, and MLflow pointed at the store."""
    from mlgate.config import load_params
    from mlgate.serving.build import resolve_version

    params = load_params()
    mv = resolve_version(params, ref)
    os.environ["MLFLOW_TRACKING_URI"] = params.tracking_uri
    return f"models:/{mv.name}/{mv.version}"


def mlflow_predict(uri: str, parquet: Path, tmp: Path) -> tuple[float, float]:
    """`mlflow models predict` in this environment (no new env, no network) on CSV rows."""
    import pandas as pd

    csv = parquet.with_suffix(".csv")
    if not csv.exists():
        pd.read_parquet(parquet).to_csv(csv, index=False)
    out = tmp / f"mlflow-{parquet.stem}.json"
    wall, rss, _ = timed(
        [
            str(BIN / "mlflow"),
            "models",
            "predict",
            "-m",
            uri,
            "-i",
            str(csv),
            "-t",
            "csv",
            "-o",
            str(out),
            "--env-manager",
            "local",
        ]
    )
    if not out.is_file() or out.stat().st_size == 0:
        raise SystemExit(f"mlflow models predict wrote no predictions to {out}")
    return wall, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="candidate")
    parser.add_argument("--rows", default="1000000", help="comma-separated sizes")
    parser.add_argument("--spark", action="store_true", help="also Spark local[2]")
    parser.add_argument(
        "--mlflow", action="store_true", help="also `mlflow models predict` (CSV input)"
    )
    args = parser.parse_args()
    mlgate = str(BIN / "mlgate")
    uri = mlflow_uri(args.model) if args.mlflow else ""
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
            if args.mlflow:
                wall, rss = mlflow_predict(uri, path, Path(tmp))
                results.append(("mlflow models predict", rows, rows / wall, wall, rss))
    print(
        f"\n{'contender':<34} {'rows':>11} {'rows/s':>11} {'rows/wall s':>12} "
        f"{'wall s':>8} {'peak RSS MB':>12}"
    )
    for name, rows, rate, wall, rss in results:
        print(
            f"{name:<34} {rows:>11,} {rate:>11,.0f} {rows / wall:>12,.0f} {wall:>8.1f} {rss:>12.0f}"
        )
    floors = {rows: rate for name, rows, rate, _, _ in results if name.startswith("floor")}
    walls = {rows: rows / wall for name, rows, _, wall, _ in results if name.startswith("mlflow")}
    for name, rows, rate, wall, _ in results:
        if not name.startswith("floor"):
            line = f"{name} at {rows:,} rows: {rate / floors[rows]:.0%} of the floor's rows/s"
            if rows in walls and name.startswith("mlgate"):
                line += f", {rows / wall / walls[rows]:.1f}x mlflow models predict (rows / wall s)"
            print(line)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    raise SystemExit(main())
