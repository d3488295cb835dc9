"""`mlgate predict` on a real MLflow store with the registered model of the trained repo."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from mlgate.cli import main
from tests.pipeline.conftest import read_json

pytestmark = pytest.mark.slow

BAD_ROWS = {3: ("age", 130), 5: ("sex", "robot"), 7: ("job", "2.5"), 9: ("credit_amount", "")}


@pytest.fixture
def here(repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in-process in the repo copy; its own store by an absolute URI (MLflow caches
    stores by URI, and a relative one would be the same string in every copy)."""
    monkeypatch.chdir(repo)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlflow.db'}")
    return repo


def predict(*args: str) -> int:
    return main(["predict", *args])


def split_frame(repo: Path) -> pd.DataFrame:
    frame = pd.read_parquet(repo / "artifacts/data/test.parquet")
    frame.insert(0, "id", [f"app-{i}" for i in range(len(frame))])
    return frame


def with_bad_rows(frame: pd.DataFrame) -> pd.DataFrame:
    bad = frame.astype(object)
    for row, (column, value) in BAD_ROWS.items():
        bad.loc[row, column] = value
    return bad


def expected_scores(repo: Path, frame: pd.DataFrame) -> list[float]:
    """The trained Pipeline itself (the file DVC tracks is the registered model)."""
    model = joblib.load(repo / "artifacts/model/model.joblib")
    features = frame.drop(columns=["id", "risk"]).astype({"job": int, "credit_amount": int})
    return model.predict_proba(features)[:, list(model.classes_).index(1)].tolist()


def test_valid_rows_are_scored_and_broken_rows_quarantined_with_reasons(here, capsys):
    frame = split_frame(here)
    with_bad_rows(frame).to_csv("batch.csv", index=False)

    code = predict(
        "--model", "candidate", "--input", "batch.csv", "--output", "out", "--chunk-rows", "4"
    )
    assert code == 0, capsys.readouterr().err

    scored = pd.read_parquet("out/scored.parquet")
    quarantined = pd.read_parquet("out/quarantine.parquet")
    assert len(scored) == len(frame) - len(BAD_ROWS)
    bad_ids = [f"app-{i}" for i in sorted(BAD_ROWS)]
    assert quarantined["id"].tolist() == bad_ids
    assert quarantined["row"].tolist() == sorted(BAD_ROWS)
    reasons = dict(zip(quarantined["row"], quarantined["reason"], strict=True))
    assert reasons[3] == "age: less_than_or_equal_to(100): 130"
    assert reasons[5] == "sex: isin(['female', 'male']): 'robot'"
    assert reasons[7] == "job: coerce_dtype('int64'): '2.5'"  # not truncated to 2
    assert reasons[9].startswith("credit_amount: not_nullable")

    # every input column is a key by default, in the contract's types; the model's output
    good = frame.drop(index=list(BAD_ROWS)).reset_index(drop=True)
    assert scored["id"].tolist() == good["id"].tolist()
    assert list(scored.columns) == [
        *frame.columns,
        "score",
        "decision",
        "model_name",
        "model_version",
        "batch_id",
    ]
    assert scored["age"].dtype == "int64"
    assert scored["score"].tolist() == pytest.approx(expected_scores(here, good), abs=1e-12)
    assert (scored["decision"] == (scored["score"] >= 0.5).astype(int)).all()
    assert set(scored["model_version"]) == {"1"} and set(scored["model_name"]) == {"credit-risk"}

    summary = read_json(here / "out/summary.json")
    assert summary["batch_id"] == scored["batch_id"].iloc[0] == quarantined["batch_id"].iloc[0]
    assert (summary["rows_read"], summary["rows_scored"], summary["rows_quarantined"]) == (
        len(frame),
        len(frame) - 4,
        4,
    )
    assert summary["model"]["version"] == "1" and summary["model"]["gate_passed"] == "true"
    assert {(r["column"], r["check"]) for r in summary["quarantine_reasons"]} >= {
        ("age", "less_than_or_equal_to(100)"),
        ("job", "coerce_dtype('int64')"),
    }
    out = capsys.readouterr().out
    assert f"{len(frame) - 4:,} scored, 4 quarantined" in out

    # the MLflow run names the model version that scored this input
    from mlflow import MlflowClient

    run = MlflowClient().get_run(summary["mlflow_run_id"])
    assert run.data.tags["mlgate.model_version"] == "1"
    assert run.data.tags["mlgate.input_sha256"] == summary["input_sha256"]
    assert run.data.metrics["rows_quarantined"] == 4


