"""A team's own estimator: any scikit-learn-compatible class by its import path — a library
the project added (LightGBM) or a class of its own package — built, checked and fitted by the
pipeline's own functions on the real data."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlgate.config import Params
from mlgate.errors import MlgateError
from mlgate.pipeline.model import build_estimator, build_pipeline, positive_scores
from mlgate.pipeline.stages import train


def with_estimator(params: Params, estimator: str, **hyper: Any) -> Params:
    section = params.train.model_copy(update={"estimator": estimator, "hyperparameters": hyper})
    return params.model_copy(update={"train": section})


def test_lightgbm_by_its_import_path_is_fitted_with_the_seed(
    params: Params, splits: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    own = with_estimator(params, "lightgbm.LGBMClassifier", n_estimators=40, num_leaves=7,
                         min_child_samples=10, verbose=-1)  # fmt: skip
    model = train.fit(splits[0], own)
    booster = model.named_steps["estimator"]
    assert type(booster).__module__.startswith("lightgbm")
    assert booster.get_params()["random_state"] == params.train.seed
    assert booster.get_params()["num_leaves"] == 7
    scores = positive_scores(model, splits[1], params.data.positive_label)
    again = positive_scores(train.fit(splits[0], own), splits[1], params.data.positive_label)
    assert np.array_equal(scores, again)  # the seed makes it reproducible
    assert 0 < scores.min() < scores.max() < 1 and len(set(scores.round(6))) > 20


def test_xgboost_is_fitted_on_label_codes_and_answers_in_the_projects_labels(
    params: Params, splits: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """XGBoost's classifiers take only the labels 0..k-1: with the target's labels as text
    mlgate fits it on their codes (EncodedLabels), and the model speaks the labels: its
    classes, the positive class's scores (those of XGBoost fitted on 0/1 itself), its
    decisions, and the same after a pickle round trip (MLflow's, the bento's)."""
    import pickle

    words = {0: "bad", 1: "good"}
    train_rows, test_rows = (s.assign(risk=s["risk"].map(words)) for s in splits)
    data = params.data.model_copy(update={"positive_label": "good"})
    own = with_estimator(params.model_copy(update={"data": data}), "xgboost.XGBClassifier",
                         n_estimators=40, max_depth=3)  # fmt: skip
    model = train.fit(train_rows, own)
    wrapped = model.named_steps["estimator"]
    assert list(wrapped.classes_) == ["bad", "good"]
    assert wrapped.estimator_.get_params()["random_state"] == params.train.seed
    scores = positive_scores(model, test_rows, "good")
    coded = train.fit(splits[0], with_estimator(params, "xgboost.XGBClassifier",
                                                n_estimators=40, max_depth=3))  # fmt: skip
    assert np.array_equal(scores, positive_scores(coded, splits[1], 1))
    decided = model.predict(test_rows)
    assert np.array_equal(decided == "good", scores > 0.5) and set(decided) == {"bad", "good"}
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(positive_scores(again, test_rows, "good"), scores)


OWN_MODULE = '''
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression


class ShrunkLogit(ClassifierMixin, BaseEstimator):
    """A team's own classifier: logistic regression whose probabilities are pulled
    towards the base rate by `shrink`."""

    def __init__(self, shrink=0.5, random_state=None):
        self.shrink = shrink
        self.random_state = random_state

    def fit(self, X, y):
        self.inner_ = LogisticRegression(max_iter=1000).fit(X, y)
        self.classes_ = self.inner_.classes_
        self.base_ = np.bincount(np.searchsorted(self.classes_, y)) / len(y)
        return self

    def predict_proba(self, X):
        return (1 - self.shrink) * self.inner_.predict_proba(X) + self.shrink * self.base_

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
'''


def test_a_class_of_the_projects_own_package_is_an_estimator(
    params: Params,
    splits: tuple[pd.DataFrame, pd.DataFrame],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "team_models").mkdir()
    (tmp_path / "team_models" / "__init__.py").write_text("")
    (tmp_path / "team_models" / "shrunk.py").write_text(textwrap.dedent(OWN_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    own = with_estimator(params, "team_models.shrunk.ShrunkLogit", shrink=0.25)
    model = train.fit(splits[0], own)
    assert model.named_steps["estimator"].random_state == params.train.seed
    plain = train.fit(splits[0], params)  # the example's LogisticRegression (C differs)
    scores = positive_scores(model, splits[1], params.data.positive_label)
    # shrunk towards the base rate: a narrower spread than an unshrunk logistic regression
    assert np.ptp(scores) < np.ptp(positive_scores(plain, splits[1], params.data.positive_label))


@pytest.mark.parametrize(
    ("estimator", "message"),
    [
        (
            "lightgbmx.LGBMClassifier",
            "train.estimator: 'lightgbmx.LGBMClassifier': module 'lightgbmx' is not installed "
            "here: add it to the project (`uv add lightgbmx`)",
        ),
        ("lightgbm.LGBMClassifer", "train.estimator: lightgbm has no class 'LGBMClassifer'"),
        (
            "collections.OrderedDict",
            "train.estimator: collections.OrderedDict is not a scikit-learn-compatible "
            "estimator (no fit, predict, get_params, set_params; derive from "
            "sklearn.base.BaseEstimator)",
        ),
        (
            "sklearn.linear_model.RidgeClassifier",
            "train.estimator: sklearn.linear_model.RidgeClassifier has no predict_proba: a "
            "classifier must give probabilities (scores, ROC AUC, the decision threshold, "
            "calibration)",
        ),
        (
            "lightgbm.LGBMRegressor",
            "train.estimator lightgbm.LGBMRegressor is a regressor, but data.task is "
            "'classification': choose a classifier",
        ),
    ],
)
def test_an_estimator_that_cannot_be_used_is_named_before_fitting(
    params: Params, estimator: str, message: str
) -> None:
    with pytest.raises(MlgateError) as err:
        build_estimator(with_estimator(params, estimator))
    assert str(err.value) == message


def test_named_hyperparameters_are_still_checked_where_the_class_names_them(
    params: Params,
) -> None:
    with pytest.raises(MlgateError, match=r"\['C_value'\] not accepted by sklearn\.linear"):
        build_estimator(with_estimator(params, "sklearn.linear_model.LogisticRegression",
                                       C_value=1.0))  # fmt: skip


WHOLE_MODEL = '''
from sklearn.compose import make_column_transformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder


def forest():
    """The team's whole model: its own encoding and a forest (no random_state: mlgate seeds it)."""
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["housing", "saving_accounts",
                                                  "checking_account", "purpose"]),
        remainder="passthrough",
    )
    return make_pipeline(encode, RandomForestClassifier(n_estimators=30, min_samples_leaf=5))


