"""Exact TreeSHAP over the tree walk's node arrays: the Shapley values of the trees' path-dependent
expectation, as the definition computes them by brute force, and as LightGBM's own TreeSHAP
(`pred_contrib`) computes them for LightGBM's trees."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlgate.pipeline.treeshap import TreeShap
from mlgate.serving.explainers import TreeExplainer
from mlgate.serving.trees import TreeScorer

COLUMNS = ["a", "b", "c", "d", "e"]


def frame(n: int, seed: int, nulls: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, len(COLUMNS))), columns=COLUMNS)
    y = (x["a"] + x["b"] * x["c"] - (x["d"] > 0.5) + rng.normal(scale=0.5, size=n) > 0).astype(int)
    if nulls:  # nulls the trees learned a direction for
        x.loc[rng.choice(n, n // 10, replace=False), "b"] = np.nan
    return x, y.to_numpy()


def scaled(estimator: Any, x: pd.DataFrame, y: np.ndarray) -> Any:
    """`estimator` after a plain scaling of the columns, as mlgate's Pipeline has it."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    preprocess = ColumnTransformer([("numeric", StandardScaler(), COLUMNS)], remainder="drop")
    return Pipeline([("preprocess", preprocess), ("estimator", estimator)]).fit(x, y)


def brute_force(arrays: dict[str, np.ndarray], x: np.ndarray) -> tuple[float, np.ndarray]:
    """TreeSHAP's definition: v(S) = the trees' expected raw sum when the features in S are
    known (a split on a known feature follows the row, one on another feature weighs both
    children by their training cover), Shapley values by enumerating every subset."""
    left, right, feature = arrays["left"], arrays["right"], arrays["feature"]
    threshold, missing_left = arrays["threshold"], arrays["missing_left"]
    value, cover = arrays["value"], arrays["cover"]

    def expected(node: int, known: frozenset[int]) -> float:
        if left[node] == node:
            return float(value[node])
        f = int(feature[node])
        if f in known:
            here = x[f]
            goes_left = bool(missing_left[node]) if np.isnan(here) else here <= threshold[node]
            return expected(int(left[node] if goes_left else right[node]), known)
        weights = cover[left[node]], cover[right[node]]
        return (
            weights[0] * expected(int(left[node]), known)
            + weights[1] * expected(int(right[node]), known)
        ) / cover[node]

    def v(known: frozenset[int]) -> float:
        return sum(expected(int(root), known) for root in arrays["roots"])

    m = len(x)
    phi = np.zeros(m)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for subset in itertools.combinations(others, size):
                known = frozenset(subset)
                phi[i] += weight * (v(known | {i}) - v(known))
    return v(frozenset()), phi


def node_arrays(scorer: TreeScorer) -> dict[str, np.ndarray]:
    names = ("feature", "threshold", "left", "right", "missing_left", "value", "roots", "cover")
    return {name: getattr(scorer, name) for name in names}


@pytest.mark.parametrize(
    "estimator",
    [
        pytest.param("forest", id="RandomForest"),
        pytest.param("boosting", id="HistGradientBoosting"),
        pytest.param("regressor", id="DecisionTreeRegressor"),
    ],
)
def test_treeshap_is_the_definition_computed_by_brute_force(estimator: str) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.tree import DecisionTreeRegressor

    x, y = frame(300, seed=1)
    positive: Any = 1
    model: Any
    if estimator == "forest":
        model = scaled(RandomForestClassifier(4, max_depth=5, random_state=0), x, y)
    elif estimator == "boosting":
        model = scaled(HistGradientBoostingClassifier(max_iter=6, random_state=0), x, y)
    else:
        model, positive = scaled(DecisionTreeRegressor(max_depth=6, random_state=0), x, y), None
    scorer = TreeScorer.from_pipeline(model, positive)
    arrays = node_arrays(scorer)
    shap = TreeShap(arrays, len(COLUMNS))
    rows = x.head(12).to_dict("records")
    walked = scorer.walked(rows)
    assert np.isnan(walked).any()  # nulls go where the trees send them
    found = shap.contributions(walked)
    for i, row in enumerate(walked):
        base, phi = brute_force(arrays, row)
        assert shap.base == pytest.approx(base, abs=1e-12)
        assert np.max(np.abs(found[i] - phi)) <= 1e-12, (found[i], phi)


def test_treeshap_agrees_with_lightgbms_own() -> None:
    """The same algorithm, another implementation: LightGBM's `pred_contrib` on the trees the
    walk took from its booster (nulls sent the way it learnt)."""
    from lightgbm import LGBMClassifier

    x, y = frame(500, seed=2)
    estimator = LGBMClassifier(n_estimators=30, num_leaves=15, verbose=-1, random_state=0)
    scorer = TreeScorer.from_pipeline(scaled(estimator, x, y), 1)
    walked = scorer.walked(x.to_dict("records"))
    assert np.isnan(walked).any()
    shap = TreeShap(node_arrays(scorer), len(COLUMNS))
    theirs = estimator.predict(walked, pred_contrib=True)
    ours = shap.contributions(walked)
    assert np.max(np.abs(ours - theirs[:, :-1])) <= 1e-9
    assert np.max(np.abs(shap.base - theirs[:, -1])) <= 1e-9


