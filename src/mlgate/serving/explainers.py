"""Why the model answered as it did: each feature column's exact contribution to a row's raw
score (base + contributions = raw score), and an answer's top reasons (/explain, `mlgate
predict --explain`).

`make_explainer` picks the exact method for a fitted Pipeline (at `mlgate build` and in
batch), never an approximation:
- `LinearExplainer`: a linear estimator (coef_, intercept_) after plain scaling + one-hot, in
  NumPy: each output column's `coef * (x - mean)` (mean: the training split's transformed
  rows) summed back to the column it came from, as mlgate.pipeline.explain computes it;
- `TreeExplainer`: the tree walk's trees (RandomForest, ExtraTrees, DecisionTree,
  HistGradientBoosting, LightGBM) by exact TreeSHAP over their node arrays (serving.treeshap),
  in NumPy;
- `PipelineExplainer`: anything else mlgate.pipeline.explain explains exactly (LightGBM's
  own TreeSHAP behind the project's feature code, a linear model there), on the
  scikit-learn Pipeline;
- none, with the reason (a multiclass model, an estimator with no exact method).
A Pipeline that imputes is explained on the filled row (`Filled`), as it is scored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlgate.serving.features import (
    EVERY_CLASS,
    FeatureMatrix,
    Row,
    features_spec,
    plain_preprocess,
)
from mlgate.serving.scorer import filled, without_imputers
from mlgate.serving.trees import TREE_ARRAYS, TREES_FILE, TreeScorer, TreesUnavailable
from mlgate.serving.treeshap import TreeShap

EXPLAIN_FILE = "explain.json"  # what explains the model (or why nothing does), in the model
EXPLAIN_TREES_FILE = "explain-trees.npz"  # the trees, when the scorer is not their walk
# the explainer's raw score must be the model's: link(raw) within this of the Pipeline's
# scores on every row of the test split, and base + contributions within ADDITIVITY of raw
PARITY = 1e-6
ADDITIVITY = 1e-6
DOCS = "docs/SERVING.md#reason-codes-explain"


@dataclass(frozen=True)
class Attribution:
    """Rows explained: `raw` the model's raw score of each row (`scale`: log-odds of the
    positive class, a forest's probability, or the prediction), `base` + the sum of a row's
    `contributions` (one per column) = `raw`; `derived` the values of the columns the
    project's feature code makes (not in the request), per row."""

    base: np.ndarray
    contributions: np.ndarray
    raw: np.ndarray
    derived: list[dict[str, Any]] | None = None


class Unexplained(Exception):
    """The model has no exact method (the reason, for the build line and the 501)."""


def _owners(spec: dict[str, Any]) -> list[str]:
    """The input column of each column of a features_spec's matrix."""
    owners = [""] * int(spec["width"])
    for block in spec["numeric"]:
        owners[block["start"] : block["stop"]] = block["columns"]
    for block in spec["categorical"]:
        offset, size = int(block["offset"]), len(block["categories"])
        owners[offset : offset + size] = [block["column"]] * size
    return owners


class _Grouped:
    """Sums a matrix's columns back to the input columns they came from (one-hot outputs to
    their column), each in the order of its outputs, as mlgate.pipeline.explain sums them:
    the same bits whatever the number of rows."""

    def __init__(self, owners: list[str]) -> None:
        self.columns = list(dict.fromkeys(owners))
        index = np.array([self.columns.index(o) for o in owners])
        self.order = np.argsort(index, kind="stable")
        self.starts = np.searchsorted(index[self.order], np.arange(len(self.columns)))

    def __call__(self, terms: np.ndarray) -> np.ndarray:
        return np.add.reduceat(terms[:, self.order], self.starts, axis=1)


def _estimator(model: Any) -> str:
    """The name of a model's estimator (a Pipeline's last step)."""
    return type(getattr(model, "steps", [("", model)])[-1][1]).__name__


def _sign(estimator: Any, positive: Any) -> float:
    """-1 when the positive class is classes_[0]: a raw score is classes_[1]'s log-odds."""
    classes = list(getattr(estimator, "classes_", []))
    return -1.0 if positive is not None and classes and classes.index(positive) == 0 else 1.0


