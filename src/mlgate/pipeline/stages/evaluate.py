"""evaluate: metrics, fairness by group and plot data of the model on the test split."""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from mlgate import io
from mlgate.config import LOWER_IS_BETTER
from mlgate.pipeline import bootstrap, data, explain, fairness
from mlgate.pipeline.model import class_probabilities, decided_classes, positive_scores

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from mlgate.config import Params

# what the chance bounds are on: a ranking metric, and a proper score, which a fit on noise
# cannot reach by pointing in a lucky direction of few strong features (it needs the size of
# the signal, not only its direction: a titanic model's ROC AUC is within a noise fit's reach)
CHANCE_METRICS = {
    "classification": ("roc_auc", "brier"),
    "multiclass": ("roc_auc_ovr", "log_loss"),
    "regression": ("rmse",),
}
CURVE_POINTS = 101  # enough for a smooth plot, small enough to diff in a PR
SCATTER_POINTS = 500  # regression plots: a readable scatter, still small enough to diff


def classification_metrics(y_true: Any, scores: Any, threshold: float) -> dict[str, float]:
    from sklearn import metrics as m

    y_pred = (scores >= threshold).astype(int)
    return {
        "roc_auc": round(float(m.roc_auc_score(y_true, scores)), 4),
        "average_precision": round(float(m.average_precision_score(y_true, scores)), 4),
        "accuracy": round(float(m.accuracy_score(y_true, y_pred)), 4),
        "precision": round(float(m.precision_score(y_true, y_pred, zero_division=0)), 4),
        "recall": round(float(m.recall_score(y_true, y_pred, zero_division=0)), 4),
        "f1": round(float(m.f1_score(y_true, y_pred, zero_division=0)), 4),
        "brier": round(float(m.brier_score_loss(y_true, scores)), 4),
        "log_loss": round(float(m.log_loss(y_true, np.clip(scores, 1e-15, 1 - 1e-15))), 4),
    }


