"""The fast scorers (NumPy, ONNX Runtime) give the Pipeline's scores on the whole test split,
or are refused, loudly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from mlgate.errors import MlgateError
from mlgate.pipeline.labels import EncodedLabels
from mlgate.serving.features import EVERY_CLASS, final_estimator
from mlgate.serving.scorer import (
    PARITY_TOLERANCE,
    LeanScorer,
    OnnxScorer,
    PipelineScorer,
    fast_scorer,
    load_stored,
    make_scorer,
    parity,
)
from mlgate.serving.trees import TreeScorer


def test_lean_scores_equal_the_pipeline_on_the_test_set(example_model: Path) -> None:
    model = joblib.load(example_model / "artifacts/model/model.joblib")
    test = pd.read_parquet(example_model / "artifacts/data/test.parquet")
    rows = test.drop(columns=["risk"]).to_dict("records")
    scorer = make_scorer(model, 1, list(model.feature_names_in_))
    assert isinstance(scorer, LeanScorer) and scorer.linear
    expected = model.predict_proba(test[model.feature_names_in_])[:, 1]
    assert np.allclose(scorer.scores(rows), expected, rtol=1e-9, atol=1e-12)
    # one row at a time too (the /predict path), and the other class's view
    assert np.allclose([scorer.scores([r])[0] for r in rows[:50]], expected[:50])
    zero = make_scorer(model, 0, list(model.feature_names_in_))
    assert np.allclose(zero.scores(rows), 1 - expected)


def test_unseen_category_scores_like_the_pipeline(example_model: Path) -> None:
    """handle_unknown="ignore": an unseen category is all zeros in both paths."""
    model = joblib.load(example_model / "artifacts/model/model.joblib")
    test = pd.read_parquet(example_model / "artifacts/data/test.parquet")
    test = test.drop(columns=["risk"]).head(5)
    test["purpose"] = "never-seen"
    lean = LeanScorer.from_pipeline(model, 1).scores(test.to_dict("records"))
    full = PipelineScorer(model, 1, list(model.feature_names_in_)).scores(test.to_dict("records"))
    assert np.allclose(lean, full)


def test_other_estimators_get_the_lean_matrix(example_model: Path) -> None:
    from sklearn.base import clone
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline

    model = joblib.load(example_model / "artifacts/model/model.joblib")
    train = pd.read_parquet(example_model / "artifacts/data/train.parquet")
    forest = Pipeline(
        [("preprocess", clone(model.steps[0][1])), ("estimator", RandomForestClassifier(10))]
    ).fit(train[model.feature_names_in_], train["risk"])
    scorer = make_scorer(forest, 1, list(model.feature_names_in_))
    assert isinstance(scorer, LeanScorer) and not scorer.linear
    rows = train.drop(columns=["risk"]).head(100).to_dict("records")
    expected = forest.predict_proba(train[model.feature_names_in_].head(100))[:, 1]
    assert np.allclose(scorer.scores(rows), expected)


def test_unknown_pipeline_shape_falls_back_to_the_pipeline(example_model: Path) -> None:
    from sklearn.dummy import DummyClassifier

    train = pd.read_parquet(example_model / "artifacts/data/train.parquet")
    dummy = DummyClassifier().fit(train[["age"]], train["risk"])
    assert isinstance(make_scorer(dummy, 1, ["age"]), PipelineScorer)


def test_onnx_scores_equal_the_pipeline_on_the_test_set(example_model: Path) -> None:
    """skl2onnx's graph of the trained Pipeline under ONNX Runtime, from what the bento stores."""
    model = joblib.load(example_model / "artifacts/model/model.joblib")
    test = pd.read_parquet(example_model / "artifacts/data/test.parquet")
    rows = test.drop(columns=["risk"]).to_dict("records")
    converted = OnnxScorer.convert(model, 1)
    stored = OnnxScorer(converted.graph, json.loads(json.dumps(converted.spec)))
    expected = model.predict_proba(test[model.feature_names_in_])[:, 1]
    assert parity(stored, rows, expected) <= PARITY_TOLERANCE
    assert stored.scores(rows[3:4])[0] == pytest.approx(expected[3], abs=PARITY_TOLERANCE)
    assert parity(OnnxScorer.convert(model, 0), rows, 1 - expected) <= PARITY_TOLERANCE


