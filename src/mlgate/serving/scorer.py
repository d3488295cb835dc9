"""Scores rows with the fitted Pipeline's numbers, without a per-call pandas DataFrame.

A one-row `Pipeline.predict_proba` costs ~5-16 ms, almost all of it the ColumnTransformer's
per-call DataFrame checks; the arithmetic is microseconds. Four paths, the fastest that
gives the Pipeline's result (measured per estimator in docs/SERVING.md):

- `LeanScorer`: a binary logistic regression after scaling + one-hot, in NumPy (~10 µs a row);
- `TreeScorer`: a forest, a decision tree or a HistGradientBoosting after scaling + one-hot,
  its trees flattened into arrays and walked in NumPy with scikit-learn's comparisons (a
  forest's in float32): bit for bit the Pipeline's scores, without scikit-learn or pickle
  (~0.06-0.2 ms for one row, ~20-35 µs a row in batches; measured in docs/SERVING.md);
- `OnnxScorer`: the whole Pipeline converted by skl2onnx, run by ONNX Runtime in float64
  (~40-80 µs a row): linear models (Ridge, LogisticRegression with several classes...);
- `PipelineScorer`: the Pipeline itself, for what none reproduces within the tolerance.

A Pipeline that imputes (features.impute) gets the same paths: `Imputed` fills a missing
value with the fitted imputer's value, then the path scores the Pipeline without imputers.
"""

from __future__ import annotations

import bisect
import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Row = Mapping[str, Any]
# What each fast scorer stores beside the pickled Pipeline in the BentoML model (`files()`),
# read back by `load_stored` in `mlgate build` (the check) and in the service.
NUMPY_FILE = "scorer.json"
TREES_FILE = "trees.npz"
TREES_SPEC_FILE = "trees.json"
ONNX_FILE = "model.onnx"
ONNX_SPEC_FILE = "onnx.json"
IMPUTE_FILE = "impute.json"  # the fill values, when the Pipeline imputes before the path
# `mlgate build` refuses a fast path whose scores differ from the Pipeline's by more (absolute,
# on every row of the test split); the service re-checks its reference rows with it.
PARITY_TOLERANCE = 1e-5


class PipelineScorer:
    """The reference path: a DataFrame through the whole Pipeline. The score is the positive
    class's probability, or the prediction itself for a regressor (positive_label None)."""

    lean = False
    kind = "pipeline"  # as `mlgate build` prints it and /model_info shows it

    def __init__(self, model: Any, positive_label: Any, columns: Sequence[str]) -> None:
        self.model = model
        self.columns = list(columns)
        self.positive_index = (
            None if positive_label is None else list(model.classes_).index(positive_label)
        )

    def scores(self, rows: Sequence[Row]) -> np.ndarray:
        import pandas as pd

        frame = pd.DataFrame.from_records(list(rows), columns=self.columns)
        if self.positive_index is None:
            return np.asarray(self.model.predict(frame), dtype=float).ravel()
        return self.model.predict_proba(frame)[:, self.positive_index]


class OnnxUnavailable(Exception):
    """skl2onnx cannot convert the Pipeline, or ONNX Runtime does not reproduce its scores."""


def plain_preprocess(model: Any) -> bool:
    """A Pipeline of (ColumnTransformer of StandardScaler / plain OneHotEncoder, estimator):
    no imputer, so a row never carries a null the converted graph would have to impute."""
    steps = getattr(model, "steps", None)
    if not steps or len(steps) != 2 or type(steps[0][1]).__name__ != "ColumnTransformer":
        return False
    for name, transformer, _ in steps[0][1].transformers_:
        if name == "remainder":
            if transformer != "drop":
                return False
            continue
        kind = type(transformer).__name__
        if kind == "OneHotEncoder":
            if (
                transformer.drop is not None
                or transformer.handle_unknown != "ignore"
                or getattr(transformer, "_infrequent_enabled", False)
            ):
                return False
        elif kind != "StandardScaler":
            return False
    return True


