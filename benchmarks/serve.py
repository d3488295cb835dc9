"""Serving benchmark: mlgate's bento vs `mlflow models serve` on the same model, in one run.

Run from the repository root after `make run` (a registered model and its MLflow store):

    python benchmarks/serve.py [--model candidate] [--duration 8] [--connections 1,16,64]

For every server: cold start (process start -> first 200 prediction), then wrk with
single-row POSTs at each concurrency (rps, p50, p99, errors), then the resident memory of
the server's whole process group. The machine's speed drifts: compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path.cwd()
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


@dataclass
class Server:
    name: str
    cmd: list[str]
    path: str  # the prediction route
    body: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0


def tree_rss_mb(root: int) -> float:
    """Resident memory of the server process and all its descendants (workers included)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, grew = {root}, True
    while grew:
        new = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        tree |= new
        grew = bool(new)
    total = 0
    for pid in tree:
        try:
            m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
        except OSError:
            continue
        total += int(m.group(1)) if m else 0
    return total / 1024


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def wrk(url: str, body: bytes, connections: int, duration: int, script_dir: Path) -> dict:
    script = script_dir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
    )
    threads = min(2, connections)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{duration}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = (sum(map(int, socket_errors.groups())) if socket_errors else 0) + (
        int(non2xx.group(1)) if non2xx else 0
    )
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(re.search(r"\s50%\s+(\S+)", out).group(1)),
        "p99_ms": _ms(re.search(r"\s99%\s+(\S+)", out).group(1)),
        "errors": errors,
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
    }


def measure(server: Server, connections: list[int], duration: int, tmp: Path) -> None:
    port = free_port()
    cmd = [part.replace("{port}", str(port)) for part in server.cmd]
    url = f"http://127.0.0.1:{port}{server.path}"
    body = json.dumps(server.body).encode()
    slug = re.sub(r"\W+", "-", server.name)
    log = (tmp / f"{slug}.log").open("wb")
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, **server.env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        while post(url, body) != 200:
            if proc.poll() is not None or time.perf_counter() - started > 180:
                raise SystemExit(f"{server.name} did not start; log: {log.name}")
            time.sleep(0.05)
        server.results["cold_start_s"] = time.perf_counter() - started
        # Warm-up outside the measurement (lazy imports, first allocations, JIT-free caches).
        wrk(url, body, 16, 2, tmp)
        for c in connections:
            server.results[f"c{c}"] = wrk(url, body, c, duration, tmp)
            print(f"  {server.name:<44} c={c:<3} {fmt(server.results[f'c{c}'])}", flush=True)
        server.results["rss_mb"] = tree_rss_mb(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def fmt(r: dict) -> str:
    return (
        f"{r['rps']:7.0f} rps  p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
        f"errors {r['errors']}"
    )


def build_bento(params_file: Path, model: str, home: Path) -> str:
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    out = subprocess.run(
        [str(BIN / "mlgate"), "build", "--model", model, "--params", str(params_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"mlgate build failed:\n{out.stderr}")
    return out.stdout.strip().rsplit("bento ", 1)[-1]


def params_variant(tmp: Path, name: str, **serving: Any) -> Path:
    """A copy of params.yaml with serving settings changed (for the comparison rows)."""
    with (ROOT / "params.yaml").open() as fh:
        raw = yaml.safe_load(fh)
    raw.setdefault("serving", {}).update(serving)
    path = tmp / f"params-{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="candidate", help="alias or version (default: %(default)s)"
    )
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--connections", default="1,16,64")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-variants", action="store_true", help="only the default config")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit(
            "wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk`;"
            " `make bench-serve` tries apt-get for you"
        )
    connections = [int(c) for c in args.connections.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    home = tmp / "bentoml"
    bento_env = {
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLGATE_FEEDBACK_DIR": str(tmp / "feedback"),
    }
    serve = [str(BIN / "bentoml"), "serve", "", "--host", "127.0.0.1", "--port", "{port}"]
    servers: list[Server] = []

    def bento_server(name: str, params_file: Path) -> Server:
        tag = build_bento(params_file, args.model, home)
        cmd = [*serve]
        cmd[2] = tag
        return Server(name, cmd, "/predict", {"applicant": ROW}, bento_env)

    print(f"building bentos of model {args.model!r} (BENTOML_HOME={home}) …", flush=True)
    servers.append(bento_server("mlgate (params.yaml: 1 worker, GC tuned)", ROOT / "params.yaml"))
    if not args.skip_variants:
        servers.append(
            bento_server(
                "mlgate, 2 workers",
                params_variant(tmp, "w2", workers=2),
            )
        )
        servers.append(
            bento_server(
                "mlgate, Python's GC defaults, access log on",
                params_variant(tmp, "gc", gc_freeze=False, gc_thresholds=None, access_log=True),
            )
        )
    if not args.skip_mlflow:
        with (ROOT / "params.yaml").open() as fh:
            name = yaml.safe_load(fh)["project"]["name"]
        ref = (
            f"models:/{name}/{args.model}"
            if args.model.isdigit()
            else f"models:/{name}@{args.model}"
        )
        for workers in (1, 2):
            servers.append(
                Server(
                    f"mlflow models serve, {workers} worker{'s' * (workers > 1)}",
                    [
                        str(BIN / "mlflow"),
                        "models",
                        "serve",
                        "-m",
                        ref,
                        "--env-manager",
                        "local",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        "{port}",
                        "--workers",
                        str(workers),
                    ],
                    "/invocations",
                    {"dataframe_records": [ROW]},
                    {
                        "MLFLOW_TRACKING_URI": os.environ.get(
                            "MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"
                        )
                    },
                )
            )
    for server in servers:
        print(f"{server.name}: starting", flush=True)
        measure(server, connections, args.duration, tmp)

    print()
    head = " | ".join(f"c={c} rps / p50 / p99 / errors" for c in connections)
    print(f"| server | {head} | cold start | memory |")
    print("|---|" + "---|" * len(connections) + "---|---|")
    for s in servers:
        cells = " | ".join(
            f"{s.results[f'c{c}']['rps']:.0f} / {s.results[f'c{c}']['p50_ms']:.1f} ms / "
            f"{s.results[f'c{c}']['p99_ms']:.1f} ms / {s.results[f'c{c}']['errors']}"
            for c in connections
        )
        print(
            f"| {s.name} | {cells} | {s.results['cold_start_s']:.1f} s "
            f"| {s.results['rss_mb']:.0f} MB |"
        )
    base = next((s for s in servers if s.name.startswith("mlflow models serve, 2")), None)
    if base and 16 in connections:
        ratio = servers[0].results["c16"]["rps"] / base.results["c16"]["rps"]
        print(f"\nc=16 throughput, mlgate vs mlflow models serve (2 workers): {ratio:.1f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({s.name: s.results for s in servers}, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
