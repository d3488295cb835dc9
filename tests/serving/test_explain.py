"""Reason codes over HTTP, from the example's bento under the real `bentoml serve`: /explain and
/explain_batch answer /predict's prediction with the contributions mlgate.pipeline.explain
computes in process (additive to the raw score), the top serving.explain.top_k of them as
reasons, and the reasons in the records (bad bodies: test_service.py, refused as /predict's)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from mlgate.config import load_params
from mlgate.pipeline import explain
from mlgate.serving.feedback import read_records
from tests.serving.conftest import Server
from tests.serving.test_service import GOOD

pytestmark = pytest.mark.slow


def in_process(repo: Path) -> tuple[list[dict[str, Any]], list[str], np.ndarray, np.ndarray]:
    """The test split's rows, and what mlgate.pipeline.explain says of them in this process:
    the columns, base values and contributions."""
    model = joblib.load(repo / "artifacts/model/model.joblib")
    columns = list(model.feature_names_in_)
    test = pd.read_parquet(repo / "artifacts/data/test.parquet").drop(columns=["risk"])
    train = pd.read_parquet(repo / "artifacts/data/train.parquet")[columns]
    found = explain.contributions(model, test[columns], train)
    assert found is not None
    method, base, names, contributions = found
    assert method == "exact-linear"
    return test.to_dict("records"), names, base, contributions


def test_explained_answers_add_up_to_the_in_process_contributions(
    server: Server, trained_repo: Path
) -> None:
    rows, names, base, expected = in_process(trained_repo)
    top_k = load_params(trained_repo / "params.yaml").serving.explain.top_k
    status, body = server.call("/explain_batch", {"applicants": rows})
    assert status == 200, body
    status, plain = server.call("/predict_batch", {"applicants": rows})
    assert status == 200
    assert set(body) == {"predictions", "model_version", "request_id"}
    for i, (answer, predicted) in enumerate(
        zip(body["predictions"], plain["predictions"], strict=True)
    ):
        # the prediction is /predict's
        assert {k: answer[k] for k in predicted} == predicted
        whole = answer["attribution"]
        assert (whole["method"], whole["scale"]) == ("exact-linear", "log-odds")
        got = np.array([whole["contributions"][c] for c in names])
        assert list(whole["contributions"]) == names  # the contract's columns
        assert np.max(np.abs(got - expected[i])) <= 1e-6
        assert abs(whole["base_value"] - base[i]) <= 1e-6
        assert abs(whole["base_value"] + got.sum() - whole["raw_score"]) <= 1e-6
        assert 1 / (1 + np.exp(-whole["raw_score"])) == pytest.approx(
            answer["probability"], abs=1e-9
        )
        reasons = answer["reasons"]
        assert len(reasons) == top_k
        assert [r["column"] for r in reasons] == [
            names[j] for j in np.argsort(-np.abs(expected[i]), kind="stable")[:top_k]
        ]
        for reason in reasons:
            assert reason["value"] == rows[i][reason["column"]]
            assert reason["contribution"] == whole["contributions"][reason["column"]]
    # one row: the same numbers as in the batch
    for i in (0, 7, 42):
        status, one = server.call("/explain", {"applicant": rows[i]})
        assert status == 200, one
        assert one["model_version"] == "1" and one["request_id"]
        assert one["reasons"] == body["predictions"][i]["reasons"]
        assert one["attribution"] == body["predictions"][i]["attribution"]
    status, info = server.call("/model_info")
    assert info["explain"] == {"method": "exact-linear", "scale": "log-odds"}


def test_a_worse_checking_account_is_a_reason_against(server: Server) -> None:
    """Directional: moving one column to a worse value moves that column's contribution
    down and no other's."""
    status, good = server.call("/explain", {"applicant": {**GOOD, "checking_account": "rich"}})
    assert status == 200
    status, worse = server.call("/explain", {"applicant": {**GOOD, "checking_account": "little"}})
    assert status == 200
    before, after = good["attribution"]["contributions"], worse["attribution"]["contributions"]
    moved = {c for c in before if before[c] != after[c]}
    assert moved == {"checking_account"} and after["checking_account"] < before["checking_account"]
    assert worse["probability"] < good["probability"]


def test_records_keep_the_reasons_without_values(server: Server) -> None:
    marker = 4321  # a credit amount no other test sends
    status, answer = server.call("/explain", {"applicant": {**GOOD, "credit_amount": marker}})
    assert status == 200
    deadline = time.monotonic() + 60  # flushed every second or so
    while time.monotonic() < deadline:
        mine = [
            r for r in read_records(server.feedback) if r.get("request_id") == answer["request_id"]
        ]
        if mine:
            break
        time.sleep(0.2)
    (record,) = mine
    assert record["kind"] == "prediction" and record["endpoint"] == "explain"
    assert record["probability"] == answer["probability"]
    assert record["reasons"] == [
        {"column": r["column"], "contribution": r["contribution"]} for r in answer["reasons"]
    ]
    assert "attribution" not in record
    # the value sent is in the record once: its inputs
    assert record["inputs"]["credit_amount"] == marker
    assert all(set(r) == {"column", "contribution"} for r in record["reasons"])
