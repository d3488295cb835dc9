"""Exact TreeSHAP (path-dependent, as Lundberg et al. define it and LightGBM's `pred_contrib`
computes it) over the tree walk's flattened node arrays, in NumPy.

Each leaf is a product over the distinct features its path splits on: for feature j, `o_j`
(1 when the row satisfies every split of the path on j, else 0) when j is known, else `z_j`
(the share of the training cover that went the path's way at those splits). A leaf's
Shapley value for feature i is then
    value * (o_i - z_i) * sum over S of |S|! (d-|S|-1)! / d! * prod(o in S) * prod(z not in S)
(S the subsets of the path's other d-1 features), and that weighted sum is the integral
over u in [0, 1] of prod over j != i of (u o_j + (1 - u) z_j): a polynomial of degree d-1,
which Gauss-Legendre quadrature with ceil(d/2) points integrates exactly. The leaves are
grouped by d, so each group is a few array operations over (rows, leaves, points, d).
Efficiency holds leaf by leaf: base + contributions = the trees' raw sum, to rounding.

A leaf's value may be a vector (a multiclass forest's class fractions, one boosting tree's
term for its class): every output is attributed at once, the paths walked once.
`sklearn_trees` reads a fitted scikit-learn forest, decision tree or HistGradientBoosting
into these arrays (for evaluate's importance, which cannot use the service's tree walk).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# elements of one (rows, leaves, d, points) block: ~16 MB of float64 per temporary
BLOCK_ELEMENTS = 2_000_000


class TreeShap:
    """The leaves of flattened trees (TREE_ARRAYS plus each node's training `cover`) as
    paths, ready to attribute the trees' raw sum to the `width` input columns."""

    def __init__(self, arrays: dict[str, np.ndarray], width: int) -> None:
        self.width = width
        paths = _leaf_paths(arrays)
        # a leaf reached without a split (a boosting's baseline) is all base; a float, or one
        # per output where the leaves hold a vector
        self.outputs = np.shape(arrays["value"])[1:]
        base = sum((v * math.prod(z for *_, z in p) for v, p in paths), np.zeros(self.outputs))
        self.base = float(base) if not self.outputs else np.asarray(base)
        groups: dict[int, list[tuple[Any, list[tuple[int, float, float, bool, float]]]]] = {}
        for value, path in paths:
            if path:
                groups.setdefault(len(path), []).append((value, path))
        self.groups = [_Group(d, leaves) for d, leaves in sorted(groups.items())]

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(rows, width), or (rows, width, outputs) where the leaves hold a vector: each input
        column's contribution to each row's raw sum."""
        n = len(x)
        out = np.zeros((n, self.width, *self.outputs))
        for group in self.groups:
            per_row = group.leaves * group.d * max(len(group.weights), *self.outputs, 1)
            step = max(1, BLOCK_ELEMENTS // max(per_row, 1))
            for start in range(0, n, step):
                out[start : start + step] += group.contributions(
                    x[start : start + step], self.width
                )
        return out


class _Group:
    """The leaves whose paths split on `d` distinct features, as (leaves, d) arrays."""

    def __init__(self, d: int, leaves: list[tuple[Any, list[Any]]]) -> None:
        self.d = d
        self.leaves = len(leaves)
        self.value = np.array([v for v, _ in leaves])
        paths = np.array([p for _, p in leaves], dtype=float)  # (leaves, d, 5)
        self.feature = paths[..., 0].astype(np.intp)
        self.lo, self.hi, self.zero = paths[..., 1], paths[..., 2], paths[..., 4]
        self.nan_ok = paths[..., 3].astype(bool)
        nodes, weights = np.polynomial.legendre.leggauss(max(1, math.ceil(d / 2)))
        self.nodes = (nodes + 1)[:, None] / 2  # on [0, 1], (points, 1)
        self.weights = weights / 2
        # u o + (1 - u) z at each point u, for o = 0 and for o = 1: (leaves, points, d)
        self.unknown = self.zero[:, None, :] * (1 - self.nodes)
        self.known = self.unknown + self.nodes
        # a factor is 0 only where o = z = 0 (a child without training cover)
        self.covered = bool((self.zero > 0).all())

    def contributions(self, x: np.ndarray, width: int) -> np.ndarray:
        values = x[:, self.feature]  # (rows, leaves, d)
        one = ((values > self.lo) & (values <= self.hi)) | (np.isnan(values) & self.nan_ok)
        g = np.where(one[:, :, None, :], self.known, self.unknown)  # (rows, leaves, points, d)
        # the product of the others' factors: the whole product over each one's (where a
        # factor is 0 the leaf adds nothing: 0, not 0 / 0), weighted by the points' weights
        whole = g.prod(axis=-1, keepdims=True)
        whole *= self.weights[:, None]
        if self.covered:
            others = np.divide(whole, g, out=g)
        else:
            others = np.divide(whole, g, out=np.zeros_like(g), where=g > 0)
        # summed point by point (no BLAS): a row gets the same bits in any batch
        integral = np.einsum("nlqd->nld", others)  # (rows, leaves, d)
        n = len(x)
        where = (np.arange(n)[:, None, None] * width + self.feature).ravel()
        if self.value.ndim == 1:
            terms = self.value[:, None] * (one - self.zero) * integral
            return np.bincount(where, weights=terms.ravel(), minlength=n * width).reshape(n, width)
        share = (one - self.zero) * integral
        return np.stack(
            [
                np.bincount(where, weights=(v[:, None] * share).ravel(), minlength=n * width)
                for v in self.value.T
            ],
            axis=-1,
        ).reshape(n, width, -1)


def _leaf_paths(arrays: dict[str, np.ndarray]) -> list[tuple[Any, list[Any]]]:
    """Every leaf's value and path: per distinct feature split on the way, (feature, lo, hi,
    a null goes this way at every split, zero fraction), such that a row satisfies the
    path's splits on that feature when lo < x <= hi (or x is null and a null goes so)."""
    feature, threshold = arrays["feature"], arrays["threshold"]
    left, right, missing_left = arrays["left"], arrays["right"], arrays["missing_left"]
    value, cover = arrays["value"], arrays["cover"]
    leaves = []
    stack: list[tuple[int, dict[int, tuple[float, float, bool, float]]]] = [
        (int(root), {}) for root in arrays["roots"]
    ]
    while stack:
        node, path = stack.pop()
        if left[node] == node:
            leaf = value[node] if value.ndim > 1 else float(value[node])
            leaves.append((leaf, [(f, *bounds) for f, bounds in sorted(path.items())]))
            continue
        f, t = int(feature[node]), float(threshold[node])
        for child, goes_left in ((int(left[node]), True), (int(right[node]), False)):
            lo, hi, nan_ok, zero = path.get(f, (-math.inf, math.inf, True, 1.0))
            lo, hi = (lo, min(hi, t)) if goes_left else (max(lo, t), hi)
            nan_ok = nan_ok and bool(missing_left[node]) == goes_left
            share = float(cover[child]) / float(cover[node])
            stack.append((child, {**path, f: (lo, hi, nan_ok, zero * share)}))
    return leaves


