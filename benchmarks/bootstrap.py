"""Bootstrap benchmark: the time evaluate spends on its intervals, and the champion rule's
paired difference, at a given test-set size.

    python benchmarks/bootstrap.py [--rows 1000000] [--resamples 1000] [--groups 4]

Synthetic binary data (seeded): continuous scores (more distinct values than score cells, so
the quantile-bin path), two sensitive attributes. Prints the seconds for every metric's and
gap's interval (`classification_intervals`, the cell-count engine: its cost grows with
resamples x cells, barely with rows), and for the paired ROC AUC difference of two models
(`paired_difference`, the row-weights engine: resamples x rows, shown at --paired-rows),
and the regression intervals (rows engine below 100,000 rows, the normal limit of the
resampled sums from there).
The target of issue 28: 1,000 resamples at 1 M test rows in <= 2 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from mlgate.config import Bootstrap
from mlgate.pipeline import bootstrap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--paired-rows", type=int, default=10_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.rows
    y = (rng.random(n) < 0.6).astype(np.int64)
    scores = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    sensitive = {
        "a": pd.Series(rng.integers(0, args.groups, n).astype(str)),
        "b": pd.Series(rng.integers(0, 2, n).astype(str)),
    }
    spec = Bootstrap(resamples=args.resamples, confidence=0.95, seed=0)
    start = time.perf_counter()
    result = bootstrap.classification_intervals(y, scores, 0.5, sensitive, {}, spec)
    took = time.perf_counter() - start
    print(
        f"intervals: {args.resamples} resamples x {n:,} rows, 8 metrics + 4 gaps: {took:.2f} s"
        f"  (roc_auc {result['metrics']['roc_auc']})"
    )
    target = rng.normal(100, 20, n)
    predicted = target + rng.normal(0, 5, n)
    start = time.perf_counter()
    result = bootstrap.regression_intervals(target, predicted, sensitive, spec)
    took = time.perf_counter() - start
    print(
        f"regression intervals: {args.resamples} resamples x {n:,} rows, 3 metrics + 2 gaps: "
        f"{took:.2f} s  (rmse {result['metrics']['rmse']}; {result['method']})"
    )
    m = args.paired_rows
    other = np.clip(scores[:m] + rng.normal(0, 0.05, m), 0, 1)
    start = time.perf_counter()
    diff = bootstrap.paired_difference("roc_auc", "binary", y[:m], scores[:m], other, spec)
    took = time.perf_counter() - start
    print(
        f"paired roc_auc difference: {args.resamples} resamples x {m:,} rows: {took:.2f} s"
        f"  ({diff})"
    )


if __name__ == "__main__":
    main()