def test_parquet_folder_and_glob_give_the_rows_a_csv_gives(here, capsys):
    frame = split_frame(here)
    Path("parts").mkdir()
    frame.iloc[:120].to_parquet("parts/part-0.parquet")
    frame.iloc[120:].to_parquet("parts/part-1.parquet")
    frame.to_csv("all.csv", index=False)

    assert predict("--model", "1", "--input", "parts", "--output", "a", "--keys", "id") == 0
    assert (
        predict(
            "--model",
            "1",
            "--input",
            "parts/*.parquet",
            "--output",
            "b",
            "--keys",
            "id",
            "--format",
            "csv",
        )
        == 0
    )
    assert predict("--model", "1", "--input", "all.csv", "--output", "c", "--keys", "id") == 0
    a = pd.read_parquet("a/scored.parquet")
    b = pd.read_csv("b/scored.csv")
    c = pd.read_parquet("c/scored.parquet")
    assert list(a.columns) == ["id", "score", "decision", "model_name", "model_version", "batch_id"]
    assert len(a) == len(frame)
    for other in (b, c):
        assert other["id"].tolist() == a["id"].tolist()
        assert other["score"].tolist() == pytest.approx(a["score"].tolist(), abs=1e-12)
    assert read_json(Path("a/summary.json"))["input"]["files"] == [
        "parts/part-0.parquet",
        "parts/part-1.parquet",
    ]


