"""The `mlgate` command: pipeline stages, registry and release commands, one entry point."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from mlgate import __version__
from mlgate.errors import EXIT_INTERNAL, EXIT_USAGE, MlgateError, shown


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error bounded: it echoes the bad value (`invalid choice: …`)."""

    def error(self, message: str) -> NoReturn:
        if len(message) > 500:
            message = f"{message[:300]}… ({len(message):,} chars)"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mlgate",
        description="CI/CD for a model repository: the DVC pipeline stages, the MLflow "
        "registry, gates and releases. Run from the repository root.",
        epilog="Run the whole pipeline with `dvc repro` (or `make run`). "
        "Configuration: params.yaml (see README.md#configuration).",
    )
    parser.add_argument("--version", action="version", version=f"mlgate {__version__}")
    common = _Parser(add_help=False)
    common.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        metavar="FILE",
        help="the configuration file (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    from mlgate.cli import data, github, loop, pipeline, registry, release, scaffold, serving

    # Feature modules are imported by the handlers, not here: `mlgate --help` stays fast.
    for group in (pipeline, registry, data, serving, loop, release, github, scaffold):
        group.add_commands(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. The one place errors become exit codes (README.md#exit-codes): a user's
    mistake or a remote's failure is one line on stderr, never a traceback; a bug in mlgate is
    one line and exit 70, and `MLGATE_DEBUG=1` prints the full trace of either."""
    try:
        try:
            return _main(argv)
        finally:
            if sys.stdout is not None:  # None when mlgate was started with stdout closed
                sys.stdout.flush()  # inside the try: a closed pipe is seen here, not at exit
    except BrokenPipeError:
        # The reader went away (`mlgate lineage … | head`): stop quietly, as `cat` does, and
        # keep Python's own flush at exit from writing to the closed pipe again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _main(argv: Sequence[str] | None) -> int:
    # MLflow imports PySpark whenever it is installed (the spark extra), and PySpark warns on
    # every import that it does not support pandas 3 yet: four lines of noise per command.
    warnings.filterwarnings(
        "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
    )
    parser = build_parser()
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        _check_github_files()
        code = int(args.handler(args))
    except (SystemExit, BrokenPipeError):
        raise
    except BaseException as err:  # the boundary: reported with its exit code, never carried on
        # the command as typed (`github setup`): subcommand groups keep theirs in *_command
        words = [v for k, v in vars(args).items() if k.endswith("command") and isinstance(v, str)]
        return _report(" ".join(words), err)
    _timing(args, started)
    return code


def _check_github_files() -> None:
    """GitHub Actions' step output and job summary files, checked before any work: a command
    that did its work and then failed to report it would look, to the next step, as if it had
    not run (a deployment done, its outputs lost)."""
    from mlgate.io import check_output

    for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        if value := os.environ.get(name):
            check_output(value, f"${name}")


def _report(command: str, err: BaseException) -> int:
    """Print what went wrong in one line (MlgateError: its own message) and return the exit code."""
    code, message = _classify(err)
    if os.environ.get("MLGATE_DEBUG", "") not in ("", "0"):
        traceback.print_exception(err, file=sys.stderr)
    print(f"mlgate {command}: {message}", file=sys.stderr)
    return code


def _classify(err: BaseException) -> tuple[int, str]:
    if isinstance(err, MlgateError):
        return err.exit_code, f"error: {err}"
    if isinstance(err, KeyboardInterrupt):
        return 130, "interrupted"
    if isinstance(err, OSError):
        # a user's path (FileNotFoundError, IsADirectoryError, PermissionError, …) or a remote
        # (ConnectionRefusedError, TimeoutError, urllib's URLError): what failed and where
        where = " and ".join(shown(f, 200) for f in (err.filename, err.filename2) if f)
        what = err.strerror or str(err) or type(err).__name__
        return EXIT_USAGE, f"error: {shown(what, 300)[1:-1]}{f': {where}' if where else ''}"
    if isinstance(err, subprocess.TimeoutExpired):  # a git, dvc, docker … past its deadline
        cmd = err.cmd if isinstance(err.cmd, str) else " ".join(map(str, err.cmd))
        return (
            EXIT_USAGE,
            f"error: `{shown(cmd, 120)[1:-1]}` did not finish in {round(err.timeout, 1):g} s",
        )
    if isinstance(err, UnicodeDecodeError):
        return EXIT_USAGE, (
            f"error: an input is not UTF-8 text (byte {err.object[err.start : err.start + 1]!r} "
            f"at position {err.start}): pass a text file"
        )
    if type(err).__module__.startswith(("yaml", "http.client")):  # a user's YAML; a remote
        return EXIT_USAGE, f"error: {type(err).__name__}: {shown(str(err), 300)[1:-1]}"
    return EXIT_INTERNAL, (
        f"internal error: {type(err).__name__}: {shown(str(err), 300)[1:-1]} — a bug in "
        "mlgate; rerun with MLGATE_DEBUG=1 for the traceback and report it"
    )


def _timing(args: Any, started: float) -> None:
    from mlgate.cli.pipeline import STAGES

    if args.command in STAGES:
        print(f"{args.command}: done in {time.perf_counter() - started:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
