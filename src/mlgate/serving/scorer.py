"""Scores rows with the fitted Pipeline's numbers, without a per-call pandas DataFrame.

A one-row `Pipeline.predict_proba` costs ~5-16 ms, almost all of it the ColumnTransformer's
per-call DataFrame checks; the arithmetic is microseconds. Three paths, the fastest that
gives the Pipeline's result (measured per estimator in docs/SERVING.md):

- `LeanScorer`: a binary logistic regression after scaling + one-hot, in NumPy (~10 µs a row);
- `OnnxScorer`: the whole Pipeline converted by skl2onnx, run by ONNX Runtime in float64
  (~40-80 µs a row): linear models (Ridge, LogisticRegression with several classes...);
- `PipelineScorer`: the Pipeline itself, for what neither reproduces within the tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Row = Mapping[str, Any]
# `mlgate build` refuses a fast path whose scores differ from the Pipeline's by more (absolute,
# on every row of the test split); the service re-checks its reference rows with it.
PARITY_TOLERANCE = 1e-5


class PipelineScorer:
    """The reference path: a DataFrame through the whole Pipeline. The score is the positive
    class's probability, or the prediction itself for a regressor (positive_label None)."""

    lean = False

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
        outputs = [o.name for o in _graph_outputs(graph)]
        spec: dict[str, Any] = {
            "inputs": {c: c for c in kinds},
            "kinds": kinds,
            "output": outputs[1] if classifier else outputs[0],
            "positive_index": (
                list(estimator.classes_).index(positive_label) if classifier else None
            ),
        }
        if classifier:
            spec["classes"] = [c.item() if hasattr(c, "item") else c for c in estimator.classes_]
        try:
            return cls(graph, spec)
        except RuntimeError as err:  # ONNX Runtime's Fail / InvalidGraph (type mismatches)
            raise OnnxUnavailable(f"ONNX Runtime cannot run the converted graph: {err}") from None


def _graph_outputs(graph: bytes) -> Any:
    import onnx

    return onnx.load_from_string(graph).graph.output


def parity(scorer: Any, rows: Sequence[Row], expected: np.ndarray) -> float:
    """The largest absolute difference between the scorer's scores and the Pipeline's."""
    return float(np.max(np.abs(np.asarray(scorer.scores(rows)) - np.asarray(expected))))


class LeanScorer:
    """Numeric columns scaled, categorical columns one-hot, estimator applied: all in NumPy.

    Built from the fitted Pipeline (`from_pipeline`), or from its exported numbers
    (`export()` -> JSON -> `from_export`), which needs neither scikit-learn nor pandas: the
    service starts faster, and `mlgate build` checks the export against the Pipeline."""

    lean = True

    def __init__(self, spec: dict[str, Any], estimator: Any = None) -> None:
        self.spec = spec
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
        preprocess, estimator = model.steps[0][1], model.steps[-1][1]
        classes = list(estimator.classes_)
        spec: dict[str, Any] = {
            "width": int(sum(s.stop - s.start for s in preprocess.output_indices_.values())),
            "numeric": [],
            "categorical": [],
            "positive_index": classes.index(positive_label),
            "classes": [c.item() if hasattr(c, "item") else c for c in classes],
            "linear": None,
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
            else:  # OneHotEncoder, as supports() checked
                offset = out.start
                for column, categories in zip(columns, transformer.categories_, strict=True):
                    spec["categorical"].append(
                        {"column": column, "offset": offset, "categories": categories.tolist()}
                    )
                    offset += len(categories)
        # A binary logistic regression is a dot product and a sigmoid; others get the matrix.
        if type(estimator).__name__ == "LogisticRegression" and estimator.coef_.shape[0] == 1:
            spec["linear"] = {
                "coef": estimator.coef_[0].astype(float).tolist(),
                "intercept": float(estimator.intercept_[0]),
                "positive_is_class1": spec["positive_index"] == 1,
            }
            return cls(spec)
        return cls(spec, estimator)

    def export(self) -> dict[str, Any] | None:
        """The scorer as JSON-able numbers; None when it needs the estimator object."""
        return self.spec if self.linear else None

    @staticmethod
    def supports(model: Any) -> bool:
        """A classifier after plain scaling + one-hot (see plain_preprocess)."""
        return plain_preprocess(model) and hasattr(model.steps[1][1], "predict_proba")

    def matrix(self, rows: Sequence[Row]) -> np.ndarray:
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

    def scores(self, rows: Sequence[Row]) -> np.ndarray:
        x = self.matrix(rows)
        if self.linear:
            p = 1.0 / (1.0 + np.exp(-(x @ self.coef + self.intercept)))
            return p if self.positive_is_class1 else 1.0 - p
        return self.estimator.predict_proba(x)[:, self.positive_index]


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

    auto: the NumPy scorer for a binary logistic regression, else ONNX Runtime, each only if
    its scores are within PARITY_TOLERANCE of the Pipeline's on `rows` (the test split);
    otherwise None: the service uses scikit-learn, and the line says so (loudly). onnx:
    ONNX Runtime or MlgateError. pipeline: None."""
    from mlgate.errors import MlgateError

    if choice == "pipeline":
        return None, "scikit-learn Pipeline (serving.scorer: pipeline)"
    n = len(rows)
    if choice == "auto" and positive_label is not None and LeanScorer.supports(model):
        lean = LeanScorer.from_pipeline(model, positive_label)
        if lean.linear:
            delta = parity(lean, rows, expected)
            if delta <= PARITY_TOLERANCE:
                return lean, f"NumPy (binary logistic regression; max |Δ| {delta:.1e} on {n} rows)"
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
        f"WARNING: no fast path: {reason}. Serving with the scikit-learn Pipeline "
        "(milliseconds a row instead of microseconds; docs/SERVING.md#scoring-paths)"
    )