class OnnxScorer:
    """The fitted Pipeline as an ONNX graph (skl2onnx), scored by ONNX Runtime.

    Float64 from input to output: in float32 a Ridge's predictions moved by ~1e-3 and a
    logistic regression's probabilities by ~1e-7 (measured). One thread per session: the
    service's concurrency is its workers, and a row is microseconds of arithmetic.
    `convert` makes it from the Pipeline (at `mlgate build`); the service builds it from the
    stored graph and `spec` alone, without scikit-learn."""

    lean = True
    kind = "onnx"

    def __init__(self, graph: bytes, spec: dict[str, Any]) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.graph = graph
        self.spec = spec
        dtypes = {"double": np.float64, "int64": np.int64, "string": object}
        self.inputs = [
            (i.name, spec["inputs"][i.name], dtypes[spec["kinds"][i.name]])
            for i in self.session.get_inputs()
        ]
        self.output = [spec["output"]]
        self.positive_index = spec.get("positive_index")

    def files(self) -> dict[str, bytes]:
        return {ONNX_FILE: self.graph, ONNX_SPEC_FILE: json.dumps(self.spec).encode()}

    def scores(self, rows: Sequence[Row]) -> np.ndarray:
        feeds = {
            name: np.array([[row[column]] for row in rows], dtype=dtype)
            for name, column, dtype in self.inputs
        }
        out = self.session.run(self.output, feeds)[0]
        if self.positive_index is None:
            return np.asarray(out, dtype=float).ravel()
        return np.asarray(out[:, self.positive_index], dtype=float)

    @classmethod
    def convert(cls, model: Any, positive_label: Any) -> OnnxScorer:
        """skl2onnx's graph of the Pipeline; OnnxUnavailable (with the reason) when it has none."""
        if not plain_preprocess(model):
            raise OnnxUnavailable(
                "the Pipeline is not (scaler + one-hot, estimator): imputers are not converted"
            )
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import (
            DoubleTensorType,
            Int64TensorType,
            StringTensorType,
        )

        kinds: dict[str, str] = {}
        for name, transformer, columns in model.steps[0][1].transformers_:
            if name == "remainder":
                continue
            if type(transformer).__name__ == "OneHotEncoder":
                for column, categories in zip(columns, transformer.categories_, strict=True):
                    kind = categories.dtype.kind
                    kinds[column] = (
                        "int64" if kind in "iub" else "double" if kind == "f" else "string"
                    )
            else:
                kinds.update(dict.fromkeys(columns, "double"))
        types = {"double": DoubleTensorType, "int64": Int64TensorType, "string": StringTensorType}
        estimator = model.steps[-1][1]
        classifier = positive_label is not None
        try:
            graph = convert_sklearn(
                model,
                initial_types=[(c, types[k]([None, 1])) for c, k in kinds.items()],
                options={id(estimator): {"zipmap": False}} if classifier else None,
                target_opset={"": 17, "ai.onnx.ml": 3},
            ).SerializeToString()
        # skl2onnx raises what its converters raise: an estimator it has no converter for, an
        # attribute of a newer scikit-learn it cannot read (seen: HistGradientBoosting).
        except (RuntimeError, ValueError, TypeError, NotImplementedError, KeyError) as err:
            raise OnnxUnavailable(
                f"skl2onnx cannot convert {type(estimator).__name__}: "
                f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            ) from None
        inputs, outputs = _graph_names(graph)
        # skl2onnx renames an input whose column is no identifier ("blood pressure" ->
        # "blood_pressure"); the graph keeps initial_types' order, so position maps it back
        columns = dict(zip(inputs, kinds, strict=True))
        spec: dict[str, Any] = {
            "inputs": columns,
            "kinds": {name: kinds[column] for name, column in columns.items()},
            "output": outputs[1] if classifier else outputs[0],
            "positive_index": (
                list(estimator.classes_).index(positive_label) if classifier else None
            ),
        }
        if classifier:
            spec["classes"] = _plain(estimator.classes_)
        try:
            return cls(graph, spec)
        except RuntimeError as err:  # ONNX Runtime's Fail / InvalidGraph (type mismatches)
            raise OnnxUnavailable(f"ONNX Runtime cannot run the converted graph: {err}") from None


def _graph_names(graph: bytes) -> tuple[list[str], list[str]]:
    """The graph's input and output names, in order."""
    import onnx

    parsed = onnx.load_from_string(graph).graph
    return [i.name for i in parsed.input], [o.name for o in parsed.output]


def parity(scorer: Any, rows: Sequence[Row], expected: np.ndarray) -> float:
    """The largest absolute difference between the scorer's scores and the Pipeline's."""
    return float(np.max(np.abs(np.asarray(scorer.scores(rows)) - np.asarray(expected))))


