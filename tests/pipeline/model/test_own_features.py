"""A team's own feature code: features.transform names a function of the project's package
returning a scikit-learn transformer; the pipeline fits it inside the model, so the pickled
model (what serving and batch load) runs the very same code, and its derived columns go
through the standard preprocessing like the contract's."""

from __future__ import annotations

import pickle
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlgate.config import Params
from mlgate.errors import MlgateError
from mlgate.pipeline.model import positive_scores
from mlgate.pipeline.stages import train

FEATURES = """
import numpy as np
from sklearn.preprocessing import FunctionTransformer


def add_ratios(frame):
    out = frame.copy()
    out["credit_per_month"] = frame["credit_amount"] / frame["duration"]
    out["long_loan"] = np.where(frame["duration"] > 24, "long", "short")
    return out


def ratios():
    return FunctionTransformer(add_ratios)


def forgets_a_column():
    return FunctionTransformer(lambda frame: frame.drop(columns=["age"]))


def not_a_transformer():
    return add_ratios
"""


@pytest.fixture
def team_features(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    package = tmp_path / "team_features"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "features.py").write_text(textwrap.dedent(FEATURES))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "team_features.features"
    for name in [m for m in sys.modules if m.startswith("team_features")]:
        del sys.modules[name]


def with_features(params: Params, transform: str, **derived: list[str]) -> Params:
    data = params.model_dump(by_alias=True)
    data["features"].update(transform=transform, derived=derived)
    return type(params).model_validate(data)


def test_derived_columns_reach_the_model_and_the_pickle_runs_the_same_code(
    params: Params, splits: tuple[pd.DataFrame, pd.DataFrame], team_features: str
) -> None:
    own = with_features(
        params, f"{team_features}:ratios", numeric=["credit_per_month"], categorical=["long_loan"]
    )
    model = train.fit(splits[0], own)
    assert [name for name, _ in model.steps] == ["features", "preprocess", "estimator"]
    seen = list(model.named_steps["preprocess"].get_feature_names_out())
    assert "credit_per_month" in seen and {"long_loan_long", "long_loan_short"} <= set(seen)
    # the input stays the contract's columns: serving and batch send no derived column
    assert list(model.feature_names_in_) == own.features.all
    test = splits[1][own.features.all]
    scores = positive_scores(model, test, params.data.positive_label)
    # what serving loads: the pickle, calling the project's function by reference
    loaded = pickle.loads(pickle.dumps(model))
    assert np.array_equal(positive_scores(loaded, test, params.data.positive_label), scores)
    plain = positive_scores(train.fit(splits[0], params), test, params.data.positive_label)
    assert not np.allclose(scores, plain)  # the derived columns changed the model


def test_a_transform_that_drops_a_feature_is_named_before_fitting(
    params: Params, splits: tuple[pd.DataFrame, pd.DataFrame], team_features: str
) -> None:
    own = with_features(params, f"{team_features}:forgets_a_column")
    with pytest.raises(MlgateError) as err:
        train.fit(splits[0], own)
    assert str(err.value).startswith(
        f"features.transform {team_features}:forgets_a_column gave no column(s) ['age']"
    )


def test_a_missing_derived_column_is_named(
    params: Params, splits: tuple[pd.DataFrame, pd.DataFrame], team_features: str
) -> None:
    own = with_features(params, f"{team_features}:ratios", numeric=["debt_ratio"])
    with pytest.raises(MlgateError, match=r"gave no column\(s\) \['debt_ratio'\]"):
        train.fit(splits[0], own)


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("not_a_transformer", "returned function, not a scikit-learn transformer"),
        ("nothing_here", "has no attribute 'nothing_here'"),
    ],
)
def test_a_transform_that_is_no_transformer_is_refused(
    params: Params, splits: tuple[pd.DataFrame, pd.DataFrame], team_features: str,
    function: str, message: str,
) -> None:  # fmt: skip
    with pytest.raises(MlgateError, match=message):
        train.fit(splits[0], with_features(params, f"{team_features}:{function}"))


def test_derived_columns_without_a_transform_or_named_twice_are_refused(params: Params) -> None:
    with pytest.raises(ValueError, match=r"derived columns \['x'\] need a features.transform"):
        with_features(params, None, numeric=["x"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"derived columns \['age'\] are named twice"):
        with_features(params, "team.features:ratios", numeric=["age"])
