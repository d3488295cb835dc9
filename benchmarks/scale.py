"""Scale benchmark: one `dvc repro` per data size against a bare in-process baseline.

For each size the example's data is resampled (rows drawn with replacement, seeded) into a
temporary copy of this repository, and `dvc repro` runs there once. Every stage process is
timed from outside, start to exit, with its peak RSS (benchmarks/stagetimes.py). The
baseline does the same work in one fresh interpreter with no files between: read_csv, the
same pandera validation, train_test_split, the same Pipeline fit, predict_proba and ROC
AUC. Prints figures; asserts nothing.

Usage: python benchmarks/scale.py [--sizes 1k,100k,1M,10M] [--keep]   (`make bench-scale`)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stagetimes import read_log, timed_env

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("validate", "split", "train", "evaluate", "gate")
# Files of the repository a pipeline run needs; tests, docs and workflows stay behind.
LEFT_BEHIND = ("tests/", "docs/", ".github/", "benchmarks/", "scripts/", ".dvc/example-remote/")
BASELINE = r"""
import json, time
started = time.perf_counter()
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from mlgate.pipeline import data
from mlgate.config import load_params
from mlgate.pipeline.model import build_pipeline
p = load_params()
imported = time.perf_counter()
frame = data.validate(pd.read_csv(p.data.raw), data.contract_schema(p), "raw")
train, test = train_test_split(frame, test_size=p.split.test_size, random_state=p.split.seed,
                               stratify=frame[p.data.target])
model = build_pipeline(p).fit(train[p.features.all], train[p.data.target])
scores = model.predict_proba(test[p.features.all])[:, 1]
auc = roc_auc_score(test[p.data.target] == p.data.positive_label, scores)
print("BASELINE " + json.dumps(dict(work=time.perf_counter() - imported, roc_auc=auc)))
"""


def parse_size(text: str) -> int:
    text = text.strip()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:].lower(), 1)
    number = text[:-1] if scale > 1 else text
    try:
        return int(float(number) * scale)
    except ValueError:
        raise SystemExit(f"--sizes: {text!r} is not a size (1000, 100k, 1M)") from None


def label(rows: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if rows >= size and rows % size == 0:
            return f"{rows // size}{unit}"
    return str(rows)


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (MB) and output of one process, start to exit."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}) in {cwd}:\n{out}")
    return took, usage.ru_maxrss // 1024, out


def make_copy(dest: Path, rows: int, seed: int) -> None:
    """This repository's tracked files (working tree), the data resampled to `rows`."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import yaml

    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\0")  # fmt: skip
    for name in filter(None, files):
        if name.startswith(LEFT_BEHIND) or not (ROOT / name).is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    with (ROOT / "params.yaml").open() as fh:
        params = yaml.safe_load(fh)
    raw = params["data"]["raw"]
    example = pd.read_csv(ROOT / raw)
    big = example.sample(n=rows, replace=True, random_state=seed, ignore_index=True)
    (dest / raw).parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(pa.Table.from_pandas(big, preserve_index=False), dest / raw)
    # Rows drawn with replacement repeat by construction: the duplicate rule is still
    # computed in full (same cost), its threshold opened so the resample passes.
    params["data"]["contract"]["max_duplicate_share"] = 1.0
    # A resample is another population: its model may miss the example's gates. Every
    # check still runs; the thresholds are opened so the run reaches its end.
    gate = params["gate"]
    gate["min_metrics"] = {k: 0.0 for k in gate.get("min_metrics", {})}
    gate["max_fairness_gap"] = {
        gap: {attr: 1.0 for attr in limits} for gap, limits in gate["max_fairness_gap"].items()
    }
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bench copy"], cwd=dest, check=True)


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def pipeline_outputs(repo: Path) -> tuple[int, int]:
    """Bytes of the outputs DVC caches (git-ignored: the data parts and the model) and of
    those git keeps (`cache: false`: metrics, plots, reports), which must not grow with rows."""
    ls = ["git", "ls-files", "-z", "artifacts"]
    tracked = subprocess.run(ls, cwd=repo, capture_output=True, text=True, check=True).stdout
    in_git = {p for p in tracked.split("\0") if p and not p.endswith(".gitignore")}
    sizes = {
        str(f.relative_to(repo)): f.stat().st_size
        for f in (repo / "artifacts").rglob("*")
        if f.is_file() and f.name != ".gitignore"
    }
    cached = sum(v for k, v in sizes.items() if k not in in_git)
    return cached, sum(v for k, v in sizes.items() if k in in_git)


