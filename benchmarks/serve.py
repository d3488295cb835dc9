"""Serving benchmark in one run: a no-op FastAPI floor, mlgate's bento and `mlflow models serve`.

Run from the repository root (`make bench-serve`; needs wrk):

    python benchmarks/serve.py [--duration 10] [--soak 300] [--estimators ...]

1. Models: a clone of this repository's HEAD (the data copied in) trains and registers one
   model per estimator (LogisticRegression, Ridge, RandomForest, HistGradientBoosting,
   LightGBM, XGBoost on the example's data; Ridge as a regression of the 0/1 target) with
   `dvc repro` + `mlgate register`, gates relaxed (benchmark models, not candidates), and
   `mlgate build` packages each (serving.scorer: auto, so the build picks and prints the
   scoring path).
2. Single rows at --connections (default 16) for --duration seconds, against the floor (a
   FastAPI app that parses the JSON and returns a constant, one uvicorn worker on uvloop +
   httptools as the bento; also on asyncio + h11, the earlier runs' floor), mlgate's
   bento (`bentoml serve`) and `mlflow models serve --workers 2`: rps, p50, p99, errors,
   rps as a share of the floor's, cold start (process start -> first 200), memory.
   For LogisticRegression, also the champion/challenger bentos (--strategies, default
   shadow,canary): version 1 as champion and a second version (C=0.3) as challenger, on
   the same single-row load (no assignment key: canary draws each request, share 0.1),
   all three up at once and measured in turns (--rounds), each cell the median round.
3. Reason codes (--explain-rounds, default 3; 0: none): each estimator's bento answering
   single-row `/predict` and `/explain` in turns on the same server (each cell the median
   round): /explain's rps as a share of /predict's, and both p99s; in process, the
   explainer's cost per row beside the scoring path's.
4. Soak: mlgate's bento of --soak-estimators under `/predict_batch` with 1,000-row bodies
   (the test split repeated) at --soak-connections for --soak seconds: rows/s and the
   server's resident memory per slice, growth after the first slice (warm-up).

The machine's speed drifts (other jobs): compare rows of one run, quote ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml
from loadgen import ROOT, Server, fmt, running, tree_rss_mb, wrk

BIN = Path(sys.executable).parent
ROW = {
    "sex": "male",
    "job": 2,
    "housing": "own",
    "saving_accounts": "little",
    "checking_account": "moderate",
    "credit_amount": 3000,
    "duration": 24,
    "purpose": "car",
    "age": 35,
}
# name -> (train.estimator, hyperparameters, data.task)
ESTIMATORS: dict[str, tuple[str, dict[str, Any], str]] = {
    "LogisticRegression": (
        "sklearn.linear_model.LogisticRegression",
        {"C": 1.0, "max_iter": 1000},
        "classification",
    ),
    "Ridge": ("sklearn.linear_model.Ridge", {"alpha": 1.0}, "regression"),
    "RandomForest": (
        "sklearn.ensemble.RandomForestClassifier",
        {"n_estimators": 100},
        "classification",
    ),
    "HistGradientBoosting": (
        "sklearn.ensemble.HistGradientBoostingClassifier",
        {},
        "classification",
    ),
    # libraries a project adds itself (`uv add lightgbm`, `uv add xgboost-cpu`): their
    # boosters served by the NumPy tree walk
    "LightGBM": (
        "lightgbm.LGBMClassifier",
        {"n_estimators": 100, "verbose": -1},
        "classification",
    ),
    "XGBoost": ("xgboost.XGBClassifier", {"n_estimators": 100}, "classification"),
}
FLOOR_APP = """
from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/predict")
async def predict(request: Request) -> dict:
    await request.json()  # parse the body, as every server does; no model
    return {"probability": 0.5, "decision": 1}