def not_a_model():
    return {"kind": "forest"}
'''


def with_pipeline(params: Params, spec: str) -> Params:
    data = params.model_dump(by_alias=True)
    data["train"].update(estimator=None, hyperparameters={}, pipeline=spec)
    return type(params).model_validate(data)


@pytest.fixture
def team_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "team_whole").mkdir()
    (tmp_path / "team_whole" / "__init__.py").write_text("")
    (tmp_path / "team_whole" / "model.py").write_text(textwrap.dedent(WHOLE_MODEL))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "team_whole.model"
    for name in [m for m in sys.modules if m.startswith("team_whole")]:
        del sys.modules[name]


def test_train_pipeline_is_the_projects_whole_model_seeded_by_train_seed(
    params: Params, splits: tuple[pd.DataFrame, pd.DataFrame], team_model: str
) -> None:
    own = with_pipeline(params, f"{team_model}:forest")
    model = train.fit(splits[0], own)
    forest = model.steps[-1][1]
    assert type(forest).__name__ == "RandomForestClassifier"
    assert forest.random_state == params.train.seed
    assert list(model.feature_names_in_) == params.features.all
    scores = positive_scores(model, splits[1], params.data.positive_label)
    again = positive_scores(train.fit(splits[0], own), splits[1], params.data.positive_label)
    assert np.array_equal(scores, again)
    assert train.logged_params(own)["estimator"] == f"{team_model}:forest"


def test_a_train_pipeline_that_is_no_model_or_clashes_is_refused(
    params: Params, team_model: str
) -> None:
    with pytest.raises(MlgateError, match=r"returned a dict, not a scikit-learn-compatible model"):
        build_pipeline(with_pipeline(params, f"{team_model}:not_a_model"))
    data = params.model_dump(by_alias=True)
    data["train"].update(pipeline=f"{team_model}:forest")  # and the estimator still named
    with pytest.raises(ValueError, match=r"train\.estimator, or train\.pipeline \(not both\)"):
        type(params).model_validate(data)
    data["train"].update(estimator=None, hyperparameters={"C": 1.0})
    with pytest.raises(ValueError, match=r"train.hyperparameters apply to train.estimator"):
        type(params).model_validate(data)
    data["train"].update(hyperparameters={})
    data["features"].update(transform="team.features:ratios")
    with pytest.raises(ValueError, match=r"with train.pipeline \(your whole model\) put the"):
        type(params).model_validate(data)