def fitted_on_example(
    example_model: Path,
    estimator: Any,
    target: str = "risk",
    positive: Any = 1,
    nulls: tuple[str, ...] = (),
) -> tuple[Any, list[dict[str, Any]], np.ndarray]:
    """`estimator` after the project's preprocessing, fitted here on the example's train split
    to predict `target` from the other features (a regressor: positive None): the Pipeline,
    the test split's rows, and the Pipeline's scores of them. The `nulls` columns are null in
    every fifth row of both splits (the scaler keeps a null: the estimator sees it)."""
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    model = joblib.load(example_model / "artifacts/model/model.joblib")
    train = pd.read_parquet(example_model / "artifacts/data/train.parquet")
    test = pd.read_parquet(example_model / "artifacts/data/test.parquet")
    for split in (train, test):
        for i, column in enumerate(nulls):
            split[column] = split[column].astype(float).mask(np.arange(len(split)) % 5 == i)
    preprocess = clone(model.steps[0][1])
    preprocess.transformers = [
        (name, transformer, [c for c in columns if c != target])
        for name, transformer, columns in preprocess.transformers
    ]
    columns = [c for c in model.feature_names_in_ if c != target]
    pipeline = Pipeline([("preprocess", preprocess), ("estimator", estimator)])
    pipeline.fit(train[columns], train[target])
    rows = test[columns].to_dict("records")
    return pipeline, rows, PipelineScorer(pipeline, positive, columns).scores(rows)


def ridge_on(example_model: Path) -> tuple[Any, list[dict[str, Any]], np.ndarray]:
    from sklearn.linear_model import Ridge

    return fitted_on_example(example_model, Ridge(), "credit_amount", None)


def test_a_regressor_is_served_by_onnx_runtime(example_model: Path) -> None:
    ridge, rows, expected = ridge_on(example_model)
    scorer, why = fast_scorer(ridge, None, rows, expected, "auto")
    assert isinstance(scorer, OnnxScorer), why
    assert why.startswith("ONNX Runtime (max |Δ|")
    assert parity(scorer, rows, expected) <= PARITY_TOLERANCE  # amounts in the thousands


def test_columns_that_are_no_identifiers_are_served_by_onnx_runtime(example_model: Path) -> None:
    """skl2onnx renames such inputs ("blood pressure" -> "blood_pressure"): the lookup of the
    renamed input raised KeyError, and `mlgate build` of a model on such columns (init accepts
    them) ended in a traceback after `make run` and `make test` had passed."""
    from sklearn.linear_model import Ridge

    ridge, rows, _ = ridge_on(example_model)
    names = {"duration": "duration (months)", "saving_accounts": "saving/accounts"}
    preprocess = ridge.steps[0][1]
    preprocess.transformers = [
        (name, transformer, [names.get(c, c) for c in columns])
        for name, transformer, columns in preprocess.transformers
    ]
    train = pd.read_parquet(example_model / "artifacts/data/train.parquet").rename(columns=names)
    columns = [names.get(c, c) for c in ridge.feature_names_in_]
    ridge.set_params(estimator=Ridge()).fit(train[columns], train["credit_amount"])
    rows = [{names.get(k, k): v for k, v in row.items()} for row in rows]
    expected = PipelineScorer(ridge, None, columns).scores(rows)
    scorer, why = fast_scorer(ridge, None, rows, expected, "onnx")
    assert isinstance(scorer, OnnxScorer), why
    stored = OnnxScorer(scorer.graph, json.loads(json.dumps(scorer.spec)))
    assert parity(stored, rows, expected) <= PARITY_TOLERANCE
    assert set(stored.spec["inputs"].values()) == set(columns)


def test_scores_off_by_more_than_the_tolerance_fall_back_loudly_or_fail(
    example_model: Path,
) -> None:
    """The parity check itself: one test row 2e-5 away from what ONNX Runtime computes."""
    ridge, rows, expected = ridge_on(example_model)
    shifted = expected.copy()
    shifted[17] += 2 * PARITY_TOLERANCE
    scorer, why = fast_scorer(ridge, None, rows, shifted, "auto")
    assert scorer is None
    assert why.startswith("WARNING: no fast path: ONNX Runtime's scores differ")
    assert f"on the {len(rows)} test rows" in why and "scikit-learn Pipeline" in why
    with pytest.raises(MlgateError, match=r"serving\.scorer is onnx, but ONNX Runtime.s scores"):
        fast_scorer(ridge, None, rows, shifted, "onnx")
    assert fast_scorer(ridge, None, rows, expected, "pipeline")[0] is None