def features_spec(model: Any) -> dict[str, Any]:
    """The numbers of a plain_preprocess Pipeline's scaling and one-hot, as JSON: where each
    column lands in the feature matrix the estimator sees, and how."""
    preprocess = model.steps[0][1]
    spec: dict[str, Any] = {
        "width": int(sum(s.stop - s.start for s in preprocess.output_indices_.values())),
        "numeric": [],
        "categorical": [],
    }
    for name, transformer, columns in preprocess.transformers_:
        if name == "remainder":
            continue
        out = preprocess.output_indices_[name]
        if type(transformer).__name__ == "StandardScaler":
            n = len(columns)
            mean = transformer.mean_ if transformer.with_mean else np.zeros(n)
            scale = transformer.scale_ if transformer.with_std else np.ones(n)
            spec["numeric"].append(
                {
                    "columns": list(columns),
                    "start": out.start,
                    "stop": out.stop,
                    "mean": np.asarray(mean).tolist(),
                    "scale": np.asarray(scale).tolist(),
                }
            )
        else:  # OneHotEncoder, as plain_preprocess checked
            offset = out.start
            for column, categories in zip(columns, transformer.categories_, strict=True):
                spec["categorical"].append(
                    {"column": column, "offset": offset, "categories": categories.tolist()}
                )
                offset += len(categories)
    return spec


