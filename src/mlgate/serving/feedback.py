"""The feedback sink: every prediction and every rejected request, off the response path.

The request path only appends a dict to an in-memory queue (~1 µs); a daemon thread turns
records into JSON lines and writes them in bulk. The queue is bounded (`max_queue_records`):
when the writer falls behind, new records are dropped and counted (never blocking a response,
never growing memory); `on_drop` reports how many, the service counts them in /metrics.
Rotated files are deleted by `keep_mb` (all files in the folder) and `keep_days`. Sinks:
- `files`: `<path>/predictions-<host>-<pid>-<start>-<seq>.jsonl`, one file per worker
  process (no interleaving between processes), rotated at `max_file_mb`.
- `stdout`: one JSON line per record, for the platform's log pipeline (Loki, CloudWatch…).
- `off`: nothing is recorded.
The record format is documented in docs/SERVING.md#feedback-records.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from mlgate.errors import MlgateError

SCHEMA_VERSION = 1
# records serialised and written in one go by the writer thread
WRITE_BATCH = 10_000
# one encoder for every record (json.dumps with options builds a new one per call: ~14 %)
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


def error_record(
    request_id: str,
    endpoint: str,
    status: int,
    error: str,
    started: float,
    model_version: str | None,
    **labels: Any,
) -> dict[str, Any]:
    """An `error` record: a request answered 4xx/5xx, or a shadow challenger's failure
    (docs/SERVING.md#feedback-records). `error` never quotes a request's values; `started`
    is the request's time.perf_counter(); `labels` (variant, shadow) follow the endpoint."""
    return {
        "schema": SCHEMA_VERSION,
        "kind": "error",
        "ts": record_time(),
        "request_id": request_id,
        "endpoint": endpoint,
        **labels,
        "status": status,
        "error": error,
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        "model_version": model_version,
    }


def record_time(when: datetime | None = None) -> str:
    """A feedback record's `ts` (now, or `when`): UTC to the millisecond, `Z`-suffixed. Every
    time compared with one (`mlgate compare --since`, a trial's start) is written the same."""
    when = datetime.now(UTC) if when is None else when
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FeedbackSink:
    def __init__(
        self,
        kind: str,
        folder: Path | str,
        max_file_mb: float = 64,
        flush_seconds: float = 1.0,
        max_queue_records: int = 20_000,
        keep_mb: float | None = 1024,
        keep_days: float | None = 30,
        on_drop: Callable[[int, str], None] | None = None,
    ) -> None:
        self.kind = kind
        self.folder = Path(folder)
        self.max_bytes = int(max_file_mb * 1024 * 1024)
        self.flush_seconds = flush_seconds
        self.keep_bytes = None if keep_mb is None else int(keep_mb * 1024 * 1024)
        self.keep_seconds = None if keep_days is None else keep_days * 86400
        self.on_drop = on_drop
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue_records)
        self._last_prune = 0.0
        self._file: TextIO | None = None
        self._written = 0
        self._seq = 0
        self._stem = f"predictions-{socket.gethostname()}-{os.getpid()}-{int(time.time())}"
        self.dropped = 0
        self._path: Path | None = None
        self._thread: threading.Thread | None = None
        if kind != "off":
            if kind == "files":
                self.folder.mkdir(parents=True, exist_ok=True)
                self._maybe_prune(force=True)  # what earlier runs left
            self._thread = threading.Thread(target=self._run, name="feedback-sink", daemon=True)
            self._thread.start()
            atexit.register(self.close)

    def record(self, record: dict[str, Any]) -> bool:
        """Non-blocking: the writer thread serialises and writes. False: dropped (queue full)."""
        if self._thread is None:
            return True
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._dropped(1, "queue_full")
            return False
        return True

    def _dropped(self, count: int, reason: str) -> None:
        self.dropped += count
        if self.on_drop is not None:
            self.on_drop(count, reason)

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)  # blocks at most until the writer makes room
            self._thread.join(timeout=5)

    def prune(self) -> list[Path]:
        """Delete rotated files (any worker's) older than keep_days, then the oldest until the
        folder holds at most keep_mb. The file this sink is writing is never deleted."""
        if self.kind != "files":
            return []
        files = []
        for path in self.folder.glob("predictions-*.jsonl"):
            try:
                stat = path.stat()
            except FileNotFoundError:  # another worker pruned it
                continue
            files.append((stat.st_mtime, stat.st_size, path))
        files.sort()
        total = sum(size for _, size, _ in files)
        now = time.time()
        deleted = []
        for mtime, size, path in files:
            too_old = self.keep_seconds is not None and now - mtime > self.keep_seconds
            too_big = self.keep_bytes is not None and total > self.keep_bytes
            if path == self._path or not (too_old or too_big):
                continue
            path.unlink(missing_ok=True)
            total -= size
            deleted.append(path)
        return deleted

    # -- writer thread
    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.flush_seconds)
            except queue.Empty:
                self._maybe_prune()
                continue
            batch = [first]
            # Drain what is there: one write call per burst, not per record.
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(r is None for r in batch)
            lines = "".join(_encode(r) + "\n" for r in batch if r)
            try:
                self._write(lines)
            except OSError as err:  # a full disk must not take the service down; say so once
                self._dropped(len(batch), "write_failed")
                print(f"feedback sink: write failed, records dropped: {err}", file=sys.stderr)
            if stop:
                if self._file is not None:
                    self._file.close()
                return
            self._maybe_prune()
            if len(batch) < WRITE_BATCH:
                # Caught up: bound the flush rate so bursts coalesce into one write. (Behind,
                # it writes on at once: a pause per batch would cap the records kept.)
                time.sleep(min(self.flush_seconds, 0.2))

    def _maybe_prune(self, force: bool = False) -> None:
        # at each rotation, and at least once a minute for the age limit
        if force or time.monotonic() - self._last_prune > 60:
            self._last_prune = time.monotonic()
            try:
                self.prune()
            except OSError as err:
                print(f"feedback sink: pruning old files failed: {err}", file=sys.stderr)

    def _write(self, lines: str) -> None:
        if not lines:
            return
        if self.kind == "stdout":
            sys.stdout.write(lines)
            sys.stdout.flush()
            return
        if self._file is None or self._written >= self.max_bytes:
            if self._file is not None:
                self._file.close()
            self._seq += 1
            self._path = self.folder / f"{self._stem}-{self._seq:04d}.jsonl"
            self._file = self._path.open("a", encoding="utf-8")
            self._written = 0
            self._maybe_prune(force=True)
        self._file.write(lines)
        self._file.flush()
        self._written += len(lines)


def read_records(folder: Path | str) -> list[dict[str, Any]]:
    """Every record under `folder` (all workers, all rotations); torn last lines are skipped."""
    records = []
    for path in sorted(Path(folder).glob("**/*.jsonl")):
        try:
            with path.open(encoding="utf-8") as fh:
                for number, line in enumerate(fh, 1):
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line being written while we read
                    if not isinstance(record, dict):  # never written by the service
                        raise MlgateError(
                            f"{path} line {number} is not a feedback record (a JSON object): "
                            "is this folder the service's feedback?"
                        )
                    records.append(record)
        except UnicodeDecodeError:
            raise MlgateError(f"{path} is not UTF-8 text: not the service's feedback") from None
    return records
