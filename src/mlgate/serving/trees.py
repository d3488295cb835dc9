"""Tree ensembles scored in numpy: a fitted forest or gradient boosting (scikit-learn's, LightGBM's)
flattened to arrays, walked for a batch of rows (TreeScorer) or one row (RowWalk) without the
library's per-call overhead."""

from __future__ import annotations

import bisect
import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlgate.pipeline.treeshap import BOOSTINGS, FORESTS, join_trees, sklearn_trees
from mlgate.serving.features import (
    EVERY_CLASS,
    FeatureMatrix,
    Row,
    class_columns,
    features_spec,
    final_estimator,
    plain_preprocess,
    plain_values,
)

TREES_FILE = "trees.npz"
TREES_SPEC_FILE = "trees.json"
FOREST_ESTIMATORS = FORESTS  # scikit-learn's tree models, read by pipeline.treeshap
BOOSTING_ESTIMATORS = BOOSTINGS
# a library's boosters, by the module they come from (a project may name its own class alike)
LIBRARY_ESTIMATORS = {
    "lightgbm": ("LGBMClassifier", "LGBMRegressor"),
    "xgboost": ("XGBClassifier", "XGBRegressor"),
}


TREE_ARRAYS = ("feature", "threshold", "left", "right", "missing_left", "value", "roots")
# each node's training cover (weighted samples), for TreeSHAP (explain); a bento built
# before it was stored has none: its trees are walked, not explained
COVER = "cover"


class TreesUnavailable(Exception):
    """The tree model has a part the NumPy walk does not reproduce (the reason)."""