def test_the_model_is_resolved_by_alias_or_version(here, capsys):
    split_frame(here).to_csv("batch.csv", index=False)

    # default `production`: nothing holds it yet, so a clear error and no output
    assert predict("--input", "batch.csv", "--output", "none") == 2
    err = capsys.readouterr().err
    assert "no version of credit-risk holds alias 'production'" in err
    assert "Traceback" not in err and not Path("none").exists()
    assert predict("--model", "7", "--input", "batch.csv", "--output", "none") == 2
    assert "credit-risk has no version 7" in capsys.readouterr().err

    from mlgate.config import load_params
    from mlgate.registry import aliases

    params = load_params()
    aliases.promote(params, "1", to="staging")
    aliases.promote(params, "1", to="production")
    assert predict("--input", "batch.csv", "--output", "prod") == 0
    summary = read_json(Path("prod/summary.json"))
    assert (summary["model"]["ref"], summary["model"]["version"]) == ("production", "1")
    assert predict("--model", "staging", "--input", "batch.csv", "--output", "stg") == 0
    assert read_json(Path("stg/summary.json"))["model"]["ref"] == "staging"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_failure_mid_run_leaves_no_output(here, capsys):
    frame = split_frame(here)
    Path("parts").mkdir()
    frame.iloc[:150].to_csv("parts/a.csv", index=False)  # scored and written first…
    frame.iloc[150:].drop(columns=["age"]).to_csv("parts/b.csv", index=False)  # …then this
    before = leftovers(here)

    assert (
        predict("--model", "candidate", "--input", "parts", "--output", "out", "--chunk-rows", "50")
        == 1
    )
    err = capsys.readouterr().err
    assert "parts/b.csv: not the table the model scores: missing column(s) 'age'" in err
    assert not Path("out").exists()
    assert leftovers(here) == before  # no temporary folder left behind

    # --on-invalid fail: bad rows in a later chunk, after good chunks were written
    with_bad_rows(frame).iloc[::-1].to_csv("bad.csv", index=False)
    assert (
        predict(
            "--model",
            "candidate",
            "--input",
            "bad.csv",
            "--output",
            "out",
            "--chunk-rows",
            "50",
            "--on-invalid",
            "fail",
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "4 row(s) break the contract (--on-invalid fail)" in err
    assert "column 'age' fails less_than_or_equal_to(100): 1 row(s)" in err
    assert not Path("out").exists() and leftovers(here) == before

    # an earlier result survives a failed --overwrite untouched
    frame.to_csv("good.csv", index=False)
    assert predict("--model", "candidate", "--input", "good.csv", "--output", "out") == 0
    kept = Path("out/summary.json").read_text()
    assert (
        predict("--model", "candidate", "--input", "parts", "--output", "out", "--overwrite") == 1
    )
    assert Path("out/summary.json").read_text() == kept
    assert predict("--model", "candidate", "--input", "good.csv", "--output", "out") == 2
    assert "exists: choose another path or --overwrite" in capsys.readouterr().err


def snapshot(folder: Path) -> dict[str, int]:
    """Every file under `folder` (.git included) with its size: what a refusal must keep."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def test_overwrite_replaces_only_an_output_predict_made(here, capsys):
    """--overwrite once replaced whatever the path held: the project root (`.git`, params.yaml,
    data, mlflow.db) or the input's own folder became three output files, exit 0."""
    frame = split_frame(here)
    Path("inputs").mkdir()
    frame.to_csv("inputs/batch.csv", index=False)
    Path("notes").mkdir()
    Path("notes/mine.txt").write_text("a user's file\n")
    (here / ".git").mkdir(exist_ok=True)  # the copy is a git work tree as a clone is
    before = snapshot(here)
    refusals = {
        ".": "it is the working directory or holds it",
        str(here): "it is the working directory or holds it",
        "inputs": "it holds the input being scored",
        "notes": "mlgate predict did not make it (no .mlgate-predict inside)",
        "params.yaml": "it is not a folder",
        "artifacts": "mlgate predict did not make it",
    }
    for output, why in refusals.items():
        args = ("--model", "candidate", "--input", "inputs", "--output", output, "--overwrite")
        assert predict(*args) == 2, output
        err = capsys.readouterr().err
        assert f"refusing to replace it with --overwrite: {why}" in err, err
    Path("sub").mkdir()
    (here / "sub/.git").mkdir()
    Path("sub/.mlgate-predict").write_text("forged\n")
    assert (
        predict("--model", "candidate", "--input", "inputs", "--output", "sub", "--overwrite") == 2
    )
    assert "it is a git work tree" in capsys.readouterr().err
    assert predict("--input", "inputs", "--output", "params.yaml/out") == 2
    assert "params.yaml is a file, not a folder" in capsys.readouterr().err
    after = snapshot(here)
    del after["sub/.mlgate-predict"]
    assert after == before  # nothing deleted, nothing half-written

    # an output predict made is replaced, and only while it holds nothing else
    args = ("--model", "candidate", "--input", "inputs", "--output", "out")
    assert predict(*args) == 0
    assert sorted(p.name for p in Path("out").iterdir()) == [
        ".mlgate-predict",
        "quarantine.parquet",
        "scored.parquet",
        "summary.json",
    ]
    first = read_json(Path("out/summary.json"))["batch_id"]
    assert predict(*args, "--overwrite") == 0
    assert read_json(Path("out/summary.json"))["batch_id"] != first
    Path("out/report.xlsx").write_text("a user's work\n")
    assert predict(*args, "--overwrite") == 2
    assert "it holds files mlgate predict did not write (report.xlsx)" in capsys.readouterr().err
    assert Path("out/report.xlsx").read_text() == "a user's work\n"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text(""), "not a readable CSV file"),
        (
            lambda p: p.with_suffix(".parquet").write_bytes(b"PAR1 not really"),
            "not a readable Parquet file",
        ),
        (lambda p: p.with_suffix(".txt").write_text("a,b\n"), "not a .csv or .parquet file"),
        (lambda p: None, "no such file or folder"),
        (lambda p: p.write_text("id,risk\n1,1\n"), "missing column(s) 'sex', 'job'"),
    ],
    ids=["empty-csv", "not-parquet", "not-a-table-format", "missing", "other-table"],
)
def test_a_file_that_is_not_the_table_fails_clearly(here, capsys, make, message):
    target = here / "input.csv"
    make(target)
    spec = next((str(p) for p in here.glob("input.*")), str(target))
    code = predict("--model", "candidate", "--input", spec, "--output", "out")
    err = capsys.readouterr().err
    assert code in (1, 2)
    assert message in err and "Traceback" not in err
    assert err.startswith("mlgate predict: error: ")
    assert not Path("out").exists()


def test_batch_params_are_validated(here, capsys):
    text = Path("params.yaml").read_text().replace("chunk_rows: 50000", "chunk_rows: 0")
    Path("params.yaml").write_text(text)
    assert predict("--input", "x.csv", "--output", "out") == 2
    err = capsys.readouterr().err
    assert "batch.chunk_rows: Input should be greater than or equal to 1" in err
    assert "Traceback" not in err


