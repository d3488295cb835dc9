"""`mlgate predict`: score a file or a folder of files with a registered model, in chunks.

Every chunk goes through the project's contract (the input schema: the training schema
without the target). Rows that break it go to the quarantine output with their reasons;
the others are scored by the registered Pipeline. Everything is written into a temporary
folder beside the output and renamed into place only when the whole input is done, so a
failed run leaves nothing that looks like a result.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.errors import DataValidationError, MlgateError

if TYPE_CHECKING:
    import pandas as pd
    import pandera.pandas as pa

    from mlgate.config import Params

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
OUTPUT_COLUMNS = ("score", "decision", "prediction", "model_name", "model_version", "batch_id")
SCORED = "scored"
QUARANTINE = "quarantine"
SUMMARY = "summary.json"
TABLE_CHECKS = ("column_in_dataframe", "column_in_schema")


# ---------------------------------------------------------------- input


def input_files(spec: str) -> list[Path]:
    """A file, a folder of parts (every .csv/.parquet inside, sorted) or a glob."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FORMATS and p.is_file())
        if not files:
            raise MlgateError(f"--input {spec}: the folder holds no .csv or .parquet file")
    elif path.is_file():
        files = [path]
    elif glob.has_magic(spec):
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not files:
            raise MlgateError(f"--input {spec}: the pattern matches no file")
    else:
        raise MlgateError(f"--input {spec}: no such file or folder")
    unknown = [str(p) for p in files if p.suffix.lower() not in FORMATS]
    if unknown:
        raise MlgateError(f"--input: not a .csv or .parquet file: {', '.join(unknown)}")
    return files


def input_hash(files: Sequence[Path]) -> str:
    """sha256 over the files' names and bytes, in the order they are read."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def estimate_rows(files: Sequence[Path]) -> int | None:
    """Row count for the progress bar: Parquet metadata, newlines for CSV (an estimate)."""
    import pyarrow.parquet as pq

    total = 0
    try:
        for path in files:
            if FORMATS[path.suffix.lower()] == "parquet":
                total += pq.ParquetFile(path).metadata.num_rows
            else:
                with path.open("rb") as fh:
                    lines = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
                total += max(lines - 1, 0)
    except (OSError, ValueError):
        return None  # unreadable: reading it for real reports the error
    return total


def read_chunks(files: Sequence[Path], chunk_rows: int) -> Iterator[tuple[Path, pd.DataFrame]]:
    """Chunks of at most chunk_rows rows; CSV values stay text so the contract's coercion
    judges them (a "2.5" in an integer column is refused, not truncated)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in files:
        try:
            if FORMATS[path.suffix.lower()] == "parquet":
                for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
                    yield path, batch.to_pandas()
            else:
                with pd.read_csv(path, dtype=str, chunksize=chunk_rows) as reader:
                    yield from ((path, chunk) for chunk in reader)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise DataValidationError(f"{path}: not a readable CSV file: {err}") from None
        except (pa.ArrowException, OSError) as err:
            raise DataValidationError(f"{path}: not a readable Parquet file: {err}") from None


# ---------------------------------------------------------------- contract


@dataclass
class ChunkResult:
    valid: pd.DataFrame  # the contract's columns, coerced; index = input row numbers
    reasons: dict[int, list[str]]  # input row number -> "column: check: value"
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)


