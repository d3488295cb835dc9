"""The exact explainers the service and batch answer with: per original column, adding up to
the model's own raw score, equal to mlgate.pipeline.explain where both apply, from what the
bento stores; refused, with the reason, where no exact method exists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from mlgate.pipeline import explain
from mlgate.serving.explainers import (
    Filled,
    LinearExplainer,
    PipelineExplainer,
    TreeExplainer,
    Unexplained,
    check,
    explanations,
    load_explainer,
    make_explainer,
    ranked,
)
from mlgate.serving.features import EVERY_CLASS, final_estimator
from mlgate.serving.scorer import PipelineScorer, fast_scorer, load_stored
from tests.serving.test_scorer import fitted_on_example, imputing, tree_models


def example(example_model: Path) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    model = joblib.load(example_model / "artifacts/model/model.joblib")
    train = pd.read_parquet(example_model / "artifacts/data/train.parquet")
    test = pd.read_parquet(example_model / "artifacts/data/test.parquet")
    return model, train[model.feature_names_in_], test[model.feature_names_in_]


def stored(explainer: Any, scorer: Any = None, pipeline: Any = None) -> Any:
    """The explainer as the service loads it from the files the build stores."""
    files = explainer.files()
    return load_explainer(files.get, scorer, lambda: pipeline)


def test_a_linear_models_attribution_is_mlgates_own_from_json_numbers(example_model: Path) -> None:
    model, train, test = example(example_model)
    rows = test.to_dict("records")
    explainer = make_explainer(model, 1, lambda: train.to_dict("records"), list(train.columns))
    assert isinstance(explainer, LinearExplainer)
    served = stored(explainer)  # JSON numbers alone: no scikit-learn, no pickle
    found = served.explain(rows)
    method, base, columns, contributions = explain.contributions(model, test, train)
    assert (served.method, served.columns) == (method, columns)
    assert np.max(np.abs(found.contributions - contributions)) <= 1e-12
    assert np.max(np.abs(found.base - base)) <= 1e-12
    assert np.max(np.abs(found.raw - explain.raw_score(model, test))) <= 1e-12
    assert np.max(np.abs(found.base + found.contributions.sum(axis=1) - found.raw)) <= 1e-12
    expected = model.predict_proba(test)[:, 1]
    assert check(served, rows, expected).startswith("contributions to the log-odds")
    # the other class's view: every number's sign turns
    other = make_explainer(model, 0, lambda: train.to_dict("records"), list(train.columns))
    assert np.allclose(other.explain(rows).contributions, -found.contributions, atol=1e-15)
    check(other, rows, 1 - expected)


def test_a_regressions_attribution_adds_up_to_its_prediction(example_model: Path) -> None:
    from sklearn.linear_model import Ridge

    model, rows, expected = fitted_on_example(example_model, Ridge(), "credit_amount", None)
    train = pd.read_parquet(example_model / "artifacts/data/train.parquet")
    reference = train[list(rows[0])].to_dict("records")
    explainer = make_explainer(model, None, lambda: reference, list(rows[0]))
    assert isinstance(explainer, LinearExplainer) and explainer.scale == "prediction"
    assert "raw score = the Pipeline's within" in check(stored(explainer), rows, expected)


@pytest.mark.parametrize(("estimator", "target", "positive"), tree_models())
def test_tree_models_are_explained_by_treeshap_from_the_stored_arrays(
    example_model: Path, estimator: Any, target: str, positive: Any
) -> None:
    model, rows, expected = fitted_on_example(example_model, estimator, target, positive)
    if positive is not None and target != "risk":  # a multiclass model: one score per class
        return  # test_a_multiclass_model_is_explained_for_the_decided_class
    explainer = make_explainer(model, positive, list, list(rows[0]))
    assert isinstance(explainer, TreeExplainer) and explainer.method == "treeshap"
    scale = {"risk": "probability", "credit_amount": "prediction"}[target]
    name = type(final_estimator(model)).__name__
    if ("Boosting" in name or name.startswith(("LGBM", "XGB"))) and positive is not None:
        scale = "log-odds"
    assert explainer.scale == scale
    served = stored(explainer)  # its own arrays, through .npz
    if name == "XGBRegressor":  # TreeSHAP adds in float64, XGBoost its thousands in float32
        with pytest.raises(Unexplained, match="the raw score differs from the Pipeline's"):
            check(served, rows[:60], expected[:60])
        return
    assert "within" in check(served, rows[:60], expected[:60])
    found = served.explain(rows[:60])
    assert found.contributions.shape == (60, len(rows[0]))
    # sharing the scorer's arrays, as it does when the tree walk scores
    scorer, _ = fast_scorer(model, positive, rows, expected, "auto")
    scorer = load_stored(scorer.files().get)
    shared = make_explainer(model, positive, list, list(rows[0]), scorer)
    assert set(shared.files()) == {"explain.json"}
    again = stored(shared, scorer).explain(rows[:60])
    assert np.array_equal(again.contributions, found.contributions)


def test_an_imputing_pipeline_is_explained_on_the_filled_row(example_model: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    train = pd.read_parquet(example_model / "artifacts/data/train.parquet")
    for estimator in (LogisticRegression(max_iter=1000), HistGradientBoostingClassifier()):
        model, rows, _ = fitted_on_example(example_model, estimator)
        model, rows = imputing(example_model, model, "risk", rows)
        columns = list(model.feature_names_in_)
        expected = PipelineScorer(model, 1, columns).scores(rows)
        reference = train[columns].to_dict("records")
        explainer = make_explainer(model, 1, lambda r=reference: r, columns)
        assert isinstance(explainer, Filled)
        check(stored(explainer), rows, expected)  # rows with nulls among them


@pytest.mark.parametrize(
    ("target", "positive"), [("risk", 1), ("risk", 0), ("credit_amount", None)]
)
def test_lightgbm_after_the_plain_preprocessing_is_explained_as_lightgbm_explains_itself(
    example_model: Path, target: str, positive: Any
) -> None:
    """The tree walk's TreeSHAP of LightGBM's trees (NumPy, no LightGBM in the service) gives
    LightGBM's own `pred_contrib`, base and contributions, and adds up to its raw score."""
    from lightgbm import LGBMClassifier, LGBMRegressor

    kind = LGBMRegressor if positive is None else LGBMClassifier
    estimator = kind(n_estimators=60, verbose=-1, random_state=0)
    model, rows, expected = fitted_on_example(example_model, estimator, target, positive)
    columns = list(rows[0])
    ours = make_explainer(model, positive, list, columns)
    assert isinstance(ours, TreeExplainer)
    assert "contributions to the" in check(stored(ours), rows, expected)
    theirs = PipelineExplainer.from_pipeline(model, positive, rows, columns)
    assert theirs.method == "lightgbm-treeshap"
    found, own = stored(ours).explain(rows), theirs.explain(rows)
    assert ours.columns == theirs.columns
    assert np.max(np.abs(found.contributions - own.contributions)) <= 1e-9
    assert np.max(np.abs(found.base - own.base)) <= 1e-9
    assert np.max(np.abs(found.raw - own.raw)) <= 1e-9


