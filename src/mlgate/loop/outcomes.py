"""`mlgate outcomes import`: late ground truth in bulk, checked against the recorded predictions,
named by request id or by the key columns of data.roles (the latest prediction for the key)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate import io
from mlgate.errors import MlgateError
from mlgate.serving.feedback import SCHEMA_VERSION, record_time

if TYPE_CHECKING:
    import pandas as pd

    from mlgate.config import Params

REQUIRED = ("request_id", "outcome")
EXAMPLES = 5  # problems shown per kind; the counts cover them all


@dataclass(frozen=True)
class Problem:
    # unknown request id | unknown key | row not recorded | wrong type | conflicting duplicate
    kind: str
    line: int  # data row of the file, 1 = the first row after the header
    column: str
    value: Any


def read_file(path: Path) -> pd.DataFrame:
    """CSV or Parquet, every value as read (types are checked row by row, not coerced)."""
    import pandas as pd

    if not path.is_file():
        raise MlgateError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # as text: "1" and "1.5" stay what the file says, the check decides what they are
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise MlgateError(f"{path}: not a readable {suffix[1:]} file: {err}") from None
    raise MlgateError(f"{path}: expected a .csv or .parquet file")


def known_classes(params: Params, decisions: set[Any]) -> list[Any]:
    """The labels an outcome may take: the decisions the service gave (a multiclass model's
    classes), the positive label (two classes) and the classes the data contract allows for
    the target (its `isin` check)."""
    from mlgate.pipeline import data

    classes = set(decisions)
    if params.data.task == "classification":
        classes.add(params.data.positive_label)
    column = data.load_schema(params).columns.get(params.data.target)
    for check in getattr(column, "checks", ()):
        allowed = (check.statistics or {}).get("allowed_values")
        if check.name == "isin" and allowed:
            classes.update(allowed)
    return sorted(classes, key=str)


def _label(value: Any, classes: list[Any]) -> tuple[bool, Any]:
    """The class `value` names (1, 1.0 and "1" all name class 1), or (False, None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False, None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    for c in classes:
        if str(c) == text:
            return True, c
    return False, None


def _number(value: Any) -> tuple[bool, float | None]:
    if isinstance(value, bool):
        return False, None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False, None
    return (True, number) if math.isfinite(number) else (False, None)


def _row_index(value: Any) -> int | None:
    ok, number = _number(value)
    if not ok or number is None or not number.is_integer() or number < 0:
        return None
    return int(number)


def check_outcomes(
    frame: pd.DataFrame, recorded: dict[str, set[int]], task: str, classes: list[Any]
) -> tuple[list[dict[str, Any]], list[Problem], int]:
    """Validate every row; (outcome records, problems, identical duplicates dropped)."""
    problems: list[Problem] = []
    chosen: dict[tuple[str, int], tuple[int, Any]] = {}
    duplicates = 0
    has_row = "row" in frame.columns
    for line, request_id, outcome, row_value in zip(
        frame.index + 1,  # the file's row (a frame by key keeps the rows it could name)
        frame["request_id"],
        frame["outcome"],
        frame["row"] if has_row else [0] * len(frame),
        strict=True,
    ):
        request_id = "" if request_id is None else str(request_id).strip()
        if request_id not in recorded:
            problems.append(Problem("unknown request id", line, "request_id", request_id))
            continue
        row = _row_index(row_value) if has_row and str(row_value).strip() != "" else 0
        if row is None:
            problems.append(Problem("wrong type", line, "row", row_value))
            continue
        if row not in recorded[request_id]:
            problems.append(Problem("row not recorded", line, "row", row))
            continue
        ok, value = _number(outcome) if task == "regression" else _label(outcome, classes)
        if not ok:
            problems.append(Problem("wrong type", line, "outcome", outcome))
            continue
        key = (request_id, row)
        if key in chosen:
            if chosen[key][1] != value:
                problems.append(Problem("conflicting duplicate", line, "outcome", outcome))
            else:
                duplicates += 1
            continue
        chosen[key] = (line, value)
    ts = record_time()
    records = [
        {
            "schema": SCHEMA_VERSION,
            "kind": "outcome",
            "ts": ts,
            "request_id": request_id,
            "row": row,
            "outcome": value,
            "source": "import",
        }
        for (request_id, row), (_, value) in chosen.items()
    ]
    return records, problems, duplicates


def format_problems(
    path: Path, problems: list[Problem], rows: int, task: str, classes: list[Any]
) -> str:
    kinds: dict[str, list[Problem]] = {}
    for p in problems:
        kinds.setdefault(p.kind, []).append(p)
    lines = [f"{path}: {len(problems)} of {rows} rows refused, nothing imported"]
    for kind, found in kinds.items():
        lines.append(f"  {kind}: {len(found)} rows, e.g.")
        for p in found[:EXAMPLES]:
            lines.append(f"    row {p.line}, column {p.column}: {p.value!r}")
    expected = "a finite number" if task == "regression" else f"one of the classes {classes}"
    lines.append(
        f"  (rows count from 1 after the header; an outcome must be {expected}; request_id "
        "and row, or the key, must name a recorded prediction)"
    )
    return "\n".join(lines)


def _key_text(value: Any) -> str | None:
    """A key's value as text, whoever wrote it: 100244 (JSON), "100244" (CSV) and 100244.0 (a
    Parquet column with gaps) are one customer; missing or blank is None."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip() or None


@dataclass
class Recorded:
    """What the folder's prediction records answer to: request id -> its rows, the decisions
    given (a two-class model's `decision`, a multiclass model's `class`), and for the key
    columns asked for, their values -> (time, request id, row) of the latest prediction."""

    rows: dict[str, set[int]]
    decisions: set[Any]
    by_key: dict[tuple[str | None, ...], tuple[str, str, int]]


def recorded_predictions(folder: Path, keys: Sequence[str] = ()) -> Recorded:
    from mlgate.serving.feedback import read_records

    found = Recorded({}, set(), {})
    for r in read_records(folder):
        if r.get("kind") != "prediction" or r.get("request_id") is None:
            continue
        request_id, row = str(r["request_id"]), int(r.get("row", 0))
        found.rows.setdefault(request_id, set()).add(row)
        decided = r.get("decision", r.get("class"))
        if decided is not None:
            found.decisions.add(decided)
        inputs = r.get("inputs") or {}
        key = tuple(_key_text(inputs.get(k)) for k in keys)
        latest = (str(r.get("ts", "")), request_id, row)
        if keys and None not in key and latest > found.by_key.get(key, ("",)):
            found.by_key[key] = latest
    return found


def named_by_key(
    frame: pd.DataFrame, keys: list[str], recorded: Recorded
) -> tuple[pd.DataFrame, list[Problem]]:
    """The rows of a file that names predictions by key, each given the request id and row of
    the latest prediction that carried its key (a customer scored twice: what became of the
    last answer), and a problem for each key no prediction carried."""
    import pandas as pd

    problems, ids, rows = [], {}, {}
    for line, values in zip(frame.index, zip(*(frame[k] for k in keys), strict=True), strict=True):
        found = recorded.by_key.get(tuple(_key_text(v) for v in values))
        if found is None:
            shown = values[0] if len(keys) == 1 else dict(zip(keys, values, strict=True))
            problems.append(Problem("unknown key", line + 1, ", ".join(keys), shown))
        else:
            ids[line], rows[line] = found[1], found[2]
    named = frame.loc[list(ids)].assign(request_id=pd.Series(ids), row=pd.Series(rows))
    return named, problems


def import_outcomes(params: Params, file: Path, feedback: Path | None = None) -> Path:
    """Validate `file` against the recorded predictions; write its outcome records atomically
    to <feedback>/outcomes-import-<UTC>.jsonl. Nothing is written when any row is refused."""
    from mlgate.loop.monitor import feedback_folder

    folder = feedback_folder(params, feedback)
    frame = read_file(file)
    # no request id: the key columns of data.roles the file has name the predictions
    keys = [] if "request_id" in frame.columns else _file_keys(params, frame)
    missing = [c for c in REQUIRED if c not in frame.columns and not (keys and c == "request_id")]
    if missing:
        named = params.data.role_columns("key")
        by_key = f" (or the key column(s) {named} of data.roles)" if named else ""
        raise MlgateError(
            f"{file}: missing column(s) {missing} (it has {list(frame.columns)}; "
            f"expected request_id{by_key}, outcome and optionally row)"
        )
    if frame.empty:
        raise MlgateError(f"{file}: no rows")
    recorded = recorded_predictions(folder, keys)
    if not recorded.rows:
        raise MlgateError(f"{folder}: no prediction records to attach outcomes to")
    task = params.data.task
    classes = [] if task == "regression" else known_classes(params, recorded.decisions)
    unnamed: list[Problem] = []
    read = len(frame)
    if keys:
        frame, unnamed = named_by_key(frame, keys, recorded)
    records, problems, duplicates = check_outcomes(frame, recorded.rows, task, classes)
    problems = sorted([*unnamed, *problems], key=lambda p: p.line)
    if problems:
        raise MlgateError(format_problems(file, problems, read, task, classes))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    out = folder / f"outcomes-import-{stamp}.jsonl"
    io.write_text(out, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    predictions = sum(len(rows) for rows in recorded.rows.values())
    joined = f", joined by {', '.join(keys)}" if keys else ""
    print(
        f"outcomes import: {len(records)} outcomes written to {out} "
        f"({read} rows read{joined}, {duplicates} identical duplicates skipped; "
        f"{predictions} recorded predictions)"
    )
    return out


def _file_keys(params: Params, frame: pd.DataFrame) -> list[str]:
    return [k for k in params.data.role_columns("key") if k in frame.columns]