def test_treeshap_agrees_with_xgboosts_own() -> None:
    """XGBoost's `pred_contribs` (float32) on the trees the walk took from its JSON model:
    the same path-dependent TreeSHAP, its cover the trees' sum of hessians."""
    import xgboost
    from xgboost import XGBClassifier

    x, y = frame(500, seed=2)
    estimator = XGBClassifier(n_estimators=30, max_depth=4, random_state=0)
    scorer = TreeScorer.from_pipeline(scaled(estimator, x, y), 1)
    walked = scorer.walked(x.to_dict("records"))
    shap = TreeShap(node_arrays(scorer), len(COLUMNS))
    theirs = estimator.get_booster().predict(xgboost.DMatrix(walked), pred_contribs=True)
    ours = shap.contributions(walked)
    # XGBoost computes in float32: 9.2e-7 apart measured, the base 0.0
    assert np.max(np.abs(ours - theirs[:, :-1])) <= 2e-6
    assert np.max(np.abs(shap.base - theirs[:, -1])) <= 2e-6


@pytest.mark.parametrize("rows", [1, 7, 300])
def test_additive_whatever_the_number_of_rows_and_the_same_for_each(rows: int) -> None:
    """One row (/explain), several (/explain_batch) or many (batch, blocked): each row's
    contributions are the same, and base + contributions = the walk's raw score."""
    from sklearn.ensemble import RandomForestClassifier

    x, y = frame(400, seed=3)
    model = scaled(RandomForestClassifier(20, random_state=0), x, y)
    explainer = TreeExplainer(TreeScorer.from_pipeline(model, 1))
    records = x.head(rows).to_dict("records")
    found = explainer.explain(records)
    assert np.max(np.abs(found.base + found.contributions.sum(axis=1) - found.raw)) <= 1e-12
    expected = model.predict_proba(x.head(rows))[:, 1]
    assert np.max(np.abs(found.raw - expected)) <= 1e-12  # a forest's raw score: its mean
    one_by_one = np.vstack([explainer.explain([r]).contributions for r in records])
    assert np.array_equal(found.contributions, one_by_one)


def test_a_child_without_training_cover_adds_nothing_unknown() -> None:
    """A split whose one side had no training rows (possible with zero sample weights): when
    its feature is unknown that side weighs 0, as the definition has it (0, not 0 / 0)."""
    arrays = {
        "feature": np.array([0, 1, 0, 0, 0, 0]),
        "threshold": np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.0]),
        "left": np.array([1, 3, 2, 3, 4, 5]),
        "right": np.array([2, 4, 2, 3, 4, 5]),
        "missing_left": np.ones(6, dtype=bool),
        "value": np.array([0.0, 0.0, 5.0, 1.0, 3.0, 0.0]),
        "cover": np.array([10.0, 10.0, 0.0, 4.0, 6.0, 1.0]),
        "roots": np.array([0]),
    }
    shap = TreeShap(arrays, 2)
    for row in ([-1.0, 0.0], [1.0, 2.0], [-1.0, 2.0]):
        base, phi = brute_force(arrays, np.array(row))
        assert shap.base == pytest.approx(base, abs=1e-12)
        found = shap.contributions(np.array([row]))[0]
        assert np.all(np.isfinite(found)) and np.max(np.abs(found - phi)) <= 1e-12, (row, phi)


@pytest.mark.parametrize("estimator", ["forest", "boosting"])
def test_treeshap_agrees_with_the_shap_library(estimator: str) -> None:
    """Another implementation of the same definition: the shap library's TreeExplainer with
    its default feature_perturbation="tree_path_dependent" (the trees' training cover, no
    background rows) gives the contributions /explain serves and evaluate ranks by."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    # the dev group has it everywhere but on Intel macs (pyproject.toml says why)
    shap = pytest.importorskip("shap", reason="shap is not installed on Intel macs")

    from mlgate.pipeline import explain

    x, y = frame(400, seed=4, nulls=False)
    if estimator == "forest":
        model = scaled(RandomForestClassifier(30, max_depth=8, random_state=0), x, y)
    else:
        model = scaled(HistGradientBoostingClassifier(max_iter=40, random_state=0), x, y)
    rows = x.head(60)
    scorer = TreeScorer.from_pipeline(model, 1)
    walked = scorer.walked(rows.to_dict("records"))  # the row as scikit-learn compares it
    theirs = shap.TreeExplainer(model.steps[-1][1])
    values, base = np.asarray(theirs.shap_values(walked)), np.ravel(theirs.expected_value)
    if values.ndim == 3:  # a forest's every class: the positive class's (classes_[1])
        values, base = values[..., 1], base[1:]
    served = TreeExplainer(scorer).explain(rows.to_dict("records"))
    _, evaluated_base, columns, evaluated = explain.contributions(model, rows, None)  # type: ignore[misc]
    assert columns == COLUMNS
    for ours, our_base in ((served.contributions, served.base), (evaluated, evaluated_base)):
        assert np.max(np.abs(ours - values)) <= 1e-9
        assert np.max(np.abs(our_base - base[0])) <= 1e-9