def test_lightgbm_over_the_projects_feature_code_is_explained_by_its_pipeline(
    example_model: Path,
) -> None:
    """A model the fast paths do not take: mlgate.pipeline.explain on the Pipeline, the
    derived columns' values as the feature code makes them."""
    from lightgbm import LGBMClassifier
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    model, train, test = example(example_model)
    y = pd.read_parquet(example_model / "artifacts/data/train.parquet")["risk"]

    def ratio(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(per_month=frame["credit_amount"] / frame["duration"])

    preprocess = clone(model.steps[0][1])
    preprocess.transformers = [
        (name, t, [*cols, "per_month"] if name == "numeric" else cols)
        for name, t, cols in preprocess.transformers
    ]
    own = Pipeline(
        [
            ("features", FunctionTransformer(ratio)),
            ("preprocess", preprocess),
            ("estimator", LGBMClassifier(n_estimators=30, verbose=-1, random_state=0)),
        ]
    ).fit(train, y)
    rows = test.to_dict("records")
    explainer = make_explainer(own, 1, lambda: train.to_dict("records"), list(train.columns))
    assert isinstance(explainer, PipelineExplainer) and explainer.method == "lightgbm-treeshap"
    served = stored(explainer, pipeline=own)
    check(served, rows, own.predict_proba(test)[:, 1])
    found = served.explain(rows[:3])
    assert "per_month" in served.columns
    assert found.derived[1]["per_month"] == pytest.approx(
        rows[1]["credit_amount"] / rows[1]["duration"]
    )
    answer = explanations(served, found, rows[:3], len(served.columns))[1]
    reason = next(r for r in answer["reasons"] if r["column"] == "per_month")
    assert reason["value"] == pytest.approx(found.derived[1]["per_month"])


def multiclass_models() -> list[Any]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    return [
        pytest.param(LogisticRegression(max_iter=2000), LinearExplainer, id="multinomial"),
        pytest.param(RandomForestClassifier(30, random_state=0), TreeExplainer, id="forest"),
    ]


@pytest.mark.parametrize(("estimator", "kind"), multiclass_models())
def test_a_multiclass_model_is_explained_for_the_decided_class(
    example_model: Path, estimator: Any, kind: type
) -> None:
    """Every class's raw score is attributed exactly (to 1e-6, per class): a forest's class
    probability, a softmax's centred logit (softmax of them: the probabilities); a row's
    reasons are its decided class's, or those of the class the caller decided."""
    model, rows, expected = fitted_on_example(example_model, estimator, "purpose", EVERY_CLASS)
    train = pd.read_parquet(example_model / "artifacts/data/train.parquet")
    columns = list(rows[0])
    reference = train[columns].to_dict("records")
    explainer = make_explainer(model, EVERY_CLASS, lambda: reference, columns)
    assert isinstance(explainer, kind) and explainer.multiclass
    assert explainer.classes == list(model.classes_)
    served = stored(explainer)
    assert "of each class (/explain: the decided one's)" in check(served, rows, expected)
    every = served.every_class(rows)
    k = len(model.classes_)
    assert every.contributions.shape == (len(rows), len(columns), k)
    gap = np.abs(every.base + every.contributions.sum(axis=1) - every.raw)
    assert gap.max(axis=0).shape == (k,) and gap.max() <= 1e-6  # per class
    frame = pd.DataFrame.from_records(rows, columns=columns)
    _, base, names, terms = explain.contributions(model, frame, train[columns])
    assert names == served.columns and np.max(np.abs(terms - every.contributions)) <= 1e-9
    assert np.max(np.abs(base - every.base)) <= 1e-9
    if kind is LinearExplainer:  # centred: the same probabilities, the mean logit 0
        assert served.scale == "centred log-odds"
        assert np.max(np.abs(every.raw.sum(axis=1))) <= 1e-9
        assert np.max(np.abs(every.raw - explain.raw_score(model, frame))) <= 1e-9
    else:
        assert served.scale == "probability"
    decided = np.argmax(expected, axis=1)
    found = served.explain(rows)
    assert np.array_equal(found.explained, decided)
    assert np.array_equal(
        found.contributions, every.contributions[np.arange(len(rows)), :, decided]
    )
    other = (decided + 1) % k  # the caller's decision rules
    assert np.array_equal(served.explain(rows, other).raw, every.raw[np.arange(len(rows)), other])
    answers = explanations(served, found, rows, 3)
    assert [a["attribution"]["class"] for a in answers] == list(model.classes_[decided])
    json.dumps(answers)


def test_a_model_without_an_exact_method_is_refused_with_the_reason(example_model: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.neighbors import KNeighborsClassifier

    model, rows, _ = fitted_on_example(example_model, KNeighborsClassifier())
    with pytest.raises(Unexplained, match=r"^no exact attributions for KNeighborsClassifier"):
        make_explainer(model, 1, lambda: rows, list(rows[0]))
    boosting, rows, _ = fitted_on_example(
        example_model, HistGradientBoostingClassifier(max_iter=10), "purpose", EVERY_CLASS
    )
    with pytest.raises(Unexplained, match="HistGradientBoostingClassifier of several classes"):
        make_explainer(boosting, EVERY_CLASS, lambda: rows, list(rows[0]))
    # what such a bento stores, and a bento built before explanations: the service says why
    from mlgate.serving.explainers import refusal_files

    files = refusal_files("no exact attributions for KNeighborsClassifier")
    with pytest.raises(Unexplained, match="KNeighborsClassifier"):
        load_explainer(files.get, None, lambda: None)
    with pytest.raises(Unexplained, match="built before mlgate explained answers: rebuild"):
        load_explainer({}.get, None, lambda: None)


def test_reasons_are_the_largest_contributions_with_the_rows_values(example_model: Path) -> None:
    model, train, test = example(example_model)
    rows = test.head(40).to_dict("records")
    explainer = make_explainer(model, 1, lambda: train.to_dict("records"), list(train.columns))
    found = explainer.explain(rows)
    answers = explanations(explainer, found, rows, 3)
    for row, answer, contributions in zip(rows, answers, found.contributions, strict=True):
        reasons = answer["reasons"]
        sizes = [abs(r["contribution"]) for r in reasons]
        assert len(reasons) == 3 and sizes == sorted(sizes, reverse=True)
        assert sizes[-1] >= np.sort(np.abs(contributions))[-3]  # none larger left out
        assert all(r["value"] == row[r["column"]] for r in reasons)
        whole = answer["attribution"]
        assert list(whole["contributions"]) == explainer.columns
        total = whole["base_value"] + sum(whole["contributions"].values())
        assert abs(total - whole["raw_score"]) <= 1e-9
        json.dumps(answer)  # plain JSON values
    # a tie keeps the columns' order
    assert ranked(np.array([[1.0, -2.0, 2.0, 0.5]]), 3).tolist() == [[1, 2, 0]]
