"""The batch engines' shared part: the input files, the contract check of a chunk, scoring it, the
output tables. `mlgate predict` (loop.batch) and its Spark engine (loop.spark) both use it."""

from __future__ import annotations

import glob
import hashlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.errors import DataValidationError, MlgateError

if TYPE_CHECKING:
    import pandas as pd
    import pandera.pandas as pa

    from mlgate.config import Params


FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


OUTPUT_COLUMNS = ("score", "decision", "prediction", "model_name", "model_version", "batch_id")
# a multiclass model's output: the decided class and one probability column per class
CLASS_COLUMN = "class"
PROBABILITY_PREFIX = "p_"


def probability_column(label: Any) -> str:
    """The output column of class `label`'s probability: `p_<label>` (`p_barolo`, `p_2`)."""
    return f"{PROBABILITY_PREFIX}{label}"


SCORED = "scored"


QUARANTINE = "quarantine"


SUMMARY = "summary.json"


TABLE_CHECKS = ("column_in_dataframe", "column_in_schema")


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

    from mlgate.pipeline import data

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
    explain: int | None = None  # --explain K: each row's top K reasons as columns


REASON_PREFIX = "reason_"


def reason_columns(k: int) -> list[str]:
    """The columns of each row's top k reasons: reason_1, reason_1_contribution, …"""
    return [f"{REASON_PREFIX}{i}{part}" for i in range(1, k + 1) for part in ("", "_contribution")]


class LoadedModel:
    """The registered version, its lineage and how it turns rows into output columns."""

    def __init__(self, params: Params, ref: str) -> None:
        import mlflow.sklearn

        from mlgate.serving.build import lineage_of, resolve_version

        self.version = resolve_version(params, ref)
        self.lineage = {"ref": ref, **lineage_of(self.version)}
        self.name, self.number = self.version.name, str(self.version.version)
        self.pipeline = mlflow.sklearn.load_model(f"models:/{self.name}/{self.number}")
        self.features = list(params.features.inputs)
        self.regression = params.data.task == "regression"
        self.multiclass = params.data.task == "multiclass"
        self.threshold = params.evaluate.threshold
        self.positive = params.data.positive_label
        self.classes: list[Any] = []
        if not self.regression:
            self.classes = [c.item() if hasattr(c, "item") else c for c in self.pipeline.classes_]
            others = [c for c in self.classes if c != self.positive]
            self.negative = others[0] if len(others) == 1 else f"not {self.positive}"
        self.explainer: Any = None
        self.top_k = 0

    def explaining(self, params: Params, k: int) -> None:
        """--explain K: the service's exact explainer of this model (serving.explainers);
        refused (nothing written yet) when it has none or fewer than K feature columns."""
        from mlgate.serving.build import scored_classes, split_rows
        from mlgate.serving.explainers import Unexplained, make_explainer

        def training_rows() -> list[dict[str, Any]]:  # a linear model's base: their mean
            return split_rows(params, params.split.train)

        positive = scored_classes(params)
        try:
            self.explainer = make_explainer(self.pipeline, positive, training_rows, self.features)
        except Unexplained as err:
            raise MlgateError(f"--explain {k}: {err} (docs/BATCH.md#reason-columns)") from None
        columns = self.explainer.columns
        if k > len(columns):
            raise MlgateError(
                f"--explain {k}: {self.name} version {self.number} has {len(columns)} feature "
                f"columns ({', '.join(columns)}): K is 1 to {len(columns)}"
            )
        self.top_k = k

    @property
    def outputs(self) -> list[str]:
        """The columns the model adds to each scored row, in order."""
        if self.regression:
            out = ["prediction"]
        elif self.multiclass:
            out = [CLASS_COLUMN, *map(probability_column, self.classes)]
        else:
            out = ["score", "decision"]
        return [*out, *reason_columns(self.top_k)]

    def reasons(self, features: pd.DataFrame, decided: Any = None) -> dict[str, Any]:
        """Each row's top K reasons as columns: the column's name and its contribution (as
        /explain ranks them: largest |contribution| first, a tie in column order); a
        multiclass model's for the class `decided` for the row (indices in its classes)."""
        import numpy as np

        from mlgate.serving.explainers import ranked

        rows = features.astype(object).where(features.notna(), None).to_dict("records")
        contributions = self.explainer.explain(rows, decided).contributions
        top = ranked(contributions, self.top_k)
        names = np.asarray(self.explainer.columns, dtype=object)
        at = np.arange(len(rows))
        columns = iter(reason_columns(self.top_k))
        out: dict[str, Any] = {}
        for i in range(self.top_k):
            out[next(columns)] = names[top[:, i]]
            out[next(columns)] = contributions[at, top[:, i]]
        return out

    def columns(self, valid: pd.DataFrame) -> dict[str, Any]:
        import numpy as np

        from mlgate.pipeline.model import class_probabilities, decided_classes, positive_scores

        features = valid[self.features]
        explain = self.explainer is not None and len(valid)
        if self.multiclass:  # the service's answer: every class's probability, the most probable
            classes, proba = class_probabilities(self.pipeline, features)
            probabilities = {probability_column(c): proba[:, i] for i, c in enumerate(self.classes)}
            decided = decided_classes(classes, proba)
            reasons = self.reasons(features, np.argmax(proba, axis=1)) if explain else {}
            return {CLASS_COLUMN: decided, **probabilities, **reasons}
        reasons = self.reasons(features) if explain else {}
        if self.regression:
            return {"prediction": self.pipeline.predict(features), **reasons}
        score = positive_scores(self.pipeline, features, self.positive)
        decision = np.where(score >= self.threshold, self.positive, self.negative)
        return {"score": score, "decision": decision, **reasons}


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
    quarantined = quarantine_rows(bad, result, batch_id)
    rows = chunk.loc[result.valid.index, keys].copy()
    for column in set(keys) & set(result.valid.columns):
        rows[column] = result.valid[column]  # the contract's types, not the text
    for column, values in model.columns(result.valid).items():
        rows[column] = values
    rows["model_name"] = model.name
    rows["model_version"] = model.number
    rows["batch_id"] = batch_id
    return rows, quarantined, result


