"""Which of the project's own code a pickled model runs (serving/build.py project_code): what
`mlgate build` checks against the code the version was trained with, wherever it is nested."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from mlgate.serving.build import project_code

CODE = """
import numpy as np
from sklearn.linear_model import LogisticRegression


def log1p(x):
    return np.log1p(np.abs(x))


class Shrunk(LogisticRegression):
    pass
"""


@pytest.fixture
def teamcode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A project package `teamcode` (src/teamcode/prep.py) on the path."""
    package = tmp_path / "teamcode"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "prep.py").write_text(CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import teamcode.prep

    yield teamcode.prep
    for name in ("teamcode.prep", "teamcode"):
        sys.modules.pop(name, None)


def frame() -> tuple[pd.DataFrame, np.ndarray]:
    x = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0)[::-1]})
    return x, np.array([0, 1] * 10)


def test_a_project_function_nested_in_a_column_transformer_is_found(teamcode: object) -> None:
    prep = ColumnTransformer([("logs", FunctionTransformer(teamcode.log1p), ["a"]),
                              ("scaled", StandardScaler(), ["b"])])  # fmt: skip
    model = Pipeline([("prep", prep), ("est", LogisticRegression())]).fit(*frame())
    assert project_code(model, "teamcode") == ["teamcode.prep.log1p"]


def test_a_project_estimator_class_is_found(teamcode: object) -> None:
    model = Pipeline([("scale", StandardScaler()), ("est", teamcode.Shrunk())]).fit(*frame())
    assert project_code(model, "teamcode") == ["teamcode.prep.Shrunk"]


def test_a_model_of_library_code_only_runs_no_project_code() -> None:
    model = Pipeline([("log", FunctionTransformer(np.log1p)),
                      ("est", LogisticRegression())]).fit(*frame())  # fmt: skip
    assert project_code(model, "teamcode") == []
    assert project_code(model, "credit_risk") == []
