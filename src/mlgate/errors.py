"""Errors a user can act on: the CLI prints them without a traceback and exits non-zero."""

from __future__ import annotations


class MlgateError(Exception):
    """A problem the user can fix; the message says what is wrong and where."""

    exit_code = 2


class GateFailed(MlgateError):
    """The model did not pass one or more gates."""

    exit_code = 1


class DataValidationError(MlgateError):
    """The data broke its contract (the pandera schema)."""

    exit_code = 1