def output_keys(
    wanted: tuple[str, ...] | None,
    columns: list[str],
    path: Path,
    outputs: Sequence[str] = (),
    always: Sequence[str] = (),
) -> list[str]:
    """The input columns the scored rows keep: `wanted` (every column when empty) and the
    identifiers of data.roles (`always`) the input has, so outcomes join on them; none may be
    named as an output column (those of every model, OUTPUT_COLUMNS, and this model's
    `outputs`)."""
    keys = list(wanted) if wanted else columns
    keys += [k for k in always if k in columns and k not in keys]
    missing = [k for k in keys if k not in columns]
    if missing:
        raise MlgateError(f"{path}: key column(s) {missing} are not in the input ({columns})")
    clash = [k for k in keys if k in {*OUTPUT_COLUMNS, *outputs}]
    if clash:
        raise MlgateError(
            f"{path}: input column(s) {clash} clash with the output's own columns; "
            "choose the key columns with --keys (or batch.keys)"
        )
    return keys


def refusal(result: ChunkResult, path: Path) -> str:
    lines = [f"{path}: {len(result.reasons)} row(s) break the contract (--on-invalid fail):"]
    for (column, check), n in result.counts.most_common():
        lines.append(f"  - column {column!r} fails {check}: {n} row(s)")
    first = sorted(result.reasons)[:5]
    lines.append("  first rows (0-based, across the input): " + ", ".join(map(str, first)))
    return "\n".join(lines)


def quarantine_rows(bad: pd.DataFrame, result: ChunkResult, batch_id: str) -> pd.DataFrame:
    """Every input column as text (a broken value has no reliable type), plus the reasons."""
    rows = bad.astype("string")
    rows["row"] = bad.index.astype("int64")
    rows["reason"] = ["; ".join(result.reasons[i]) for i in bad.index]
    rows["batch_id"] = batch_id
    return rows