def check_chunk(frame: pd.DataFrame, schema: pa.DataFrameSchema, source: str) -> ChunkResult:
    """Split one chunk into rows that honour the contract (coerced) and rows that do not.

    A chunk that is not the table (a missing column) raises the contract's report. Checks
    on a whole column that errored because its values did not coerce are echoes of the
    per-row coercion failures; the rows left are validated again, so nothing is lost."""
    import pandera.errors as pae

    from mlgate import data

    columns = list(schema.columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        shown = ", ".join(repr(c) for c in missing)
        raise DataValidationError(
            f"{source}: not the table the model scores: missing column(s) {shown} "
            f"(the contract needs {', '.join(columns)})"
        )
    rows = frame[columns]
    reasons: dict[int, list[str]] = {}
    counts: Counter[tuple[str, str]] = Counter()
    for _ in range(len(columns) + 1):  # each pass can only remove rows
        try:
            return ChunkResult(schema.validate(rows, lazy=True), reasons, counts)
        except pae.SchemaErrors as err:
            cases = err.failure_cases
        per_row = cases[cases["index"].notna()]
        if per_row.empty:  # a check on the whole chunk failed: no row to blame
            raise DataValidationError(data.format_failures(cases, source, len(rows))) from None
        nulls = set(
            per_row.loc[per_row["check"] == "not_nullable", ["column", "index"]].itertuples(
                index=False, name=None
            )
        )
        for case in per_row.itertuples(index=False):
            check = str(case.check)
            if _echo(check, (case.column, case.index) in nulls, reasons.get(case.index, [])):
                continue
            reasons.setdefault(int(case.index), []).append(
                f"{case.column}: {check}: {_plain(case.failure_case)!r}"
            )
            counts[(str(case.column), check)] += 1
        rows = rows.drop(index=per_row["index"].astype(int).unique())
    raise MlgateError(f"{source}: the contract did not settle on the remaining rows")


def _echo(check: str, null: bool, said: list[str]) -> bool:
    """A type check that repeats what a coercion or null failure of the row already says."""
    if not check.startswith(("dtype(", "coerce_dtype(")):
        return False
    return null or (check.startswith("dtype(") and any("coerce_dtype(" in r for r in said))


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value


# ---------------------------------------------------------------- output


class TableWriter:
    """Appends chunks to one Parquet or CSV file; the first chunk fixes the columns."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path.with_suffix(f".{fmt}")
        self.fmt = fmt
        self.rows = 0
        self._parquet: Any = None
        self._schema: Any = None

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "csv":
            frame.to_csv(self.path, mode="a", header=self._schema is None, index=False)
            self._schema = list(frame.columns)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self._parquet is None:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                self._schema = table.schema
                self._parquet = pq.ParquetWriter(self.path, self._schema)
            else:
                try:
                    table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
                except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as err:
                    raise DataValidationError(
                        f"a later part of the input does not match the first one's columns "
                        f"or types: {err}"
                    ) from None
            self._parquet.write_table(table)
        self.rows += len(frame)

    def close(self, empty: pd.DataFrame) -> None:
        """Finish the file; with no row written, an empty table with the columns."""
        if self._schema is None:
            self.write(empty)
        if self._parquet is not None:
            self._parquet.close()


MARKER = ".mlgate-predict"  # in every output folder predict makes: what --overwrite may replace
_OUTPUT_NAMES = frozenset(
    {MARKER, SUMMARY}
    | {f"{kind}.{fmt}" for kind in (SCORED, QUARANTINE) for fmt in ("csv", "parquet")}
)


def check_output_folder(path: Path, overwrite: bool, inputs: Sequence[Path] = ()) -> None:
    """Refuse an --output folder the run could not create, or that --overwrite must not replace
    (io.check_output is the same check for an output file).

    --overwrite replaces only a folder an earlier `mlgate predict` made (its marker inside and
    nothing but its outputs): never the project, a git work tree, a folder holding the input
    or the working directory, and never a folder a user filled.
    """
    for parent in path.absolute().parents:
        if parent.exists() and not parent.is_dir():
            raise MlgateError(f"--output {path}: {parent} is a file, not a folder")
    if not (path.exists() or path.is_symlink()):
        return
    if not overwrite:
        raise MlgateError(f"--output {path} exists: choose another path or --overwrite")
    here = Path.cwd().resolve()
    target = path.resolve()
    why = None
    if path.is_symlink() or not path.is_dir():
        why = "it is not a folder (--overwrite replaces only a folder mlgate predict made)"
    elif target == here or target in here.parents:
        why = "it is the working directory or holds it"
    elif (target / ".git").exists():
        why = "it is a git work tree"
    elif any(target in f.resolve().parents for f in inputs):
        why = "it holds the input being scored"
    elif not (target / MARKER).is_file():
        why = f"mlgate predict did not make it (no {MARKER} inside)"
    else:
        other = sorted(p.name for p in target.iterdir() if p.name not in _OUTPUT_NAMES)
        if other:
            shown = ", ".join(other[:5]) + (", ..." if len(other) > 5 else "")
            why = f"it holds files mlgate predict did not write ({shown})"
    if why:
        raise MlgateError(
            f"--output {path}: refusing to replace it with --overwrite: {why}; "
            "choose a new output folder, or remove it yourself"
        )


@contextlib.contextmanager
def atomic_folder(path: Path, overwrite: bool, inputs: Sequence[Path] = ()) -> Iterator[Path]:
    """A temporary folder beside `path`, renamed to `path` only if the block succeeds.

    The folder carries predict's marker, so a later --overwrite knows mlgate made it; what
    `path` holds is checked again just before it is replaced.
    """
    check_output_folder(path, overwrite, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        (tmp / MARKER).write_text("made by mlgate predict: --overwrite may replace this folder\n")
        old = None
        if path.exists():
            check_output_folder(path, overwrite, inputs)
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- progress


class Progress:
    """A bar with rows/s and ETA on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, total: int | None, stream: Any = None, every: float = 5.0) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every
        self.started = self.last = time.perf_counter()

    def update(self, done: int, quarantined: int) -> None:
        now = time.perf_counter()
        if not self.tty and now - self.last < self.every:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        text = f"predict: {done:,} rows read, {quarantined:,} quarantined, {rate:,.0f} rows/s"
        if self.total:
            share = min(done / self.total, 1.0)
            eta = max(self.total - done, 0) / rate if rate else 0.0
            if self.tty:
                bar = "#" * int(share * 30)
                text = f"[{bar:<30}] {share:4.0%} " + text.removeprefix("predict: ")
            text += f", ETA {eta:.0f}s"
        if self.tty:
            self.stream.write("\r" + text + "\033[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class Request:
    model: str
    input: str
    output: Path
    fmt: str = "parquet"
    on_invalid: str = "quarantine"
    keys: tuple[str, ...] | None = None  # None: every input column
    chunk_rows: int = 50_000
    overwrite: bool = False
    engine: str = "local"
    spark_master: str = "local[*]"
    max_quarantined_share: float = 1.0  # above it: exit 1 once the output is written


class LoadedModel:
    """The registered version, its lineage and how it turns rows into output columns."""

    def __init__(self, params: Params, ref: str) -> None:
        import mlflow.sklearn

        from mlgate.serving.build import lineage_of, resolve_version

        self.version = resolve_version(params, ref)
        self.lineage = {"ref": ref, **lineage_of(self.version)}
        self.name, self.number = self.version.name, str(self.version.version)
        self.pipeline = mlflow.sklearn.load_model(f"models:/{self.name}/{self.number}")
        self.features = list(params.features.all)
        self.regression = params.data.task == "regression"
        self.threshold = params.evaluate.threshold
        self.positive = params.data.positive_label
        if not self.regression:
            classes = [c.item() if hasattr(c, "item") else c for c in self.pipeline.classes_]
            others = [c for c in classes if c != self.positive]
            self.negative = others[0] if len(others) == 1 else f"not {self.positive}"

    def columns(self, valid: pd.DataFrame) -> dict[str, Any]:
        import numpy as np

        from mlgate.model import positive_scores

        features = valid[self.features]
        if self.regression:
            return {"prediction": self.pipeline.predict(features)}
        score = positive_scores(self.pipeline, features, self.positive)
        decision = np.where(score >= self.threshold, self.positive, self.negative)
        return {"score": score, "decision": decision}


@dataclass
class Counts:
    read: int = 0
    scored: int = 0
    quarantined: int = 0
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)


