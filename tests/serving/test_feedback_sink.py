"""The feedback sink is bounded: a full queue drops and counts, old files are deleted."""

from __future__ import annotations

import os
import time
from pathlib import Path

from mlgate.serving.feedback import FeedbackSink, read_records


def test_a_full_queue_drops_and_counts_instead_of_growing(tmp_path: Path) -> None:
    drops: list[tuple[int, str]] = []
    sink = FeedbackSink(
        "files",
        tmp_path,
        max_queue_records=5,
        flush_seconds=1.0,
        on_drop=lambda n, why: drops.append((n, why)),
    )
    # The writer takes what is queued, then pauses (0.2 s) to coalesce bursts: an offer of
    # 10k records in a tight loop outruns it, as a sustained batch client outruns the disk.
    accepted = sum(sink.record({"kind": "prediction", "i": i}) for i in range(10_000))
    sink.close()
    assert sink.dropped == 10_000 - accepted > 0
    assert sum(n for n, _ in drops) == sink.dropped and {why for _, why in drops} == {"queue_full"}
    assert len(read_records(tmp_path)) == accepted  # what was accepted is all written


def test_rotated_files_are_deleted_by_age_then_by_size(tmp_path: Path) -> None:
    now = time.time()
    ancient = tmp_path / "predictions-otherhost-1-1-0001.jsonl"
    ancient.write_text("{}\n")
    os.utime(ancient, (now - 40 * 86400, now - 40 * 86400))
    sizes = {}
    for age_days, name in [(3, "a"), (2, "b"), (1, "c")]:
        path = tmp_path / f"predictions-h-{name}-1-0001.jsonl"
        path.write_bytes(b"x" * 600_000)
        os.utime(path, (now - age_days * 86400, now - age_days * 86400))
        sizes[name] = path
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("not a prediction log")
    os.utime(unrelated, (now - 400 * 86400, now - 400 * 86400))

    sink = FeedbackSink("files", tmp_path, keep_mb=1.2, keep_days=30)  # 1.2 MB: two files fit
    sink.close()

    assert not ancient.exists()
    assert not sizes["a"].exists()  # the oldest goes first
    assert sizes["b"].exists() and sizes["c"].exists() and unrelated.exists()