"""


def measure(server: Server, connections: list[int], duration: int, tmp: Path) -> None:
    body = json.dumps(server.body).encode()
    with running(server, tmp) as (url, proc):
        wrk(url, body, 16, 2, tmp)  # warm-up outside the measurement
        for c in connections:
            server.results[f"c{c}"] = wrk(url, body, c, duration, tmp)
            print(f"  {server.name:<44} c={c:<3} {fmt(server.results[f'c{c}'])}", flush=True)
        server.results["rss_mb"] = tree_rss_mb(proc.pid)


def measure_side_by_side(
    servers: list[Server], connections: list[int], duration: int, rounds: int, tmp: Path
) -> None:
    """Servers up at the same time, measured in turns (A B C, A B C, …): on a shared machine
    the load drifts within minutes, and one after the other the last server took it all
    (two runs put shadow, then canary, at 35-45 % of single whichever came last). Each cell
    is the round with the median rps."""
    body = json.dumps(servers[0].body).encode()
    with ExitStack() as stack:
        urls = {}
        for server in servers:
            print(f"{server.name}: starting", flush=True)
            urls[server.name], proc = stack.enter_context(running(server, tmp))
            server.results["pid"] = proc.pid
            wrk(urls[server.name], body, 16, 2, tmp)  # warm-up outside the measurement
        for c in connections:
            cells: dict[str, list[dict]] = {s.name: [] for s in servers}
            for _ in range(rounds):
                for server in servers:
                    cells[server.name].append(wrk(urls[server.name], body, c, duration, tmp))
            for server in servers:
                ranked = sorted(cells[server.name], key=lambda r: r["rps"])
                server.results[f"c{c}"] = ranked[len(ranked) // 2]
                rps = ", ".join(f"{r['rps']:.0f}" for r in cells[server.name])
                print(f"  {server.name:<44} c={c:<3} {fmt(ranked[len(ranked) // 2])}"
                      f"  (rounds: {rps} rps)", flush=True)  # fmt: skip
        for server in servers:
            server.results["rss_mb"] = tree_rss_mb(server.results.pop("pid"))


def measure_explain(
    server: Server, connections: list[int], duration: int, rounds: int, tmp: Path
) -> None:
    """/predict and /explain of one bento in turns on the same server (the same process and
    load): each cell the round with the median rps; server.results["explain"][c]."""
    body = json.dumps(server.body).encode()
    with running(server, tmp) as (url, _):
        urls = {"predict": url, "explain": url.rsplit("/", 1)[0] + "/explain"}
        for route in urls.values():
            wrk(route, body, 16, 2, tmp)  # warm-up outside the measurement
        cells: dict[int, dict[str, dict]] = {}
        for c in connections:
            runs: dict[str, list[dict]] = {name: [] for name in urls}
            for _ in range(rounds):
                for name, route in urls.items():
                    runs[name].append(wrk(route, body, c, duration, tmp))
            cells[c] = {
                name: sorted(turns, key=lambda r: r["rps"])[len(turns) // 2]
                for name, turns in runs.items()
            }
            share = cells[c]["explain"]["rps"] / cells[c]["predict"]["rps"]
            print(
                f"  {server.name:<44} c={c:<3} /predict {fmt(cells[c]['predict'])}\n"
                f"  {'':<44}       /explain {fmt(cells[c]['explain'])}  ({share:.0%} of "
                "/predict's rps)",
                flush=True,
            )
        server.results["explain"] = cells


def explain_figures(clone: Path, name: str) -> str:
    """In this process, on the clone's model: the explainer's method and its cost per row, one
    row a call and 100 rows a call (as the service's, one OpenMP thread)."""
    import joblib
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from mlgate.serving.explainers import Unexplained, make_explainer

    model = joblib.load(clone / "artifacts" / "model" / "model.joblib")
    test = pd.read_parquet(clone / "artifacts" / "data" / "test.parquet")
    train = pd.read_parquet(clone / "artifacts" / "data" / "train.parquet")
    columns = list(model.feature_names_in_)
    rows = test[columns].to_dict("records")
    positive = 1 if ESTIMATORS[name][2] == "classification" else None
    try:
        explainer = make_explainer(
            model, positive, lambda: train[columns].to_dict("records"), columns
        )
    except Unexplained as err:
        return f"no explainer: {err}"
    with threadpool_limits(1):
        one = _per_call(lambda: explainer.explain(rows[:1]), 0.5)
        hundred = _per_call(lambda: explainer.explain(rows[:100]), 0.5) / 100
    return f"{explainer.method}; 1 row {one * 1e6:,.0f} µs; 100 rows {hundred * 1e6:,.1f} µs/row"


def soak(server: Server, rows: list[dict], seconds: int, connections: int, tmp: Path) -> list:
    """/predict_batch with 1,000-row bodies in slices: (t, rows/s, p99 ms, errors, RSS MB)."""
    field_name = next(iter(server.body))
    body = json.dumps({f"{field_name}s": (rows * (1000 // len(rows) + 1))[:1000]}).encode()
    batch = Server(server.name, server.cmd, "/predict_batch", json.loads(body), server.env)
    slices = max(2, min(12, seconds // 10))
    trace = []
    with running(batch, tmp) as (url, proc):
        started = time.perf_counter()
        for _ in range(slices):
            r = wrk(url, body, connections, seconds / slices, tmp)
            point = (
                time.perf_counter() - started,
                r["rps"] * 1000,
                r["p99_ms"],
                r["errors"],
                tree_rss_mb(proc.pid),
            )
            trace.append(point)
            print(
                f"  soak {server.name:<30} t={point[0]:5.0f} s  {point[1]:8.0f} rows/s  "
                f"p99 {point[2]:6.0f} ms  errors {point[3]}  RSS {point[4]:6.0f} MB",
                flush=True,
            )
        metrics = urllib.request.urlopen(url.rsplit("/", 1)[0] + "/metrics", timeout=10)
        dropped = re.findall(
            r'mlgate_feedback_dropped_records_total\{reason="queue_full"\} ([\d.e+]+)',
            metrics.read().decode(),
        )
        print(f"  feedback records dropped (queue full): {dropped[0] if dropped else '?'}")
    return trace


def sh(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout + out.stderr


def train_and_build(clone: Path, name: str, home: Path, env: dict[str, str]) -> tuple[str, str]:
    """Train, register and build the clone's model with one estimator: (bento tag, scorer)."""
    dotted, hyper, task = ESTIMATORS[name]
    with (ROOT / "params.yaml").open() as fh:
        params = yaml.safe_load(fh)
    params["project"]["name"] = f"bench-{name.lower()}"
    params["data"]["task"] = task
    params["train"].update(estimator=dotted, hyperparameters=hyper)
    params["gate"].update(min_metrics={}, max_metrics={}, max_fairness_gap={}, champion=None)
    params["serving"]["scorer"] = "auto"
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["dvc", "repro", "--quiet"], clone, env)
    sh([str(BIN / "mlgate"), "register"], clone, env)
    out = sh(
        [str(BIN / "mlgate"), "build", "--model", "candidate"],
        clone,
        {**env, "BENTOML_HOME": str(home)},
    )
    scorer = re.search(r"build: scorer ([\w-]+)", out)
    tags = re.findall(r"-> model \S+, bento (\S+)", out)
    if not tags:
        raise SystemExit(f"mlgate build printed no bento tag:\n{out[-3000:]}")
    return tags[-1], scorer.group(1) if scorer else "?"


def strategy_bentos(clone: Path, home: Path, env: dict[str, str], modes: list[str]) -> dict:
    """The clone's model (version 1, just built) as champion and a retrained version
    (C=0.3) as challenger, one bento per serving.strategy mode: {mode: bento tag}."""
    from mlflow import MlflowClient

    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["train"]["hyperparameters"]["C"] = 0.3
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["dvc", "repro", "--quiet"], clone, env)
    registered = sh([str(BIN / "mlgate"), "register"], clone, env)
    version = re.search(r"version (\d+)", registered)
    if not version or version.group(1) == "1":
        raise SystemExit(f"no second version registered for the challenger:\n{registered}")
    uri = f"sqlite:///{clone / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.set_registered_model_alias(params["project"]["name"], "challenger", version.group(1))
    tags = {}
    for mode in modes:
        params["serving"]["strategy"] = {"mode": mode, "challenger": "challenger"}
        params_file = clone / f"params-{mode}.yaml"
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        out = sh(
            [str(BIN / "mlgate"), "build", "--model", "1", "--params", str(params_file)],
            clone,
            {**env, "BENTOML_HOME": str(home)},
        )
        tags[mode] = re.findall(r"-> model \S+, bento (\S+)", out)[-1]
    return tags


def scorer_figures(clone: Path, name: str) -> dict[str, str]:
    """In this process, on the clone's model and test split: each scoring path's parity with
    the Pipeline (max |Δ|) and its cost per row, one row at a time and 1,000 rows per call."""
    import joblib
    import numpy as np
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from mlgate.serving.scorer import (
        LeanScorer,
        OnnxScorer,
        OnnxUnavailable,
        PipelineScorer,
        parity,
    )
    from mlgate.serving.trees import TreeScorer, TreesUnavailable

    model = joblib.load(clone / "artifacts" / "model" / "model.joblib")
    test = pd.read_parquet(clone / "artifacts" / "data" / "test.parquet")
    columns = list(model.feature_names_in_)
    rows = test[columns].to_dict("records")
    classifier = ESTIMATORS[name][2] == "classification"
    positive = 1 if classifier else None
    paths: dict[str, Any] = {"scikit-learn Pipeline": PipelineScorer(model, positive, columns)}
    if classifier and LeanScorer.supports(model):
        lean = LeanScorer.from_pipeline(model, positive)
        paths["NumPy" if lean.linear else "NumPy features + estimator"] = lean
    if TreeScorer.supports(model):
        try:
            paths["NumPy tree walk"] = TreeScorer.from_pipeline(model, positive)
        except TreesUnavailable as err:
            paths["NumPy tree walk"] = str(err)
    try:
        paths["ONNX Runtime"] = OnnxScorer.convert(model, positive)
    except OnnxUnavailable as err:
        paths["ONNX Runtime"] = str(err)
    expected = np.asarray(paths["scikit-learn Pipeline"].scores(rows))
    big = (rows * (1000 // len(rows) + 1))[:1000]
    figures = {}
    limits = threadpool_limits(1)  # one OpenMP thread, as the service has
    for label, scorer in paths.items():
        if isinstance(scorer, str):
            figures[label] = f"not converted ({scorer[:90]})"
            continue
        delta = parity(scorer, rows, expected)
        one = _per_call(lambda s=scorer: s.scores(rows[:1]), 0.5)
        batch = _per_call(lambda s=scorer: s.scores(big), 0.5) / 1000
        figures[label] = (
            f"max |Δ| {delta:.1e}; 1 row {one * 1e6:,.0f} µs; 1,000 rows {batch * 1e6:,.1f} µs/row"
        )
    limits.restore_original_limits()
    return figures


def _per_call(fn: Any, budget_s: float) -> float:
    fn()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < budget_s or calls < 3:
        fn()
        calls += 1
    return (time.perf_counter() - started) / calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per single-row cell")
    parser.add_argument("--connections", default="16", help="comma list (default: %(default)s)")
    parser.add_argument("--estimators", default=",".join(ESTIMATORS), help="comma list")
    parser.add_argument("--soak", type=int, default=300, help="batch soak seconds (0: none)")
    parser.add_argument("--soak-connections", type=int, default=4)
    parser.add_argument("--soak-estimators", default="LogisticRegression", help="comma list")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument(
        "--rounds", type=int, default=3, help="turns of the side-by-side cells (default: 3)"
    )
    parser.add_argument(
        "--strategies",
        default="shadow,canary",
        help="serving.strategy modes measured beside LogisticRegression's single model "
        "(comma list; '' for none; default: %(default)s)",
    )
    parser.add_argument(
        "--explain-rounds",
        type=int,
        default=3,
        help="turns of /predict and /explain on each estimator's bento (0: none; default: "
        "%(default)s)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit(
            "wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk`;"
            " `make bench-serve` tries apt-get for you"
        )
    names = args.estimators.split(",")
    unknown = sorted(set(names) - set(ESTIMATORS))
    if unknown:
        raise SystemExit(f"--estimators: unknown {unknown}; known: {', '.join(ESTIMATORS)}")
    connections = [int(c) for c in args.connections.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    home = tmp / "bentoml"
    clone = tmp / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    shutil.copytree(ROOT / "data", clone / "data", dirs_exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VIRTUAL_ENV"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", BENTOML_DO_NOT_TRACK="true")
    bento_env = {
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLGATE_FEEDBACK_DIR": str(tmp / "feedback"),
        "CWD": str(clone),
    }
    mlflow_env = {  # its server runs `uvicorn` from PATH
        "MLFLOW_TRACKING_URI": f"sqlite:///{clone / 'mlflow.db'}",
        "CWD": str(clone),
        "PATH": env["PATH"],
    }

    floor_dir = tmp / "floor"
    floor_dir.mkdir()
    (floor_dir / "floor.py").write_text(FLOOR_APP)
    floor_cmd = [str(BIN / "python"), "-m", "uvicorn", "floor:app", "--app-dir", str(floor_dir),
                 "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning",
                 "--no-access-log"]  # fmt: skip
    # The floor runs on what mlgate's bento runs on: uvicorn with uvloop and httptools (the
    # serve group installs them, and uvicorn takes them when present). The second floor is
    # uvicorn's pure-Python stack (asyncio, h11), the floor of the runs before 2026-12-02.
    floor = Server(
        "no-op FastAPI (floor), 1 worker, uvloop + httptools",
        [*floor_cmd, "--loop", "uvloop", "--http", "httptools"],
        "/predict",
        {"applicant": ROW},
    )
    floor_h11 = Server(
        "no-op FastAPI, 1 worker, asyncio + h11",
        [*floor_cmd, "--loop", "asyncio", "--http", "h11"],
        "/predict",
        {"applicant": ROW},
    )
    servers: list[tuple[str, Server]] = [("", floor), ("", floor_h11)]
    side_by_side: list[Server] = []  # LogisticRegression's single, shadow and canary bentos
    scorers: dict[str, str] = {}
    for name in names:
        print(f"training, registering and building {name} …", flush=True)
        tag, scorers[name] = train_and_build(clone, name, home, env)
        for label, figure in scorer_figures(clone, name).items():
            print(f"  {label:<28} {figure}", flush=True)
        print(f"  {'explainer':<28} {explain_figures(clone, name)}", flush=True)
        servers.append(
            (
                name,
                Server(
                    f"{name}: mlgate ({scorers[name]})",
                    [str(BIN / "bentoml"), "serve", tag, "--host", "127.0.0.1", "--port", "{port}"],
                    "/predict",
                    {"applicant": ROW},
                    bento_env,
                ),
            )
        )
        modes = [m for m in args.strategies.split(",") if m]
        if name == "LogisticRegression" and modes:
            print(f"  champion and challenger bentos: {', '.join(modes)} …", flush=True)
            side_by_side.append(servers[-1][1])
            for mode, strategy_tag in strategy_bentos(clone, home, env, modes).items():
                label = "canary, share 0.1" if mode == "canary" else mode
                servers.append(
                    (
                        name,
                        Server(
                            f"{name}: mlgate ({scorers[name]}), {label}",
                            [str(BIN / "bentoml"), "serve", strategy_tag, "--host", "127.0.0.1",
                             "--port", "{port}"],
                            "/predict",
                            {"applicant": ROW},
                            bento_env,
                        ),
                    )
                )  # fmt: skip
                side_by_side.append(servers[-1][1])
        if not args.skip_mlflow:
            servers.append(
                (
                    name,
                    Server(
                        f"{name}: mlflow models serve, 2 workers",
                        [str(BIN / "mlflow"), "models", "serve", "-m",
                         f"models:/bench-{name.lower()}/1", "--env-manager", "local",
                         "--host", "127.0.0.1", "--port", "{port}", "--workers", "2"],
                        "/invocations",
                        {"dataframe_records": [ROW]},
                        mlflow_env,
                    ),
                )
            )  # fmt: skip
    for _, server in servers:
        if server in side_by_side:
            continue
        print(f"{server.name}: starting", flush=True)
        measure(server, connections, args.duration, tmp)
    if side_by_side:
        print("single vs champion-and-challenger bentos, side by side:", flush=True)
        measure_side_by_side(side_by_side, connections, args.duration, args.rounds, tmp)
    explained = [s for n, s in servers if n and s.name == f"{n}: mlgate ({scorers[n]})"]
    if args.explain_rounds > 0:
        print("/predict and /explain of each bento, in turns:", flush=True)
        for server in explained:
            measure_explain(server, connections, args.duration, args.explain_rounds, tmp)

    soaks = {}
    if args.soak > 0:
        import pandas as pd

        test = pd.read_parquet(clone / "artifacts" / "data" / "test.parquet")
        rows = json.loads(test[[c for c in test.columns if c in ROW]].to_json(orient="records"))
        for name in args.soak_estimators.split(","):
            server = next(
                s for n, s in servers if n == name and s.name.endswith(f"mlgate ({scorers[n]})")
            )
            print(f"soak: {server.name}, {args.soak} s", flush=True)
            soaks[name] = soak(server, rows, args.soak, args.soak_connections, tmp)

    floor_rps = {c: floor.results[f"c{c}"]["rps"] for c in connections}
    h11_rps = {c: floor_h11.results[f"c{c}"]["rps"] for c in connections}
    print()
    head = " | ".join(
        f"c={c} rps / p50 / p99 / errors / share of floor (of the asyncio + h11 floor)"
        for c in connections
    )
    print(f"| server | {head} | cold start | memory |")
    print("|---|" + "---|" * len(connections) + "---|---|")
    for _, s in servers:
        cells = " | ".join(
            f"{s.results[f'c{c}']['rps']:.0f} / {s.results[f'c{c}']['p50_ms']:.1f} ms / "
            f"{s.results[f'c{c}']['p99_ms']:.1f} ms / {s.results[f'c{c}']['errors']} / "
            f"{s.results[f'c{c}']['rps'] / floor_rps[c]:.0%} "
            f"({s.results[f'c{c}']['rps'] / h11_rps[c]:.0%})"
            for c in connections
        )
        print(
            f"| {s.name} | {cells} | {s.results['cold_start_s']:.1f} s "
            f"| {s.results['rss_mb']:.0f} MB |"
        )
    if args.explain_rounds > 0:
        print("\n| bento | c | /predict rps / p50 / p99 | /explain rps / p50 / p99 | share |")
        print("|---|---|---|---|---|")
        for server in explained:
            for c, cell in server.results.get("explain", {}).items():
                p, e = cell["predict"], cell["explain"]
                print(
                    f"| {server.name} | {c} | {p['rps']:.0f} / {p['p50_ms']:.1f} ms / "
                    f"{p['p99_ms']:.1f} ms | {e['rps']:.0f} / {e['p50_ms']:.1f} ms / "
                    f"{e['p99_ms']:.1f} ms ({e['errors']} errors) | {e['rps'] / p['rps']:.0%} |"
                )
    for name, trace in soaks.items():
        warm, last = trace[0][4], trace[-1][4]
        rate = sum(p[1] for p in trace[1:]) / max(1, len(trace) - 1)
        print(
            f"\nsoak {name}: {rate:.0f} rows/s after warm-up, RSS {warm:.0f} -> {last:.0f} MB "
            f"({last - warm:+.0f} MB after the first slice), "
            f"errors {sum(p[3] for p in trace)}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        results = {s.name: s.results for _, s in servers}
        args.json.write_text(json.dumps({"single": results, "soak": soaks}, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