def test_too_many_quarantined_rows_exit_1_and_keep_the_output(here, capsys, monkeypatch):
    frame = split_frame(here)
    with_bad_rows(frame).to_csv("batch.csv", index=False)
    share = len(BAD_ROWS) / len(frame)
    args = ("--model", "candidate", "--input", "batch.csv")

    assert predict(*args, "--output", "under", "--max-quarantined-share", f"{share:.6f}") == 0
    text = Path("params.yaml").read_text()
    Path("params.yaml").write_text(
        text.replace("max_quarantined_share: 1.0", "max_quarantined_share: 0.01")
    )
    capsys.readouterr()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(here / "step_summary.md"))
    monkeypatch.setenv("GITHUB_OUTPUT", str(here / "github_output"))
    assert predict(*args, "--output", "over") == 1
    err = capsys.readouterr().err
    assert f"{len(BAD_ROWS)} of {len(frame)} rows" in err
    assert "more than batch.max_quarantined_share (1.00%)" in err and "Traceback" not in err
    summary = read_json(Path("over/summary.json"))  # kept, for inspection
    assert summary["rows_quarantined"] == len(BAD_ROWS)
    assert summary["quarantined_share"] == pytest.approx(share, abs=1e-6)
    assert len(pd.read_parquet("over/quarantine.parquet")) == len(BAD_ROWS)
    # on GitHub Actions: the job summary and the step outputs
    job_summary = Path("step_summary.md").read_text()
    assert "above the limit 1.00%" in job_summary
    assert "| sex | `isin(['female', 'male'])` | 1 |" in job_summary
    outputs = dict(line.split("=", 1) for line in Path("github_output").read_text().splitlines())
    assert outputs["rows_quarantined"] == str(len(BAD_ROWS))
    assert outputs["batch_id"] == summary["batch_id"]


def test_explain_adds_each_rows_top_reasons_as_the_service_ranks_them(here, capsys):
    """--explain K: reason_i and reason_i_contribution, the largest |contribution| first, the
    numbers mlgate.pipeline.explain computes in process; a K beyond the model's columns is
    refused before anything is written."""
    from mlgate.pipeline import explain

    frame = split_frame(here)
    with_bad_rows(frame).to_csv("batch.csv", index=False)
    args = ["--model", "candidate", "--input", "batch.csv", "--chunk-rows", "16"]
    assert predict(*args, "--output", "out", "--explain", "3") == 0, capsys.readouterr().err
    scored = pd.read_parquet("out/scored.parquet")
    reasons = ["reason_1", "reason_1_contribution", "reason_2", "reason_2_contribution"]
    reasons += ["reason_3", "reason_3_contribution"]
    assert list(scored.columns) == [*frame.columns, "score", "decision", *reasons,
                                    "model_name", "model_version", "batch_id"]  # fmt: skip
    model = joblib.load(here / "artifacts/model/model.joblib")
    columns = list(model.feature_names_in_)
    good = frame.drop(index=list(BAD_ROWS)).reset_index(drop=True)
    train = pd.read_parquet(here / "artifacts/data/train.parquet")[columns]
    features = good[columns].astype({"job": int, "credit_amount": int})
    _, _, names, contributions = explain.contributions(model, features, train)
    top = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :3]
    for i in range(3):
        assert scored[f"reason_{i + 1}"].tolist() == [names[j] for j in top[:, i]]
        want = contributions[np.arange(len(good)), top[:, i]]
        assert np.max(np.abs(scored[f"reason_{i + 1}_contribution"] - want)) <= 1e-12
    capsys.readouterr()

    assert predict(*args, "--output", "too-many", "--explain", "9") == 2
    err = capsys.readouterr().err
    assert "--explain 9: credit-risk version 1 has 8 feature columns" in err, err
    assert "K is 1 to 8" in err and len(err.strip().splitlines()) == 1
    assert not Path("too-many").exists()

    # a model without exact attributions (the service's explainer says why): refused, as K is
    import mlgate.serving.explainers as explainers

    def unexplained(*_: object, **__: object) -> None:
        raise explainers.Unexplained("no exact attributions for KNeighborsClassifier")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(explainers, "make_explainer", unexplained)
        assert predict(*args, "--output", "none", "--explain", "2") == 2
    err = capsys.readouterr().err
    assert "--explain 2: no exact attributions for KNeighborsClassifier" in err, err
    assert "docs/BATCH.md#reason-columns" in err and not Path("none").exists()


