"""`mlgate predict --engine spark`: the same contract and model per partition, on Spark.

Spark reads the input and writes the outputs; each partition's Arrow batches go through
`mlgate.loop.batch.score_chunk` (the local engine's own function) inside `mapInPandas`, with the
Pipeline loaded once on the driver and shipped to the workers. Needs `mlgate[spark]`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.errors import DataValidationError, MlgateError
from mlgate.loop.chunks import (
    FORMATS,
    QUARANTINE,
    SCORED,
    Counts,
    LoadedModel,
    Request,
    output_keys,
    reason_columns,
    score_chunk,
)

if TYPE_CHECKING:
    import pandas as pd

    from mlgate.config import Params

CHECKS = "_mlgate_checks"  # per quarantined row: its (column, check) pairs, for the summary


def _session(master: str) -> Any:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise MlgateError(
            "--engine spark needs PySpark: install mlgate[spark] (and Java 17)"
        ) from None
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers run this environment
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master(master)
        .appName("mlgate-predict")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", str(sys.stderr.isatty()).lower())
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _spark_type(dtype: Any) -> str:
    """A pandas/pandera dtype as a Spark DDL type."""
    text = str(dtype).lower()
    if text.startswith(("int", "uint")):
        return "bigint"
    if text.startswith("float"):
        return "double"
    if text.startswith("bool"):
        return "boolean"
    return "string"


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def score_spark(
    params: Params,
    request: Request,
    model: LoadedModel,
    files: list[Path],
    tmp: Path,
    batch_id: str,
    out: Callable[..., Any],
) -> Counts:
    formats = {FORMATS[f.suffix.lower()] for f in files}
    if len(formats) > 1:
        raise MlgateError("--engine spark reads one format at a time: all CSV or all Parquet")
    spark = _session(request.spark_master)
    try:
        return _run(spark, params, request, model, files, formats.pop(), tmp, batch_id, out)
    except _spark_errors() as err:
        raise DataValidationError(f"spark: {_reason(err)}") from None
    finally:
        spark.stop()


def _reason(err: Exception) -> str:
    """The Python exception a worker raised (e.g. the contract's), not the JVM's stack."""
    import re

    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    raised = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception): ", ln)]
    return (raised[-1] if raised else lines[0] if lines else type(err).__name__)[:2000]


def _spark_errors() -> tuple[type[Exception], ...]:
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    return (PySparkException, Py4JJavaError)


def _run(
    spark: Any,
    params: Params,
    request: Request,
    model: LoadedModel,
    files: list[Path],
    fmt: str,
    tmp: Path,
    batch_id: str,
    out: Callable[..., Any],
) -> Counts:
    from mlgate.pipeline import data

    schema = data.input_schema(params)
    frame = _read(spark, request.input, files, fmt, list(schema.columns))
    columns = list(frame.columns)
    keys = output_keys(
        request.keys, columns, files[0], model.outputs, params.data.role_columns("key")
    )
    input_types = dict(frame.dtypes)
    contract_types = {name: _spark_type(col.dtype) for name, col in schema.columns.items()}
    scored_ddl = [f"{_quote(k)} {contract_types.get(k, input_types[k])}" for k in keys] + model_ddl(
        model
    )
    quarantine_ddl = [f"{_quote(c)} string" for c in columns] + [
        "row bigint",
        "reason string",
        "batch_id string",
        f"{CHECKS} string",
    ]
    frame = frame.cache()
    out(
        f"predict: spark {spark.version} ({request.spark_master}), "
        f"{frame.rdd.getNumPartitions()} partition(s)"
    )

    def partitions(kind: str) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
        return _scorer(kind, params, model, keys, batch_id, request.input)

    quarantine = frame.mapInPandas(partitions(QUARANTINE), ", ".join(quarantine_ddl)).cache()
    counts = Counts(read=frame.count(), quarantined=quarantine.count())
    if counts.quarantined and request.on_invalid == "fail":
        raise DataValidationError(
            f"{request.input}: {counts.quarantined} row(s) break the contract (--on-invalid fail)"
        )
    for row in quarantine.groupBy(CHECKS).count().collect():
        for column, check in json.loads(row[CHECKS]):
            counts.reasons[(column, check)] += row["count"]
    writer = {
        "csv": lambda w, p: w.option("header", True).csv(p),
        "parquet": lambda w, p: w.parquet(p),
    }
    writer[request.fmt](quarantine.drop(CHECKS).write, str(tmp / f"{QUARANTINE}.{request.fmt}"))
    scored = frame.mapInPandas(partitions(SCORED), ", ".join(scored_ddl))
    writer[request.fmt](scored.write, str(tmp / f"{SCORED}.{request.fmt}"))
    counts.scored = counts.read - counts.quarantined
    return counts


def _read(spark: Any, source: str, files: list[Path], fmt: str, needed: list[str]) -> Any:
    """The input as a Spark frame, refused when a column the contract needs is missing."""
    paths = [str(f) for f in files]
    if fmt == "csv":  # text, as the local engine reads it: the contract coerces
        frame = spark.read.csv(paths, header=True, inferSchema=False, mode="FAILFAST")
    else:
        frame = spark.read.parquet(*paths)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{source}: not the table the model scores: missing column(s) "
            f"{', '.join(repr(c) for c in missing)}"
        )
    return frame


def _scorer(
    kind: str, params: Params, model: LoadedModel, keys: list[str], batch_id: str, source: str
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """mapInPandas' function: each Arrow batch through score_chunk; yields the scored rows
    (kind SCORED) or the quarantined ones with their checks (QUARANTINE)."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        from mlgate.pipeline import data as contract

        part_schema = contract.input_schema(params)
        for batch in batches:
            batch.index = pd.RangeIndex(len(batch))
            rows, quarantined, result = score_chunk(
                batch, part_schema, model, keys, batch_id, source
            )
            if kind == SCORED:
                if len(rows):  # PySpark's Arrow bridge mistypes an empty frame's columns
                    yield _plain_text(rows)
            elif len(quarantined):
                quarantined["row"] = pd.array([None] * len(quarantined), dtype="Int64")
                quarantined[CHECKS] = [
                    json.dumps(sorted({tuple(r.split(": ", 2)[:2]) for r in result.reasons[i]}))
                    for i in sorted(result.reasons)
                ]
                yield _plain_text(quarantined)

    return run


def _plain_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Arrow-backed text columns as Python objects: Spark's Arrow bridge takes those."""
    text = [c for c in frame.columns if str(frame[c].dtype) in ("str", "string")]
    if not text:
        return frame
    return frame.astype({c: object for c in text}).where(frame.notna(), None)


def model_ddl(model: LoadedModel) -> list[str]:
    if model.regression:
        out = ["prediction double"]
    elif model.multiclass:
        label = "string" if any(isinstance(c, str) for c in model.classes) else "bigint"
        decided, *probabilities = model.outputs
        out = [f"{_quote(decided)} {label}", *(f"{_quote(p)} double" for p in probabilities)]
    else:
        label = "string" if isinstance(model.positive, str) else "bigint"
        out = ["score double", f"decision {label}"]
    reasons = reason_columns(model.top_k)  # reason_i (a column's name), its contribution
    out += [f"{_quote(c)} {'double' if c.endswith('_contribution') else 'string'}" for c in reasons]
    return [*out, "model_name string", "model_version string", "batch_id string"]
