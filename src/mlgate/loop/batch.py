"""`mlgate predict`: score a file or a folder of files with a registered model, in chunks.

Every chunk goes through the project's contract (the input schema: the training schema
without the target). Rows that break it go to the quarantine output with their reasons;
the others are scored by the registered Pipeline. Everything is written into a temporary
folder beside the output and renamed into place only when the whole input is done, so a
failed run leaves nothing that looks like a result.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.actions import STAMP
from mlgate.errors import DataValidationError, MlgateError
from mlgate.loop.chunks import (
    QUARANTINE,
    SCORED,
    SUMMARY,
    Counts,
    LoadedModel,
    Request,
    TableWriter,
    estimate_rows,
    input_files,
    input_hash,
    output_keys,
    read_chunks,
    refusal,
    score_chunk,
)

if TYPE_CHECKING:
    from mlgate.config import Params


# ---------------------------------------------------------------- input


# ---------------------------------------------------------------- contract


# ---------------------------------------------------------------- output


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


def _score_local(
    params: Params, request: Request, model: LoadedModel, files: list[Path], tmp: Path,
    batch_id: str, stream: Any,
) -> Counts:  # fmt: skip
    import pandas as pd

    from mlgate.pipeline import data

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
            keys = output_keys(
                request.keys, columns, path, model.outputs, params.data.role_columns("key")
            )
        rows, quarantined, result = score_chunk(chunk, schema, model, keys, batch_id, str(path))
        counts.read += len(chunk)
        if result.reasons and request.on_invalid == "fail":
            raise DataValidationError(refusal(result, path))
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
    if request.explain is not None:
        model.explaining(params, request.explain)
    out = print if stream is None else (lambda *a: print(*a, file=stream))
    out(
        f"predict: {model.name} version {model.number} ({request.model}) on {len(files)} "
        f"file(s), engine {request.engine}"
    )
    with atomic_folder(request.output, request.overwrite, files) as tmp:
        streaming = time.perf_counter()  # rows/s counts the rows' work, not imports and loading
        if request.engine == "spark":
            from mlgate.loop.spark import score_spark

            counts = score_spark(params, request, model, files, tmp, batch_id, out)
        else:
            counts = _score_local(params, request, model, files, tmp, batch_id, stream)
        seconds = time.perf_counter() - streaming
        summary = {
            "batch_id": batch_id,
            "started_at": started_at.strftime(STAMP),
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


def _empty_scored(keys: list[str], model: LoadedModel) -> Any:
    import pandas as pd

    columns = [*keys, *model.outputs, "model_name", "model_version", "batch_id"]
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
    from mlgate.actions import append_summary, write_outputs

    append_summary(summary_markdown(summary))
    write_outputs(
        batch_id=summary["batch_id"],
        rows_read=str(summary["rows_read"]),
        rows_scored=str(summary["rows_scored"]),
        rows_quarantined=str(summary["rows_quarantined"]),
        model_version=str(summary["model"]["version"]),
    )


# ---------------------------------------------------------------- CLI