class TreeScorer:
    """A tree ensemble after plain scaling + one-hot, every tree of every row walked at once
    in NumPy: no scikit-learn, no pickle.

    The trees are flattened into arrays over all their nodes (TREE_ARRAYS, stored as .npz):
    a node's `feature`, `threshold`, `left` and `right` children (global indices; a leaf is
    its own child both ways, so a walk that reached it stays), `missing_left` (where a null
    goes, as scikit-learn sends it) and `value` (what its leaf adds to the score); `roots`;
    and each node's training `cover`, which TreeSHAP needs (serving.explainers).
    `depth` steps take every (tree, row) to its leaf. The score is
    link((value of tree 0 + tree 1 + ...) / divisor): a forest's mean (divisor: its number of
    trees), or a boosting's raw prediction (a HistGradientBoosting's tree 0 is a single leaf
    holding its baseline; LightGBM's first tree holds it) through the identity or the sigmoid.
    A multiclass forest's leaves hold every class's fraction (`value` is (nodes, classes)):
    its score is a row of them; a multiclass LightGBM's trees each add to one class's column
    (the others 0), and the score is the softmax of the sums. As in the libraries: a forest
    compares the row cast to float32 with float64 thresholds, HistGradientBoosting and
    LightGBM compare in float64."""

    lean = True
    kind = "numpy-trees"

    def __init__(self, spec: dict[str, Any], arrays: bytes) -> None:
        self.spec = spec
        self.arrays = arrays
        self.matrix = FeatureMatrix(spec)
        with np.load(io.BytesIO(arrays), allow_pickle=False) as stored:
            (
                self.feature,
                self.threshold,
                self.left,
                self.right,
                self.missing_left,
                self.value,
                self.roots,
            ) = (stored[name] for name in TREE_ARRAYS)
            self.cover = stored[COVER] if COVER in stored.files else None
        # node n's left child at 2n, its right child at 2n + 1: one gather a step
        self.children = np.stack([self.left, self.right], axis=1).ravel()
        self.depth = int(spec["depth"])
        self.one_row = RowWalk(
            self.feature, self.threshold, self.left, self.right, self.missing_left, self.roots,
            self.matrix.width, self.depth,
        )  # fmt: skip
        self.float32 = bool(spec["float32"])
        self.divisor = float(spec["divisor"])
        self.sum_dtype = np.float32 if spec.get("sum") == "float32" else np.float64
        self.logistic = spec["link"] == "logistic"
        self.softmax = spec["link"] == "softmax"
        self.complement = bool(spec["complement"])

    def scores(self, rows: Sequence[Row]) -> np.ndarray:
        raw = self.raw_sum(self.leaves(self.walked(rows)))
        if self.softmax:  # shifted by each row's largest, as LightGBM's Softmax
            z = np.exp(raw - raw.max(axis=1, keepdims=True))
            return z / z.sum(axis=1, keepdims=True)
        if not self.logistic:
            return raw
        p = 1.0 / (1.0 + np.exp(-raw))  # scipy's expit, which scikit-learn uses
        return 1.0 - p if self.complement else p

    def walked(self, rows: Sequence[Row]) -> np.ndarray:
        """The feature matrix as the walk compares it."""
        x = self.matrix(rows)
        if self.float32:  # rounded as scikit-learn rounds it, compared in float64 (faster)
            x = x.astype(np.float32).astype(np.float64)
        return x

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """The leaf each tree sends each row of `x` (walked) to, (trees, rows)."""
        if len(x) == 1:  # /predict
            return self.one_row.leaves(x[0].tolist())[:, None]
        nulls = bool(np.isnan(x).any())
        flat = x.ravel()
        row_start = np.arange(len(x)) * x.shape[1]
        node = np.repeat(self.roots[:, None], len(x), axis=1)  # (trees, rows)
        for _ in range(self.depth):
            here = flat[row_start + self.feature[node]]
            right = here > self.threshold[node]  # scikit-learn: x <= threshold goes left
            if nulls:
                right = np.where(np.isnan(here), ~self.missing_left[node], right)
            node = self.children[2 * node + right]
        return node

    def raw_sum(self, node: np.ndarray, dtype: Any = None) -> np.ndarray:
        """The score before the link (a forest's mean, a boosting's log-odds of classes_[1]
        or prediction) of each row from the leaf each tree reached, (trees, rows); added in
        `dtype` (default: as the library adds, XGBoost in float32)."""
        # Tree after tree, in the library's order: np.sum's pairwise order can differ in
        # the last bit, a cumulative sum is sequential.
        total = np.cumsum(self.value[node], axis=0, dtype=dtype or self.sum_dtype)[-1]
        return total.astype(np.float64) / self.divisor

    def files(self) -> dict[str, bytes]:
        return {TREES_FILE: self.arrays, TREES_SPEC_FILE: json.dumps(self.spec).encode()}

    @staticmethod
    def supports(model: Any) -> bool:
        """A tree model after plain scaling + one-hot: from_pipeline says whether it fits."""
        if not plain_preprocess(model):
            return False
        estimator = final_estimator(model)
        name, library = type(estimator).__name__, type(estimator).__module__.partition(".")[0]
        return name in FOREST_ESTIMATORS + BOOSTING_ESTIMATORS + LIBRARY_ESTIMATORS.get(library, ())

    @classmethod
    def from_pipeline(cls, model: Any, positive_label: Any) -> TreeScorer:
        """The Pipeline's trees as arrays; TreesUnavailable (with the reason) when a part of
        them is not reproduced: a boosting's categorical splits, loss other than log_loss or
        squared_error (LightGBM, XGBoost: binary, multiclass, regression), a
        HistGradientBoosting's several classes; a forest's several outputs."""
        # the walk of a forest is the same for several classes (each leaf's value a row of
        # class fractions), and so is LightGBM's and XGBoost's (a leaf adds to its class's
        # column only)
        if not cls.supports(model):
            raise TreesUnavailable("not a tree model after plain scaling + one-hot")
        estimator = model.steps[-1][1]  # its classes_: the project's labels (EncodedLabels)
        name = type(final_estimator(model)).__name__
        classifier = hasattr(estimator, "classes_")
        if classifier != (positive_label is not None):
            task = "classification" if positive_label is not None else "regression"
            raise TreesUnavailable(f"{name} in a {task} project")
        library = type(final_estimator(model)).__module__.partition(".")[0]
        if library == "lightgbm":
            arrays, spec = _lightgbm(estimator, positive_label)
        elif library == "xgboost":
            arrays, spec = _xgboost(estimator, positive_label)
        elif name in BOOSTING_ESTIMATORS:
            arrays, spec = _boosting(estimator, positive_label)
        else:
            arrays, spec = _forest(estimator, positive_label)
        spec["depth"] = _depth(arrays)
        if classifier:
            spec["classes"] = plain_values(estimator.classes_)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return cls({**features_spec(model), **spec}, buffer.getvalue())


