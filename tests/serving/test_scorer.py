"""The lean NumPy scorer gives the Pipeline's scores, on the whole test split."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from mlgate.serving.scorer import LeanScorer, PipelineScorer, make_scorer

pytestmark = pytest.mark.slow  # needs the trained repo


def test_lean_scores_equal_the_pipeline_on_the_test_set(trained_repo: Path) -> None:
    model = joblib.load(trained_repo / "artifacts/model/model.joblib")
    test = pd.read_parquet(trained_repo / "artifacts/data/test.parquet")
    rows = test.drop(columns=["risk"]).to_dict("records")
    scorer = make_scorer(model, 1, list(model.feature_names_in_))
    assert isinstance(scorer, LeanScorer) and scorer.linear
    expected = model.predict_proba(test[model.feature_names_in_])[:, 1]
    assert np.allclose(scorer.scores(rows), expected, rtol=1e-9, atol=1e-12)
    # one row at a time too (the /predict path), and the other class's view
    assert np.allclose([scorer.scores([r])[0] for r in rows[:50]], expected[:50])
    zero = make_scorer(model, 0, list(model.feature_names_in_))
    assert np.allclose(zero.scores(rows), 1 - expected)


def test_unseen_category_scores_like_the_pipeline(trained_repo: Path) -> None:
    """handle_unknown="ignore": an unseen category is all zeros in both paths."""
    model = joblib.load(trained_repo / "artifacts/model/model.joblib")
    test = (
        pd.read_parquet(trained_repo / "artifacts/data/test.parquet").drop(columns=["risk"]).head(5)
    )
    test["purpose"] = "never-seen"
    lean = LeanScorer.from_pipeline(model, 1).scores(test.to_dict("records"))
    full = PipelineScorer(model, 1, list(model.feature_names_in_)).scores(test.to_dict("records"))
    assert np.allclose(lean, full)


def test_other_estimators_get_the_lean_matrix(trained_repo: Path) -> None:
    from sklearn.base import clone
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline

    model = joblib.load(trained_repo / "artifacts/model/model.joblib")
    train = pd.read_csv(trained_repo / "artifacts/data/train.csv")
    forest = Pipeline(
        [("preprocess", clone(model.steps[0][1])), ("estimator", RandomForestClassifier(10))]
    ).fit(train[model.feature_names_in_], train["risk"])
    scorer = make_scorer(forest, 1, list(model.feature_names_in_))
    assert isinstance(scorer, LeanScorer) and not scorer.linear
    rows = train.drop(columns=["risk"]).head(100).to_dict("records")
    expected = forest.predict_proba(train[model.feature_names_in_].head(100))[:, 1]
    assert np.allclose(scorer.scores(rows), expected)


def test_unknown_pipeline_shape_falls_back_to_the_pipeline(trained_repo: Path) -> None:
    from sklearn.dummy import DummyClassifier

    train = pd.read_csv(trained_repo / "artifacts/data/train.csv")
    dummy = DummyClassifier().fit(train[["age"]], train["risk"])
    assert isinstance(make_scorer(dummy, 1, ["age"]), PipelineScorer)
