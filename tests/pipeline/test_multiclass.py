"""Multiclass (data.task: multiclass): metrics equal scikit-learn's, per-class fairness gaps
equal fairlearn's, gates and the champion rule read them, the PR report shows each class."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from sklearn import metrics as m
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from mlgate.config import parse_params
from mlgate.errors import MlgateError
from mlgate.pipeline import fairness, report
from mlgate.pipeline.model import decided_classes
from mlgate.pipeline.stages.evaluate import confusion_csv, multiclass_confusion, multiclass_metrics
from mlgate.pipeline.stages.gate import champion_check, decide, format_report, threshold_checks
from tests.conftest import ROOT

RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


def multiclass_params(**gate: object) -> object:
    raw = copy.deepcopy(RAW)
    raw["data"]["task"] = "multiclass"
    raw["data"].pop("positive_label", None)
    raw["gate"].update(gate)
    return parse_params(raw)


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray, pd.Series]:
    """A weak model on iris (two features, few iterations: mistakes to measure), labels as
    text, and a group per row drawn with a seed."""
    data = load_iris(as_frame=True)
    names = np.array(["setosa", "versicolor", "virginica"])
    y = names[data.target.to_numpy()]
    x = data.data.iloc[:, [0, 1]].to_numpy()
    model = LogisticRegression(max_iter=200).fit(x, y)
    groups = pd.Series(np.random.default_rng(5).choice(["a", "b", "c"], len(y)), name="g")
    return y, list(model.classes_), model.predict_proba(x), model.predict(x), groups


def test_the_metrics_are_scikit_learns(iris) -> None:
    y, classes, proba, decided, _ = iris
    assert (decided_classes(classes, proba) == decided).all()  # the rule is predict's
    got = multiclass_metrics(y, classes, proba)
    precision, recall, _, _ = m.precision_recall_fscore_support(y, decided, labels=classes)
    expected = {
        "accuracy": m.accuracy_score(y, decided),
        "balanced_accuracy": m.balanced_accuracy_score(y, decided),
        "f1_macro": m.f1_score(y, decided, average="macro"),
        "f1_weighted": m.f1_score(y, decided, average="weighted"),
        "log_loss": m.log_loss(y, proba),
        "roc_auc_ovr": m.roc_auc_score(y, proba, multi_class="ovr", average="macro"),
        **{f"precision:{c}": p for c, p in zip(classes, precision, strict=True)},
        **{f"recall:{c}": r for c, r in zip(classes, recall, strict=True)},
    }
    assert got == pytest.approx(expected, abs=5e-5)
    assert got["accuracy"] < 0.9  # a model with mistakes: the test can tell metrics apart


def test_integer_class_labels_measure_the_same() -> None:
    y = np.array([0, 1, 2, 2, 1, 0, 2, 1])
    proba = np.eye(3)[[0, 1, 2, 1, 1, 0, 2, 2]] * 0.7 + 0.1
    got = multiclass_metrics(y, [0, 1, 2], proba)
    assert got["accuracy"] == pytest.approx(m.accuracy_score(y, proba.argmax(axis=1)), abs=5e-5)
    assert set(got) >= {"precision:0", "recall:2"}


def test_a_part_without_a_class_still_gets_its_roc_auc() -> None:
    """A group of the test split may lack a class: the AUC is over the classes it has."""
    y = np.array(["a", "a", "b", "b"])
    proba = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]])
    got = multiclass_metrics(y, ["a", "b", "c"], proba)
    assert got["roc_auc_ovr"] == pytest.approx(1.0)
    assert got["recall:c"] == 0.0 and got["precision:c"] == 0.0


def test_the_confusion_matrix_has_every_pair_of_classes(iris) -> None:
    y, classes, _, decided, _ = iris
    cells = multiclass_confusion(y, decided, classes)
    matrix = m.confusion_matrix(y, decided, labels=classes)
    assert len(cells) == 9
    for cell in cells:
        i, j = classes.index(cell["actual"]), classes.index(cell["predicted"])
        assert cell["count"] == matrix[i, j]
    text = confusion_csv([{"actual": "a,b", "predicted": "c", "count": 1}])
    assert text == 'actual,predicted,count\n"a,b",c,1\n'  # a label with a comma stays one cell


def test_per_class_fairness_gaps_are_fairlearns_and_the_largest_is_the_gap(iris) -> None:
    y, classes, _, decided, groups = iris
    measured = fairness.multiclass_group_metrics(y, decided, classes, {"g": groups})["g"]
    for label in classes:
        truth, chosen = y == label, decided == label
        dp = demographic_parity_difference(truth, chosen, sensitive_features=groups)
        eo = equalized_odds_difference(truth, chosen, sensitive_features=groups)
        assert measured["classes"][label]["demographic_parity_difference"] == pytest.approx(
            dp, abs=5e-5
        )
        assert measured["classes"][label]["equalized_odds_difference"] == pytest.approx(
            eo, abs=5e-5
        )
    for gap in ("demographic_parity_difference", "equalized_odds_difference"):
        assert measured[gap] == max(c[gap] for c in measured["classes"].values())
        assert measured[gap] > 0
    for group, row in measured["groups"].items():
        mine = (groups == group).to_numpy()
        assert row["accuracy"] == pytest.approx(np.mean(y[mine] == decided[mine]), abs=5e-5)
    assert fairness.gaps(measured) == {
        "demographic_parity_difference": measured["demographic_parity_difference"],
        "equalized_odds_difference": measured["equalized_odds_difference"],
    }


def test_gates_bound_any_multiclass_metric_and_the_largest_class_gap() -> None:
    params = multiclass_params(
        min_metrics={"balanced_accuracy": 0.7, "recall:virginica": 0.8},
        max_metrics={"log_loss": 0.5},
        max_fairness_gap={"equalized_odds_difference": {"sex": 0.1}},
    )
    metrics = {"balanced_accuracy": 0.75, "recall:virginica": 0.6, "log_loss": 0.4}
    measured = {
        "sex": {
            "groups": {},
            "demographic_parity_difference": 0.05,
            "equalized_odds_difference": 0.12,
            "classes": {"virginica": {"equalized_odds_difference": 0.12}},
        }
    }
    gate = decide(threshold_checks(metrics, measured, params), None, "run")
    failed = {c["name"] for c in gate["checks"] if not c["passed"]}
    assert failed == {"recall:virginica", "equalized_odds_difference:sex"}
    text = format_report(gate, measured)  # the per-class tables are not printed as gaps
    assert "demographic_parity_difference:sex: 0.0500  (not gated)" in text
    assert "classes" not in text


def test_the_champion_rule_knows_log_loss_is_lower_is_better() -> None:
    params = multiclass_params(champion={"metric": "log_loss", "tolerance": 0.01})
    assert champion_check(0.30, 0.30, params, "3").passed
    assert not champion_check(0.40, 0.30, params, "3").passed
    params = multiclass_params(champion={"metric": "f1_macro", "tolerance": 0.01})
    assert not champion_check(0.80, 0.85, params, "3").passed


def test_params_accept_multiclass_and_refuse_an_impossible_per_class_bound() -> None:
    params = multiclass_params()
    assert params.data.classes and params.split.stratify
    with pytest.raises(MlgateError, match="recall:virginica is between 0 and 1"):
        multiclass_params(min_metrics={"recall:virginica": 1.5})


def test_the_report_shows_each_class_and_the_confusion_matrix(iris) -> None:
    y, classes, proba, decided, groups = iris
    metrics = multiclass_metrics(y, classes, proba)
    measured = fairness.multiclass_group_metrics(y, decided, classes, {"g": groups})
    pr = report.Results(
        "this PR",
        metrics=metrics,
        fairness=measured,
        confusion=multiclass_confusion(y, decided, classes),
    )
    text = report.render(None, pr, report.Results("base"), report.Results("production"))
    support = int((y == "virginica").sum())
    assert (
        f"| virginica | {metrics['precision:virginica']:.4f} | "
        f"{metrics['recall:virginica']:.4f} | {support} |"
    ) in text
    matrix = m.confusion_matrix(y, decided, labels=classes)
    assert "| actual \\ decided | setosa | versicolor | virginica |" in text
    assert "| setosa | " + " | ".join(str(v) for v in matrix[0]) + " |" in text
    assert "| group | count | accuracy |" in text  # no empty rate columns per group
    eo = measured["g"]["classes"]["versicolor"]["equalized_odds_difference"]
    assert "| versicolor | " in text and f"{eo:.4f}" in text


def test_a_multiclass_models_watched_answer_is_its_decided_class() -> None:
    from mlgate.pipeline.model import model_scores

    data = load_iris(as_frame=True)
    x = data.data.iloc[:, [0, 1]].to_numpy()
    y = np.array(["setosa", "versicolor", "virginica"])[data.target.to_numpy()]
    model = LogisticRegression(max_iter=200).fit(x, y)
    assert list(model_scores(model, x, multiclass_params())) == list(model.predict(x))


@pytest.mark.parametrize("labels", [["a", "b", "c"], [0, 1, 2]], ids=["text", "integers"])
def test_monitor_measures_the_drift_of_the_predicted_classes(labels: list[object]) -> None:
    """Categorical PSI and a chi-squared test over the decided classes, integer labels too
    (not binned as numbers): a shift towards one class drifts, the same mix does not."""
    from mlgate.loop.monitor import compare, predicted_classes

    params = multiclass_params()
    rng = np.random.default_rng(0)
    n = params.monitor.min_rows * 3
    trained = predicted_classes(rng.choice(labels, n, p=[0.4, 0.35, 0.25]))
    same = predicted_classes(rng.choice(labels, n, p=[0.4, 0.35, 0.25]))
    shifted = predicted_classes(rng.choice(labels, n, p=[0.8, 0.1, 0.1]))
    no_inputs, inputs = pd.DataFrame(index=range(n)), pd.DataFrame(index=range(n))
    quiet = compare(params, no_inputs, trained, inputs, same, 0, ["1"])
    assert quiet.prediction is not None and quiet.prediction.kind == "categorical"
    assert not quiet.prediction_drifted
    loud = compare(params, no_inputs, trained, inputs, shifted, 0, ["1"])
    assert loud.prediction is not None and loud.prediction_drifted and loud.drift
    assert loud.prediction.psi > params.monitor.max_prediction_psi
    assert set(loud.prediction.current_share) == {str(label) for label in labels}
    assert loud.prediction.current_share[str(labels[0])] == pytest.approx(0.8, abs=0.05)


def test_confusion_rows_survive_the_report_reader() -> None:
    rows = [{"actual": "a,b", "predicted": "c", "count": 2}]
    assert report._cells(confusion_csv(rows), Path("confusion.csv")) == rows
    with pytest.raises(MlgateError, match="not evaluate's confusion matrix"):
        report._cells("actual,predicted,count\na,b,many\n", Path("confusion.csv"))
