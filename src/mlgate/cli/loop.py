"""The loop commands: monitor, outcomes, compare and predict (batch scoring)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mlgate.loop import compare, monitor
from mlgate.loop.batch import predict
from mlgate.loop.chunks import Request
from mlgate.loop.outcomes import import_outcomes


def _monitor(args: argparse.Namespace) -> int:
    from mlgate.config import load_params

    report = monitor.run(load_params(args.params), args.feedback, args.out, args.batch)
    return 1 if report.drift else 0


def _monitor_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "monitor",
        parents=[common],
        help="compare recorded traffic with the training data (drift, error rate)",
        description="Read the feedback records (serving.feedback.path, MLGATE_FEEDBACK_DIR "
        "or --feedback), compare inputs and predictions with the training split (PSI plus "
        "KS / chi-square test per feature) and the error rate with monitor.* thresholds; "
        "write summary.md, report.html and drift.json. Exits 1 when drift is found.",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--feedback", type=Path, default=None, metavar="DIR", help="recorded traffic"
    )
    source.add_argument(
        "--batch",
        type=Path,
        default=None,
        metavar="DIR",
        help="a `mlgate predict` output folder as the traffic: its scored rows, its "
        "quarantined rows counted as errors (docs/BATCH.md)",
    )
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="default: monitor.report")
    p.set_defaults(handler=_monitor)


def _import(args: argparse.Namespace) -> int:
    from mlgate.config import load_params

    import_outcomes(load_params(args.params), args.file, args.feedback)
    return 0


def _outcomes_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "outcomes",
        help="late ground truth for recorded predictions (`mlgate outcomes import FILE`)",
        description="Outcome commands (docs/COMPARE.md#outcomes).",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = actions.add_parser(
        "import",
        parents=[common],
        help="import observed outcomes from a CSV or Parquet file",
        description="Read FILE (CSV or Parquet; columns request_id, outcome and optionally "
        "row, default 0; or, without request_id, the key column(s) of data.roles and outcome: "
        "each key's latest recorded prediction) and check every row against the recorded "
        "predictions: the request id and row, or the key, must name a prediction; a "
        "classification outcome must be one of the "
        "model's classes, a regression outcome a finite number; a row repeating another "
        "with a different outcome is refused. Any refused row: exit 2, the counts and the "
        "first examples (row of the file, column, value) printed, nothing written. "
        "Otherwise the outcomes are written atomically to "
        "<feedback>/outcomes-import-<UTC>.jsonl, where `mlgate compare` reads them.",
    )
    q.add_argument("file", type=Path, metavar="FILE", help="the outcomes (.csv or .parquet)")
    q.add_argument(
        "--feedback",
        type=Path,
        default=None,
        metavar="DIR",
        help="the recorded traffic (default: MLGATE_FEEDBACK_DIR, else serving.feedback.path)",
    )
    q.set_defaults(handler=_import)


def _compare(args: argparse.Namespace) -> int:
    from mlgate.config import load_params

    result = compare.run(load_params(args.params), args.feedback, args.report, args.since)
    return 0 if args.exit_zero else result.exit_code


def _compare_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "compare",
        parents=[common],
        help="champion vs challenger on recorded traffic: promote, collect or abort",
        description="Read the feedback records (--feedback, MLGATE_FEEDBACK_DIR or "
        "serving.feedback.path) and compare the variants: volume, score distribution and "
        "drift, agreement on rows both scored (shadow), latency, error rate and, with "
        "outcomes (`mlgate outcomes import`), the primary metric with a bootstrap interval "
        "of challenger - champion. Decide by compare.* in params (docs/COMPARE.md) and write "
        "compare.md and compare.json.",
        epilog="exit codes: 0 promote, 3 collect (keep collecting), 4 abort, 2 error (no "
        "records, unreadable folder, bad params); --exit-zero makes every verdict exit 0.",
    )
    p.add_argument(
        "--feedback", type=Path, default=None, metavar="DIR", help="the recorded traffic"
    )
    p.add_argument(
        "--report", type=Path, default=None, metavar="DIR", help="default: compare.report"
    )
    p.add_argument(
        "--since",
        default=None,
        metavar="TIME",
        type=compare.iso_utc,
        help="only traffic served at or after TIME (ISO 8601, e.g. 2026-12-01T09:00:00Z; "
        "a time without a zone is UTC); outcomes count whenever they arrived",
    )
    p.add_argument(
        "--exit-zero",
        action="store_true",
        help="exit 0 whatever the verdict (read it from compare.json)",
    )
    p.set_defaults(handler=_compare)


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
        explain=args.explain,
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


def _predict_parser(sub: Any, common: argparse.ArgumentParser) -> None:
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
    p.add_argument(
        "--explain",
        type=_positive,
        default=None,
        metavar="K",
        help="add each scored row's top K reasons, as /explain ranks them: columns reason_1, "
        "reason_1_contribution, ..., reason_K, reason_K_contribution (the feature column and "
        "its signed contribution to the raw score, largest |contribution| first); K is 1 to "
        "the model's number of feature columns; refused, with nothing written, for a model "
        "without exact attributions (docs/BATCH.md#reason-columns)",
    )
    p.set_defaults(handler=_predict)


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    for parser in (_monitor_parser, _outcomes_parser, _compare_parser, _predict_parser):
        parser(sub, common)