class RowWalk:
    """One row through every tree, as TreeScorer.scores does for many, with less memory
    traffic: what a /predict request costs once the trees outgrow the CPU caches (a
    100-tree forest: ~43k nodes).

    The nodes are renumbered in (feature, threshold) order, leaves last. A row goes right
    at a node when its value is above the threshold (scikit-learn's `x <= threshold` goes
    left), so the nodes of one feature that send it right are a prefix of that feature's
    run, found by bisection (`bisect_left` on the run's thresholds as a list: cheaper than
    a NumPy call). Each node's next node is then the left children (int32) copied with
    those prefixes overwritten by the right children: memory copies, no gather or compare
    over every node. A null goes where the node's `missing_left` says. The walk follows
    those pointers `depth` times (a leaf points at itself)."""

    def __init__(
        self,
        feature: np.ndarray,
        threshold: np.ndarray,
        left: np.ndarray,
        right: np.ndarray,
        missing_left: np.ndarray,
        roots: np.ndarray,
        width: int,
        depth: int,
    ) -> None:
        n = len(feature)
        leaf = left == np.arange(n)
        run = np.where(leaf, width, feature)  # leaves make the last run, never sent right
        order = np.lexsort((threshold, run))  # new id -> old id
        new = np.empty(n, dtype=np.int64)
        new[order] = np.arange(n)
        self.old = order
        self.left = new[left[order]].astype(np.int32)
        self.right = new[right[order]].astype(np.int32)
        self.missing_left = missing_left[order]
        self.roots = new[roots]
        self.depth = depth
        # where each feature's run begins (and the leaves' run), as Python ints
        self.starts = [0, *np.cumsum(np.bincount(run, minlength=width + 1)).tolist()]
        ordered = threshold[order]
        self.thresholds = [
            ordered[self.starts[f] : self.starts[f + 1]].tolist() for f in range(width)
        ]

    def leaves(self, values: list[float]) -> np.ndarray:
        """The (original) leaf each tree sends the row to, from the row's feature values."""
        step = self.left.copy()  # each node's next node
        for f, value in enumerate(values):
            start = self.starts[f]
            if value != value:  # NaN
                run = slice(start, self.starts[f + 1])
                step[run] = np.where(self.missing_left[run], self.left[run], self.right[run])
                continue
            stop = start + bisect.bisect_left(self.thresholds[f], value)
            if stop > start:
                step[start:stop] = self.right[start:stop]
        leaf = self.roots
        follow = step.take  # cheaper per call than step[leaf]
        for _ in range(self.depth):
            leaf = follow(leaf)
        return self.old[leaf]


def _forest(estimator: Any, positive_label: Any) -> tuple[dict[str, np.ndarray], dict]:
    """A forest's (or one decision tree's) trees (pipeline.treeshap reads them); each leaf's
    value is its tree's answer: the positive class's fraction (scikit-learn 1.9's
    predict_proba takes tree_.value as it is), every class's, or the regression value."""
    if estimator.n_outputs_ != 1:
        raise TreesUnavailable(f"{type(estimator).__name__} with {estimator.n_outputs_} outputs")
    read = sklearn_trees(estimator)
    assert read is not None  # a forest of one output
    arrays, divisor, _ = read
    if positive_label is not None:
        arrays["value"] = arrays["value"][:, class_columns(estimator.classes_, positive_label)]
    spec = {"float32": True, "divisor": int(divisor), "link": "identity", "complement": False}
    return arrays, spec


def _boosting(estimator: Any, positive_label: Any) -> tuple[dict[str, np.ndarray], dict]:
    """A HistGradientBoosting's predictors (pipeline.treeshap reads them), after a first tree
    of one leaf: its baseline."""
    name = type(estimator).__name__
    if positive_label is EVERY_CLASS:
        raise TreesUnavailable(f"{name} of several classes (one tree per class an iteration)")
    wanted = "log_loss" if positive_label is not None else "squared_error"
    if estimator.loss != wanted:
        raise TreesUnavailable(f"{name} with loss {estimator.loss!r} (only {wanted!r})")
    if estimator.n_trees_per_iteration_ != 1:
        raise TreesUnavailable(f"{name} with {estimator.n_trees_per_iteration_} classes")
    if getattr(estimator, "_preprocessor", None) is not None:
        raise TreesUnavailable(f"{name} with categorical features")
    read = sklearn_trees(estimator)
    if read is None:
        raise TreesUnavailable(f"{name} with categorical splits")
    arrays = read[0]
    classifier = positive_label is not None
    spec = {
        "float32": False,
        "divisor": 1,
        "link": "logistic" if classifier else "identity",
        "complement": classifier and list(estimator.classes_).index(positive_label) == 0,
    }
    return arrays, spec


