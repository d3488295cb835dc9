"""Bad input to `mlgate init`: a clear message, exit code 2, and nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlgate.cli import main
from tests.conftest import ROOT
from tests.scaffold.conftest import churn_frame


def init(capsys: pytest.CaptureFixture[str], dest: Path, *args: str | Path) -> str:
    code = main(["init", str(dest), "--no-input", *map(str, args)])
    err = capsys.readouterr().err
    assert code == 2, err
    return err


def assert_nothing_written(parent: Path, before: set[str]) -> None:
    """No new folder, no temp folder left beside DIR."""
    assert {p.name for p in parent.iterdir()} == before


@pytest.fixture
def work(tmp_path: Path) -> Path:
    churn_frame(n=60).to_csv(tmp_path / "churn.csv", index=False)
    return tmp_path


def test_missing_data_file(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {p.name for p in work.iterdir()}
    err = init(capsys, work / "proj", "--data", work / "nope.csv", "--target", "churned")
    assert "data file" in err and "nope.csv not found" in err
    assert_nothing_written(work, before)


def test_target_column_absent(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {p.name for p in work.iterdir()}
    err = init(capsys, work / "proj", "--data", work / "churn.csv", "--target", "churn")
    assert "target column 'churn' is not in" in err
    assert "churned" in err  # the message lists the columns there are
    assert_nothing_written(work, before)


def test_target_with_one_class(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    churn_frame(n=60).assign(churned="no").to_csv(work / "one.csv", index=False)
    before = {p.name for p in work.iterdir()}
    err = init(capsys, work / "proj", "--data", work / "one.csv", "--target", "churned")
    assert "has one class only ('no')" in err
    assert_nothing_written(work, before)


def test_existing_non_empty_dir(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = work / "proj"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    before = {p.name for p in work.iterdir()}
    err = init(capsys, dest, "--data", work / "churn.csv", "--target", "churned")
    assert "exists and is not an empty directory" in err
    assert_nothing_written(work, before)
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--positive-label", "maybe"], "--positive-label 'maybe' is not a class"),
        (["--sensitive", "religion"], "sensitive attributes ['religion'] are not columns"),
        (["--metric", "rmse"], "'rmse' is not a classification metric"),
        (["--task", "regression"], "regression needs a numeric target"),
        (["--monotone", "plan:+1"], "not numeric features: plan (categorical)"),
        (["--monotone", "height:-1"], "height (not a column)"),
        (["--monotone", "gender:+1", "--sensitive", "gender"], "gender (sensitive)"),
        (["--monotone", "tenure:up"], "--monotone 'tenure:up': give COLUMN:+1"),
    ],
)
def test_other_mistakes_are_named(
    work: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    before = {p.name for p in work.iterdir()}
    err = init(capsys, work / "proj", "--data", work / "churn.csv", "--target", "churned", *extra)
    assert message in err
    assert_nothing_written(work, before)


def test_a_late_failure_leaves_nothing_behind(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checks pass, then rendering fails (no such template): the temp folder is removed."""
    before = {p.name for p in work.iterdir()}
    err = init(
        capsys,
        work / "proj",
        "--data",
        work / "churn.csv",
        "--target",
        "churned",
        "--template",
        work / "no-such-template",
    )
    assert "rendering the template" in err
    assert_nothing_written(work, before)


def test_too_many_classes_are_refused_without_suggesting_regression(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """3 to 50 classes make a multiclass project; more is refused with a way out that keeps
    the target a class label (the old hint, --task regression, served a "cultivar" of -0.2)."""
    frame = churn_frame(n=120)
    frame["churned"] = [f"reason {i % 60}" for i in range(120)]
    frame.to_csv(work / "many.csv", index=False)
    before = {p.name for p in work.iterdir()}
    err = init(capsys, work / "proj", "--data", work / "many.csv", "--target", "churned")
    assert "has 60 classes, more than the 50 a multiclass model is gated on here" in err
    assert "group the rare classes" in err
    assert "regression" not in err
    assert_nothing_written(work, before)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--positive-label", "a"), "a multiclass model, which has no positive class"),
        (("--monotone", "tenure:+1"), "a multiclass model has no single score to rise or fall"),
        (("--task", "classification", "--positive-label", "b"), "has no positive class"),
    ],
)
def test_what_a_multiclass_target_cannot_take_is_refused(
    work: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], message: str
) -> None:
    frame = churn_frame(n=60)
    frame["churned"] = pd.Series(["a", "b", "c"] * 20)
    frame.to_csv(work / "three.csv", index=False)
    args = ("--data", work / "three.csv", "--target", "churned", *extra)
    err = init(capsys, work / "proj", *args, "--mlgate-path", ROOT)
    assert message in err


def test_multiclass_on_two_classes_is_refused(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--data", work / "churn.csv", "--target", "churned", "--task", "multiclass")
    err = init(capsys, work / "proj", *args, "--mlgate-path", ROOT)
    assert "has two classes: --task classification" in err


def test_regression_on_a_few_whole_values_is_warned_about(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Class codes 0/1/2 under --task regression trained, gated and served "cultivar -0.2"
    without a word; init now says so (here before it refuses an unknown sensitive column)."""
    frame = churn_frame(n=60)
    frame["churned"] = [0, 1, 2] * 20
    frame.to_csv(work / "codes.csv", index=False)
    args = ("--data", work / "codes.csv", "--target", "churned", "--task", "regression")
    err = init(capsys, work / "proj", *args, "--sensitive", "nosuch")
    assert "WARNING: the regression target 'churned' has only 3 distinct whole values" in err


def test_a_name_that_would_shadow_a_module_is_refused(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = init(capsys, work / "pandas", "--data", work / "churn.csv", "--target", "churned")
    assert "would shadow an installed module" in err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--mlgate-repo", "not a repository", "give OWNER/NAME (on github.com) or the"),
        ("--mlgate-ref", "main", "--mlgate-ref 'main': a release tag is vX.Y.Z"),
        ("--mlgate-path", "/nonexistent", "not an mlgate checkout"),
    ],
)
def test_release_options(
    work: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    before = {p.name for p in work.iterdir()}
    csv = work / "churn.csv"
    err = init(capsys, work / "proj", "--data", csv, "--target", "churned", option, value)
    assert message in err
    assert_nothing_written(work, before)
