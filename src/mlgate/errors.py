"""Errors a user can act on: the CLI prints them without a traceback and exits non-zero."""

from __future__ import annotations

from typing import Any

# Exit codes the CLI's one boundary (mlgate.cli.main) gives; README.md#exit-codes lists them.
EXIT_USAGE = 2  # a user's mistake or an unusable input, path or remote answer
EXIT_INTERNAL = 70  # a bug in mlgate (sysexits' EX_SOFTWARE): MLGATE_DEBUG=1 shows the trace


class MlgateError(Exception):
    """A problem the user can fix; the message says what is wrong and where."""

    exit_code = EXIT_USAGE


class GateFailed(MlgateError):
    """The model did not pass one or more gates."""

    exit_code = 1


class DataValidationError(MlgateError):
    """The data broke its contract (the pandera schema)."""

    exit_code = 1


def shown(value: Any, limit: int = 80) -> str:
    """A value as an error message may show it: repr'd, on one line, at most `limit` characters.
    A message must never echo an unbounded value (a 100 kB note, an expanded YAML alias bomb)."""
    text = value if isinstance(value, str) else repr(value)
    text = repr(text) if isinstance(value, str) else text
    if len(text) > limit:
        text = f"{text[: limit - 12]}… ({len(text):,} chars)"
    return text