def score_chunk(
    chunk: pd.DataFrame,
    schema: pa.DataFrameSchema,
    model: LoadedModel,
    keys: list[str],
    batch_id: str,
    source: str,
) -> tuple[pd.DataFrame, pd.DataFrame, ChunkResult]:
    """One chunk (indexed by input row number) -> (scored rows, quarantined rows, result).
    The local engine calls it per chunk, the Spark engine per Arrow batch of a partition."""
    result = check_chunk(chunk, schema, source)
    bad = chunk.loc[sorted(result.reasons)]
    quarantined = _quarantine_rows(bad, result, batch_id)
    rows = chunk.loc[result.valid.index, keys].copy()
    for column in set(keys) & set(result.valid.columns):
        rows[column] = result.valid[column]  # the contract's types, not the text
    for column, values in model.columns(result.valid).items():
        rows[column] = values
    rows["model_name"] = model.name
    rows["model_version"] = model.number
    rows["batch_id"] = batch_id
    return rows, quarantined, result


def _score_local(
    params: Params, request: Request, model: LoadedModel, files: list[Path], tmp: Path,
    batch_id: str, stream: Any,
) -> Counts:  # fmt: skip
    import pandas as pd

    from mlgate import data

    schema = data.input_schema(params)
    progress = Progress(estimate_rows(files), stream)
    counts = Counts()
    keys: list[str] | None = None
    columns: list[str] = []
    scored_out = TableWriter(tmp / SCORED, request.fmt)
    quarantine_out = TableWriter(tmp / QUARANTINE, request.fmt)
    for path, chunk in read_chunks(files, request.chunk_rows):
        chunk.index = pd.RangeIndex(counts.read, counts.read + len(chunk))
        if keys is None:
            columns = list(chunk.columns)
            keys = _keys(request.keys, columns, path)
        rows, quarantined, result = score_chunk(chunk, schema, model, keys, batch_id, str(path))
        counts.read += len(chunk)
        if result.reasons and request.on_invalid == "fail":
            raise DataValidationError(_refusal(result, path))
        if len(quarantined):
            quarantine_out.write(quarantined)
            counts.reasons.update(result.counts)
        if len(rows):
            scored_out.write(rows)
        progress.update(counts.read, quarantine_out.rows)
    progress.close()
    if keys is None:
        raise DataValidationError(f"--input {request.input}: no rows to score")
    scored_out.close(_empty_scored(keys, model))
    quarantine_out.close(pd.DataFrame(columns=[*columns, "row", "reason", "batch_id"]))
    counts.scored, counts.quarantined = scored_out.rows, quarantine_out.rows
    return counts