def curves(y_true: Any, scores: Any) -> dict[str, list[dict[str, float]]]:
    """ROC and precision-recall curves, thinned to CURVE_POINTS for `dvc plots`."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(y_true, scores)
    precision, recall, _ = precision_recall_curve(y_true, scores)
    return {
        "roc": _thin(fpr=fpr, tpr=tpr),
        "precision_recall": _thin(recall=recall[::-1], precision=precision[::-1]),
    }


def _thin(**columns: np.ndarray) -> list[dict[str, float]]:
    """At most CURVE_POINTS evenly spaced points (first and last kept): a curve has up to one
    point per distinct score, so only the chosen ones become Python objects."""
    n = len(next(iter(columns.values())))
    idx = np.arange(n)
    if n > CURVE_POINTS:
        idx = np.unique(np.linspace(0, n - 1, CURVE_POINTS).round().astype(int))
    picked = {k: np.asarray(v, dtype=float)[idx] for k, v in columns.items()}
    return [{k: round(float(v[i]), 4) for k, v in picked.items()} for i in range(len(idx))]


def confusion_counts(y_true: Any, y_pred: Any) -> list[dict[str, int]]:
    """The confusion matrix as rows (actual, predicted, count), zero cells included: four
    rows whatever the size of the test set (`.dvc/plots/confusion_counts.json` sums them)."""
    cells = np.bincount(
        2 * np.asarray(y_true, dtype=int) + np.asarray(y_pred, dtype=int), minlength=4
    )
    return [
        {"actual": a, "predicted": p, "count": int(cells[2 * a + p])}
        for a in (0, 1)
        for p in (0, 1)
    ]


def multiclass_metrics(y_true: Any, classes: list[Any], probabilities: Any) -> dict[str, float]:
    """Three classes or more: the decision is the most probable class. Overall accuracy,
    balanced accuracy, macro and weighted F1, log loss, one-vs-rest macro ROC AUC, and each
    class's precision and recall (`precision:<class>`, `recall:<class>`: gateable too)."""
    from sklearn import metrics as m

    y_true = np.asarray(y_true)
    y_pred = decided_classes(classes, probabilities)
    labels = np.asarray(classes)
    f1 = {
        f"f1_{avg}": m.f1_score(y_true, y_pred, labels=labels, average=avg, zero_division=0)
        for avg in ("macro", "weighted")
    }
    result = {
        "accuracy": m.accuracy_score(y_true, y_pred),
        "balanced_accuracy": _balanced_accuracy(y_true, y_pred),
        **f1,
        "log_loss": m.log_loss(y_true, probabilities, labels=labels),
        "roc_auc_ovr": _roc_auc_ovr(y_true, labels, probabilities),
    }
    precision, recall, _, _ = m.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    for label, p, r in zip(classes, precision, recall, strict=True):
        result[f"precision:{label}"] = p
        result[f"recall:{label}"] = r
    return {k: round(float(v), 4) for k, v in result.items()}


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The mean recall of the classes present (scikit-learn's, without its warning when a
    predicted class is absent from y_true, as in a small group)."""
    present = np.unique(y_true)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in present]))


def _roc_auc_ovr(y_true: np.ndarray, labels: np.ndarray, probabilities: Any) -> float:
    """One-vs-rest ROC AUC averaged over the classes (scikit-learn's `multi_class="ovr"`,
    `average="macro"`), over the classes present in y_true: a group of the test split that
    lacks a class still gets a value, and 0.5 when it cannot be measured at all."""
    from sklearn.metrics import roc_auc_score

    probabilities = np.asarray(probabilities, dtype=float)
    aucs = [
        roc_auc_score(y_true == label, probabilities[:, i])
        for i, label in enumerate(labels)
        if 0 < int((y_true == label).sum()) < len(y_true)
    ]
    return float(np.mean(aucs)) if aucs else 0.5


def multiclass_confusion(y_true: Any, y_pred: Any, classes: list[Any]) -> list[dict[str, Any]]:
    """The confusion matrix as rows (actual, predicted, count) over every pair of classes,
    zero cells included: classes² rows whatever the size of the test set."""
    from sklearn.metrics import confusion_matrix

    labels = np.asarray(classes)
    cells = confusion_matrix(np.asarray(y_true), y_pred, labels=labels)
    return [
        {"actual": str(a), "predicted": str(p), "count": int(cells[i, j])}
        for i, a in enumerate(classes)
        for j, p in enumerate(classes)
    ]


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    from sklearn import metrics as m

    return {
        "rmse": round(float(np.sqrt(m.mean_squared_error(y_true, y_pred))), 4),
        "mae": round(float(m.mean_absolute_error(y_true, y_pred)), 4),
        "r2": round(float(m.r2_score(y_true, y_pred)), 4),
    }


def regression_points(y_true: Any, y_pred: Any) -> list[dict[str, float]]:
    """Actual, predicted and residual per test row (evenly thinned) for `dvc plots`."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    idx = np.arange(len(y_true))
    if len(idx) > SCATTER_POINTS:
        idx = np.unique(np.linspace(0, len(idx) - 1, SCATTER_POINTS).round().astype(int))
    return [
        {
            "actual": round(float(y_true[i]), 4),
            "predicted": round(float(y_pred[i]), 4),
            "residual": round(float(y_true[i] - y_pred[i]), 4),
        }
        for i in idx
    ]


def test_metrics(model: Any, test: pd.DataFrame, params: Params) -> dict[str, float]:
    """The quality metrics of any model on a test frame: what the gate compares.

    The model gets every input column and its own Pipeline selects what it was trained
    on: the champion may use other features than the candidate."""
    features = test.drop(columns=[params.data.target])
    if params.data.task == "regression":
        return regression_metrics(test[params.data.target].to_numpy(), model.predict(features))
    if params.data.task == "multiclass":
        classes, probabilities = class_probabilities(model, features)
        return multiclass_metrics(test[params.data.target].to_numpy(), classes, probabilities)
    y_true = (test[params.data.target] == params.data.positive_label).astype(int).to_numpy()
    scores = positive_scores(model, features, params.data.positive_label)
    return classification_metrics(y_true, scores, params.evaluate.threshold)


def test_outputs(model: Any, test: pd.DataFrame, params: Params) -> tuple[np.ndarray, np.ndarray]:
    """Each test row's target and the model's output the metrics are computed from: the
    positive class's score (two classes), the decided class (multiclass) or the prediction
    (regression). Paired comparisons resample these."""
    features = test.drop(columns=[params.data.target])
    y = test[params.data.target].to_numpy()
    if params.data.task == "regression":
        return y.astype(float), np.asarray(model.predict(features), dtype=float)
    if params.data.task == "multiclass":
        classes, probabilities = class_probabilities(model, features)
        return y, np.asarray(decided_classes(classes, probabilities))
    scores = positive_scores(model, features, params.data.positive_label)
    return (y == params.data.positive_label).astype(np.int64), np.asarray(scores, dtype=float)