FORESTS = (
    "RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier",
    "ExtraTreesRegressor", "DecisionTreeClassifier", "DecisionTreeRegressor",
    "ExtraTreeClassifier", "ExtraTreeRegressor",
)  # fmt: skip
BOOSTINGS = ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")


def sklearn_trees(estimator: Any) -> tuple[dict[str, np.ndarray], float, bool] | None:
    """(TreeShap's arrays, the divisor of their raw sum, whether the row is compared cast to
    float32) of a fitted scikit-learn forest or decision tree (a classifier's leaves: every
    class's fraction, its probabilities the raw sum / divisor) or HistGradientBoosting (a
    first one-leaf tree holds the baseline; with several classes each tree adds to its class's
    column: the raw sum is decision_function); None for another estimator or what the arrays
    do not hold (several outputs, categorical splits)."""
    name = type(estimator).__name__
    if name in FORESTS and estimator.n_outputs_ == 1:
        trees = [e.tree_ for e in getattr(estimator, "estimators_", [estimator])]
        classifier = hasattr(estimator, "classes_")
        nodes = [
            (t.children_left < 0, t.feature, t.threshold, t.children_left, t.children_right,
             t.missing_go_to_left, t.value[:, 0, :] if classifier else t.value[:, 0, 0],
             t.weighted_n_node_samples)
            for t in trees
        ]  # fmt: skip
        return join_trees(nodes), float(len(trees)), True
    if name not in BOOSTINGS or getattr(estimator, "_preprocessor", None) is not None:
        return None
    k = estimator.n_trees_per_iteration_
    baseline = np.asarray(estimator._baseline_prediction, dtype=float).ravel()
    one, no = np.ones(1), np.zeros(1)
    nodes = [(one.astype(bool), no, no, no, no, no, baseline[None, :] if k > 1 else baseline, one)]
    for iteration in estimator._predictors:
        for c, predictor in enumerate(iteration):
            n = predictor.nodes
            if n["is_categorical"].any():
                return None
            value = n["value"] if k == 1 else np.eye(k)[c] * n["value"][:, None]
            nodes.append(
                (n["is_leaf"].astype(bool), n["feature_idx"], n["num_threshold"], n["left"],
                 n["right"], n["missing_go_to_left"], value, n["count"])
            )  # fmt: skip
    return join_trees(nodes), 1.0, False


def join_trees(trees: list[tuple[Any, ...]]) -> dict[str, np.ndarray]:
    """Trees' (leaf, feature, threshold, left, right, missing_left, value, cover) end to end:
    children and roots as global node indices, a leaf its own child both ways (and reading
    feature 0), typed as the walk and TreeShap read them (serving.trees stores them so)."""
    keys = ("feature", "threshold", "left", "right", "missing_left", "value", "cover")
    parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    roots, at = [], 0
    for leaf, *columns in trees:
        own = np.arange(len(leaf)) + at
        for key, column in zip(keys, columns, strict=True):
            if key in ("left", "right"):
                column = np.where(leaf, own, np.asarray(column) + at)
            parts[key].append(np.where(leaf, 0, column) if key == "feature" else column)
        roots.append(at)
        at += len(leaf)
    arrays = {key: np.concatenate(parts[key]) for key in keys}
    arrays["feature"] = arrays["feature"].astype(np.intp)
    arrays["left"], arrays["right"] = (
        arrays["left"].astype(np.intp),
        arrays["right"].astype(np.intp),
    )
    arrays["threshold"] = arrays["threshold"].astype(np.float64)
    arrays["missing_left"] = arrays["missing_left"].astype(bool)
    arrays["value"], arrays["cover"] = arrays["value"].astype(float), arrays["cover"].astype(float)
    return {**arrays, "roots": np.asarray(roots, dtype=np.intp)}
