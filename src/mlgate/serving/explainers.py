"""Why the model answered as it did: each feature column's exact contribution to a row's raw
score (base + contributions = raw score), and an answer's top reasons (/explain, `mlgate
predict --explain`).

`make_explainer` picks the exact method for a fitted Pipeline (at `mlgate build` and in
batch), never an approximation:
- `LinearExplainer`: a linear estimator (coef_, intercept_) after plain scaling + one-hot, in
  NumPy: each output column's `coef * (x - mean)` (mean: the training split's transformed
  rows) summed back to the column it came from, as mlgate.pipeline.explain computes it;
- `TreeExplainer`: the tree walk's trees (RandomForest, ExtraTrees, DecisionTree,
  HistGradientBoosting, LightGBM, XGBoost) by exact TreeSHAP over their node arrays
  (pipeline.treeshap), in NumPy;
- `PipelineExplainer`: anything else mlgate.pipeline.explain explains exactly (LightGBM's
  own TreeSHAP behind the project's feature code, a linear model there), on the
  scikit-learn Pipeline;
- none, with the reason (an estimator with no exact method, a boosting of several classes
  where the walk's check refuses it).
A Pipeline that imputes is explained on the filled row (`Filled`), as it is scored.

A multiclass model is explained for the class decided for the row (its reasons are what a
reader of that decision asks for): `every_class` attributes every class's raw score, `explain`
keeps the decided one's (given by the caller, who decided it, else the largest raw score) and
says which in `Attribution.explained`. A class's raw score is a forest's probability of it,
or a softmax model's centred logit: its logit minus the mean of every class's (log p_k -
mean_j log p_j), the one representative softmax's shift-free logits have; softmax of the
centred logits gives the probabilities.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlgate.pipeline.treeshap import TreeShap
from mlgate.serving.features import (
    EVERY_CLASS,
    FeatureMatrix,
    Row,
    features_spec,
    plain_preprocess,
    plain_values,
)
from mlgate.serving.scorer import filled, without_imputers
from mlgate.serving.trees import TREE_ARRAYS, TREES_FILE, TreeScorer, TreesUnavailable

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
    positive class, a forest's probability, a class's centred logit, or the prediction),
    `base` + the sum of a row's `contributions` (one per column) = `raw`; `derived` the
    values of the columns the project's feature code makes (not in the request), per row;
    `explained` the index (in the model's classes) of the class each row is explained for
    (multiclass). `every_class` gives one of each per class, on a last axis."""

    base: np.ndarray
    contributions: np.ndarray
    raw: np.ndarray
    derived: list[dict[str, Any]] | None = None
    explained: np.ndarray | None = None


def decided_class(found: Attribution, decided: Sequence[int] | None) -> Attribution:
    """Every class's attribution reduced to each row's decided class: `decided` (class
    indices), else the largest raw score (the most probable: softmax keeps the order)."""
    at = np.arange(len(found.raw))
    pick = np.argmax(found.raw, axis=1) if decided is None else np.asarray(decided, dtype=int)
    return Attribution(
        found.base[at, pick],
        found.contributions[at, :, pick],
        found.raw[at, pick],
        found.derived,
        pick,
    )