class LinearExplainer:
    """A linear estimator after plain scaling + one-hot, from its numbers alone (JSON)."""

    method = "exact-linear"

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.matrix = FeatureMatrix(spec)
        self.coef = np.asarray(spec["coef"], dtype=float) * spec["sign"]
        self.intercept = float(spec["intercept"]) * spec["sign"]
        self.mean = np.asarray(spec["mean"], dtype=float)
        self.scale = spec["scale"]
        self.grouped = _Grouped(_owners(spec))
        self.columns = self.grouped.columns

    @classmethod
    def from_pipeline(cls, model: Any, positive: Any, reference: Sequence[Row]) -> LinearExplainer:
        estimator = model.steps[-1][1]
        spec: dict[str, Any] = features_spec(model)
        spec.update(
            coef=np.ravel(estimator.coef_).tolist(),
            intercept=float(np.ravel(estimator.intercept_)[0]),
            sign=_sign(estimator, positive),
            scale="prediction" if positive is None else "log-odds",
        )
        spec["mean"] = FeatureMatrix(spec)(reference).mean(axis=0).tolist()
        return cls(spec)

    @staticmethod
    def supports(model: Any) -> bool:
        estimator = model.steps[-1][1]
        coef = getattr(estimator, "coef_", None)
        one_score = coef is not None and np.size(coef) == np.shape(coef)[-1]
        return one_score and hasattr(estimator, "intercept_")

    def explain(self, rows: Sequence[Row]) -> Attribution:
        x = self.matrix(rows)
        base = self.intercept + float(self.mean @ self.coef)
        contributions = self.grouped((x - self.mean) * self.coef)
        return Attribution(np.full(len(x), base), contributions, x @ self.coef + self.intercept)

    def files(self) -> dict[str, bytes]:
        return {EXPLAIN_FILE: json.dumps({"kind": "linear", **self.spec}).encode()}


class TreeExplainer:
    """The tree walk's trees by exact TreeSHAP (a forest's contributions to its mean
    probability, a boosting's to its log-odds; a regressor's to its prediction)."""

    method = "treeshap"

    def __init__(self, scorer: Any, own_arrays: bool = True) -> None:
        if scorer.cover is None:
            raise Unexplained("the trees were stored without their cover: rebuild the bento")
        self.scorer = scorer
        self.own_arrays = own_arrays  # stored beside the explainer (else: the scorer's)
        arrays = {name: getattr(scorer, name) for name in TREE_ARRAYS}
        self.shap = TreeShap({**arrays, "cover": scorer.cover}, scorer.matrix.width)
        self.sign = -1.0 if scorer.complement else 1.0
        spec = scorer.spec
        self.scale = (
            "log-odds" if scorer.logistic else "probability" if "classes" in spec else "prediction"
        )
        self.grouped = _Grouped(_owners(spec))
        self.columns = self.grouped.columns

    def explain(self, rows: Sequence[Row]) -> Attribution:
        x = self.scorer.walked(rows)
        scaled = self.sign / self.scorer.divisor
        contributions = self.grouped(self.shap.contributions(x)) * scaled
        # in float64, as TreeSHAP adds (XGBoost's float32 sum: within its rounding of it)
        raw = self.scorer.raw_sum(self.scorer.leaves(x), np.float64) * self.sign
        return Attribution(np.full(len(x), self.shap.base * scaled), contributions, raw)

    def files(self) -> dict[str, bytes]:
        spec = {"kind": "trees", "arrays": "own" if self.own_arrays else "scorer"}
        if not self.own_arrays:
            return {EXPLAIN_FILE: json.dumps(spec).encode()}
        spec["spec"] = self.scorer.spec
        arrays = self.scorer.files()[TREES_FILE]
        return {EXPLAIN_FILE: json.dumps(spec).encode(), EXPLAIN_TREES_FILE: arrays}


