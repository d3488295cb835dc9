"""A multiclass model's fast scorers answer every class's probability, the Pipeline's
predict_proba within 1e-9, from what the bento stores; what they cannot reproduce falls
through with the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlgate.serving.features import EVERY_CLASS
from mlgate.serving.scorer import PipelineScorer, fast_scorer, load_stored
from tests.serving.test_scorer import fitted_on_example, imputing

TARGET = "purpose"  # the example's loan purposes: several classes


def estimators() -> list[Any]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    return [
        pytest.param(LogisticRegression(max_iter=1000), "numpy", False, id="multinomial"),
        pytest.param(LogisticRegression(max_iter=1000), "numpy", True, id="multinomial-imputed"),
        pytest.param(RandomForestClassifier(30, random_state=0), "numpy-trees", False, id="forest"),
        pytest.param(
            RandomForestClassifier(30, random_state=0), "numpy-trees", True, id="forest-imputed"
        ),
    ]


@pytest.mark.parametrize(("estimator", "kind", "impute"), estimators())
def test_every_class_probability_equals_predict_proba(
    example_model: Path, estimator: Any, kind: str, impute: bool
) -> None:
    pipeline, rows, _ = fitted_on_example(example_model, estimator, TARGET, EVERY_CLASS)
    if impute:
        pipeline, rows = imputing(example_model, pipeline, TARGET, rows)
    columns = list(pipeline.feature_names_in_)
    expected = pipeline.predict_proba(pd.DataFrame.from_records(rows, columns=columns))
    assert expected.shape == (len(rows), len(pipeline.classes_)) and len(pipeline.classes_) >= 3
    reference = PipelineScorer(pipeline, EVERY_CLASS, columns).scores(rows)
    assert np.array_equal(reference, expected)

    scorer, why = fast_scorer(pipeline, EVERY_CLASS, rows, reference, "auto")
    assert scorer is not None and scorer.kind == kind, why
    stored = load_stored(scorer.files().get)  # as the service loads it: JSON, .npz
    assert stored.spec["classes"] == list(pipeline.classes_)
    got = stored.scores(rows)
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= 1e-9
    one = np.vstack([stored.scores([row]) for row in rows[:20]])  # /predict: one row a call
    assert np.max(np.abs(one - expected[:20])) <= 1e-9


def test_a_multiclass_boosting_falls_through_with_the_reason(example_model: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    estimator = HistGradientBoostingClassifier(max_iter=10, random_state=0)
    pipeline, rows, expected = fitted_on_example(example_model, estimator, TARGET, EVERY_CLASS)
    scorer, why = fast_scorer(pipeline, EVERY_CLASS, rows, expected, "auto")
    assert scorer is None  # the Pipeline serves it, and the build says why, loudly
    assert why.startswith(
        "WARNING: no fast path: the NumPy tree walk does not reproduce "
        "HistGradientBoostingClassifier of several classes"
    ), why
    assert "Serving with the scikit-learn Pipeline" in why
