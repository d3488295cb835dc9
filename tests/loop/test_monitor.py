"""`mlgate monitor` on recorded traffic: quiet on training-like traffic, loud on a shift."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import pandas as pd
import pytest

from mlgate.serving.feedback import FeedbackSink
from tests.conftest import run

pytestmark = pytest.mark.slow  # needs the trained repo


def record_traffic(repo: Path, folder: Path, frame: pd.DataFrame, errors: int = 0) -> None:
    """Write feedback records as the service's sink does, scored by the trained model."""
    model = joblib.load(repo / "artifacts/model/model.joblib")
    scores = model.predict_proba(frame[model.feature_names_in_])[:, 1]
    sink = FeedbackSink("files", folder, flush_seconds=0.05)
    for i, (row, score) in enumerate(zip(frame.to_dict("records"), scores, strict=True)):
        # as the service records them: a missing value is null
        inputs = {
            k: None if pd.isna(v) else getattr(v, "item", lambda v=v: v)() for k, v in row.items()
        }
        sink.record(
            {
                "kind": "prediction",
                "request_id": f"r{i}",
                "inputs": inputs,
                "probability": float(score),
                "decision": int(score >= 0.5),
                "model_version": "1",
            }
        )
    for _ in range(errors):
        sink.record({"kind": "error", "status": 400, "endpoint": "predict"})
    sink.close()


def traffic(repo: Path, n: int = 600, seed: int = 3) -> pd.DataFrame:
    train = pd.read_parquet(repo / "artifacts/data/train.parquet").drop(columns=["risk"])
    return train.sample(n, replace=True, random_state=seed).reset_index(drop=True)


def monitor(repo: Path, feedback: Path, out: Path) -> tuple[int, dict]:
    proc = run(
        ["mlgate", "monitor", "--feedback", str(feedback), "--out", str(out)], repo, check=False
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert (out / "summary.md").read_text().startswith("# Production monitoring")
    report = json.loads((out / "drift.json").read_text())
    if report["enough_data"]:  # one plot per feature, plus the predictions
        assert (out / "report.html").read_text().count("<img") == len(report["features"]) + 1
    return proc.returncode, report


def test_training_like_traffic_shows_no_drift(trained_repo: Path, tmp_path: Path) -> None:
    record_traffic(trained_repo, tmp_path / "fb", traffic(trained_repo), errors=3)
    # a shadow challenger's records and failures, and outcomes, are not the service's
    # predictions or rejections (docs/SERVING.md#champion-and-challenger)
    sink = FeedbackSink("files", tmp_path / "fb", flush_seconds=0.05)
    for record in (
        {"kind": "shadow", "variant": "challenger", "request_id": "r0", "probability": 0.4},
        {"kind": "error", "variant": "challenger", "shadow": True, "status": 500},
        {"kind": "error", "status": 400, "endpoint": "outcome"},
        {"kind": "outcome", "request_id": "r0", "row": 0, "outcome": 1, "source": "api"},
    ):
        sink.record({"schema": 1, "endpoint": "predict", **record})
    sink.close()
    code, report = monitor(trained_repo, tmp_path / "fb", tmp_path / "out")
    assert code == 0, report
    assert report["drifted_features"] == [] and not report["prediction_drifted"]
    assert report["rows"] == 600 and report["errors"] == 3
    # the model leans on the same columns as on its training rows
    leans = report["attribution"]
    assert leans["method"] == "exact-linear" and not leans["shifted"], leans
    assert leans["shift"] < 0.05, leans
    assert sum(after for _, after in leans["shares"].values()) == pytest.approx(1, abs=1e-3)


def test_a_model_leaning_on_another_column_is_reported_as_attribution_drift(
    trained_repo: Path, tmp_path: Path
) -> None:
    """Quadrupled loan durations: duration's share of the model's contributions grows far
    beyond its training share (its feature drift is reported too, separately)."""
    frame = traffic(trained_repo)
    frame["duration"] = frame["duration"] * 4
    record_traffic(trained_repo, tmp_path / "fb", frame)
    _, report = monitor(trained_repo, tmp_path / "fb", tmp_path / "out")
    leans = report["attribution"]
    assert leans["shifted"] and leans["shift"] > leans["max_shift"], leans
    before, after = leans["shares"]["duration"]
    assert after > 2 * before and next(iter(leans["shares"])) == "duration", leans
    summary = (tmp_path / "out/summary.md").read_text()
    assert "What the model leans on (exact-linear contributions): **shifted**" in summary


def test_doubled_credit_amounts_are_reported(trained_repo: Path, tmp_path: Path) -> None:
    frame = traffic(trained_repo)
    frame["credit_amount"] = (frame["credit_amount"] * 2).clip(upper=100_000)
    record_traffic(trained_repo, tmp_path / "fb", frame)
    code, report = monitor(trained_repo, tmp_path / "fb", tmp_path / "out")
    assert code == 1
    assert report["drifted_features"] == ["credit_amount"]
    assert "credit_amount" in (tmp_path / "out/summary.md").read_text().split("\n")[2]


def test_a_tripled_category_share_is_reported(trained_repo: Path, tmp_path: Path) -> None:
    frame = traffic(trained_repo)
    share = (frame["housing"] == "rent").mean()
    # move other applicants to "rent" until its share is three times the training share
    others = frame.index[frame["housing"] != "rent"]
    need = round(3 * share * len(frame)) - int((frame["housing"] == "rent").sum())
    frame.loc[others[:need], "housing"] = "rent"
    assert (frame["housing"] == "rent").mean() == pytest.approx(3 * share, abs=0.01)
    record_traffic(trained_repo, tmp_path / "fb", frame)
    code, report = monitor(trained_repo, tmp_path / "fb", tmp_path / "out")
    assert code == 1
    assert "housing" in report["drifted_features"]


def test_too_few_rows_gives_no_verdict(trained_repo: Path, tmp_path: Path) -> None:
    record_traffic(trained_repo, tmp_path / "fb", traffic(trained_repo, n=20))
    code, report = monitor(trained_repo, tmp_path / "fb", tmp_path / "out")
    assert code == 0 and report["enough_data"] is False


def test_a_high_error_rate_is_reported(trained_repo: Path, tmp_path: Path) -> None:
    record_traffic(trained_repo, tmp_path / "fb", traffic(trained_repo, n=200), errors=40)
    code, report = monitor(trained_repo, tmp_path / "fb", tmp_path / "out")
    assert code == 1 and report["error_rate_exceeded"]
