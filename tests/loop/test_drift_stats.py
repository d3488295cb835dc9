"""The monitor's drift statistics on columns with missing values, as a team's data has them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mlgate.config import load_params
from mlgate.loop.monitor import feature_drift

PARAMS = load_params(Path(__file__).parents[2] / "params.yaml")
MAX_PSI = PARAMS.monitor.max_psi


def ages(rng: np.random.Generator, n: int, shift: float = 0.0, missing: float = 0.1) -> pd.Series:
    values = pd.Series(rng.normal(40, 10, n) + shift)
    values[rng.random(n) < missing] = np.nan
    return values


def test_a_shift_in_a_numeric_column_with_missing_values_is_drift() -> None:
    """With NaN in the column, the KS test answered NaN and an age shifted by 40 years was not
    reported (PSI 7e-05); the values present are compared, missing ones are a bin of their own."""
    rng = np.random.default_rng(0)
    reference = ages(rng, 2000)
    same = feature_drift("age", reference, ages(rng, 500), PARAMS, MAX_PSI)
    shifted = feature_drift("age", reference, ages(rng, 500, shift=40), PARAMS, MAX_PSI)
    assert not same.drifted and same.p_value > PARAMS.monitor.alpha
    assert shifted.drifted and shifted.psi > 5 and shifted.p_value < 1e-50


def test_a_column_that_starts_missing_values_is_drift() -> None:
    rng = np.random.default_rng(1)
    reference = ages(rng, 2000, missing=0.0)
    drift = feature_drift("age", reference, ages(rng, 500, missing=0.6), PARAMS, MAX_PSI)
    assert drift.drifted and drift.p_value < 1e-10


def test_a_categorical_column_with_missing_values_counts_them_as_a_category() -> None:
    """pandas 3 keeps NaN through astype(str): sorting the categories raised TypeError, so
    `make monitor` crashed on any project with a missing value in a categorical feature."""
    rng = np.random.default_rng(2)
    reference = pd.Series(rng.choice(["A", "B", None], 2000, p=[0.5, 0.3, 0.2]))
    same = feature_drift("deck", reference, reference.sample(500, random_state=3), PARAMS, MAX_PSI)
    assert not same.drifted and set(same.reference_share) == {"(missing)", "A", "B"}
    emptied = pd.Series(rng.choice(["A", None], 500, p=[0.2, 0.8]))
    drift = feature_drift("deck", reference, emptied, PARAMS, MAX_PSI)
    assert drift.drifted and drift.current_share["(missing)"] > 0.7


def test_the_report_draws_a_numeric_column_with_missing_values() -> None:
    """The HTML report's histogram took its range from every value, NaN included: `make
    monitor` raised "autodetected range of [nan, nan] is not finite" on a project whose numeric
    feature had a missing value, after the drift statistics were right. A column missing on
    every recorded row is drawn too (its training side alone)."""
    import base64

    from mlgate.loop.monitor import _plot

    rng = np.random.default_rng(4)
    reference, current = ages(rng, 2000), ages(rng, 500, shift=40)
    for recorded in (current, pd.Series([np.nan] * 500)):
        drift = feature_drift("age", reference, recorded, PARAMS, MAX_PSI)
        png = base64.b64decode(_plot(drift, reference, recorded))
        assert png.startswith(b"\x89PNG")


def test_the_summary_table_keeps_a_column_name_with_a_pipe_in_its_cell() -> None:
    from mlgate.loop.monitor import compare, summary_markdown

    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"in|out ratio": ages(rng, 500)})
    current = pd.DataFrame({"in|out ratio": ages(rng, 200)})
    scores = pd.Series(rng.random(500))
    report = compare(PARAMS, reference, scores, current, scores[:200], 0, ["1"])
    row = next(line for line in summary_markdown(report).splitlines() if "ratio" in line)
    assert row.startswith("| in\\|out ratio | numeric | ") and row.count(" | ") == 5