class FeatureMatrix:
    """Rows to the matrix the estimator sees, from features_spec's numbers, in NumPy."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.width = int(spec["width"])
        self.numeric = [
            (
                list(n["columns"]),
                slice(n["start"], n["stop"]),
                np.asarray(n["mean"], dtype=float),
                np.asarray(n["scale"], dtype=float),
            )
            for n in spec["numeric"]
        ]
        self.categorical = [
            (c["column"], int(c["offset"]), {v: i for i, v in enumerate(c["categories"])})
            for c in spec["categorical"]
        ]

    def __call__(self, rows: Sequence[Row]) -> np.ndarray:
        x = np.zeros((len(rows), self.width))
        for columns, out, mean, scale in self.numeric:
            values = np.array([[row[c] for c in columns] for row in rows], dtype=float)
            x[:, out] = (values - mean) / scale
        for column, offset, codes in self.categorical:
            for i, row in enumerate(rows):
                code = codes.get(row[column])
                if code is not None:  # an unseen category is all zeros, as handle_unknown="ignore"
                    x[i, offset + code] = 1.0
        return x


class LeanScorer:
    """Numeric columns scaled, categorical columns one-hot, estimator applied: all in NumPy.

    Built from the fitted Pipeline (`from_pipeline`), or from its exported numbers
    (`files()` -> JSON -> `LeanScorer(spec)`), which needs neither scikit-learn nor pandas: the
    service starts faster, and `mlgate build` checks the export against the Pipeline."""

    lean = True
    kind = "numpy"

    def __init__(self, spec: dict[str, Any], estimator: Any = None) -> None:
        self.spec = spec
        self.matrix = FeatureMatrix(spec)
        self.linear = spec.get("linear") is not None
        if self.linear:
            self.coef = np.asarray(spec["linear"]["coef"], dtype=float)
            self.intercept = float(spec["linear"]["intercept"])
            self.positive_is_class1 = bool(spec["linear"]["positive_is_class1"])
        else:
            if estimator is None:
                raise ValueError("a non-linear estimator must be given with its spec")
            self.estimator = estimator
            self.positive_index = int(spec["positive_index"])

    @classmethod
    def from_pipeline(cls, model: Any, positive_label: Any) -> LeanScorer:
        estimator = model.steps[-1][1]
        classes = list(estimator.classes_)
        spec: dict[str, Any] = {
            **features_spec(model),
            "positive_index": classes.index(positive_label),
            "classes": _plain(classes),
            "linear": None,
        }
        # A binary logistic regression is a dot product and a sigmoid; others get the matrix.
        if type(estimator).__name__ == "LogisticRegression" and estimator.coef_.shape[0] == 1:
            spec["linear"] = {
                "coef": estimator.coef_[0].astype(float).tolist(),
                "intercept": float(estimator.intercept_[0]),
                "positive_is_class1": spec["positive_index"] == 1,
            }
            return cls(spec)
        return cls(spec, estimator)

    def files(self) -> dict[str, bytes]:
        """The scorer as JSON numbers (a binary logistic regression: the only one stored)."""
        if not self.linear:
            raise ValueError("a LeanScorer holding an estimator object is not stored")
        return {NUMPY_FILE: json.dumps(self.spec).encode()}

    @staticmethod
    def supports(model: Any) -> bool:
        """A classifier after plain scaling + one-hot (see plain_preprocess)."""
        return plain_preprocess(model) and hasattr(model.steps[1][1], "predict_proba")

    def scores(self, rows: Sequence[Row]) -> np.ndarray:
        x = self.matrix(rows)
        if self.linear:
            p = 1.0 / (1.0 + np.exp(-(x @ self.coef + self.intercept)))
            return p if self.positive_is_class1 else 1.0 - p
        return self.estimator.predict_proba(x)[:, self.positive_index]


def _plain(values: Any) -> list[Any]:
    """NumPy scalars (a model's classes) as the Python values JSON writes."""
    return [v.item() if hasattr(v, "item") else v for v in values]


FOREST_ESTIMATORS = (
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "ExtraTreeClassifier",
    "ExtraTreeRegressor",
)
BOOSTING_ESTIMATORS = ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")
TREE_ARRAYS = ("feature", "threshold", "left", "right", "missing_left", "value", "roots")


class TreesUnavailable(Exception):
    """The tree model has a part the NumPy walk does not reproduce (the reason)."""


class TreeScorer:
    """A tree ensemble after plain scaling + one-hot, every tree of every row walked at once
    in NumPy: no scikit-learn, no pickle.

    The trees are flattened into arrays over all their nodes (TREE_ARRAYS, stored as .npz):
    a node's `feature`, `threshold`, `left` and `right` children (global indices; a leaf is
    its own child both ways, so a walk that reached it stays), `missing_left` (where a null
    goes, as scikit-learn sends it) and `value` (what its leaf adds to the score); `roots`.
    `depth` steps take every (tree, row) to its leaf. The score is
    link((value of tree 0 + tree 1 + ...) / divisor): a forest's mean (divisor: its number of
    trees), or a HistGradientBoosting's raw prediction (tree 0 is a single leaf holding its
    baseline) through the identity or the sigmoid. As in scikit-learn: a forest compares the
    row cast to float32 with float64 thresholds, HistGradientBoosting compares in float64."""

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
        # node n's left child at 2n, its right child at 2n + 1: one gather a step
        self.children = np.stack([self.left, self.right], axis=1).ravel()
        self.depth = int(spec["depth"])
        self.one_row = RowWalk(
            self.feature, self.threshold, self.left, self.right, self.missing_left, self.roots,
            self.matrix.width, self.depth,
        )  # fmt: skip
        self.float32 = bool(spec["float32"])
        self.divisor = float(spec["divisor"])
        self.logistic = spec["link"] == "logistic"
        self.complement = bool(spec["complement"])

    def scores(self, rows: Sequence[Row]) -> np.ndarray:
        x = self.matrix(rows)
        if self.float32:  # rounded as scikit-learn rounds it, compared in float64 (faster)
            x = x.astype(np.float32).astype(np.float64)
        if len(rows) == 1:  # /predict
            return self._score(self.one_row.leaves(x[0].tolist())[:, None])
        nulls = bool(np.isnan(x).any())
        flat = x.ravel()
        row_start = np.arange(len(rows)) * x.shape[1]
        node = np.repeat(self.roots[:, None], len(rows), axis=1)  # (trees, rows)
        for _ in range(self.depth):
            here = flat[row_start + self.feature[node]]
            right = here > self.threshold[node]  # scikit-learn: x <= threshold goes left
            if nulls:
                right = np.where(np.isnan(here), ~self.missing_left[node], right)
            node = self.children[2 * node + right]
        return self._score(node)

    def _score(self, node: np.ndarray) -> np.ndarray:
        """The score of each row from the leaf each tree reached, (trees, rows)."""
        # Tree after tree, in scikit-learn's order: np.sum's pairwise order can differ in
        # the last bit, a cumulative sum is sequential.
        raw = np.cumsum(self.value[node], axis=0)[-1] / self.divisor
        if not self.logistic:
            return raw
        p = 1.0 / (1.0 + np.exp(-raw))  # scipy's expit, which scikit-learn uses
        return 1.0 - p if self.complement else p

    def files(self) -> dict[str, bytes]:
        return {TREES_FILE: self.arrays, TREES_SPEC_FILE: json.dumps(self.spec).encode()}

    @staticmethod
    def supports(model: Any) -> bool:
        """A tree model after plain scaling + one-hot: from_pipeline says whether it fits."""
        return plain_preprocess(model) and (
            type(model.steps[-1][1]).__name__ in FOREST_ESTIMATORS + BOOSTING_ESTIMATORS
        )

    @classmethod
    def from_pipeline(cls, model: Any, positive_label: Any) -> TreeScorer:
        """The Pipeline's trees as arrays; TreesUnavailable (with the reason) when a part of
        them is not reproduced: a boosting's categorical splits, loss other than log_loss or
        squared_error, or several classes; a forest's several outputs."""
        if not cls.supports(model):
            raise TreesUnavailable("not a tree model after plain scaling + one-hot")
        estimator = model.steps[-1][1]
        name = type(estimator).__name__
        classifier = hasattr(estimator, "classes_")
        if classifier != (positive_label is not None):
            task = "classification" if positive_label is not None else "regression"
            raise TreesUnavailable(f"{name} in a {task} project")
        if name in BOOSTING_ESTIMATORS:
            trees, spec = _boosting(estimator, positive_label)
        else:
            trees, spec = _forest(estimator, positive_label)
        arrays = _flatten(trees)
        spec["depth"] = _depth(arrays)
        if classifier:
            spec["classes"] = _plain(estimator.classes_)
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


def _forest(estimator: Any, positive_label: Any) -> tuple[list[dict[str, np.ndarray]], dict]:
    """A forest's (or one decision tree's) trees; each leaf's value is its tree's answer:
    the positive class's fraction (scikit-learn 1.9's predict_proba takes tree_.value as it
    is) or the regression value."""
    if estimator.n_outputs_ != 1:
        raise TreesUnavailable(f"{type(estimator).__name__} with {estimator.n_outputs_} outputs")
    column = 0 if positive_label is None else list(estimator.classes_).index(positive_label)
    trees = [
        _tree(
            leaf=tree.children_left < 0,
            feature=tree.feature,
            threshold=tree.threshold,
            left=tree.children_left,
            right=tree.children_right,
            missing_left=tree.missing_go_to_left,
            value=tree.value[:, 0, column],
        )
        for tree in [e.tree_ for e in getattr(estimator, "estimators_", [estimator])]
    ]
    spec = {"float32": True, "divisor": len(trees), "link": "identity", "complement": False}
    return trees, spec


def _boosting(estimator: Any, positive_label: Any) -> tuple[list[dict[str, np.ndarray]], dict]:
    """A HistGradientBoosting's predictors, after a first tree of one leaf: its baseline."""
    name = type(estimator).__name__
    wanted = "log_loss" if positive_label is not None else "squared_error"
    if estimator.loss != wanted:
        raise TreesUnavailable(f"{name} with loss {estimator.loss!r} (only {wanted!r})")
    if estimator.n_trees_per_iteration_ != 1:
        raise TreesUnavailable(f"{name} with {estimator.n_trees_per_iteration_} classes")
    if getattr(estimator, "_preprocessor", None) is not None:
        raise TreesUnavailable(f"{name} with categorical features")
    baseline = float(np.asarray(estimator._baseline_prediction).ravel()[0])
    zero = np.zeros(1)
    trees = [_tree(np.ones(1, dtype=bool), zero, zero, zero, zero, zero, np.array([baseline]))]
    for (predictor,) in estimator._predictors:
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise TreesUnavailable(f"{name} with categorical splits")
        trees.append(
            _tree(
                leaf=nodes["is_leaf"].astype(bool),
                feature=nodes["feature_idx"],
                threshold=nodes["num_threshold"],
                left=nodes["left"],
                right=nodes["right"],
                missing_left=nodes["missing_go_to_left"],
                value=nodes["value"],
            )
        )
    classifier = positive_label is not None
    spec = {
        "float32": False,
        "divisor": 1,
        "link": "logistic" if classifier else "identity",
        "complement": classifier and list(estimator.classes_).index(positive_label) == 0,
    }
    return trees, spec


def _tree(
    leaf: Any,
    feature: Any,
    threshold: Any,
    left: Any,
    right: Any,
    missing_left: Any,
    value: Any,
) -> dict[str, np.ndarray]:
    """One tree's node arrays (children as indices within the tree), typed as stored; a leaf
    is its own child both ways and reads feature 0."""
    own = np.arange(len(leaf))
    return {
        "feature": np.where(leaf, 0, feature).astype(np.intp),
        "threshold": np.asarray(threshold, dtype=np.float64),
        "left": np.where(leaf, own, left).astype(np.intp),
        "right": np.where(leaf, own, right).astype(np.intp),
        "missing_left": np.asarray(missing_left, dtype=bool),
        "value": np.asarray(value, dtype=np.float64),
    }


def _flatten(trees: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The trees' node arrays end to end, children and roots as global node indices."""
    roots = np.cumsum([0] + [len(t["value"]) for t in trees[:-1]]).astype(np.intp)
    arrays = {
        key: np.concatenate([t[key] for t in trees])
        for key in ("feature", "threshold", "missing_left", "value")
    }
    for key in ("left", "right"):
        arrays[key] = np.concatenate([t[key] + root for t, root in zip(trees, roots, strict=True)])
    arrays["roots"] = roots
    return arrays


def _depth(arrays: dict[str, np.ndarray]) -> int:
    """The longest walk from a root to its leaf: the steps TreeScorer.scores takes."""
    node, depth = arrays["roots"], 0
    while True:
        inner = node[arrays["left"][node] != node]
        if not len(inner):
            return depth
        node, depth = np.concatenate([arrays["left"][inner], arrays["right"][inner]]), depth + 1


class Imputed:
    """A fast path behind the fitted imputers' fill values: a missing value (None, NaN) of a
    column is replaced by its median / most frequent value as SimpleImputer would, then the
    path scores the Pipeline without its imputers (a row costs one dict copy more)."""

    def __init__(self, inner: Any, fills: dict[str, Any]) -> None:
        self.inner = inner
        self.fills = fills
        self.kind, self.lean, self.spec = inner.kind, inner.lean, inner.spec

    def files(self) -> dict[str, bytes]:
        return {**self.inner.files(), IMPUTE_FILE: json.dumps(self.fills).encode()}

    def scores(self, rows: Sequence[Row]) -> np.ndarray:
        return self.inner.scores(filled(rows, self.fills))


def filled(rows: Sequence[Row], fills: dict[str, Any]) -> list[Row]:
    """The rows with each missing value of a column in `fills` replaced by its fill value."""
    out: list[Row] = []
    for row in rows:
        gaps = {c: v for c, v in fills.items() if _missing(row[c])}
        out.append({**row, **gaps} if gaps else row)
    return out


def _missing(value: Any) -> bool:
    return value is None or value != value  # None, or NaN (not equal to itself)


def without_imputers(model: Any) -> tuple[Any, dict[str, Any]] | None:
    """(the Pipeline with each fitted `Pipeline(SimpleImputer, T)` of its ColumnTransformer
    replaced by T, the fill value of each column) when it imputes that way; else None."""
    import copy

    steps = getattr(model, "steps", None)
    if not steps or len(steps) != 2 or type(steps[0][1]).__name__ != "ColumnTransformer":
        return None
    preprocess, fills, inner = steps[0][1], {}, []
    for name, transformer, columns in preprocess.transformers_:
        parts = getattr(transformer, "steps", None)
        if parts is not None:
            imputer = parts[0][1]
            if (
                len(parts) != 2
                or type(imputer).__name__ != "SimpleImputer"
                or imputer.add_indicator
                or not _missing(imputer.missing_values)
            ):
                return None
            fills.update(
                {c: _plain([v])[0] for c, v in zip(columns, imputer.statistics_, strict=True)}
            )
            transformer = parts[1][1]
        inner.append((name, transformer, columns))
    if not fills:
        return None
    plain = copy.copy(preprocess)
    plain.transformers_ = inner
    plain.transformers = [(n, t, c) for n, t, c in inner if n != "remainder"]
    return type(model)([(steps[0][0], plain), steps[1]]), fills


def load_stored(read: Callable[[str], bytes | None]) -> Any:
    """The fast scorer from the files its `files()` gave (`read(name)`: the bytes, or None
    when there is no such file); None when none was stored (the Pipeline serves). Needs
    neither scikit-learn nor pickle."""
    fills = read(IMPUTE_FILE)
    scorer = _load_path(read)
    return Imputed(scorer, json.loads(fills)) if fills is not None and scorer else scorer


def _load_path(read: Callable[[str], bytes | None]) -> Any:
    spec = read(NUMPY_FILE)
    if spec is not None:
        return LeanScorer(json.loads(spec))
    arrays = read(TREES_FILE)
    if arrays is not None:
        return TreeScorer(json.loads(_required(read, TREES_SPEC_FILE)), arrays)
    graph = read(ONNX_FILE)
    if graph is not None:
        return OnnxScorer(graph, json.loads(_required(read, ONNX_SPEC_FILE)))
    return None


def _required(read: Callable[[str], bytes | None], name: str) -> bytes:
    data = read(name)
    if data is None:
        raise FileNotFoundError(f"{name} is missing beside the scorer it describes")
    return data


def make_scorer(model: Any, positive_label: Any, columns: Sequence[str]) -> Any:
    """The lean scorer when the Pipeline's shape allows it, else the Pipeline itself."""
    if LeanScorer.supports(model):
        return LeanScorer.from_pipeline(model, positive_label)
    return PipelineScorer(model, positive_label, columns)


SCORER_CHOICES = ("auto", "onnx", "pipeline")


def fast_scorer(
    model: Any, positive_label: Any, rows: Sequence[Row], expected: np.ndarray, choice: str
) -> tuple[Any, str]:
    """The scorer `mlgate build` stores (serving.scorer) and a line saying why.

    auto: the NumPy scorer for a binary logistic regression, else the NumPy tree walk for a
    tree model, else ONNX Runtime, each only if its scores are within PARITY_TOLERANCE of the
    Pipeline's on `rows` (the test split); otherwise None: the service uses scikit-learn,
    and the line says so (loudly), with each refused path's reason. onnx: ONNX Runtime or
    MlgateError. pipeline: None."""
    from mlgate.errors import MlgateError

    if choice == "pipeline":
        return None, "scikit-learn Pipeline (serving.scorer: pipeline)"
    unwrapped = without_imputers(model)
    if unwrapped is not None:
        plain, fills = unwrapped
        scorer, why = fast_scorer(plain, positive_label, filled(rows, fills), expected, choice)
        if scorer is None:
            return None, why
        return Imputed(scorer, fills), f"{why}, missing values filled as the imputers fill them"
    n = len(rows)
    refused = []
    if choice == "auto" and positive_label is not None and LeanScorer.supports(model):
        lean = LeanScorer.from_pipeline(model, positive_label)
        if lean.linear:
            delta = parity(lean, rows, expected)
            if delta <= PARITY_TOLERANCE:
                return lean, f"NumPy (binary logistic regression; max |Δ| {delta:.1e} on {n} rows)"
    if choice == "auto" and TreeScorer.supports(model):
        try:
            trees = TreeScorer.from_pipeline(model, positive_label)
        except TreesUnavailable as err:
            refused.append(f"the NumPy tree walk does not reproduce {err}")
        else:
            delta = parity(trees, rows, expected)
            if delta <= PARITY_TOLERANCE:
                kind = type(model.steps[-1][1]).__name__
                return trees, f"NumPy tree walk ({kind}; max |Δ| {delta:.1e} on {n} rows)"
            refused.append(
                f"the NumPy tree walk's scores differ from the Pipeline's by up to {delta:.3g}"
            )
    try:
        onnx = OnnxScorer.convert(model, positive_label)
        delta = parity(onnx, rows, expected)
    except OnnxUnavailable as err:
        reason = str(err)
    except RuntimeError as err:  # ONNX Runtime refused an input (its Fail/InvalidArgument)
        reason = f"ONNX Runtime could not score the test split: {str(err)[:200]}"
    else:
        if delta <= PARITY_TOLERANCE:
            return onnx, f"ONNX Runtime (max |Δ| {delta:.1e} vs the Pipeline on {n} test rows)"
        reason = (
            f"ONNX Runtime's scores differ from the Pipeline's by up to {delta:.3g} "
            f"(> {PARITY_TOLERANCE:g}) on the {n} test rows"
        )
    if choice == "onnx":
        raise MlgateError(f"serving.scorer is onnx, but {reason}; not building")
    return None, (
        f"WARNING: no fast path: {'; '.join([*refused, reason])}. Serving with the "
        "scikit-learn Pipeline (milliseconds a row instead of microseconds; "
        "docs/SERVING.md#scoring-paths)"
    )