def _lightgbm(estimator: Any, positive_label: Any) -> tuple[dict[str, np.ndarray], dict]:
    """A LightGBM booster's trees (`booster_.dump_model()`: the iterations its predict uses),
    their sum the raw score, its first tree holding the starting score: binary (the sigmoid
    of classes_[1]'s log-odds), multiclass (num_class trees an iteration, the softmax of each
    class's sum), regression (L2: the sum itself)."""
    name = type(estimator).__name__
    dump = estimator.booster_.dump_model()
    objective, *options = dump["objective"].split()
    wanted = {None: "regression", EVERY_CLASS: "multiclass"}.get(positive_label, "binary")
    if objective != wanted or (wanted == "binary" and "sigmoid:1" not in options):
        raise TreesUnavailable(f"{name} with objective {dump['objective']!r} (only {wanted!r})")
    if dump.get("average_output"):
        raise TreesUnavailable(f"{name} as a random forest (boosting 'rf': an average)")
    per_iteration = int(dump["num_tree_per_iteration"])
    classes = per_iteration if positive_label is EVERY_CLASS else 0
    trees = [
        _lightgbm_tree(info["tree_structure"], name, info["tree_index"] % per_iteration, classes)
        for info in dump["tree_info"]
    ]
    link = {"binary": "logistic", "multiclass": "softmax"}.get(wanted, "identity")
    spec = {
        "float32": False,
        "divisor": 1,
        "link": link,
        "complement": link == "logistic" and list(estimator.classes_).index(positive_label) == 0,
    }
    return join_trees(trees), spec


def _lightgbm_tree(root: dict[str, Any], name: str, column: int, classes: int) -> tuple[Any, ...]:
    """One tree of dump_model() as node arrays, in preorder (iteratively: a deep tree does not
    reach Python's recursion limit). LightGBM sends `x <= threshold` left; a null goes the
    default way (missing_type NaN) or as 0.0 would (None). A multiclass tree's leaves add to
    its class's column of (nodes, classes) values."""
    nodes: dict[str, list[Any]] = {
        key: [] for key in ("leaf", "feature", "threshold", "left", "right", "missing", "value")
    }
    cover: list[float] = []
    stack: list[tuple[dict[str, Any], int, str]] = [(root, -1, "")]
    while stack:
        node, parent, side = stack.pop()
        at = len(cover)
        if parent >= 0:
            nodes[side][parent] = at
        leaf = "leaf_value" in node
        if leaf and "leaf_const" in node:
            raise TreesUnavailable(f"{name} with linear trees (linear_tree)")
        if not leaf and node["decision_type"] != "<=":
            raise TreesUnavailable(f"{name} with categorical splits")
        if not leaf and node["missing_type"] not in ("NaN", "None"):
            raise TreesUnavailable(f"{name} with zero as missing (missing_type 'Zero')")
        threshold = 0.0 if leaf else float(node["threshold"])
        value = float(node["leaf_value"]) if leaf else 0.0
        if classes:
            value = np.eye(classes)[column] * value
        missing = node.get("missing_type") == "NaN"
        row = {
            "leaf": leaf,
            "feature": 0 if leaf else int(node["split_feature"]),
            "threshold": threshold,
            "left": at,
            "right": at,
            "missing": bool(node["default_left"]) if missing else threshold >= 0.0,  # as 0.0
            "value": value,
        }
        for key, item in row.items():
            nodes[key].append(item)
        # a tree of one leaf has no count (it covers every row: any cover is the same)
        cover.append(float(node.get("leaf_count", 1)) if leaf else float(node["internal_count"]))
        if not leaf:
            stack += [(node["right_child"], at, "right"), (node["left_child"], at, "left")]
    return _tree(
        np.array(nodes["leaf"]), nodes["feature"], nodes["threshold"], nodes["left"],
        nodes["right"], nodes["missing"], np.array(nodes["value"]), cover,
    )  # fmt: skip


