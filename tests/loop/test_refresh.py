"""`mlgate data refresh` in real copies of the repository (real DVC remote, real MLflow store):
new rows become a new data.dvc version pushed to the remote, with a summary for the pull
request; no new rows change nothing; the guardrails stop a shrink or a class-balance swing
and leave the data as it was; `dvc repro` then trains on the new version, and the run's tags
name it and what triggered it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import copy_repo, run

pytestmark = pytest.mark.slow
RAW = "data/german_credit.csv"


def with_source(repo: Path, **source: object) -> Path:
    """data.source in params.yaml pointing at incoming.csv (plus any other keys)."""
    params = repo / "params.yaml"
    text = params.read_text()
    entries = {"path": "incoming.csv", **source}
    block = "".join(f"    {k}: {json.dumps(v)}\n" for k, v in entries.items())  # YAML reads JSON
    text = text.replace("  contract:", f"  source:\n{block}  contract:", 1)
    params.write_text(text)
    return repo / "incoming.csv"


def new_rows(repo: Path, n: int, start: int = 0) -> pd.DataFrame:
    """n rows unlike any row there: existing rows with another credit amount."""
    rows = pd.read_csv(repo / RAW).iloc[start : start + n].copy()
    rows["credit_amount"] = rows["credit_amount"] + 7
    return rows


def pinned(repo: Path) -> dict:
    return yaml.safe_load((repo / "data.dvc").read_text())


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    return copy_repo(tmp_path)


def test_new_rows_become_a_pushed_data_version_and_the_same_rows_again_change_nothing(
    clone: Path, tmp_path: Path
) -> None:
    incoming = with_source(clone)
    before = pinned(clone)["outs"][0]["md5"]
    rows = new_rows(clone, 40)
    bad = rows.head(2).assign(age=[7, 200])  # two rows the contract refuses (age 18-100)
    pd.concat([rows, bad, rows.head(5)]).to_csv(incoming, index=False)  # 5 repeated

    out = run(["mlgate", "data", "refresh", "--trigger", "dispatch"], clone)

    after = pinned(clone)
    assert after["outs"][0]["md5"] != before
    assert after["meta"]["refresh"]["trigger"] == "dispatch"
    assert after["meta"]["refresh"]["added"] == 40
    assert len(pd.read_csv(clone / RAW)) == 1000 + 40
    assert "2 row(s) of the source fail the contract, not added" in out.stdout
    summary = (clone / "artifacts/data/refresh.md").read_text()
    assert "1000 → 1040 (+40 added, −0 removed; 5 duplicates" in summary
    assert "2 failing the contract rejected" in summary and "| credit_amount |" in summary
    assert "Drift against the previous version" in summary
    # pushed: the remote holds the new version
    status = run(["dvc", "status", "--cloud", "data.dvc"], clone).stdout
    assert "in sync" in status, status

    (clone / "artifacts/data/refresh.md").unlink()
    again = run(["mlgate", "data", "refresh"], clone)
    assert "no new rows" in again.stdout
    assert pinned(clone) == after and not (clone / "artifacts/data/refresh.md").exists()


def test_dedupe_leaves_the_rows_already_there_and_repeats_are_counted(clone: Path) -> None:
    """dedupe once de-duplicated the whole data set, history included: a data set whose
    contract accepts repeated rows shrank on every refresh and the guardrail blamed the
    source. And `added` counted only rows of new content: appended repeats were not added."""
    data = pd.read_csv(clone / RAW)
    history = pd.concat([data, data.head(6)], ignore_index=True)  # 6 repeats, accepted
    history.to_csv(clone / RAW, index=False)
    run(["dvc", "add", "--quiet", "data"], clone)
    incoming = with_source(clone)
    pd.concat([new_rows(clone, 30), data.iloc[100:104]]).to_csv(incoming, index=False)

    run(["mlgate", "data", "refresh", "--no-push"], clone)
    after = pd.read_csv(clone / RAW)
    assert len(after) == 1006 + 30  # the 6 old repeats kept, the 4 repeated new rows not added
    assert pinned(clone)["meta"]["refresh"]["added"] == 30
    summary = (clone / "artifacts/data/refresh.md").read_text()
    assert "1006 → 1036 (+30 added, −0 removed; 4 duplicates" in summary

    params = clone / "params.yaml"
    params.write_text(
        params.read_text().replace('"incoming.csv"', '"incoming.csv"\n    dedupe: false')
    )
    data.iloc[200:204].to_csv(incoming, index=False)  # 4 rows repeating rows already there
    run(["mlgate", "data", "refresh", "--no-push"], clone)
    assert len(pd.read_csv(clone / RAW)) == 1040
    assert pinned(clone)["meta"]["refresh"]["added"] == 4


@pytest.mark.parametrize(
    ("source", "make", "says"),
    [
        pytest.param(
            {"mode": "replace"},
            lambda repo: pd.read_csv(repo / RAW).head(600),
            "would shrink the data from 1000 to 600 rows",
            id="shrink",
        ),
        pytest.param(
            {},
            lambda repo: new_rows(repo, 600).assign(risk=1),
            "would move class",
            id="class-balance",
        ),
        pytest.param(
            {},
            lambda repo: new_rows(repo, 10).drop(columns=["age"]),
            "lacks column(s) ['age']",
            id="missing-column",
        ),
    ],
)
def test_guardrails_stop_with_a_clear_message_and_leave_the_data_as_it_was(
    clone: Path, source: dict, make, says: str
) -> None:
    incoming = with_source(clone, **source)
    make(clone).to_csv(incoming, index=False)
    before, data = pinned(clone), (clone / RAW).read_bytes()

    out = run(["mlgate", "data", "refresh"], clone, check=False)

    assert out.returncode != 0 and says in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert pinned(clone) == before and (clone / RAW).read_bytes() == data


def test_a_failing_dvc_add_leaves_data_and_pin_as_they_were(clone: Path) -> None:
    """`dvc add` failing after data/ was rewritten left the new rows unpinned, and the rerun
    then saw "no new rows". Run as `.venv/bin/mlgate` with no dvc on PATH (the README says the
    prefix works; it failed with "`dvc` is not on PATH" after rewriting data/)."""
    import shutil
    import sys

    incoming = with_source(clone)
    new_rows(clone, 30).to_csv(incoming, index=False)
    cache = clone / ".dvc/cache"
    shutil.rmtree(cache, ignore_errors=True)
    cache.write_text("not a cache\n")  # dvc add must fail
    before, data = pinned(clone), (clone / RAW).read_bytes()
    mlgate = str(Path(sys.executable).with_name("mlgate"))
    plain = {"PATH": "/usr/bin:/bin"}

    out = run([mlgate, "data", "refresh", "--no-push"], clone, check=False, **plain)
    assert out.returncode != 0 and "`dvc add --quiet data` failed" in out.stderr, out.stderr
    assert pinned(clone) == before and (clone / RAW).read_bytes() == data
    assert not list(clone.glob("**/.*before-refresh"))

    cache.unlink()
    run([mlgate, "data", "refresh", "--no-push"], clone, **plain)
    assert pinned(clone)["meta"]["refresh"]["added"] == 30


def test_a_source_command_writes_the_file_and_its_failure_changes_nothing(clone: Path) -> None:
    new_rows(clone, 30).to_csv(clone / "export.csv", index=False)
    with_source(clone, command="cp export.csv incoming.csv")
    run(["mlgate", "data", "refresh", "--no-push"], clone)
    assert len(pd.read_csv(clone / RAW)) == 1030

    params = clone / "params.yaml"
    params.write_text(params.read_text().replace("cp export.csv", "false && cp export.csv"))
    before = pinned(clone)
    out = run(["mlgate", "data", "refresh"], clone, check=False)
    assert out.returncode == 2 and "data.source.command exited 1; nothing changed" in out.stderr
    assert pinned(clone) == before


def test_repro_trains_on_the_refreshed_version_and_the_run_names_it(clone: Path) -> None:
    from mlflow import MlflowClient

    new_rows(clone, 50).to_csv(with_source(clone), index=False)
    run(["mlgate", "data", "refresh", "--trigger", "drift", "--no-push"], clone)
    version = pinned(clone)["outs"][0]["md5"]

    run(["dvc", "repro"], clone)

    uri = f"sqlite:///{clone / 'mlflow.db'}"
    [train] = MlflowClient(tracking_uri=uri).search_runs(
        [e.experiment_id for e in MlflowClient(tracking_uri=uri).search_experiments()],
        "tags.`mlgate.stage` = 'train'",
    )
    assert train.data.tags["mlgate.data_hash"] == version
    assert train.data.tags["mlgate.data_trigger"] == "drift"


def test_recorded_traffic_with_outcomes_becomes_labelled_rows(clone: Path) -> None:
    """The loop closes: predictions the service recorded + late labels -> new training rows;
    predictions without an outcome yet are not rows yet."""
    rows = new_rows(clone, 30)
    feedback = clone / "feedback"
    feedback.mkdir()
    records = [
        {"schema": 1, "kind": "prediction", "request_id": f"r{i}", "row": 0,
         "inputs": row.drop("risk").to_dict(), "probability": 0.5}
        for i, (_, row) in enumerate(rows.iterrows())
    ] + [{"schema": 1, "kind": "error", "request_id": "bad", "status": 400}]  # fmt: skip
    (feedback / "predictions-h-1-1-0001.jsonl").write_text(
        "".join(json.dumps(r, default=int) + "\n" for r in records)
    )
    labels = pd.DataFrame({"request_id": [f"r{i}" for i in range(20)], "row": 0,
                           "risk": rows["risk"].head(20).to_numpy()})  # fmt: skip
    labels.to_csv(clone / "outcomes.csv", index=False)
    params = clone / "params.yaml"
    source = "  source:\n    feedback: feedback\n    outcomes: outcomes.csv\n"
    params.write_text(params.read_text().replace("  contract:", f"{source}  contract:", 1))

    out = run(["mlgate", "data", "refresh", "--no-push"], clone)

    assert "20 of 30 recorded predictions have an outcome" in out.stdout
    refreshed = pd.read_csv(clone / RAW)
    assert len(refreshed) == 1020
    pd.testing.assert_frame_equal(refreshed.tail(20).reset_index(drop=True),
                                  rows.head(20).reset_index(drop=True))  # fmt: skip
    assert pinned(clone)["meta"]["refresh"]["source"] == "feedback + outcomes.csv"


def test_traffic_without_outcomes_yet_changes_nothing(clone: Path) -> None:
    (clone / "feedback").mkdir()
    pd.DataFrame(columns=["request_id", "row", "risk"]).to_csv(clone / "outcomes.csv", index=False)
    params = clone / "params.yaml"
    source = "  source:\n    feedback: feedback\n    outcomes: outcomes.csv\n"
    params.write_text(params.read_text().replace("  contract:", f"{source}  contract:", 1))
    before = pinned(clone)

    out = run(["mlgate", "data", "refresh"], clone)

    assert "0 of 0 recorded predictions have an outcome" in out.stdout
    assert "no new rows in feedback + outcomes.csv" in out.stdout and pinned(clone) == before
