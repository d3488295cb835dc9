"""New data, the DVC way, in real copies of the repository: `mlgate data pull` (what
`make data` runs) keeps local changes and says so, pulls missing data, says why a pull
fails; a new data version goes validate -> dvc add -> dvc push -> commit -> repro -> register."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import copy_repo, run
from tests.pipeline.conftest import registry_state

pytestmark = pytest.mark.slow
RAW = "data/german_credit.csv"


def replace_data(repo: Path, frame: pd.DataFrame) -> None:
    (repo / RAW).unlink()  # DVC may link files from its cache: replace, never write through
    frame.to_csv(repo / RAW, index=False)


def pinned_md5(repo: Path) -> str:
    return yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["md5"]


def commit(repo: Path, *paths: str, message: str) -> None:
    run(["git", "add", *paths], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], repo)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    return copy_repo(tmp_path)


def test_local_changes_are_used_and_listed_with_the_commands_to_record_or_drop_them(clone):
    edited = pd.read_csv(clone / RAW).head(900)
    replace_data(clone, edited)
    (clone / "data/extra.csv").write_text("a\n1\n")

    out = run(["mlgate", "data", "pull"], clone)

    assert "data/ differs from data.dvc; the pipeline runs on your local data" in out.stdout
    assert "modified: data/german_credit.csv" in out.stdout
    assert "added: data/extra.csv" in out.stdout
    assert "dvc add data && dvc push data.dvc && git add data.dvc" in out.stdout
    assert "To go back to the data data.dvc pins: dvc checkout --force data.dvc" in out.stdout
    assert pd.read_csv(clone / RAW).equals(edited)  # kept, not overwritten
    # the plain pull this replaces fails on exactly this, and `--quiet` hid why
    plain = run(["dvc", "pull", "--quiet", "data.dvc"], clone, check=False)
    assert plain.returncode != 0 and plain.stdout + plain.stderr == ""


def test_missing_data_is_pulled_and_a_failing_pull_says_why(clone):
    shutil.rmtree(clone / "data")
    run(["mlgate", "data", "pull"], clone)
    assert run(["dvc", "status", "data.dvc"], clone).stdout.strip() == (
        "Data and pipelines are up to date."
    )

    shutil.rmtree(clone / "data")
    shutil.rmtree(clone / ".dvc/cache", ignore_errors=True)
    run(["dvc", "remote", "modify", "--local", "example", "url", str(clone / "nowhere")], clone)
    out = run(["mlgate", "data", "pull"], clone, check=False)
    assert out.returncode != 0
    assert "`dvc pull data.dvc` failed" in out.stderr and "missing" in out.stderr.lower()
    assert "Traceback" not in out.stdout + out.stderr


def test_a_new_data_version_is_validated_recorded_pushed_committed_and_registered(repo):
    new = pd.read_csv(repo / RAW)
    new.loc[[3, 30], "credit_amount"] += 100  # a new export with two corrected records
    replace_data(repo, new)
    old_md5 = pinned_md5(repo)

    run(["mlgate", "validate"], repo)
    run(["dvc", "add", "data"], repo)
    run(["dvc", "push", "data.dvc"], repo)
    commit(repo, "data.dvc", ".dvc/example-remote", message="data: a new export")
    assert run(["mlgate", "data", "pull"], repo).stdout == ""  # data/ is what data.dvc pins
    run(["dvc", "repro"], repo)
    run(["mlgate", "register"], repo)

    versions = registry_state(repo)
    assert list(versions) == ["1", "2"]
    assert pinned_md5(repo) != old_md5
    assert versions["2"]["tags"]["mlgate.data_hash"] == pinned_md5(repo)
    assert run(["git", "status", "--porcelain", "data.dvc", ".dvc"], repo).stdout == ""
    # anyone can now get exactly this data: from the remote, into a clean workspace
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc/cache/files")
    run(["mlgate", "data", "pull"], repo)
    assert pd.read_csv(repo / RAW).equals(new)
