"""`mlgate outcomes import` by key: a team's outcomes come from its own systems, named by the
customer (a key of data.roles the service echoed and recorded), not by the request id the
service made up. Each key's outcome goes to the latest prediction that carried it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlgate.errors import MlgateError
from mlgate.loop.outcomes import import_outcomes
from tests.loop.test_compare import write_records
from tests.pipeline.test_roles import params


def prediction(ts: str, request_id: str, visit_id: Any, row: int = 0) -> dict[str, Any]:
    """A record as the service writes it for a two-class model (docs/SERVING.md)."""
    return {
        "schema": 1,
        "kind": "prediction",
        "ts": f"2026-12-0{ts}T10:00:00.000Z",
        "request_id": request_id,
        "row": row,
        "endpoint": "predict_batch",
        "model_version": "1",
        "inputs": {"visit_id": visit_id, "seen": None, "note": None, "amount": 3.0, "kind": "a"},
        "probability": 0.7,
        "decision": 1,
        "threshold": 0.5,
    }


@pytest.fixture
def feedback(tmp_path: Path) -> Path:
    """Visit 1001 scored twice (on the 1st and the 3rd), 1002 once, 1003 as a batch's second
    row, and a request that sent no key."""
    folder = tmp_path / "feedback"
    records = [
        prediction("1", "first", 1001),
        prediction("3", "again", 1001),
        prediction("2", "other", 1002),
        prediction("2", "batch", 1004),
        prediction("2", "batch", 1003, row=1),
        prediction("2", "anonymous", None),
    ]
    write_records(folder, records, "predictions-host-1-1-0001.jsonl")
    return folder


def outcomes(folder: Path, table: pd.DataFrame, name: str = "labels.csv") -> list[dict[str, Any]]:
    path = folder.parent / name
    table.to_csv(path, index=False) if name.endswith(".csv") else table.to_parquet(path)
    out = import_outcomes(params(), path, folder)
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_outcomes_named_by_key_attach_to_the_latest_prediction_of_each_key(
    feedback: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = pd.DataFrame({"visit_id": [1001, 1003, 1002], "outcome": [0, 1, 1]})
    written = outcomes(feedback, labels)
    assert [(r["request_id"], r["row"], r["outcome"]) for r in written] == [
        ("again", 0, 0),  # the later of visit 1001's two predictions
        ("batch", 1, 1),  # the batch row that carried 1003
        ("other", 0, 1),
    ]
    assert "joined by visit_id" in capsys.readouterr().out
    # a Parquet column with a gap holds the IDs as floats: still the same visits
    floats = pd.DataFrame({"visit_id": [1002.0, None], "outcome": [0, 1]}).iloc[:1]
    assert [r["request_id"] for r in outcomes(feedback, floats, "labels.parquet")] == ["other"]


def test_a_key_no_prediction_carried_is_refused_whole(feedback: Path) -> None:
    labels = pd.DataFrame(
        {"visit_id": ["1001", "9999", "", "1002", "1002"], "outcome": ["1", "0", "1", "0", "1"]}
    )
    with pytest.raises(MlgateError) as refused:
        outcomes(feedback, labels)
    message = str(refused.value)
    assert "labels.csv: 3 of 5 rows refused, nothing imported" in message
    assert "unknown key: 2 rows, e.g." in message
    assert "row 2, column visit_id: '9999'" in message
    assert "row 3, column visit_id: ''" in message  # a blank key names no prediction
    assert "conflicting duplicate: 1 rows" in message and "row 5, column outcome" in message
    assert not list(feedback.glob("outcomes-import-*"))


def test_a_file_naming_neither_a_request_nor_a_key_says_what_it_needs(feedback: Path) -> None:
    with pytest.raises(MlgateError, match=r"expected request_id \(or the key column\(s\) "):
        outcomes(feedback, pd.DataFrame({"customer": [1001], "outcome": [1]}))