def _xgboost(estimator: Any, positive_label: Any) -> tuple[dict[str, np.ndarray], dict]:
    """An XGBoost booster's trees (its JSON model), after a first tree of one leaf: its base
    margin. XGBoost sends `x < threshold` left with the row and the thresholds in float32:
    the walk compares the row cast to float32 with the float32 just below each threshold
    (`x <= that`), and sums the leaves in float32 from the base margin, tree after tree, as
    XGBoost does; binary: the sigmoid, multiclass (softprob): the softmax (both in float64,
    within ~1e-7 of XGBoost's float32 ones)."""
    inner = getattr(estimator, "estimator_", estimator)  # inside pipeline.labels.EncodedLabels
    name = type(inner).__name__
    learner = json.loads(inner.get_booster().save_raw(raw_format="json"))["learner"]
    objective, booster = learner["objective"]["name"], learner["gradient_booster"]
    wanted = {None: "reg:squarederror", EVERY_CLASS: "multi:softprob"}.get(
        positive_label, "binary:logistic"
    )
    if objective != wanted:
        raise TreesUnavailable(f"{name} with objective {objective!r} (only {wanted!r})")
    if booster["name"] != "gbtree":
        raise TreesUnavailable(f"{name} with booster {booster['name']!r} (only 'gbtree')")
    if inner.missing == inner.missing:  # a number marks a missing value, not only NaN
        raise TreesUnavailable(f"{name} with missing={inner.missing!r} (only NaN)")
    if inner.get_booster().attr("best_iteration") is not None:
        raise TreesUnavailable(f"{name} stopped early (its predict uses best_iteration)")
    model = booster["model"]
    if int(learner["learner_model_param"]["num_target"]) != 1:
        raise TreesUnavailable(f"{name} with several targets")
    base = np.asarray(json.loads(learner["learner_model_param"]["base_score"]), np.float32)
    if wanted == "binary:logistic":  # stored as a probability: its log-odds, in float32
        base = -np.log(np.float32(1) / base - np.float32(1))
    classes = len(base) if positive_label is EVERY_CLASS else 0
    zero, one, leaf = np.zeros(1), np.ones(1), np.ones(1, dtype=bool)
    trees = [_tree(leaf, zero, zero, zero, zero, zero, base[None, :] if classes else base, one)]
    for tree, group in zip(model["trees"], model["tree_info"], strict=True):
        if any(tree["split_type"]):
            raise TreesUnavailable(f"{name} with categorical splits")
        left = np.asarray(tree["left_children"])
        at_leaf = left < 0
        # each value exactly the float32 XGBoost wrote (the shortest text that reads back)
        condition = np.asarray(tree["split_conditions"], dtype=np.float32)
        below = np.nextafter(condition, np.float32(-np.inf))
        value = np.where(at_leaf, condition, 0).astype(np.float64)
        trees.append(
            _tree(
                leaf=at_leaf,
                feature=tree["split_indices"],
                threshold=np.where(at_leaf, 0, below),
                left=left,
                right=tree["right_children"],
                missing_left=tree["default_left"],
                value=np.eye(classes)[group] * value[:, None] if classes else value,
                cover=tree["sum_hessian"],
            )
        )
    link = {"binary:logistic": "logistic", "multi:softprob": "softmax"}.get(wanted, "identity")
    spec = {
        "float32": True,
        "sum": "float32",
        "divisor": 1,
        "link": link,
        "complement": link == "logistic" and list(estimator.classes_).index(positive_label) == 0,
    }
    return join_trees(trees), spec


def _tree(
    leaf: Any,
    feature: Any,
    threshold: Any,
    left: Any,
    right: Any,
    missing_left: Any,
    value: Any,
    cover: Any,
) -> tuple[Any, ...]:
    """One tree's node arrays (children as indices within the tree), in the order
    pipeline.treeshap.join_trees joins them."""
    return (np.asarray(leaf, dtype=bool), feature, threshold, left, right, missing_left, value,
            cover)  # fmt: skip


def _depth(arrays: dict[str, np.ndarray]) -> int:
    """The longest walk from a root to its leaf: the steps TreeScorer.scores takes."""
    node, depth = arrays["roots"], 0
    while True:
        inner = node[arrays["left"][node] != node]
        if not len(inner):
            return depth
        node, depth = np.concatenate([arrays["left"][inner], arrays["right"][inner]]), depth + 1