class PipelineExplainer:
    """mlgate.pipeline.explain on the scikit-learn Pipeline (with the project's own feature
    step, or LightGBM): its exact methods, slower (a DataFrame per call)."""

    def __init__(self, model: Any, spec: dict[str, Any]) -> None:
        self.model = model
        self.spec = spec
        self.method = spec["method"]
        self.columns = list(spec["columns"])
        self.features = list(spec["features"])
        self.mean = None if spec["mean"] is None else np.asarray(spec["mean"], dtype=float)
        self.sign = float(spec["sign"])
        self.scale = spec["scale"]

    @classmethod
    def from_pipeline(
        cls, model: Any, positive: Any, reference: Sequence[Row], features: Sequence[str]
    ) -> PipelineExplainer:
        import pandas as pd

        from mlgate.pipeline import explain

        frame = pd.DataFrame.from_records(list(reference), columns=list(features))
        found = explain.contributions(model, frame.head(1), frame)
        if found is None:
            raise Unexplained(
                f"no exact attributions for {_estimator(model)} (exact: a linear model, "
                "RandomForest, ExtraTrees, DecisionTree, HistGradientBoosting, LightGBM)"
            )
        method, _, columns, _ = found
        linear = method == "exact-linear"  # its base: the training split's mean, kept
        spec = {
            "method": method,
            "columns": columns,
            "features": list(features),
            "mean": explain.reference_mean(model, frame).tolist() if linear else None,
            "sign": _sign(model.steps[-1][1], positive),
            "scale": "prediction" if positive is None else "log-odds",
        }
        return cls(model, spec)

    def explain(self, rows: Sequence[Row]) -> Attribution:
        import pandas as pd

        from mlgate.pipeline import explain

        frame = pd.DataFrame.from_records(list(rows), columns=self.features)
        found = explain.contributions(self.model, frame, self.mean)
        assert found is not None  # the same model explained at build
        _, base, _, contributions = found
        raw = explain.raw_score(self.model, frame) * self.sign
        made = [c for c in self.columns if c not in self.features]
        derived = None
        if made:  # the project's feature code made them: their values, as it computes them
            for step in [s for _, s in self.model.steps[:-2]]:
                frame = step.transform(frame)
            derived = frame[made].to_dict("records")
        return Attribution(base * self.sign, contributions * self.sign, raw, derived)

    def files(self) -> dict[str, bytes]:
        return {EXPLAIN_FILE: json.dumps({"kind": "pipeline", **self.spec}).encode()}


class Filled:
    """An explainer behind the fitted imputers' fill values (scorer.Imputed's twin)."""

    def __init__(self, inner: Any, fills: dict[str, Any]) -> None:
        self.inner, self.fills = inner, fills
        self.method, self.scale, self.columns = inner.method, inner.scale, inner.columns

    def explain(self, rows: Sequence[Row]) -> Attribution:
        return self.inner.explain(filled(rows, self.fills))

    def files(self) -> dict[str, bytes]:
        files = self.inner.files()
        spec = json.loads(files[EXPLAIN_FILE])
        return {**files, EXPLAIN_FILE: json.dumps({**spec, "fills": self.fills}).encode()}


def make_explainer(
    model: Any,
    positive: Any,
    reference: Callable[[], Sequence[Row]],
    features: Sequence[str],
    scorer: Any = None,
) -> Any:
    """The exact explainer of the fitted Pipeline (`positive`: as the scorer's; `reference`:
    the training split's rows, read only for a linear model; `scorer`: the fast path chosen,
    whose tree arrays a TreeExplainer shares); Unexplained with the reason when none."""
    if positive is EVERY_CLASS:
        raise Unexplained(
            f"no exact attributions for {_estimator(model)} in a multiclass project (one raw "
            "score per class)"
        )
    unwrapped = without_imputers(model)
    if unwrapped is not None:
        plain, fills = unwrapped
        walk = getattr(scorer, "inner", None)
        inner = make_explainer(plain, positive, lambda: filled(reference(), fills), features, walk)
        return Filled(inner, fills)
    if plain_preprocess(model) and LinearExplainer.supports(model):
        return LinearExplainer.from_pipeline(model, positive, reference())
    if TreeScorer.supports(model):
        if isinstance(scorer, TreeScorer):
            return TreeExplainer(scorer, own_arrays=False)
        try:
            return TreeExplainer(TreeScorer.from_pipeline(model, positive))
        except TreesUnavailable as err:
            raise Unexplained(f"no exact attributions: the tree walk does not take {err}") from None
    return PipelineExplainer.from_pipeline(model, positive, reference(), features)


