"""Bootstrap intervals: each resampled metric equals scikit-learn's (and each gap fairlearn's)
on the same resampled rows, and the fast cell-count engine gives the intervals of a plain
loop over resampled rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as m

from mlgate.config import Bootstrap
from mlgate.pipeline import bootstrap as bs

SPEC = Bootstrap(resamples=2000, confidence=0.95, seed=3)


def binary_data(n: int = 240, seed: int = 0, distinct: bool = False):
    """Labels, scores that carry signal (rounded to 2 decimals: ties, as real scores have,
    unless distinct) and a three-group attribute whose groups differ."""
    rng = np.random.default_rng(seed)
    group = pd.Series(rng.choice(["a", "b", "c"], n, p=[0.5, 0.35, 0.15]))
    y = (rng.random(n) < np.where(group == "c", 0.4, 0.65)).astype(int)
    scores = np.clip(0.35 * y + 0.65 * rng.random(n) - 0.08 * (group == "b").to_numpy(), 0, 1)
    return y, scores if distinct else scores.round(2), group


def resampled_rows(y: np.ndarray, size: int, seed: int = 1) -> np.ndarray:
    return bs.resample_rows(np.random.default_rng(seed), y, len(y), size)


# ---- one resample at a time: the vectorised metric is scikit-learn's / fairlearn's


def test_each_resampled_decision_and_score_metric_equals_sklearn():
    y, s, _ = binary_data()
    idx = resampled_rows(y, 25)
    yb, sb = y[idx], s[idx]
    got = {
        name: bs.rows_metric(name, "binary", yb, sb, 0.5, [])
        for name in ("roc_auc", "accuracy", "precision", "recall", "f1", "brier", "log_loss")
    }
    for r in range(len(idx)):
        d = (sb[r] >= 0.5).astype(int)
        expected = {
            "roc_auc": m.roc_auc_score(yb[r], sb[r]),
            "accuracy": m.accuracy_score(yb[r], d),
            "precision": m.precision_score(yb[r], d, zero_division=0),
            "recall": m.recall_score(yb[r], d, zero_division=0),
            "f1": m.f1_score(yb[r], d, zero_division=0),
            "brier": m.brier_score_loss(yb[r], sb[r]),
            "log_loss": m.log_loss(yb[r], np.clip(sb[r], 1e-15, 1 - 1e-15)),
        }
        for name, value in expected.items():
            assert got[name][r] == pytest.approx(value, abs=1e-12), (name, r)


def test_score_metrics_from_counts_per_distinct_score_equal_sklearn():
    """The cell engine's ROC AUC, average precision, Brier and log loss, from the counts of
    positives and negatives at each distinct score, on resampled rows."""
    y, s, _ = binary_data()
    idx = resampled_rows(y, 20)
    cell = bs._score_cells(s)
    n_cells = int(cell.max()) + 1
    loss = bs._cell_losses(y, s, cell, n_cells)
    flat = (np.arange(len(idx))[:, None] * 2 + y[idx]) * n_cells + cell[idx]
    counts = np.bincount(flat.ravel(), minlength=len(idx) * 2 * n_cells).reshape(
        len(idx), 2, n_cells
    )
    got = bs._score_metrics(counts[:, 1], counts[:, 0], loss)
    for r, rows in enumerate(idx):
        assert got["roc_auc"][r] == pytest.approx(m.roc_auc_score(y[rows], s[rows]), abs=1e-12)
        assert got["average_precision"][r] == pytest.approx(
            m.average_precision_score(y[rows], s[rows]), abs=1e-12
        )
        assert got["brier"][r] == pytest.approx(m.brier_score_loss(y[rows], s[rows]), abs=1e-12)
        assert got["log_loss"][r] == pytest.approx(
            m.log_loss(y[rows], np.clip(s[rows], 1e-15, 1 - 1e-15)), abs=1e-12
        )


def test_resampled_fairness_gaps_equal_fairlearn():
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    y, s, group = binary_data(n=150)
    d = (s >= 0.5).astype(int)
    codes, g = bs._codes(group)
    idx = resampled_rows(y, 15)
    flat = ((np.arange(len(idx))[:, None] * 2 + y[idx]) * g + codes[idx]) * 2 + d[idx]
    c = np.bincount(flat.ravel(), minlength=len(idx) * 4 * g).reshape(len(idx), 2, g, 2)
    got = bs.decision_gaps(c)
    for r, rows in enumerate(idx):
        kw = {"sensitive_features": group.to_numpy()[rows]}
        dpd = demographic_parity_difference(y[rows], d[rows], **kw)
        eod = equalized_odds_difference(y[rows], d[rows], **kw)
        assert got["demographic_parity_difference"][r] == pytest.approx(dpd, abs=1e-12)
        assert got["equalized_odds_difference"][r] == pytest.approx(eod, abs=1e-12)


def test_resampled_multiclass_and_regression_metrics_equal_sklearn():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 150)
    decided = np.where(rng.random(150) < 0.7, y, rng.integers(0, 3, 150))
    idx = resampled_rows(y, 10)
    classes = ["x", "y", "z"]
    for name, oracle in {
        "accuracy": m.accuracy_score,
        "balanced_accuracy": m.balanced_accuracy_score,
        "f1_macro": lambda a, b: m.f1_score(a, b, average="macro", zero_division=0),
        "f1_weighted": lambda a, b: m.f1_score(a, b, average="weighted", zero_division=0),
        "recall:y": lambda a, b: m.recall_score(a == 1, b == 1, zero_division=0),
    }.items():
        got = bs.rows_metric(name, "multiclass", y[idx], decided[idx], 0.5, classes)
        expected = [oracle(y[rows], decided[rows]) for rows in idx]
        assert got == pytest.approx(expected, abs=1e-12), name
    target = rng.normal(10, 3, 150)
    predicted = target + rng.normal(0, 1, 150)
    idx = bs.resample_rows(rng, None, 150, 10)
    for name, oracle in {
        "rmse": lambda a, b: np.sqrt(m.mean_squared_error(a, b)),
        "mae": m.mean_absolute_error,
        "r2": m.r2_score,
    }.items():
        got = bs.rows_metric(name, "regression", target[idx], predicted[idx], 0.5, [])
        assert got == pytest.approx([oracle(target[r], predicted[r]) for r in idx], abs=1e-9)


# ---- whole intervals: the cell engine against a plain loop over resampled rows


def reference_intervals(y, s, group, spec: Bootstrap) -> dict[str, list[float]]:
    """The obvious way: an index matrix of stratified resamples, each metric per resample."""
    idx = resampled_rows(y, spec.resamples, seed=11)
    resampled = {
        name: bs.rows_metric(name, "binary", y[idx], s[idx], 0.5, [])
        for name in ("roc_auc", "accuracy", "precision", "recall", "f1", "brier")
    }
    d = (s >= 0.5).astype(int)
    codes, g = bs._codes(group)
    flat = ((np.arange(len(idx))[:, None] * 2 + y[idx]) * g + codes[idx]) * 2 + d[idx]
    c = np.bincount(flat.ravel(), minlength=len(idx) * 4 * g).reshape(len(idx), 2, g, 2)
    resampled.update(bs.decision_gaps(c))
    return {k: bs.percentile_interval(v, spec.confidence) for k, v in resampled.items()}


@pytest.mark.parametrize("distinct", [False, True], ids=["tied scores", "2500 distinct scores"])
def test_cell_engine_intervals_match_a_loop_over_resampled_rows(distinct):
    n = 2500 if distinct else 300
    y, s, group = binary_data(n=n, distinct=distinct)
    point = {
        "roc_auc": m.roc_auc_score(y, s),
        "brier": m.brier_score_loss(y, s),
    }
    got = bs.classification_intervals(y, s, 0.5, {"g": group}, point, SPEC)
    expected = reference_intervals(y, s, group, SPEC)
    width = {k: v[1] - v[0] for k, v in expected.items()}
    for name in ("roc_auc", "accuracy", "precision", "recall", "f1", "brier"):
        # two independent Monte Carlo draws of the same distribution: endpoints within ~5%
        # of the interval's width (4 standard errors at 2000 resamples)
        assert got["metrics"][name] == pytest.approx(expected[name], abs=0.06 * width[name])
    for gap in ("demographic_parity_difference", "equalized_odds_difference"):
        assert got["fairness"]["g"][gap] == pytest.approx(expected[gap], abs=0.08 * width[gap])


def test_resamples_keep_each_class_size_and_the_seed_repeats_them():
    y, s, group = binary_data()
    counts = bs.stratified_cells(np.random.default_rng(0), (s >= 0.5).astype(int), y, 2, 50)
    assert (counts.sum(axis=2) == np.bincount(y)).all()
    first = bs.classification_intervals(y, s, 0.5, {"g": group}, {}, SPEC)
    assert bs.classification_intervals(y, s, 0.5, {"g": group}, {}, SPEC) == first
    other = Bootstrap(resamples=2000, confidence=0.95, seed=4)
    assert bs.classification_intervals(y, s, 0.5, {"g": group}, {}, other) != first


def test_a_higher_confidence_gives_a_wider_interval():
    y, s, group = binary_data()
    narrow = bs.classification_intervals(y, s, 0.5, {"g": group}, {}, Bootstrap(confidence=0.8))
    wide = bs.classification_intervals(y, s, 0.5, {"g": group}, {}, Bootstrap(confidence=0.99))
    for name, (lo, hi) in narrow["metrics"].items():
        assert wide["metrics"][name][0] <= lo and hi <= wide["metrics"][name][1], name


def test_coarse_score_bins_keep_the_interval_on_the_exact_value(monkeypatch):
    """Beyond SCORE_BINS distinct scores, ties within a bin move the binned ROC AUC; the
    offset from the exact point value is added back. With 8 bins the move is large."""
    monkeypatch.setattr(bs, "SCORE_BINS", 8)
    y, s, group = binary_data(n=2500, distinct=True)
    point = {"roc_auc": m.roc_auc_score(y, s)}
    got = bs.classification_intervals(y, s, 0.5, {"g": group}, point, SPEC)["metrics"]["roc_auc"]
    expected = reference_intervals(y, s, group, SPEC)["roc_auc"]
    assert got == pytest.approx(expected, abs=0.1 * (expected[1] - expected[0]))


def test_row_weights_give_the_same_metrics_as_the_resampled_rows():
    """The paired engine weighs each row by how often a resample draws it; each metric equals
    the one computed on the resampled rows themselves (checked against sklearn above)."""
    y, s, _ = binary_data()
    idx = resampled_rows(y, 30)
    w = bs.row_weights(idx, len(y))
    names = ("roc_auc", "average_precision", "brier", "log_loss", "accuracy", "f1", "recall")
    for name in names:
        got = bs.weighted_metric(name, "binary", w, y, s, 0.5, [])
        if name == "average_precision":
            expected = [m.average_precision_score(y[r], s[r]) for r in idx]
        else:
            expected = bs.rows_metric(name, "binary", y[idx], s[idx], 0.5, [])
        assert got == pytest.approx(expected, abs=1e-12), name
    rng = np.random.default_rng(2)
    k = rng.integers(0, 3, 200)
    decided = np.where(rng.random(200) < 0.6, k, rng.integers(0, 3, 200))
    idx = resampled_rows(k, 20)
    w = bs.row_weights(idx, 200)
    for name in ("accuracy", "balanced_accuracy", "f1_macro", "precision:b"):
        got = bs.weighted_metric(name, "multiclass", w, k, decided, 0.5, ["a", "b", "c"])
        expected = bs.rows_metric(name, "multiclass", k[idx], decided[idx], 0.5, ["a", "b", "c"])
        assert got == pytest.approx(expected, abs=1e-12), name
    target = rng.normal(5, 2, 200)
    predicted = target + rng.normal(0, 1, 200)
    for name in ("rmse", "mae", "r2"):
        got = bs.weighted_metric(name, "regression", w, target, predicted, 0.5, [])
        expected = bs.rows_metric(name, "regression", target[idx], predicted[idx], 0.5, [])
        assert got == pytest.approx(expected, abs=1e-9), name


@pytest.mark.slow  # 400 bootstraps: ~15 s of computing, no process
def test_the_95_percent_intervals_hold_the_true_value_in_95_percent_of_test_splits():
    """A known model on synthetic data: scores N(1.2, 1) for positives and N(0, 1) for
    negatives, so the true ROC AUC is Phi(1.2 / sqrt 2) and the true accuracy at 0.6 follows
    from the normal CDF. Over 400 test splits of 400 rows, the intervals hold them 93-97 %."""
    from scipy.stats import norm

    n_pos, n_neg, shift, threshold = 240, 160, 1.2, 0.6
    truth = {
        "roc_auc": norm.cdf(shift / np.sqrt(2)),
        "accuracy": (n_pos * norm.sf(threshold - shift) + n_neg * norm.cdf(threshold)) / 400,
    }
    rng = np.random.default_rng(2024)
    y = np.r_[np.ones(n_pos, dtype=int), np.zeros(n_neg, dtype=int)]
    group = pd.Series(["a"] * 400)
    held = dict.fromkeys(truth, 0)
    for run in range(400):
        scores = rng.normal(shift * y, 1.0)
        spec = Bootstrap(resamples=1000, confidence=0.95, seed=run)
        point = {"roc_auc": m.roc_auc_score(y, scores)}
        found = bs.classification_intervals(y, scores, threshold, {"g": group}, point, spec)
        for name, value in truth.items():
            lo, hi = found["metrics"][name]
            held[name] += lo <= value <= hi
    for name, count in held.items():
        assert 0.93 <= count / 400 <= 0.97, (name, count)


def test_regression_intervals_are_those_of_sklearn_and_the_group_table_per_resample():
    from mlgate.pipeline.fairness import regression_group_metrics

    rng = np.random.default_rng(8)
    target = rng.normal(100, 20, 120)
    town = pd.Series(rng.choice(["n", "s", "e"], 120))
    predicted = target + rng.normal(0, 5 + 5 * (town == "e").to_numpy(), 120)
    spec = Bootstrap(resamples=200, seed=5)
    got = bs.regression_intervals(target, predicted, {"town": town}, spec)
    # the same resamples, drawn as regression_intervals draws them, one at a time
    idx = bs.resample_rows(np.random.default_rng(5), None, 120, 200)
    per = {"rmse": [], "mae": [], "r2": [], "gap": []}
    for rows in idx:
        t, p = target[rows], predicted[rows]
        per["rmse"].append(np.sqrt(m.mean_squared_error(t, p)))
        per["mae"].append(m.mean_absolute_error(t, p))
        per["r2"].append(m.r2_score(t, p))
        table = regression_group_metrics(t, p, {"town": town.iloc[rows].reset_index(drop=True)})
        per["gap"].append(table["town"]["mae_difference"])
    for name in ("rmse", "mae", "r2"):
        assert got["metrics"][name] == bs.percentile_interval(np.array(per[name]), 0.95), name
    expected = bs.percentile_interval(np.array(per["gap"]), 0.95)
    assert got["fairness"]["town"]["mae_difference"] == pytest.approx(expected, abs=1e-3)


def test_regression_intervals_at_many_rows_are_the_normal_limit_of_the_row_bootstrap():
    # from NORMAL_ROWS rows on, the resampled sums are drawn from their normal limit: at
    # 20,000 rows (both engines affordable) its intervals are the rows engine's, to within
    # the Monte Carlo noise of 1,000 resamples' 2.5 % quantiles
    rng = np.random.default_rng(4)
    n = 20_000
    target = rng.normal(100, 20, n)
    town = pd.Series(rng.choice(["n", "s", "e", "w"], n, p=[0.4, 0.3, 0.2, 0.1]))
    predicted = target + rng.normal(0, 5 + 5 * (town == "e").to_numpy(), n)
    spec = Bootstrap(resamples=1000, seed=3)
    rows = bs.regression_intervals(target, predicted, {"town": town}, spec)
    coded = {"town": bs._codes(town)}
    normal = bs._regression_normal(np.random.default_rng(3), target, predicted, coded, spec)
    assert normal["method"].startswith("bootstrap, normal limit") and normal["rows"] == n
    for name, (lo, hi) in rows["metrics"].items():
        assert normal["metrics"][name] == pytest.approx([lo, hi], abs=0.1 * (hi - lo)), name
    lo, hi = rows["fairness"]["town"]["mae_difference"]
    got = normal["fairness"]["town"]["mae_difference"]
    assert got == pytest.approx([lo, hi], abs=0.15 * (hi - lo))


def test_regression_intervals_switch_to_the_normal_limit_at_normal_rows():
    n = bs.NORMAL_ROWS
    rng = np.random.default_rng(0)
    target = rng.normal(0, 1, n)
    got = bs.regression_intervals(target, target + rng.normal(0, 1, n), {}, Bootstrap(seed=1))
    assert got["method"].startswith("bootstrap, normal limit")
    lo, hi = got["metrics"]["rmse"]
    assert lo < 1.0 < hi and hi - lo < 0.02  # sd of the rmse at 100k rows: ~0.0022


def test_multiclass_gap_intervals_match_a_loop_over_resampled_rows():
    from mlgate.pipeline.fairness import multiclass_group_metrics

    rng = np.random.default_rng(9)
    classes = ["x", "y", "z"]
    group = pd.Series(rng.choice(["a", "b"], 300, p=[0.7, 0.3]))
    y = rng.choice(classes, 300)
    decided = np.where(rng.random(300) < 0.6 + 0.2 * (group == "a").to_numpy(), y, "z")
    spec = Bootstrap(resamples=1000, seed=1)
    got = bs.multiclass_intervals(y, decided, classes, {"g": group}, spec)
    codes = np.array([classes.index(v) for v in y])
    per: dict[str, list[float]] = {}
    for rows in resampled_rows(codes, 400, seed=12):
        sub = group.iloc[rows].reset_index(drop=True)
        table = multiclass_group_metrics(y[rows], decided[rows], classes, {"g": sub})["g"]
        for gap in ("demographic_parity_difference", "equalized_odds_difference"):
            per.setdefault(gap, []).append(table[gap])
    for gap, values in per.items():
        lo, hi = bs.percentile_interval(np.array(values), 0.95)
        assert got["fairness"]["g"][gap] == pytest.approx([lo, hi], abs=0.1 * (hi - lo)), gap
    accuracy = [m.accuracy_score(y[r], decided[r]) for r in resampled_rows(codes, 400, seed=12)]
    lo, hi = bs.percentile_interval(np.array(accuracy), 0.95)
    assert got["metrics"]["accuracy"] == pytest.approx([lo, hi], abs=0.1 * (hi - lo))


def test_multiclass_roc_auc_ovr_and_log_loss_intervals_match_sklearn_on_resampled_rows():
    """Each resample's classes share its rows: the macro ROC AUC's interval is as wide as a
    loop of sklearn over resampled rows finds it (independent draws per class: too narrow)."""
    from mlgate.pipeline.stages.evaluate import multiclass_metrics

    rng = np.random.default_rng(0)
    classes = ["x", "y", "z"]
    yi = rng.integers(0, 3, 400)
    y = np.array(classes)[yi]
    logits = rng.normal(size=(400, 3))
    logits[np.arange(400), yi] += 1.0
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    decided = np.array(classes)[p.argmax(axis=1)]
    point = multiclass_metrics(y, classes, p)
    got = bs.multiclass_intervals(y, decided, classes, {}, SPEC, p, point)["metrics"]
    idx = resampled_rows(yi, 400, seed=4)
    oracle = {
        "roc_auc_ovr": [
            m.roc_auc_score(y[r], p[r], multi_class="ovr", labels=classes) for r in idx
        ],
        "log_loss": [m.log_loss(y[r], p[r], labels=classes) for r in idx],
    }
    for name, values in oracle.items():
        lo, hi = bs.percentile_interval(np.array(values), 0.95)
        assert got[name] == pytest.approx([lo, hi], abs=0.1 * (hi - lo)), name
        assert got[name][1] - got[name][0] == pytest.approx(hi - lo, rel=0.1), name