def one_size(rows: int, work: Path, env: dict[str, str]) -> dict:
    copy = work / f"repo-{label(rows)}"
    copy.mkdir()
    make_copy(copy, rows, seed=rows % 9973)
    run_env, log = timed_env(env, work / f"bin-{label(rows)}")
    repro, _, _ = run(["dvc", "repro"], copy, run_env)
    stages = read_log(log)
    noop, _, _ = run(["dvc", "repro"], copy, run_env)
    cached, in_git = pipeline_outputs(copy)
    python = str(Path(sys.executable))
    base_s, base_rss, out = run([python, "-c", BASELINE], copy, env)
    baseline = json.loads(next(x for x in out.splitlines() if x.startswith("BASELINE "))[9:])
    return {
        "rows": rows,
        "repro": repro,
        "noop": noop,
        "stages": stages,
        "peak_rss": max((s["peak_rss_mb"] for s in stages.values()), default=0),
        "baseline": base_s,
        "baseline_work": baseline["work"],
        "baseline_rss": base_rss,
        "cached_mb": cached / 1e6,
        "git_outputs_kb": in_git / 1e3,
        "raw_mb": tree_bytes(copy / "data") / 1e6,
    }


def report(results: list[dict]) -> None:
    print("\n== mlgate pipeline at scale (example resampled; one `dvc repro` per size) ==")
    print("per stage: wall seconds, process start to exit (peak RSS, MB)")
    head = f"{'rows':>6} " + " ".join(f"{s:>17}" for s in STAGES)
    print(head)
    for r in results:
        cells = []
        for s in STAGES:
            st = r["stages"].get(s)
            cells.append(f"{st['seconds']:7.1f} ({st['peak_rss_mb']:6.0f})" if st else f"{'—':>17}")
        print(f"{label(r['rows']):>6} " + " ".join(cells))
    print("\nwhole pipeline vs the bare baseline (one interpreter, no files, no DVC, no MLflow)")
    print(f"{'rows':>6} {'dvc repro':>10} {'no-op':>6} {'evaluate':>9} {'baseline':>9} "
          f"{'(work)':>7} {'peak RSS MB':>17} {'raw CSV':>8} {'DVC-cached outs':>16} "
          f"{'in git':>7}")  # fmt: skip
    for r in results:
        ev = r["stages"].get("evaluate", {}).get("seconds", 0.0)
        print(f"{label(r['rows']):>6} {r['repro']:9.1f}s {r['noop']:5.2f}s "
              f"{ev / r['repro']:8.1%} {r['baseline']:8.1f}s {r['baseline_work']:6.1f}s "
              f"{r['peak_rss']:7.0f} / {r['baseline_rss']:<7.0f} {r['raw_mb']:6.0f}MB "
              f"{r['cached_mb']:7.1f}MB ({r['cached_mb'] / (2 * r['raw_mb']):4.0%}) "
              f"{r['git_outputs_kb']:5.1f}kB")  # fmt: skip
    print("(DVC-cached outs: the Parquet parts and the model; in brackets, their share of the "
          "CSV parts of before, validated + train + test = 2 x the raw CSV)")  # fmt: skip
    print("\nratio `dvc repro` / bare baseline (process start to exit):")
    for r in results:
        print(f"  {label(r['rows']):>6}: {r['repro'] / r['baseline']:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1k,100k,1M,10M", help="rows, comma-separated")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < 1:
        raise SystemExit("--sizes: give at least one positive size")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VIRTUAL_ENV"))}
    venv_bin = str(Path(sys.executable).parent)
    others = [p for p in env["PATH"].split(os.pathsep) if ".venv" not in p]
    env["PATH"] = os.pathsep.join([venv_bin, *others])
    work = Path(tempfile.mkdtemp(prefix="mlgate-scale-"))
    results = []
    try:
        for rows in sizes:
            print(f"{label(rows)} rows: resampling, `dvc repro`, baseline …", flush=True)
            results.append(one_size(rows, work, env))
            r = results[-1]
            print(f"  dvc repro {r['repro']:.1f}s, baseline {r['baseline']:.1f}s", flush=True)
    finally:
        if args.keep:
            print(f"copies kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