def evaluate(model: Any, test: pd.DataFrame, params: Params) -> dict[str, Any]:
    """Everything evaluate measures, as plain data; no decisions here."""
    if params.data.task == "regression":
        return evaluate_regression(model, test, params)
    if params.data.task == "multiclass":
        return evaluate_multiclass(model, test, params)
    y_true = (test[params.data.target] == params.data.positive_label).astype(int).to_numpy()
    scores = positive_scores(model, test[params.features.inputs], params.data.positive_label)
    y_pred = (scores >= params.evaluate.threshold).astype(int)
    sensitive = {
        name: fairness.groups(test, name, spec) for name, spec in params.evaluate.sensitive.items()
    }
    metrics = classification_metrics(y_true, scores, params.evaluate.threshold)
    return {
        "metrics": metrics,
        "fairness": fairness.group_metrics(y_true, y_pred, sensitive),
        "intervals": bootstrap.classification_intervals(
            y_true, scores, params.evaluate.threshold, sensitive, metrics, params.evaluate.bootstrap
        ),
        "curves": curves(y_true, scores),
        "confusion": confusion_counts(y_true, y_pred),
    }


def evaluate_multiclass(model: Any, test: pd.DataFrame, params: Params) -> dict[str, Any]:
    """Multiclass: the metrics, per-class fairness gaps by group, the confusion matrix."""
    y_true = test[params.data.target].to_numpy()
    classes, probabilities = class_probabilities(model, test[params.features.inputs])
    y_pred = decided_classes(classes, probabilities)
    sensitive = {
        name: fairness.groups(test, name, spec) for name, spec in params.evaluate.sensitive.items()
    }
    metrics = multiclass_metrics(y_true, classes, probabilities)
    return {
        "metrics": metrics,
        "fairness": fairness.multiclass_group_metrics(y_true, y_pred, classes, sensitive),
        "intervals": bootstrap.multiclass_intervals(
            y_true, y_pred, classes, sensitive, params.evaluate.bootstrap, probabilities, metrics
        ),
        "confusion": multiclass_confusion(y_true, y_pred, classes),
    }


def evaluate_regression(model: Any, test: pd.DataFrame, params: Params) -> dict[str, Any]:
    """Regression: error metrics, error by group, predicted-vs-actual points."""
    y_true = test[params.data.target].to_numpy(dtype=float)
    y_pred = model.predict(test[params.features.inputs])
    sensitive = {
        name: fairness.groups(test, name, spec) for name, spec in params.evaluate.sensitive.items()
    }
    return {
        "metrics": regression_metrics(y_true, y_pred),
        "fairness": fairness.regression_group_metrics(y_true, y_pred, sensitive),
        "intervals": bootstrap.regression_intervals(
            y_true, y_pred, sensitive, params.evaluate.bootstrap
        ),
        "points": regression_points(y_true, y_pred),
    }


