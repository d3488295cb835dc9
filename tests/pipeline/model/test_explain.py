"""Per-row contributions add up to the model's raw score (exact methods), per original column;
the global importance ranks what the model leans on, whatever the estimator."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlgate.config import Params
from mlgate.pipeline import explain
from mlgate.pipeline.stages import train


def with_train(params: Params, estimator: str, **hyper: Any) -> Params:
    section = params.train.model_copy(update={"estimator": estimator, "hyperparameters": hyper})
    return params.model_copy(update={"train": section})


@pytest.mark.parametrize(
    ("estimator", "hyper", "method"),
    [
        ("sklearn.linear_model.LogisticRegression", {"C": 1.0, "max_iter": 1000}, "exact-linear"),
        ("lightgbm.LGBMClassifier", {"n_estimators": 40, "verbose": -1}, "lightgbm-treeshap"),
        ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 20}, "treeshap"),
        ("sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": 30}, "treeshap"),
    ],
)
def test_contributions_add_up_to_the_raw_score_per_original_column(
    params: Params, splits: tuple[pd.DataFrame, pd.DataFrame], estimator: str,
    hyper: dict[str, Any], method: str,
) -> None:  # fmt: skip
    model = train.fit(splits[0], with_train(params, estimator, **hyper))
    test = splits[1][params.features.all]
    found = explain.contributions(model, test, splits[0][params.features.all])
    assert found is not None
    used, base, columns, grouped = found
    assert used == method
    assert columns == params.features.all  # one-hot outputs summed back to their column
    raw = explain.raw_score(model, test)
    assert np.max(np.abs(base + grouped.sum(axis=1) - raw)) <= 1e-6
    # the raw score is the model's: the positive class's probability from it (a forest's is
    # its probability, the others' log-odds)
    p = raw if explain.scale(model) == "probability" else 1 / (1 + np.exp(-raw))
    classes = list(model.classes_)
    proba = model.predict_proba(test)[:, classes.index(params.data.positive_label)]
    assert (
        np.max(np.abs((p if classes.index(params.data.positive_label) == 1 else 1 - p) - proba))
        <= 1e-9
    )


def test_a_linear_models_contribution_is_its_term_against_the_training_mean(
    params: Params, splits: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """Two rows differing in one numeric column only differ in that column's contribution."""
    model = train.fit(splits[0], params)
    row = splits[1][params.features.all].head(1)
    other = row.assign(duration=row["duration"] + 12)
    _, _, columns, a = explain.contributions(model, row, splits[0][params.features.all])
    _, _, _, b = explain.contributions(model, other, splits[0][params.features.all])
    moved = [c for c, d in zip(columns, (b - a)[0], strict=True) if abs(d) > 1e-12]
    assert moved == ["duration"]


def test_importance_is_exact_for_trees_and_falls_back_to_permutation(
    params: Params, splits: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """Mean |contribution| on the test split for a linear model and for a forest (TreeSHAP);
    permutation only where no exact method exists (here: a k-nearest-neighbours model)."""
    train_frame, test = splits
    linear = explain.importance(train.fit(train_frame, params), test, train_frame, params)
    assert linear["method"] == "exact-linear" and linear["rows"] == len(test)
    assert set(linear["columns"]) == set(params.features.all)
    values = list(linear["columns"].values())
    assert values == sorted(values, reverse=True) and values[0] > 0
    forest = with_train(params, "sklearn.ensemble.RandomForestClassifier", n_estimators=30)
    model = train.fit(train_frame, forest)
    trees = explain.importance(model, test, train_frame, forest)
    assert trees["method"] == "treeshap" and trees["unit"].startswith("mean |contribution|")
    _, _, columns, grouped = explain.contributions(model, test[forest.features.all], None)  # type: ignore[misc]
    expected = np.abs(grouped).mean(axis=0)
    assert trees["columns"] == {c: round(float(v), 6) for c, v in sorted(
        zip(columns, expected, strict=True), key=lambda kv: -kv[1])}  # fmt: skip
    neighbours = with_train(params, "sklearn.neighbors.KNeighborsClassifier", n_neighbors=15)
    permuted = explain.importance(train.fit(train_frame, neighbours), test, train_frame, neighbours)
    assert permuted["method"] == "permutation"
    assert set(permuted["columns"]) == set(params.features.all)
    # checking_account is the example's strongest signal for either model
    for found in (linear, trees):
        assert "checking_account" in list(found["columns"])[:3], found


def test_importance_reads_a_seeded_sample_of_a_large_test_split(
    params: Params, splits: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(explain, "IMPORTANCE_ROWS", 50)
    train_frame, test = splits
    model = train.fit(train_frame, params)
    found = explain.importance(model, test, train_frame, params)
    assert found["rows"] == 50 and found == explain.importance(model, test, train_frame, params)


def test_a_multiclass_models_importance_is_its_decided_class_contributions(
    params: Params, splits: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """Several classes: each row's contributions to the score of the class the model decides
    for it (a softmax's centred logit: softmax of them is predict_proba), exact per class."""
    features = params.features.model_copy(
        update={"categorical": [c for c in params.features.categorical if c != "purpose"]}
    )
    data = params.data.model_copy(update={"target": "purpose", "positive_label": None})
    p = params.model_copy(update={"features": features, "data": data})
    train_frame, test = splits
    model = train.fit(train_frame, p)
    rows = test[p.features.inputs]
    _, base, columns, terms = explain.contributions(model, rows, train_frame[p.features.inputs])  # type: ignore[misc]
    raw = explain.raw_score(model, rows)
    assert terms.shape == (len(rows), len(columns), len(model.classes_))
    assert np.max(np.abs(base + terms.sum(axis=1) - raw)) <= 1e-6  # every class's
    softmax = np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True)
    assert np.max(np.abs(softmax - model.predict_proba(rows))) <= 1e-9
    found = explain.importance(model, test, train_frame, p)
    assert found["method"] == "exact-linear" and found["unit"].endswith("of the decided class")
    decided = np.searchsorted(model.classes_, model.predict(rows))
    mine = np.abs(terms[np.arange(len(rows)), :, decided]).mean(axis=0)
    assert found["columns"] == {
        c: round(float(v), 6)
        for c, v in sorted(zip(columns, mine, strict=True), key=lambda kv: -kv[1])
    }
