"""File helpers: every output is written to a temporary file and renamed into place."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from mlgate.errors import MlgateError, shown

# `dvc` and `git` run by mlgate end by then (subprocess.TimeoutExpired: the CLI names the
# command): a DVC remote or a git server that stalls is not waited on for ever
DVC_DEADLINE = 3600.0


def check_output(path: Path | str, what: str = "output") -> Path:
    """Refuse, before any work is done, a file path mlgate could not write: `what` names the
    argument (`--output`, `$GITHUB_OUTPUT`), the message says what is wrong and what to do.
    Probes for real (a temporary file made and removed in the nearest existing folder): a
    permission check alone passes for root in /proc or on a read-only mount."""
    path = Path(path)
    named = f"{what} {shown(str(path), 200)}"
    if path.is_dir():
        raise MlgateError(f"{named} is a folder: pass a file path")
    folder = path.parent
    while not folder.is_dir():
        if folder.exists() or folder.is_symlink():
            raise MlgateError(f"{named}: {shown(str(folder), 200)} is not a folder")
        if folder == folder.parent:
            break
        folder = folder.parent
    try:
        if path.is_file():  # appending nothing: opens it as the writers will, changes nothing
            path.open("a", encoding="utf-8").close()
        else:
            fd, probe = tempfile.mkstemp(prefix=".mlgate-probe.", dir=folder)
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise MlgateError(
            f"{named} cannot be written ({err.strerror or err}): pass a path in a writable folder"
        ) from None
    return path


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError:
        check_output(path)  # says what is wrong with the path
        raise
    os.close(fd)
    try:
        yield Path(tmp)
        try:
            os.replace(tmp, path)
        except OSError:
            check_output(path)
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path | str, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: Path | str, what: str = "file") -> Any:
    try:
        with Path(path).open(encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise MlgateError(f"{what} {path} not found: run `dvc repro` first") from None
    except IsADirectoryError:
        raise MlgateError(f"{what} {path} is a folder, not a JSON file") from None
    except UnicodeDecodeError:
        raise MlgateError(f"{what} {path} is not UTF-8 text: is it the JSON file?") from None
    except ValueError as err:  # json.JSONDecodeError, or a number too long to convert
        raise MlgateError(f"{what} {path} is not valid JSON: {shown(str(err), 200)}") from None


def write_with(path: Path | str, writer: Callable[[Path], None]) -> None:
    """Write through a library function (`df.to_csv`, `joblib.dump`) atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def import_ref(ref: str) -> Any:
    """Import `package.module:Name`, with an error that names the reference."""
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise MlgateError(f"cannot import {module_name!r} (from {ref!r}): {err}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise MlgateError(f"{module_name!r} has no attribute {attr!r} (from {ref!r})") from None


def read_bounded(resp: Any, deadline: float, endpoint: str, limit: int) -> bytes:
    """An HTTP response body, read as it arrives, refused past `limit` bytes or the `deadline`
    (a time.monotonic() value): a socket timeout alone never ends a body that drips."""
    read = getattr(resp, "read1", None) or resp.read
    chunks: list[bytes] = []
    size = 0
    while chunk := read(65_536):
        size += len(chunk)
        if size > limit:
            raise MlgateError(f"{endpoint}: the answer is over {limit:,} bytes: refused")
        if time.monotonic() > deadline:
            raise MlgateError(
                f"{endpoint}: no complete answer in time ({size:,} bytes so far): try again later"
            )
        chunks.append(chunk)
    return b"".join(chunks)


# More nodes than this once YAML's aliases are expanded is refused: a params file is a few
# hundred; a nested alias "bomb" of a few lines is billions, and would hang whatever walks it.
MAX_YAML_NODES = 100_000
MAX_YAML_BYTES = 10_000_000
MAX_YAML_DEPTH = 100


def load_yaml(stream: Any, what: str) -> Any:
    """yaml.safe_load with a bound: refuses a document that expands past MAX_YAML_NODES nodes
    (aliases counted each time they are used) or is nested past Python's recursion limit."""
    text = stream.read(MAX_YAML_BYTES + 1)
    if len(text) > MAX_YAML_BYTES:
        raise MlgateError(f"{what} is over {MAX_YAML_BYTES:,} characters: not a params file")
    # PyYAML takes seconds per thousand levels of [ or { (minutes for a hostile file): refuse
    # deep flow nesting before parsing (a bracket inside a quoted string only counts high)
    depth = 0
    for char in text:
        depth += (char in "[{") - (char in "]}")
        if depth > MAX_YAML_DEPTH:
            raise MlgateError(f"{what}: the YAML is nested over {MAX_YAML_DEPTH} levels: refused")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_nodes(node, {}) > MAX_YAML_NODES:
            raise MlgateError(
                f"{what}: the YAML expands to more than {MAX_YAML_NODES:,} values "
                "(aliases repeated inside aliases?): refused"
            )
        return None if node is None else loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise MlgateError(f"{what} is not valid YAML{where}: {shown(problem, 200)}") from None
    except RecursionError:
        raise MlgateError(f"{what}: the YAML is nested too deeply: refused") from None
    finally:
        loader.dispose()


def _expanded_nodes(node: yaml.Node, seen: dict[int, int]) -> int:
    """How many nodes the document has once aliases are expanded (each node walked once)."""
    if id(node) in seen:
        return seen[id(node)]
    seen[id(node)] = 1  # a node that contains itself (a recursive alias) counts once
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_nodes(child, seen) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded_nodes(k, seen) + _expanded_nodes(v, seen) for k, v in node.value)
    seen[id(node)] = total
    return total
