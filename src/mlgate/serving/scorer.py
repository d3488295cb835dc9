"""Scores rows with the fitted Pipeline's numbers, without a per-call pandas DataFrame.

A one-row `Pipeline.predict_proba` costs ~5-16 ms, almost all of it the ColumnTransformer's
per-call DataFrame checks; the arithmetic is microseconds. Four paths, the fastest that
gives the Pipeline's result (measured per estimator in docs/SERVING.md):

- `LeanScorer`: a logistic regression after scaling + one-hot, in NumPy (~10 µs a row): the
  sigmoid of one linear score (binary), the softmax of one per class (multinomial);
- `TreeScorer`: a forest, a decision tree, a HistGradientBoosting or a LightGBM booster after
  scaling + one-hot, its trees flattened into arrays and walked in NumPy with the library's
  comparisons (a forest's in float32): the Pipeline's scores (scikit-learn's bit for bit,
  LightGBM's to an ulp of its exp), without the library or pickle (~0.06-0.2 ms for one
  row, ~20-35 µs a row in batches; measured in docs/SERVING.md);
- `OnnxScorer`: the whole Pipeline converted by skl2onnx, run by ONNX Runtime in float64
  (~40-80 µs a row): other linear models (Ridge...);
- `PipelineScorer`: the Pipeline itself, for what none reproduces within the tolerance.

A scorer's scores are one number a row (the positive class's probability, a regressor's
prediction), or for a multiclass model (`positive_label` EVERY_CLASS) one row of
probabilities a row, a column per class in the model's `classes_` order.

A Pipeline that imputes (features.impute) gets the same paths: `Imputed` fills a missing
value with the fitted imputer's value, then the path scores the Pipeline without imputers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mlgate.serving.features import (
    EVERY_CLASS,
    FeatureMatrix,
    Row,
    class_columns,
    features_spec,
    final_estimator,
    not_plain_because,
    plain_preprocess,
    plain_values,
)
from mlgate.serving.trees import TREES_FILE, TREES_SPEC_FILE, TreeScorer, TreesUnavailable

# What each fast scorer stores beside the pickled Pipeline in the BentoML model (`files()`),
# read back by `load_stored` in `mlgate build` (the check) and in the service.
NUMPY_FILE = "scorer.json"
ONNX_FILE = "model.onnx"
ONNX_SPEC_FILE = "onnx.json"
IMPUTE_FILE = "impute.json"  # the fill values, when the Pipeline imputes before the path
# `mlgate build` refuses a fast path whose scores differ from the Pipeline's by more (absolute,
# on every row of the test split); the service re-checks its reference rows with it.
PARITY_TOLERANCE = 1e-5


class PipelineScorer:
    """The reference path: a DataFrame through the whole Pipeline. The score is the positive
    class's probability (every class's: EVERY_CLASS), or the prediction itself for a
    regressor (positive_label None)."""

    lean = False
    kind = "pipeline"  # as `mlgate build` prints it and /model_info shows it

    def __init__(self, model: Any, positive_label: Any, columns: Sequence[str]) -> None:
        self.model = model
        self.columns = list(columns)
        self.positive_index = (
            None if positive_label is None else class_columns(model.classes_, positive_label)
        )

    def scores(self, rows: Sequence[Row]) -> np.ndarray:
        import pandas as pd

        frame = pd.DataFrame.from_records(list(rows), columns=self.columns)
        if self.positive_index is None:
            return np.asarray(self.model.predict(frame), dtype=float).ravel()
        return self.model.predict_proba(frame)[:, self.positive_index]


class OnnxUnavailable(Exception):
    """skl2onnx cannot convert the Pipeline, or ONNX Runtime does not reproduce its scores."""


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
        self.positive_index = slice(None) if spec.get("every_class") else spec.get("positive_index")

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
            raise OnnxUnavailable(not_plain_because(model))
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
        column = class_columns(estimator.classes_, positive_label) if classifier else None
        spec: dict[str, Any] = {
            "inputs": columns,
            "kinds": {name: kinds[column] for name, column in columns.items()},
            "output": outputs[1] if classifier else outputs[0],
            "positive_index": column if isinstance(column, int) else None,
        }
        if classifier:
            spec["classes"] = plain_values(estimator.classes_)
            spec["every_class"] = positive_label is EVERY_CLASS
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
            # multinomial: a (classes, features) matrix and one intercept per class
            self.coef = np.asarray(spec["linear"]["coef"], dtype=float)
            self.intercept = np.asarray(spec["linear"]["intercept"], dtype=float)
            self.softmax = self.coef.ndim == 2
            self.positive_is_class1 = bool(spec["linear"].get("positive_is_class1"))
        else:
            if estimator is None:
                raise ValueError("a non-linear estimator must be given with its spec")
            self.estimator = estimator
            index = spec["positive_index"]
            self.positive_index = slice(None) if index is None else int(index)

    @classmethod
    def from_pipeline(cls, model: Any, positive_label: Any) -> LeanScorer:
        estimator = model.steps[-1][1]
        classes = list(estimator.classes_)
        column = class_columns(classes, positive_label)
        spec: dict[str, Any] = {
            **features_spec(model),
            "positive_index": column if isinstance(column, int) else None,
            "classes": plain_values(classes),
            "linear": None,
        }
        # A binary logistic regression is a dot product and a sigmoid, a multinomial one (any
        # of 3+ classes: scikit-learn's predict_proba is the softmax of decision_function) a
        # matrix product and a softmax; others get the matrix.
        if type(estimator).__name__ == "LogisticRegression":
            binary = estimator.coef_.shape[0] == 1
            spec["linear"] = {
                "coef": (estimator.coef_[0] if binary else estimator.coef_).tolist(),
                "intercept": (
                    float(estimator.intercept_[0]) if binary else estimator.intercept_.tolist()
                ),
                "positive_is_class1": spec["positive_index"] == 1,
            }
            return cls(spec)
        return cls(spec, estimator)

    def files(self) -> dict[str, bytes]:
        """The scorer as JSON numbers (a logistic regression: the only one stored)."""
        if not self.linear:
            raise ValueError("a LeanScorer holding an estimator object is not stored")
        return {NUMPY_FILE: json.dumps(self.spec).encode()}

    @staticmethod
    def supports(model: Any) -> bool:
        """A classifier after plain scaling + one-hot (see plain_preprocess)."""
        return plain_preprocess(model) and hasattr(model.steps[1][1], "predict_proba")

    def scores(self, rows: Sequence[Row]) -> np.ndarray:
        x = self.matrix(rows)
        if not self.linear:
            return self.estimator.predict_proba(x)[:, self.positive_index]
        if self.softmax:  # as scikit-learn's extmath.softmax: shifted by each row's largest
            z = x @ self.coef.T + self.intercept
            z = np.exp(z - z.max(axis=1, keepdims=True))
            return z / z.sum(axis=1, keepdims=True)
        p = 1.0 / (1.0 + np.exp(-(x @ self.coef + self.intercept)))
        return p if self.positive_is_class1 else 1.0 - p


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
                {c: plain_values([v])[0] for c, v in zip(columns, imputer.statistics_, strict=True)}
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

    auto: the NumPy scorer for a logistic regression, else the NumPy tree walk for a
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
                kind = "binary" if positive_label is not EVERY_CLASS else "multinomial"
                return lean, f"NumPy ({kind} logistic regression; max |Δ| {delta:.1e} on {n} rows)"
    if choice == "auto" and TreeScorer.supports(model):
        try:
            trees = TreeScorer.from_pipeline(model, positive_label)
        except TreesUnavailable as err:
            refused.append(f"the NumPy tree walk does not reproduce {err}")
        else:
            delta = parity(trees, rows, expected)
            if delta <= PARITY_TOLERANCE:
                kind = type(final_estimator(model)).__name__
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
