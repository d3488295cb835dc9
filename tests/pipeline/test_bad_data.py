"""Data sets corrupted the way real feeds corrupt them, through the real stages: each is
refused with the contract's report, no traceback, nothing written, nothing registered.
The families run through `mlgate validate`'s entry point (fast); `dvc repro` and the later
stages run as processes, in copies of the trained repository (slow)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from mlgate.cli import main
from tests.conftest import ROOT, run
from tests.pipeline.conftest import registry_state

RAW = "data/german_credit.csv"
COMMITTED = ["data.dvc", "dvc.lock", "artifacts/data/summary.json", "artifacts/model/run.json"]
COMMITTED += [f"artifacts/{name}.json" for name in ("metrics", "fairness", "gate")]


def real() -> pd.DataFrame:
    return pd.read_csv(ROOT / RAW)


def fraction_in_an_integer_column() -> str:
    frame = real().astype({"job": float})
    frame.loc[[5, 50, 500], "job"] = 2.5
    return frame.to_csv(index=False)


def infinite_age() -> str:
    frame = real().astype({"age": float})
    frame.loc[7, "age"] = float("inf")
    return frame.to_csv(index=False)


# (name, the corrupted file's text, what the report must say)
FAMILIES: list[tuple[str, Callable[[], str], list[str]]] = [
    ("header only", lambda: real().head(0).to_csv(index=False),
     ["0 rows checked", "fails min_rows(500): 0 rows, at least 500 required"]),
    ("single class", lambda: real().assign(risk=1).to_csv(index=False),
     ["fails target_varies: target 'risk' has one class only (1: 1000 rows)"]),
    ("every row identical", lambda: pd.concat([real().head(1)] * 1000).to_csv(index=False),
     ["fails max_duplicate_share(0.01): 999 of 1000 rows (99.9%) repeat an earlier row"]),
    ("far too few rows", lambda: real().head(8).to_csv(index=False),
     ["fails min_rows(500): 8 rows", "fails min_rows_per_class(100): class 1 has"]),
    ("2.5 in an integer column", fraction_in_an_integer_column,
     ["column 'job' fails lossless_coercion(int64): 3 row(s); values: 2.5"]),
    ("wrong delimiter", lambda: real().to_csv(sep=";", index=False),
     ["is the file delimited by ';'?", "missing column 'risk'", "missing column 'age'"]),
    ("missing target column", lambda: real().drop(columns="risk").to_csv(index=False),
     ["missing column 'risk'"]),
    ("an all-empty column", lambda: real().assign(age=None).to_csv(index=False),
     ["column 'age' fails not_nullable: 1000 row(s)"]),
    ("infinity", infinite_age, ["column 'age' fails coerce_dtype('int64'): 1 row(s); values: inf"]),
    ("only an unseen category", lambda: real().assign(purpose="crypto").to_csv(index=False),
     ["column 'purpose' fails isin(", "1000 row(s); values: 'crypto'"]),
    ("an empty file", lambda: "", ["not a readable CSV file"]),
    ("binary garbage", lambda: "\x00\x81\xfe" * 100, ["data/german_credit.csv:"]),
]  # fmt: skip


def corrupt(repo: Path, text: str) -> None:
    csv = repo / RAW
    csv.unlink()  # DVC may link files from its cache: replace, never write through
    csv.write_bytes(text.encode("latin-1"))


def assert_refused(out: subprocess.CompletedProcess[str], expected: list[str]) -> None:
    printed = out.stdout + out.stderr
    assert out.returncode != 0, printed
    assert "Traceback" not in printed
    for text in expected:
        assert text in out.stderr, f"{text!r} not in:\n{out.stderr}"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What `mlgate validate` reads: params.yaml and the data (a copy, no git, no DVC)."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data").mkdir()
    shutil.copy(ROOT / RAW, tmp_path / RAW)
    (tmp_path / "artifacts").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(("family", "make", "expected"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_validate_refuses_a_corrupted_data_set_with_the_contract_report(
    workdir: Path, family: str, make: Callable[[], str], expected: list[str], capsys
) -> None:
    """The stage's entry point in this process (`main` is what the `mlgate` script runs):
    a traceback would fail the test; dvc repro runs the same command below."""
    corrupt(workdir, make())

    code = main(["validate"])

    out = capsys.readouterr()
    assert_refused(subprocess.CompletedProcess(["mlgate", "validate"], code, *out), expected)
    assert not any((workdir / "artifacts").rglob("*")), "validate wrote an output"


@pytest.mark.slow
@pytest.mark.parametrize("family", ["2.5 in an integer column", "header only"])
def test_under_dvc_repro_a_refused_data_set_leaves_the_repository_as_it_was(
    repo: Path, family: str
) -> None:
    _, make, expected = next(f for f in FAMILIES if f[0] == family)
    before = {path: (repo / path).read_bytes() for path in COMMITTED}
    registry_before = registry_state(repo)
    status_before = run(["git", "status", "--porcelain"], repo).stdout
    corrupt(repo, make())

    out = run(["dvc", "repro"], repo, check=False)

    assert_refused(out, expected)
    assert "data.dvc is put back to its committed version" in out.stderr
    assert "`dvc checkout --force data.dvc`" in out.stderr  # how to go back
    for path, content in before.items():
        assert (repo / path).read_bytes() == content, f"{path} changed"
    assert run(["git", "status", "--porcelain"], repo).stdout == status_before
    assert registry_state(repo) == registry_before
    # the data stays as the user left it; going back is the command the message gives
    assert (repo / RAW).read_text(encoding="latin-1") == make()
    run(["dvc", "checkout", "--force", "data.dvc"], repo)
    assert (repo / RAW).read_bytes() == (ROOT / RAW).read_bytes()


@pytest.mark.slow
def test_later_stages_refuse_a_corrupted_split_without_a_traceback(repo: Path) -> None:
    """Files between stages can be damaged too (by hand, by a tool): no stage crashes."""
    test_split = pd.read_parquet(repo / "artifacts/data/test.parquet")
    cases = [
        ("split", "artifacts/data/validated.parquet", real().head(0), "0 rows checked"),
        ("train", "artifacts/data/train.parquet", test_split.assign(risk=0), "one class only (0:"),
        (
            "evaluate",
            "artifacts/data/test.parquet",
            test_split.assign(risk=1),
            "one class only (1:",
        ),
        ("evaluate", "artifacts/data/test.parquet", test_split.head(0), "fails not_empty: no rows"),
        (
            "train",
            "artifacts/data/train.parquet",
            test_split.drop(columns="age"),
            "missing column 'age'",
        ),
    ]
    registry_before = registry_state(repo)
    for stage, path, frame, expected in cases:
        good = (repo / path).read_bytes()
        (repo / path).unlink()
        frame.to_parquet(repo / path, index=False)
        out = run(["mlgate", stage], repo, check=False)
        assert_refused(out, [f"{path}: ", expected, f"`dvc checkout --force {path}` puts back"])
        run(["dvc", "checkout", "--force", path], repo)  # the way back the message gives
        assert (repo / path).read_bytes() == good
    assert registry_state(repo) == registry_before
