"""The PR report with intervals: each metric and gap with its interval, each change with an
interval and a verdict in words, the gate's three-way verdicts."""

from __future__ import annotations

from mlgate.pipeline import report
from mlgate.pipeline.report import Results, change, unpaired_interval


def side(label: str, roc_auc: float, ci: list[float], rows_hash: str = "a") -> Results:
    return Results(
        label,
        metrics={"roc_auc": roc_auc, "brier": 0.17},
        fairness={
            "sex": {
                "groups": {"f": {"count": 60}, "m": {"count": 140}},
                "demographic_parity_difference": 0.08,
                "equalized_odds_difference": 0.09,
            }
        },
        intervals={
            "confidence": 0.95,
            "rows": 200,
            "rows_hash": rows_hash,
            "metrics": {"roc_auc": ci, "brier": [0.15, 0.19]},
            "fairness": {
                "sex": {
                    "demographic_parity_difference": [0.01, 0.2],
                    "equalized_odds_difference": [0.02, 0.3],
                }
            },
        },
    )


GATE = {
    "passed": True,
    "confidence": 0.95,
    "checks": [
        {
            "name": "roc_auc",
            "kind": "quality",
            "value": 0.75,
            "threshold": 0.7,
            "op": ">=",
            "passed": True,
            "detail": "",
            "interval": [0.68, 0.81],
            "verdict": "uncertain",
        },
        {
            "name": "champion:roc_auc",
            "kind": "champion",
            "value": 0.75,
            "threshold": 0.73,
            "op": ">=",
            "passed": True,
            "detail": "",
            "interval": [0.75, 0.78],
            "verdict": "pass",
        },
    ],
    "champion": {
        "alias": "production",
        "version": "1",
        "roc_auc": 0.74,
        "difference_interval": [0.004, 0.03],
    },
}


def test_a_change_says_better_worse_or_no_detectable_change():
    assert change("roc_auc", 0.76, 0.75, [-0.02, 0.04]).endswith("no detectable change")
    assert change("roc_auc", 0.80, 0.75, [0.02, 0.08]) == "+0.0500 [+0.0200, +0.0800] better"
    assert change("roc_auc", 0.70, 0.75, [-0.08, -0.02]).endswith("worse")
    # a smaller brier is better: a change below zero is an improvement
    assert change("brier", 0.15, 0.17, [-0.03, -0.01]).endswith("better")
    # without an interval: the point difference, as before
    assert change("roc_auc", 0.76, 0.75, None) == "+0.0100 (better)"


def test_an_error_metric_that_rose_is_worse_in_the_report():
    # rmse and mae: lower is better, as for the gate's champion rule (one list of them)
    assert change("rmse", 120.0, 100.0, [5.0, 35.0]).endswith("worse")
    assert change("mae", 80.0, 100.0, [-30.0, -10.0]).endswith("better")
    assert report.delta("rmse", 120.0, 100.0) == "+20.0000 (worse)"


def test_the_unpaired_interval_adds_both_sides_uncertainty():
    ci = unpaired_interval([0.70, 0.80], [0.70, 0.80], 0.02)
    assert ci == [round(0.02 - 0.0707, 4), round(0.02 + 0.0707, 4)]
    assert unpaired_interval(None, [0.7, 0.8], 0.02) is None


def test_the_report_shows_intervals_and_verdicts_in_words():
    pr = side("this PR", 0.75, [0.68, 0.81])
    base = side("base (main)", 0.74, [0.67, 0.80])
    prod = Results("production (v1)", metrics={"roc_auc": 0.74})
    text = report.render(GATE, pr, base, prod)
    assert (
        "| `roc_auc` | quality | 0.7500 [0.6800, 0.8100] | >= 0.7 | ⚠️ uncertain, passes |" in text
    )
    row = next(line for line in text.splitlines() if line.startswith("| roc_auc |"))
    assert "| 0.7500 [0.6800, 0.8100] | 0.7400 [0.6700, 0.8000] |" in row
    assert "no detectable change" in row  # vs base: unpaired, inside the noise
    # vs production: the gate's paired interval, all above zero
    assert row.endswith("| +0.0100 [+0.0040, +0.0300] better |")
    assert "demographic_parity_difference 0.0800 [0.0100, 0.2000] (base 0.0800)" in text
    assert "different test rows" not in text


