"""Load on a served HTTP API for the benchmarks: a server started in its own process group
until its first 200, wrk's figures (rps, p50, p99, errors) and the server's resident memory."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path.cwd()


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


def wrk(url: str, body: bytes, connections: int, duration: float, script_dir: Path) -> dict:
    script = script_dir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
    )
    threads = min(2, connections)
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:.0f}s",
         "--latency", "--timeout", "10s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout  # fmt: skip
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


@contextmanager
def running(server: Server, tmp: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The server started in its own process group, until its first 200; stopped after."""
    port = free_port()
    cmd = [part.replace("{port}", str(port)) for part in server.cmd]
    url = f"http://127.0.0.1:{port}{server.path}"
    body = json.dumps(server.body).encode()
    slug = re.sub(r"\W+", "-", server.name)
    started = time.perf_counter()
    with (tmp / f"{slug}.log").open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=server.env.get("CWD", ROOT),
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
            yield url, proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def fmt(r: dict) -> str:
    return (
        f"{r['rps']:7.0f} rps  p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
        f"errors {r['errors']}"
    )
