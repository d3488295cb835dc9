"""The feedback sink: every prediction and every rejected request, off the response path.

The request path only appends a dict to an in-memory queue (~1 µs); a daemon thread turns
records into JSON lines and writes them in bulk. Sinks:
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
from pathlib import Path
from typing import Any, TextIO

SCHEMA_VERSION = 1


class FeedbackSink:
    def __init__(
        self,
        kind: str,
        folder: Path | str,
        max_file_mb: float = 64,
        flush_seconds: float = 1.0,
    ) -> None:
        self.kind = kind
        self.folder = Path(folder)
        self.max_bytes = int(max_file_mb * 1024 * 1024)
        self.flush_seconds = flush_seconds
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._file: TextIO | None = None
        self._written = 0
        self._seq = 0
        self._stem = f"predictions-{socket.gethostname()}-{os.getpid()}-{int(time.time())}"
        self.dropped = 0
        self._thread: threading.Thread | None = None
        if kind != "off":
            if kind == "files":
                self.folder.mkdir(parents=True, exist_ok=True)
            self._thread = threading.Thread(target=self._run, name="feedback-sink", daemon=True)
            self._thread.start()
            atexit.register(self.close)

    def record(self, record: dict[str, Any]) -> None:
        """Non-blocking: the writer thread serialises and writes."""
        if self._thread is not None:
            self._queue.put(record)

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5)

    # -- writer thread
    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.flush_seconds)
            except queue.Empty:
                continue
            batch = [first]
            # Drain what is there: one write call per burst, not per record.
            while len(batch) < 10_000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(r is None for r in batch)
            lines = "".join(
                json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in batch if r
            )
            try:
                self._write(lines)
            except OSError as err:  # a full disk must not take the service down; say so once
                self.dropped += len(batch)
                print(f"feedback sink: write failed, records dropped: {err}", file=sys.stderr)
            if stop:
                if self._file is not None:
                    self._file.close()
                return
            # Bound the flush rate so bursts coalesce into one write.
            time.sleep(min(self.flush_seconds, 0.2))

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
            path = self.folder / f"{self._stem}-{self._seq:04d}.jsonl"
            self._file = path.open("a", encoding="utf-8")
            self._written = 0
        self._file.write(lines)
        self._file.flush()
        self._written += len(lines)


def read_records(folder: Path | str) -> list[dict[str, Any]]:
    """Every record under `folder` (all workers, all rotations); torn last lines are skipped."""
    records = []
    for path in sorted(Path(folder).glob("**/*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line being written while we read
    return records