def predict(params: Params, request: Request, stream: Any = None) -> dict[str, Any]:
    """Score the input into request.output; returns the summary (also written and logged)."""
    started = time.perf_counter()
    started_at = datetime.now(UTC)
    batch_id = f"{started_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    files = input_files(request.input)
    check_output_folder(request.output, request.overwrite, files)
    model = LoadedModel(params, request.model)
    out = print if stream is None else (lambda *a: print(*a, file=stream))
    out(
        f"predict: {model.name} version {model.number} ({request.model}) on {len(files)} "
        f"file(s), engine {request.engine}"
    )
    with atomic_folder(request.output, request.overwrite, files) as tmp:
        streaming = time.perf_counter()  # rows/s counts the rows' work, not imports and loading
        if request.engine == "spark":
            from mlgate.batch_spark import score_spark

            counts = score_spark(params, request, model, files, tmp, batch_id, out)
        else:
            counts = _score_local(params, request, model, files, tmp, batch_id, stream)
        seconds = time.perf_counter() - streaming
        summary = {
            "batch_id": batch_id,
            "started_at": started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "engine": request.engine,
            "task": params.data.task,
            "model": model.lineage,
            "input": {"spec": request.input, "files": [str(f) for f in files]},
            "input_sha256": input_hash(files),
            "output": str(request.output),
            "format": request.fmt,
            "rows_read": counts.read,
            "rows_scored": counts.scored,
            "rows_quarantined": counts.quarantined,
            "quarantined_share": round(counts.quarantined / counts.read, 6) if counts.read else 0,
            "max_quarantined_share": request.max_quarantined_share,
            "quarantine_reasons": [
                {"column": c, "check": k, "rows": n} for (c, k), n in counts.reasons.most_common()
            ],
            "seconds": round(seconds, 3),
            "rows_per_second": round(counts.read / seconds, 1) if seconds else None,
            "total_seconds": round(time.perf_counter() - started, 3),
        }
        summary["mlflow_run_id"] = _log_run(summary, model)
        with (tmp / SUMMARY).open("w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
    out(summary_text(summary))
    _to_github(summary)
    if summary["quarantined_share"] > request.max_quarantined_share:
        raise DataValidationError(
            f"predict: {counts.quarantined:,} of {counts.read:,} rows "
            f"({summary['quarantined_share']:.2%}) were quarantined, more than "
            f"batch.max_quarantined_share ({request.max_quarantined_share:.2%}); the output "
            f"is kept in {request.output} for inspection (reasons in its {QUARANTINE} file)"
        )
    return summary


def _keys(wanted: tuple[str, ...] | None, columns: list[str], path: Path) -> list[str]:
    keys = list(wanted) if wanted else columns
    missing = [k for k in keys if k not in columns]
    if missing:
        raise MlgateError(f"{path}: key column(s) {missing} are not in the input ({columns})")
    clash = [k for k in keys if k in OUTPUT_COLUMNS]
    if clash:
        raise MlgateError(
            f"{path}: input column(s) {clash} clash with the output's own columns; "
            "choose the key columns with --keys (or batch.keys)"
        )
    return keys


def _refusal(result: ChunkResult, path: Path) -> str:
    lines = [f"{path}: {len(result.reasons)} row(s) break the contract (--on-invalid fail):"]
    for (column, check), n in result.counts.most_common():
        lines.append(f"  - column {column!r} fails {check}: {n} row(s)")
    first = sorted(result.reasons)[:5]
    lines.append("  first rows (0-based, across the input): " + ", ".join(map(str, first)))
    return "\n".join(lines)


def _quarantine_rows(bad: pd.DataFrame, result: ChunkResult, batch_id: str) -> pd.DataFrame:
    """Every input column as text (a broken value has no reliable type), plus the reasons."""
    rows = bad.astype("string")
    rows["row"] = bad.index.astype("int64")
    rows["reason"] = ["; ".join(result.reasons[i]) for i in bad.index]
    rows["batch_id"] = batch_id
    return rows


def _empty_scored(keys: list[str], model: LoadedModel) -> Any:
    import pandas as pd

    out = ["prediction"] if model.regression else ["score", "decision"]
    columns = [*keys, *out, "model_name", "model_version", "batch_id"]
    return pd.DataFrame(columns=columns)


def _log_run(summary: dict[str, Any], model: LoadedModel) -> str:
    """One MLflow run per batch, tagged with the model version that scored it."""
    import mlflow

    tags = {
        "mlgate.stage": "batch",
        "mlgate.batch_id": summary["batch_id"],
        "mlgate.model_name": model.name,
        "mlgate.model_version": model.number,
        "mlgate.model_run_id": model.lineage.get("run_id", ""),
        "mlgate.input_sha256": summary["input_sha256"],
    }
    with mlflow.start_run(run_name=f"batch-{summary['batch_id']}", tags=tags) as run:
        mlflow.log_params(
            {"input": summary["input"]["spec"][:500], "output": summary["output"][:500]}
        )
        mlflow.log_metrics(
            {
                k: float(summary[k])
                for k in ("rows_read", "rows_scored", "rows_quarantined", "seconds")
            }
            | {"rows_per_second": float(summary["rows_per_second"] or 0)}
        )
        mlflow.log_dict(summary, "batch_summary.json")
        return str(run.info.run_id)


def summary_text(summary: dict[str, Any]) -> str:
    model = summary["model"]
    return "\n".join(
        [
            f"predict: batch {summary['batch_id']} -> {summary['output']}",
            f"  model:       {model['model_name']} version {model['version']} "
            f"(run {model.get('run_id') or '?'}, commit {model.get('git_commit', '?')})",
            f"  input:       {summary['input']['spec']} (sha256 {summary['input_sha256'][:12]})",
            f"  rows:        {summary['rows_read']:,} read, {summary['rows_scored']:,} scored, "
            f"{summary['rows_quarantined']:,} quarantined",
            f"  time:        {summary['seconds']:.1f}s reading, checking and scoring "
            f"({summary['rows_per_second'] or 0:,.0f} rows/s); {summary['total_seconds']:.1f}s "
            "in all",
            f"  MLflow run:  {summary['mlflow_run_id']}",
        ]
    )


def summary_markdown(summary: dict[str, Any]) -> str:
    """The job summary of a batch (GitHub's $GITHUB_STEP_SUMMARY)."""
    model = summary["model"]
    share, limit = summary["quarantined_share"], summary["max_quarantined_share"]
    verdict = "above" if share > limit else "within"
    lines = [
        f"## mlgate predict: batch `{summary['batch_id']}`",
        "",
        "| rows read | scored | quarantined | rows/s | model | MLflow run |",
        "|---|---|---|---|---|---|",
        f"| {summary['rows_read']:,} | {summary['rows_scored']:,} | "
        f"{summary['rows_quarantined']:,} ({share:.2%}, {verdict} the limit {limit:.2%}) | "
        f"{summary['rows_per_second'] or 0:,.0f} | {model['model_name']} version "
        f"{model['version']} ({model['ref']}) | `{summary['mlflow_run_id']}` |",
        "",
        f"Input `{summary['input']['spec']}` (sha256 `{summary['input_sha256'][:12]}`), "
        f"output `{summary['output']}`, engine {summary['engine']}.",
    ]
    if summary["quarantine_reasons"]:
        lines += ["", "| quarantined: column | check | rows |", "|---|---|---|"]
        lines += [
            f"| {r['column']} | `{r['check']}` | {r['rows']:,} |"
            for r in summary["quarantine_reasons"][:10]
        ]
    return "\n".join(lines) + "\n"


def _to_github(summary: dict[str, Any]) -> None:
    """Job summary and step outputs on GitHub Actions (nothing elsewhere)."""
    from mlgate.github import write_outputs

    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(summary_markdown(summary))
    write_outputs(
        batch_id=summary["batch_id"],
        rows_read=str(summary["rows_read"]),
        rows_scored=str(summary["rows_scored"]),
        rows_quarantined=str(summary["rows_quarantined"]),
        model_version=str(summary["model"]["version"]),
    )


# ---------------------------------------------------------------- CLI


def _predict(args: argparse.Namespace) -> int:
    from mlgate.config import load_params

    params = load_params(args.params)
    batch = params.batch
    keys = tuple(k for k in args.keys.split(",") if k) if args.keys else batch.keys or None
    request = Request(
        model=args.model or batch.model,
        input=args.input,
        output=args.output,
        fmt=args.format or batch.format,
        on_invalid=args.on_invalid,
        keys=keys,
        chunk_rows=args.chunk_rows or batch.chunk_rows,
        overwrite=args.overwrite,
        engine=args.engine,
        spark_master=args.spark_master,
        max_quarantined_share=(
            batch.max_quarantined_share
            if args.max_quarantined_share is None
            else args.max_quarantined_share
        ),
    )
    predict(params, request)
    return 0


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text!r}")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "predict",
        parents=[common],
        help="score a CSV/Parquet file or folder with a registered model (batch)",
        description="Stream the input in chunks through the data contract and the "
        "registered model. Rows that break the contract go to quarantine with their "
        "reasons; the others are scored. OUTPUT is a folder (scored.parquet, "
        "quarantine.parquet, summary.json) that appears only when the run succeeds. "
        "See docs/BATCH.md.",
    )
    p.add_argument("--input", required=True, metavar="PATH", help="a file, a folder or a glob")
    p.add_argument("--output", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument(
        "--model", default=None, help="alias or version number (default: batch.model, production)"
    )
    p.add_argument(
        "--format", choices=["parquet", "csv"], default=None, help="default: batch.format"
    )
    p.add_argument(
        "--on-invalid",
        choices=["quarantine", "fail"],
        default="quarantine",
        help="rows that break the contract: quarantine them, or fail with no output "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--keys",
        default=None,
        help="comma-separated input columns copied to the output "
        "(default: batch.keys, or every input column)",
    )
    p.add_argument(
        "--chunk-rows",
        type=_positive,
        default=None,
        help="rows per chunk (default: batch.chunk_rows)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an output folder an earlier `mlgate predict` made (never any other "
        "folder: the project, a git work tree, the input's folder, a folder you filled)",
    )
    p.add_argument(
        "--max-quarantined-share",
        type=_share,
        default=None,
        metavar="SHARE",
        help="exit 1 (the output is kept) when quarantined rows / rows read exceed it "
        "(default: batch.max_quarantined_share, 1.0: never)",
    )
    p.add_argument(
        "--engine",
        choices=["local", "spark"],
        default="local",
        help="local: stream in chunks in this process; spark: each partition on Apache "
        "Spark (pip install 'mlgate[spark]', Java 17) (default: %(default)s)",
    )
    p.add_argument(
        "--spark-master", default="local[*]", help="Spark master URL (default: %(default)s)"
    )
    p.set_defaults(handler=_predict)