def test_spark_gives_the_rows_the_local_engine_gives(here):
    """The same input through both engines: the same scored and quarantined rows, and the
    same reasons (--explain)."""
    from tests.conftest import run

    with_bad_rows(split_frame(here)).to_csv("batch.csv", index=False)
    uri = {"MLFLOW_TRACKING_URI": f"sqlite:///{here / 'mlflow.db'}"}
    common = ["--model", "candidate", "--input", "batch.csv", "--keys", "id,age", "--explain", "2"]
    local_run = run(
        ["mlgate", "predict", *common, "--output", "local", "--chunk-rows", "64"], here, **uri
    )
    # MLflow imports the installed PySpark, which warned about pandas 3 four times per command
    assert "Warning" not in local_run.stderr, local_run.stderr
    spark = ["--engine", "spark", "--spark-master", "local[2]", "--output", "spark"]
    run(["mlgate", "predict", *common, *spark], here, **uri)

    def table(path: str) -> pd.DataFrame:
        frame = pd.read_parquet(path).drop(columns=["batch_id", "row"], errors="ignore")
        return frame.sort_values("id").reset_index(drop=True)

    local, spark_out = table("local/scored.parquet"), table("spark/scored.parquet")
    assert len(local) == len(split_frame(here)) - len(BAD_ROWS)
    assert list(spark_out.columns) == list(local.columns)
    assert {"reason_1", "reason_2_contribution"} <= set(local.columns)
    pd.testing.assert_frame_equal(spark_out, local, check_dtype=False, atol=1e-12)
    pd.testing.assert_frame_equal(
        table("spark/quarantine.parquet"), table("local/quarantine.parquet"), check_dtype=False
    )
    local_summary = read_json(Path("local/summary.json"))
    spark_summary = read_json(Path("spark/summary.json"))
    assert spark_summary["engine"] == "spark"
    for key in ("rows_read", "rows_scored", "rows_quarantined", "input_sha256"):
        assert spark_summary[key] == local_summary[key], key
    assert sorted(map(str, spark_summary["quarantine_reasons"])) == sorted(
        map(str, local_summary["quarantine_reasons"])
    )


def test_monitor_watches_a_batch_output_like_recorded_traffic(here, capsys):
    """Training-like batch: no drift; doubled credit amounts: credit_amount drifts. The
    quarantined rows count as errors, the model version comes from the batch summary."""
    train = pd.read_parquet("artifacts/data/train.parquet").drop(columns=["risk"])
    frame = train.sample(600, replace=True, random_state=3).reset_index(drop=True)
    with_bad_rows(frame).to_csv("like.csv", index=False)
    shifted = frame.assign(credit_amount=(frame["credit_amount"] * 2).clip(upper=100_000))
    shifted.to_csv("shifted.csv", index=False)
    for name in ("like", "shifted"):
        assert predict("--model", "candidate", "--input", f"{name}.csv", "--output", name) == 0

    assert main(["monitor", "--batch", "like", "--out", "mon-like"]) == 0
    report = read_json(Path("mon-like/drift.json"))
    assert report["rows"] == 600 - len(BAD_ROWS) and report["errors"] == len(BAD_ROWS)
    assert report["drifted_features"] == [] and not report["prediction_drifted"]
    assert report["model_versions"] == [read_json(Path("like/summary.json"))["model"]["version"]]

    assert main(["monitor", "--batch", "shifted", "--out", "mon-shifted"]) == 1
    assert read_json(Path("mon-shifted/drift.json"))["drifted_features"] == ["credit_amount"]

    # an output scored with only some key columns cannot be compared: said, not guessed
    assert predict("--model", "candidate", "--input", "like.csv", "--output", "ids",
                   "--keys", "age") == 0  # fmt: skip
    capsys.readouterr()
    assert main(["monitor", "--batch", "ids", "--out", "mon-ids"]) == 2
    err = capsys.readouterr().err
    assert "lacks column(s) ['sex'" in err and "Traceback" not in err
