"""`mlgate compare` of a multiclass champion and challenger on recorded shadow traffic:
accuracy and log loss over the joined outcomes, as scikit-learn computes them, and the
verdict. The models are real (iris: a weak champion on two features, a challenger on four);
the records are in the service's feedback format (class, probabilities)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sklearn import metrics as m
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from mlgate.config import Params, parse_params
from mlgate.loop.compare import compare, load_records
from tests.conftest import ROOT

RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


def multiclass_params(metric: str) -> Params:
    raw = copy.deepcopy(RAW)
    raw["data"]["task"] = "multiclass"
    raw["data"].pop("positive_label", None)
    raw["gate"]["champion"] = {"metric": metric, "tolerance": 0.0}
    raw["gate"].update(min_metrics={}, max_metrics={}, max_fairness_gap={})
    raw["compare"].update(min_rows=200, min_outcomes=200, bootstrap=400)
    return parse_params(raw)


def answers(model: Any, x: np.ndarray) -> list[dict[str, Any]]:
    """The service's answer of each row: the most probable class, every class's probability."""
    proba = model.predict_proba(x)
    classes = [str(c) for c in model.classes_]
    return [
        {
            "class": classes[int(np.argmax(p))],
            "probabilities": dict(zip(classes, p.tolist(), strict=True)),
        }
        for p in proba
    ]


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Iris twice over (300 rows, one request each): the champion's answers, the shadow
    challenger's, and the true classes as outcomes; and what scikit-learn says of them."""
    iris = load_iris()
    names = np.array(["setosa", "versicolor", "virginica"])
    x, y = np.vstack([iris.data, iris.data]), np.concatenate([names[iris.target]] * 2)
    weak = LogisticRegression(max_iter=50).fit(iris.data[:, :1], names[iris.target])
    strong = LogisticRegression(max_iter=500).fit(iris.data, names[iris.target])
    folder = tmp_path_factory.mktemp("feedback")
    lines = []
    for i, (cp, ch) in enumerate(zip(answers(weak, x[:, :1]), answers(strong, x), strict=True)):
        base = {"schema": 1, "request_id": f"r{i}", "row": 0, "ts": "2026-12-07T10:00:00.000Z"}
        lines.append(
            {**base, "kind": "prediction", "variant": "champion", "model_version": "1", **cp}
        )
        lines.append(
            {**base, "kind": "shadow", "variant": "challenger", "model_version": "2", **ch}
        )
        lines.append({**base, "kind": "outcome", "outcome": str(y[i])})
    (folder / "predictions-test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    expected = {
        "accuracy": (
            m.accuracy_score(y, weak.predict(x[:, :1])),
            m.accuracy_score(y, strong.predict(x)),
        ),
        "log_loss": (
            m.log_loss(y, weak.predict_proba(x[:, :1]), labels=names),
            m.log_loss(y, strong.predict_proba(x), labels=names),
        ),
    }
    return folder, expected


@pytest.mark.parametrize("metric", ["accuracy", "log_loss"])
def test_the_metrics_on_joined_outcomes_are_scikit_learns(
    traffic: tuple[Path, dict[str, Any]], metric: str
) -> None:
    folder, expected = traffic
    result = compare(multiclass_params(metric), load_records(folder))
    assert result.task == "multiclass" and result.metric == metric and result.mode == "shadow"
    assert result.champion.outcomes == result.challenger.outcomes == 300
    assert result.champion.metric == pytest.approx(expected[metric][0], abs=1e-9)
    assert result.challenger.metric == pytest.approx(expected[metric][1], abs=1e-9)
    difference = result.difference
    assert difference is not None and difference.design == "paired"
    assert difference.value == pytest.approx(expected[metric][1] - expected[metric][0], abs=1e-9)
    assert difference.higher_is_better == (metric == "accuracy")
    # the challenger (all four features) is clearly better than the one-feature champion
    assert result.verdict == "promote", result.reasons
    assert result.agreement is not None and 0 < result.agreement["decision_agreement"] < 1


def test_a_worse_multiclass_challenger_is_aborted(traffic: tuple[Path, dict[str, Any]]) -> None:
    """The roles swapped: the strong model as champion, the weak one on trial."""
    folder, _ = traffic
    frames = load_records(folder)
    predictions, shadow = frames["predictions"], frames["shadow"]
    swapped = {**frames, "predictions": shadow.assign(variant="champion", shadow=False)}
    swapped["shadow"] = predictions.assign(variant="challenger")
    result = compare(multiclass_params("log_loss"), swapped)
    assert result.verdict == "abort", result.reasons