def test_production_logged_intervals_give_the_other_changes_an_interval():
    pr = side("this PR", 0.75, [0.68, 0.81])
    prod = side("production (v1)", 0.74, [0.67, 0.80])
    prod.metrics["brier"] = 0.20
    text = report.render(GATE, pr, Results("base"), prod)
    brier = next(line for line in text.splitlines() if line.startswith("| brier |"))
    # 0.17 - 0.20 with both sides' half-widths 0.02 in quadrature: [-0.0583, -0.0017]
    assert brier.endswith("| 0.2000 [0.1500, 0.1900] | -0.0300 [-0.0583, -0.0017] better |")


def test_the_report_says_when_base_was_evaluated_on_other_rows():
    pr = side("this PR", 0.75, [0.68, 0.81], rows_hash="a")
    base = side("base (main)", 0.74, [0.67, 0.80], rows_hash="b")
    text = report.render(GATE, pr, base, Results("production"))
    assert "were evaluated on different test rows" in text


def importance(method: str, proxies: dict | None = None, **columns: float) -> dict:
    found = {"method": method, "unit": "mean |contribution|", "columns": columns}
    return found | ({"proxies": proxies} if proxies else {})


def test_the_report_ranks_what_drives_the_model_against_base_and_production():
    pr = Results("this PR", importance=importance("exact-linear", checking_account=0.7,
                                                  age=0.3, duration=0.2))  # fmt: skip
    base = Results("main", importance=importance("exact-linear", checking_account=0.6,
                                                 duration=0.31))  # fmt: skip
    prod = Results(
        "production (v3)",
        importance=importance("exact-linear", duration=0.4, checking_account=0.5, age=0.1),
    )
    text = report.render(GATE, pr, base, prod)
    assert "### What drives the model" in text
    assert "| # | column | this PR | main | change | production (v3) | change |" in text
    assert "| 1 | checking_account | 0.7 | 0.6 | +0.1 | 0.5 | +0.2, was #2 |" in text
    assert "| 2 | age | 0.3 | – | new | 0.1 | +0.2, was #3 |" in text
    assert "| 3 | duration | 0.2 | 0.31 | -0.11, was #2 | 0.4 | -0.2, was #1 |" in text
    # another method's numbers are another unit: ranks only, no differences
    other = Results("main", importance=importance("permutation", age=0.02, duration=0.05))
    text = report.render(GATE, pr, other, Results("production"))
    assert "| 2 | age | 0.3 | – | was #1 | – |  |" in text
    assert "What drives" not in report.render(GATE, Results("pr"), base, Results("production"))


def test_a_proxy_of_a_sensitive_attribute_the_model_leans_on_more_is_flagged():
    proxies = {"duration": {"age": 0.42, "sex": 0.05}, "job": {"age": 0.35}}
    pr = Results("this PR", importance=importance("exact-linear", proxies, duration=0.5,
                                                  job=0.1, housing=0.05))  # fmt: skip
    base = Results("main", importance=importance("exact-linear", proxies, duration=0.3,
                                                 job=0.1, housing=0.02))  # fmt: skip
    text = report.render(GATE, pr, base, Results("production"))
    flags = [line for line in text.splitlines() if line.startswith("> ⚠️")]
    # duration: associated with age (0.42 >= 0.3) and leaned on more (0.3 -> 0.5): flagged;
    # job: associated but leaned on the same; housing: leaned on more but no proxy
    assert flags == [
        "> ⚠️ **duration** may stand in for the sensitive attribute **age** (association "
        "0.42): the model leans on it more than main (0.3 → 0.5). Check the fairness gaps above."
    ]
    # the same model as base: nothing rises, nothing flagged
    assert "may stand in for" not in report.render(GATE, pr, pr, Results("production"))


def test_a_pipe_in_a_column_name_stays_in_its_table_cell():
    pr = Results("this PR", importance=importance("exact-linear", **{"a|b": 0.5, "c": 0.1}))
    text = report.render(GATE, pr, Results("main"), Results("production"))
    assert "| 1 | a\\|b | 0.5 |" in text