def chance(
    model: Any, train: pd.DataFrame, test: pd.DataFrame, params: Params
) -> dict[str, Any] | None:
    """What the same training reaches when the features cannot tell the target
    (evaluate.chance): the model's estimator, unfitted (sklearn's clone), fitted `refits`
    times on the training rows (at most max_rows, a seeded sample) with the target
    permuted, each scored on the test split. A model that learned nothing is one more draw
    of those scores, so each CHANCE_METRICS metric's bound is the one-sided prediction
    bound of a new draw: mean + t(K-1) * sd * sqrt(1 + 1/K) (minus where lower is better),
    at `confidence` shared between the metrics (Bonferroni): beating any one of them says
    the model learned something, and a fit on noise does so at most 1 - confidence of the
    time. None when refits is 0 (off)."""
    from sklearn.base import clone

    from mlgate.pipeline.stages.train import fit_pipeline

    spec, target = params.evaluate.chance, params.data.target
    if spec.refits == 0:
        return None
    started = time.perf_counter()
    rng = np.random.default_rng(params.evaluate.bootstrap.seed)
    if len(train) > spec.max_rows:
        train = train.iloc[np.sort(rng.choice(len(train), spec.max_rows, replace=False))]
    labels = train[target].to_numpy()
    values = []
    for _ in range(spec.refits):
        shuffled = train.assign(**{target: rng.permutation(labels)})
        values.append(test_metrics(fit_pipeline(clone(model), shuffled, params), test, params))
    names = CHANCE_METRICS[params.data.task]
    each = 1 - (1 - spec.confidence) / len(names)
    return {
        "metrics": {name: _null_bound([v[name] for v in values], name, each) for name in names},
        "refits": spec.refits,
        "rows": len(train),
        "confidence": spec.confidence,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _null_bound(scores: list[float], metric: str, confidence: float) -> dict[str, Any]:
    """The one-sided `confidence` prediction bound of one more draw of `scores` (normal)."""
    from scipy.stats import t

    k, mean, sd = len(scores), float(np.mean(scores)), float(np.std(scores, ddof=1))
    margin = float(t.ppf(confidence, k - 1)) * sd * math.sqrt(1 + 1 / k)
    lower = metric in LOWER_IS_BETTER
    bound = mean - margin if lower else mean + margin
    return {"op": "<" if lower else ">", "bound": round(bound, 4), "mean": round(mean, 4),
            "sd": round(sd, 4)}  # fmt: skip


def run(params: Params) -> dict[str, Any]:
    from mlgate.pipeline.model import load_model

    model = load_model(params.train.model)
    test = data.load(params.split.test, params)
    train = data.load(params.split.train, params)
    result = evaluate(model, test, params)
    beaten = chance(model, train, test, params)
    if beaten is not None:
        result["intervals"]["chance"] = beaten
        bounds = ", ".join(
            f"{name} {b['mean']:.4f} ± {b['sd']:.4f} (bound {b['op']} {b['bound']:.4f})"
            for name, b in beaten["metrics"].items()
        )
        print(f"evaluate: chance: {beaten['refits']} fits on shuffled labels reach {bounds}; "
              f"{beaten['seconds']:.1f} s")  # fmt: skip
    plots = params.evaluate.plots
    if params.data.task == "regression":
        io.write_json(plots / "predictions.json", {"predictions": result["points"]})
    elif params.data.task == "multiclass":
        io.write_text(plots / "confusion.csv", confusion_csv(result["confusion"]))
    else:
        _write_classification_plots(plots, result)
    io.write_json(params.evaluate.fairness, result["fairness"])
    io.write_json(params.evaluate.intervals, {**result["intervals"], "rows_hash": rows_hash(test)})
    io.write_json(params.evaluate.metrics, result["metrics"])
    print("evaluate: " + json.dumps(result["metrics"]))
    drivers = explain.importance(model, test, train, params)
    drivers["proxies"] = fairness.proxies(test, params.features.all, params.evaluate.sensitive)
    io.write_json(params.evaluate.importance, drivers)
    top = ", ".join(f"{k} {v:.3g}" for k, v in list(drivers["columns"].items())[:5])
    print(f"evaluate: what drives the model ({drivers['method']}): {top}")
    shown = ", ".join(
        f"{k} [{v[0]:.4f}, {v[1]:.4f}]" for k, v in result["intervals"]["metrics"].items() if v
    )
    print(f"evaluate: {params.evaluate.bootstrap.confidence:.0%} intervals: {shown}")
    return result


def rows_hash(test: pd.DataFrame) -> str:
    """A fingerprint of the test rows (order-free): the PR report tells a model change from
    a change of the rows both sides were evaluated on."""
    import pandas as pd

    hashed = pd.util.hash_pandas_object(test, index=False).to_numpy()
    return f"{int(np.sort(hashed).view(np.uint64).sum(dtype=np.uint64)):016x}"


def _write_classification_plots(plots: Path, result: dict[str, Any]) -> None:
    io.write_json(plots / "roc.json", {"roc": result["curves"]["roc"]})
    io.write_json(
        plots / "precision_recall.json", {"precision_recall": result["curves"]["precision_recall"]}
    )
    io.write_text(
        plots / "confusion.csv",
        "actual,predicted,count\n"
        + "".join(f"{r['actual']},{r['predicted']},{r['count']}\n" for r in result["confusion"]),
    )


def confusion_csv(rows: list[dict[str, Any]]) -> str:
    """actual,predicted,count rows as CSV, a class label quoted where it needs to be."""
    import csv
    import io as text_io

    out = text_io.StringIO()
    writer = csv.DictWriter(out, ["actual", "predicted", "count"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
