"""GitHub Actions' step outputs and job summary, their Markdown table cells, and the one UTC
timestamp format mlgate writes.

Outside GitHub Actions (no $GITHUB_OUTPUT / $GITHUB_STEP_SUMMARY) both writers do nothing, so
every command runs the same on a laptop. The CLI checks both files before any work
(mlgate.cli), so a command never does its work and then fails to report it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

STAMP = "%Y-%m-%dT%H:%M:%SZ"  # e.g. 2026-12-07T05:02:39Z: alias history, reports, records


def table_cell(text: object) -> str:
    """A name from the data (a column, a class, a group) as a Markdown table cell, in the
    reports and summaries mlgate writes: its own `|` would end the cell."""
    return str(text).replace("|", "\\|")


def utc_now() -> str:
    """Now, in UTC, to the second: the format every record and report of mlgate uses."""
    return datetime.now(UTC).strftime(STAMP)


def write_outputs(**values: str) -> None:
    """Step outputs for the next workflow step (no-op outside GitHub Actions)."""
    out = os.environ.get("GITHUB_OUTPUT")
    if not out:
        return
    with open(out, "a", encoding="utf-8") as fh:
        for key, value in values.items():
            fh.write(f"{key}={value}\n")


def append_summary(markdown: str) -> bool:
    """Add markdown to the job summary; False outside GitHub Actions."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(markdown if markdown.endswith("\n") else markdown + "\n")
    return True