def imputing_models() -> list[Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, Ridge

    return [
        pytest.param(LogisticRegression(max_iter=500), "risk", 1, "numpy", id="logistic"),
        pytest.param(RandomForestClassifier(30, random_state=0), "risk", 1, "numpy-trees", id="rf"),
        pytest.param(HistGradientBoostingClassifier(), "risk", 1, "numpy-trees", id="hgb"),
        pytest.param(Ridge(), "credit_amount", None, "onnx", id="ridge"),
    ]


def imputing(
    example_model: Path, pipeline: Any, target: str, rows: list[dict[str, Any]]
) -> tuple[Any, list[dict[str, Any]]]:
    """`pipeline` refitted behind SimpleImputers on a train split with gaps, and `rows` of
    which every third misses a numeric and a categorical value."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    preprocess = pipeline.steps[0][1]
    strategies = {"numeric": "median", "categorical": "most_frequent"}
    preprocess.transformers = [
        (name, make_pipeline(SimpleImputer(strategy=strategies[name]), transformer), columns)
        for name, transformer, columns in preprocess.transformers
    ]
    train = pd.read_parquet(example_model / "artifacts/data/train.parquet")
    columns = list(pipeline.feature_names_in_)
    gaps = train[columns].astype(object)
    gaps.iloc[::7, columns.index("duration")] = np.nan  # numeric
    gaps.iloc[::5, columns.index("housing")] = None  # categorical
    pipeline.fit(gaps, train[target])
    return pipeline, [
        dict(r, duration=np.nan, housing=None) if i % 3 == 0 else r for i, r in enumerate(rows)
    ]


@pytest.mark.parametrize(("estimator", "target", "positive", "kind"), imputing_models())
def test_a_pipeline_that_imputes_keeps_its_fast_path(
    example_model: Path, estimator: Any, target: str, positive: Any, kind: str
) -> None:
    """features.impute (init sets it on any missing value) turned every fast path off: 4 ms a
    request instead of microseconds. The imputers' fill values now come first, then the path;
    stored and loaded as the service loads it, equal to the Pipeline on rows with nulls."""
    pipeline, rows, _ = fitted_on_example(example_model, estimator, target, positive)
    pipeline, rows = imputing(example_model, pipeline, target, rows)
    expected = PipelineScorer(pipeline, positive, list(pipeline.feature_names_in_)).scores(rows)

    scorer, why = fast_scorer(pipeline, positive, rows, expected, "auto")
    assert scorer is not None and scorer.kind == kind, why
    assert why.endswith("missing values filled as the imputers fill them")
    stored = load_stored(scorer.files().get)
    assert stored.kind == kind and parity(stored, rows, expected) <= PARITY_TOLERANCE
    assert stored.scores(rows[:1])[0] == pytest.approx(expected[0], abs=PARITY_TOLERANCE)


def tree_models() -> list[Any]:
    """(estimator, target, positive label): the tree models the NumPy walk reproduces."""
    from lightgbm import LGBMClassifier, LGBMRegressor
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.tree import DecisionTreeClassifier
    from xgboost import XGBClassifier, XGBRegressor

    return [
        pytest.param(RandomForestClassifier(100, random_state=0), "risk", 1, id="forest"),
        pytest.param(RandomForestClassifier(30, random_state=0), "risk", 0, id="forest-class-0"),
        pytest.param(RandomForestClassifier(30, random_state=0), "purpose", "car", id="multiclass"),
        pytest.param(ExtraTreesClassifier(100, random_state=0), "risk", 1, id="extra-trees"),
        pytest.param(DecisionTreeClassifier(random_state=0), "risk", 1, id="one-tree"),
        pytest.param(
            RandomForestRegressor(100, random_state=0), "credit_amount", None, id="forest-regressor"
        ),
        pytest.param(HistGradientBoostingClassifier(random_state=0), "risk", 1, id="boosting"),
        pytest.param(
            HistGradientBoostingClassifier(max_iter=30, random_state=0),
            "risk",
            0,
            id="boosting-class-0",
        ),
        pytest.param(
            HistGradientBoostingRegressor(random_state=0),
            "credit_amount",
            None,
            id="boosting-regressor",
        ),
        pytest.param(LGBMClassifier(verbose=-1, random_state=0), "risk", 1, id="lightgbm"),
        pytest.param(
            LGBMClassifier(n_estimators=30, verbose=-1, random_state=0),
            "risk",
            0,
            id="lightgbm-class-0",
        ),
        pytest.param(
            LGBMClassifier(n_estimators=30, verbose=-1, random_state=0),
            "purpose",
            EVERY_CLASS,
            id="lightgbm-multiclass",
        ),
        pytest.param(
            LGBMRegressor(verbose=-1, random_state=0),
            "credit_amount",
            None,
            id="lightgbm-regressor",
        ),
        # as mlgate's train fits an XGBoost classifier: on the codes of the labels
        pytest.param(EncodedLabels(XGBClassifier(random_state=0)), "risk", 1, id="xgboost"),
        pytest.param(
            EncodedLabels(XGBClassifier(n_estimators=30, random_state=0)),
            "risk",
            0,
            id="xgboost-class-0",
        ),
        pytest.param(XGBClassifier(n_estimators=30), "risk", 1, id="xgboost-unwrapped"),
        pytest.param(
            EncodedLabels(XGBClassifier(n_estimators=30, random_state=0)),
            "purpose",
            EVERY_CLASS,
            id="xgboost-multiclass",
        ),
        pytest.param(XGBRegressor(random_state=0), "credit_amount", None, id="xgboost-regressor"),
    ]


@pytest.mark.parametrize(("estimator", "target", "positive"), tree_models())
def test_tree_walk_equals_the_pipeline(
    example_model: Path, estimator: Any, target: str, positive: Any
) -> None:
    """On every row of the test split, a row at a time, with an unseen category and with
    nulls (in a batch and a row at a time: two paths): from what the bento stores (the spec
    through JSON, the arrays through .npz)."""
    model, rows, expected = fitted_on_example(example_model, estimator, target, positive)
    built = TreeScorer.from_pipeline(model, positive)
    scorer = TreeScorer(json.loads(json.dumps(built.spec)), built.arrays)
    # scikit-learn's trees 0.0 measured (the same float32 rounding, the same order of
    # additions); LightGBM's sigmoid / softmax is its own exp, an ulp away (1.1e-16); XGBoost's
    # in float32 (8.3e-8; its regression 0.0: the same float32 sum)
    library = type(final_estimator(model)).__module__.partition(".")[0]
    tolerance = {"lightgbm": 1e-15, "xgboost": 1e-7}.get(library, 0.0)
    assert parity(scorer, rows, expected) <= max(tolerance, 1e-12)
    one = np.array([scorer.scores([row])[0] for row in rows[:20]])
    assert np.array_equal(one, scorer.scores(rows[:20]))  # the two walks, bit for bit
    assert np.max(np.abs(one - expected[:20])) <= tolerance
    tolerance = max(tolerance, 1e-12)
    pipeline = PipelineScorer(model, positive, list(rows[0]))
    unseen = [{**row, "housing": "never-seen"} for row in rows[:10]]
    nulls = [{**row, "duration": None, "age": None} for row in rows[:10]]  # no imputer
    for odd in (unseen, nulls):
        want = pipeline.scores(odd)
        assert parity(scorer, odd, want) <= tolerance
        # one row at a time takes its own path (every node decided once, then followed)
        one = np.array([scorer.scores([row])[0] for row in odd])
        assert np.max(np.abs(one - want)) <= tolerance


@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
@pytest.mark.parametrize(
    ("target", "positive"), [("risk", 1), ("risk", 0), ("credit_amount", None)]
)
def test_a_booster_sends_a_null_where_it_learnt_to(
    example_model: Path, library: str, target: str, positive: Any
) -> None:
    """Trained with nulls, LightGBM (missing_type NaN) and XGBoost send one their default way
    at each split, not as 0.0: the walk follows, a row at a time and in batches."""
    from lightgbm import LGBMClassifier, LGBMRegressor
    from xgboost import XGBClassifier, XGBRegressor

    kinds = {"lightgbm": (LGBMRegressor, LGBMClassifier), "xgboost": (XGBRegressor, XGBClassifier)}
    kind = kinds[library][positive is not None]
    options = {"verbose": -1} if library == "lightgbm" else {}
    estimator = kind(n_estimators=60, random_state=0, **options)
    if positive is not None and library == "xgboost":
        estimator = EncodedLabels(estimator)
    model, rows, expected = fitted_on_example(
        example_model, estimator, target, positive, nulls=("duration", "age")
    )
    if library == "lightgbm":
        dumped = json.dumps(estimator.booster_.dump_model())
        assert '"missing_type": "NaN"' in dumped and '"default_left": false' in dumped
    scorer, why = fast_scorer(model, positive, rows, expected, "auto")
    assert isinstance(scorer, TreeScorer), why
    assert why.startswith(f"NumPy tree walk ({kind.__name__}; max |Δ| "), why
    assert sum(row["age"] != row["age"] for row in rows) > 30  # NaN: not equal to itself
    tolerance = 1e-7 if library == "xgboost" else 1e-12  # XGBoost's float32 sigmoid
    assert parity(scorer, rows, expected) <= tolerance
    one = np.array([scorer.scores([row])[0] for row in rows])
    assert np.max(np.abs(one - expected)) <= tolerance


def walk_refusals() -> list[Any]:
    """(estimator, target, positive label, reason): tree models the walk does not reproduce."""
    from lightgbm import LGBMClassifier, LGBMRegressor
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from xgboost import XGBClassifier, XGBRegressor

    lgbm = {"n_estimators": 20, "verbose": -1, "random_state": 0}
    return [
        pytest.param(
            HistGradientBoostingRegressor(max_iter=20, loss="poisson"),
            "credit_amount",
            None,
            "HistGradientBoostingRegressor with loss 'poisson' (only 'squared_error')",
            id="poisson",
        ),
        pytest.param(
            # one-hot columns, as categories
            HistGradientBoostingClassifier(max_iter=20, categorical_features=[10, 11, 12]),
            "risk",
            1,
            "HistGradientBoostingClassifier with categorical features",
            id="categorical",
        ),
        pytest.param(
            LGBMRegressor(linear_tree=True, **lgbm),
            "credit_amount",
            None,
            "LGBMRegressor with linear trees (linear_tree)",
            id="lightgbm-linear-trees",
        ),
        pytest.param(
            LGBMClassifier(zero_as_missing=True, **lgbm),
            "risk",
            1,
            "LGBMClassifier with zero as missing (missing_type 'Zero')",
            id="lightgbm-zero-as-missing",
        ),
        pytest.param(
            LGBMRegressor(objective="poisson", **lgbm),
            "credit_amount",
            None,
            "LGBMRegressor with objective 'poisson' (only 'regression')",
            id="lightgbm-poisson",
        ),
        pytest.param(
            LGBMClassifier(objective="multiclassova", **lgbm),
            "purpose",
            EVERY_CLASS,
            "LGBMClassifier with objective 'multiclassova num_class:8 sigmoid:1' "
            "(only 'multiclass')",
            id="lightgbm-one-vs-all",
        ),
        pytest.param(
            XGBClassifier(n_estimators=20, missing=0.0),
            "risk",
            1,
            "XGBClassifier with missing=0.0 (only NaN)",
            id="xgboost-zero-as-missing",
        ),
        pytest.param(
            XGBRegressor(n_estimators=20, objective="reg:absoluteerror"),
            "credit_amount",
            None,
            "XGBRegressor with objective 'reg:absoluteerror' (only 'reg:squarederror')",
            id="xgboost-absolute-error",
        ),
    ]


@pytest.mark.parametrize(("estimator", "target", "positive", "reason"), walk_refusals())
def test_a_tree_model_the_walk_does_not_reproduce_falls_through_with_the_reason(
    example_model: Path, estimator: Any, target: str, positive: Any, reason: str
) -> None:
    model, rows, expected = fitted_on_example(example_model, estimator, target, positive)
    scorer, why = fast_scorer(model, positive, rows, expected, "auto")
    assert scorer is None
    assert why.startswith(
        f"WARNING: no fast path: the NumPy tree walk does not reproduce {reason}; skl2onnx"
    ), why