def check(explainer: Any, rows: Sequence[Row], expected: np.ndarray) -> str:
    """How exact the explainer is on `rows` (the test split), given the Pipeline's scores of
    them: Unexplained unless its contributions add up to its raw score and the raw score is
    the model's (through the link)."""
    found = explainer.explain(rows)
    gap = float(np.max(np.abs(found.base + found.contributions.sum(axis=1) - found.raw)))
    if not gap <= ADDITIVITY:
        raise Unexplained(f"the contributions miss the raw score by up to {gap:.3g}")
    score = 1.0 / (1.0 + np.exp(-found.raw)) if explainer.scale == "log-odds" else found.raw
    delta = float(np.max(np.abs(score - np.asarray(expected, dtype=float))))
    if not delta <= PARITY:
        raise Unexplained(f"the raw score differs from the Pipeline's by up to {delta:.3g}")
    return (
        f"contributions to the {explainer.scale} (base + contributions = raw score within "
        f"{gap:.1e}, raw score = the Pipeline's within {delta:.1e} on {len(rows)} rows)"
    )


def refusal_files(reason: str) -> dict[str, bytes]:
    """What a model with no exact method stores: the reason, which /explain answers (501)."""
    return {EXPLAIN_FILE: json.dumps({"kind": None, "reason": reason}).encode()}


def load_explainer(
    read: Callable[[str], bytes | None], scorer: Any, pipeline: Callable[[], Any]
) -> Any:
    """The explainer the build stored (`read(name)`: a file of the model, or None; `scorer`:
    the loaded fast path; `pipeline()`: the unpickled Pipeline, loaded only when it explains);
    Unexplained with the reason when there is none."""
    data = read(EXPLAIN_FILE)
    if data is None:
        raise Unexplained("the bento was built before mlgate explained answers: rebuild it")
    spec = json.loads(data)
    kind, fills = spec.pop("kind"), spec.pop("fills", None)
    if kind is None:
        raise Unexplained(spec["reason"])
    if kind == "linear":
        explainer: Any = LinearExplainer(spec)
    elif kind == "trees" and spec["arrays"] == "scorer":
        explainer = TreeExplainer(getattr(scorer, "inner", scorer), own_arrays=False)
    elif kind == "trees":
        arrays = read(EXPLAIN_TREES_FILE)
        if arrays is None:
            raise FileNotFoundError(f"{EXPLAIN_TREES_FILE} is missing beside {EXPLAIN_FILE}")
        explainer = TreeExplainer(TreeScorer(spec["spec"], arrays))
    else:
        explainer = PipelineExplainer(pipeline(), spec)
    return explainer if fills is None else Filled(explainer, fills)


def ranked(contributions: np.ndarray, k: int) -> np.ndarray:
    """Each row's k columns of largest |contribution|, largest first; a tie in column order."""
    return np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :k]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def explanations(
    explainer: Any, found: Attribution, rows: Sequence[Row], top_k: int
) -> list[dict[str, Any]]:
    """Each row's answer beside its prediction: its `reasons` (the top_k columns by
    |contribution|: column, contribution, the row's value) and its whole `attribution`."""
    columns = explainer.columns
    out = []
    for i, (row, top) in enumerate(zip(rows, ranked(found.contributions, top_k), strict=True)):
        values = {**(found.derived[i] if found.derived else {}), **row}
        contributions = found.contributions[i].tolist()
        reasons = [
            {
                "column": columns[j],
                "contribution": contributions[j],
                "value": _plain(values[columns[j]]),
            }
            for j in top
        ]
        attribution = {
            "method": explainer.method,
            "scale": explainer.scale,
            "base_value": float(found.base[i]),
            "raw_score": float(found.raw[i]),
            "contributions": dict(zip(columns, contributions, strict=True)),
        }
        out.append({"reasons": reasons, "attribution": attribution})
    return out