def scores_of(scale: str, raw: np.ndarray) -> np.ndarray:
    """The Pipeline's scores from raw scores on `scale` (several classes: every class's)."""
    if scale == "log-odds":
        return 1.0 / (1.0 + np.exp(-raw))
    if scale == "centred log-odds":
        z = np.exp(raw - raw.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
    return raw


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
        self.coef = np.asarray(spec["coef"], dtype=float) * spec["sign"]  # (features[, classes])
        self.multiclass = self.coef.ndim == 2
        intercept = np.asarray(spec["intercept"], dtype=float) * spec["sign"]
        self.intercept = intercept if self.multiclass else float(intercept)
        self.mean = np.asarray(spec["mean"], dtype=float)
        self.scale = spec["scale"]
        self.classes = spec.get("classes")
        self.grouped = _Grouped(_owners(spec))
        self.columns = self.grouped.columns

    @classmethod
    def from_pipeline(cls, model: Any, positive: Any, reference: Sequence[Row]) -> LinearExplainer:
        from mlgate.pipeline.explain import centred

        estimator = model.steps[-1][1]
        spec: dict[str, Any] = features_spec(model)
        if positive is EVERY_CLASS:  # each class's centred logit
            coef, intercept = centred(estimator.coef_.T, np.ravel(estimator.intercept_))
            spec.update(
                coef=coef.tolist(),
                intercept=intercept.tolist(),
                sign=1.0,
                scale="centred log-odds",
                classes=plain_values(estimator.classes_),
            )
        else:
            spec.update(
                coef=np.ravel(estimator.coef_).tolist(),
                intercept=float(np.ravel(estimator.intercept_)[0]),
                sign=_sign(estimator, positive),
                scale="prediction" if positive is None else "log-odds",
            )
        spec["mean"] = FeatureMatrix(spec)(reference).mean(axis=0).tolist()
        return cls(spec)

    @staticmethod
    def supports(model: Any, positive: Any) -> bool:
        """A linear estimator: one score, or (multiclass) a logistic regression's softmax."""
        estimator = model.steps[-1][1]
        coef = getattr(estimator, "coef_", None)
        if coef is None or not hasattr(estimator, "intercept_"):
            return False
        if positive is EVERY_CLASS:
            return type(estimator).__name__ == "LogisticRegression" and np.ndim(coef) == 2
        return np.size(coef) == np.shape(coef)[-1]

    def explain(self, rows: Sequence[Row], decided: Sequence[int] | None = None) -> Attribution:
        if self.multiclass:
            return decided_class(self.every_class(rows), decided)
        x = self.matrix(rows)
        base = self.intercept + float(self.mean @ self.coef)
        contributions = self.grouped((x - self.mean) * self.coef)
        return Attribution(np.full(len(x), base), contributions, x @ self.coef + self.intercept)

    def every_class(self, rows: Sequence[Row]) -> Attribution:
        """(Multiclass: every class's; else the one score's.)"""
        if not self.multiclass:
            return self.explain(rows)
        x = self.matrix(rows)
        base = np.tile(self.intercept + self.mean @ self.coef, (len(x), 1))
        contributions = self.grouped((x - self.mean)[:, :, None] * self.coef)
        return Attribution(base, contributions, x @ self.coef + self.intercept)

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
        self.classes = spec.get("classes")
        self.multiclass = np.ndim(scorer.value) == 2  # a forest's class fractions
        self.grouped = _Grouped(_owners(spec))
        self.columns = self.grouped.columns

    def explain(self, rows: Sequence[Row], decided: Sequence[int] | None = None) -> Attribution:
        if self.multiclass:
            return decided_class(self.every_class(rows), decided)
        return self.every_class(rows)

    def every_class(self, rows: Sequence[Row]) -> Attribution:
        """(Multiclass: every class's; else the one score's.)"""
        x = self.scorer.walked(rows)
        scaled = self.sign / self.scorer.divisor
        contributions = self.grouped(self.shap.contributions(x)) * scaled
        # in float64, as TreeSHAP adds (XGBoost's float32 sum: within its rounding of it)
        raw = self.scorer.raw_sum(self.scorer.leaves(x), np.float64) * self.sign
        base = self.shap.base * scaled
        return Attribution(
            np.tile(base, (len(x), 1)) if self.multiclass else np.full(len(x), base),
            contributions,
            raw,
        )

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
        self.classes = spec.get("classes")
        self.multiclass = self.classes is not None

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
        every = positive is EVERY_CLASS
        estimator = model.steps[-1][1]
        spec = {
            "method": method,
            "columns": columns,
            "features": list(features),
            "mean": explain.reference_mean(model, frame).tolist() if linear else None,
            "sign": 1.0 if every else _sign(estimator, positive),
            "scale": explain.scale(model),
            "classes": plain_values(estimator.classes_) if every else None,
        }
        return cls(model, spec)

    def explain(self, rows: Sequence[Row], decided: Sequence[int] | None = None) -> Attribution:
        if self.multiclass:
            return decided_class(self.every_class(rows), decided)
        return self.every_class(rows)

    def every_class(self, rows: Sequence[Row]) -> Attribution:
        """(Multiclass: every class's; else the positive class's or the prediction's.)"""
        import pandas as pd

        from mlgate.pipeline import explain

        frame = pd.DataFrame.from_records(list(rows), columns=self.features)
        found = explain.contributions(self.model, frame, self.mean)
        assert found is not None  # the same model explained at build
        _, base, _, contributions = found
        raw = explain.raw_score(self.model, frame) * self.sign
        # classes_[0]'s probability is 1 - classes_[1]'s (log-odds: their negation)
        offset = 1.0 if self.scale == "probability" and self.sign < 0 else 0.0
        made = [c for c in self.columns if c not in self.features]
        derived = None
        if made:  # the project's feature code made them: their values, as it computes them
            for step in [s for _, s in self.model.steps[:-2]]:
                frame = step.transform(frame)
            derived = frame[made].to_dict("records")
        return Attribution(
            offset + base * self.sign, contributions * self.sign, offset + raw, derived
        )

    def files(self) -> dict[str, bytes]:
        return {EXPLAIN_FILE: json.dumps({"kind": "pipeline", **self.spec}).encode()}


class Filled:
    """An explainer behind the fitted imputers' fill values (scorer.Imputed's twin)."""

    def __init__(self, inner: Any, fills: dict[str, Any]) -> None:
        self.inner, self.fills = inner, fills
        self.method, self.scale, self.columns = inner.method, inner.scale, inner.columns
        self.classes, self.multiclass = inner.classes, inner.multiclass

    def explain(self, rows: Sequence[Row], decided: Sequence[int] | None = None) -> Attribution:
        return self.inner.explain(filled(rows, self.fills), decided)

    def every_class(self, rows: Sequence[Row]) -> Attribution:
        return self.inner.every_class(filled(rows, self.fills))

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
    unwrapped = without_imputers(model)
    if unwrapped is not None:
        plain, fills = unwrapped
        walk = getattr(scorer, "inner", None)
        inner = make_explainer(plain, positive, lambda: filled(reference(), fills), features, walk)
        return Filled(inner, fills)
    if plain_preprocess(model) and LinearExplainer.supports(model, positive):
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
    found = explainer.every_class(rows)  # multiclass: every class's
    gap = float(np.max(np.abs(found.base + found.contributions.sum(axis=1) - found.raw)))
    if not gap <= ADDITIVITY:
        raise Unexplained(f"the contributions miss the raw score by up to {gap:.3g}")
    score = scores_of(explainer.scale, found.raw)
    delta = float(np.max(np.abs(score - np.asarray(expected, dtype=float))))
    if not delta <= PARITY:
        raise Unexplained(f"the raw score differs from the Pipeline's by up to {delta:.3g}")
    of = " of each class (/explain: the decided one's)" if explainer.multiclass else ""
    return (
        f"contributions to the {explainer.scale}{of} (base + contributions = raw score within "
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
    columns, classes = explainer.columns, explainer.classes
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
            **({} if found.explained is None else {"class": classes[found.explained[i]]}),
            "method": explainer.method,
            "scale": explainer.scale,
            "base_value": float(found.base[i]),
            "raw_score": float(found.raw[i]),
            "contributions": dict(zip(columns, contributions, strict=True)),
        }
        out.append({"reasons": reasons, "attribution": attribution})
    return out
