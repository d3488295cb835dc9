"""The built bento under a real `bentoml serve`: predictions, contract, health, metrics, sink."""

from __future__ import annotations

import http.client
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import joblib
import numpy as np
import pandas as pd
import pytest

from mlgate.serving.feedback import read_records
from tests.serving.conftest import Endpoint, Server

pytestmark = pytest.mark.slow

GOOD = {
    "sex": "female",
    "job": 2,
    "housing": "own",
    "saving_accounts": "little",
    "checking_account": "moderate",
    "credit_amount": 2500,
    "duration": 24,
    "purpose": "car",
    "age": 35,
}


def with_(**changes: Any) -> dict[str, Any]:
    row = {**GOOD, **changes}
    return {k: v for k, v in row.items() if v is not DROP}


DROP = object()


def test_service_is_not_ready_until_the_model_is_loaded(server: Server) -> None:
    # While the loader thread works the process is alive (/livez 200) but not ready (503).
    assert (200, 503) in server.startup, server.startup
    assert server.status("/readyz") == 200


def test_the_bento_scores_with_onnx_runtime(server: Server) -> None:
    status, info = server.call("/model_info")
    assert status == 200 and info["scorer"] == "onnx"


def served_test_split(
    server: Endpoint, repo: Path
) -> tuple[list[dict[str, Any]], np.ndarray, dict[str, Any]]:
    """The repo's test split through /predict_batch: its rows, the probabilities the
    repo's model gives them in this process, and the answer's body."""
    model = joblib.load(repo / "artifacts/model/model.joblib")
    test = pd.read_parquet(repo / "artifacts/data/test.parquet")
    rows = test.drop(columns=["risk"]).to_dict("records")
    expected = model.predict_proba(test[model.feature_names_in_])[:, 1]
    status, body = server.call("/predict_batch", {"applicants": rows})
    assert status == 200, body
    return rows, expected, body


def test_predictions_equal_the_in_process_model(server: Server, trained_repo: Path) -> None:
    rows, expected, body = served_test_split(server, trained_repo)
    served = np.array([p["probability"] for p in body["predictions"]])
    assert np.allclose(served, expected, rtol=1e-9, atol=1e-12)
    assert [p["decision"] for p in body["predictions"]] == [int(p >= 0.5) for p in expected]
    assert body["model_version"] == "1" and body["request_id"]

    for i in (0, 7, 42):
        status, one = server.call("/predict", {"applicant": rows[i]})
        assert status == 200, one
        assert one["probability"] == pytest.approx(expected[i], rel=1e-9)
        assert one["decision"] == int(expected[i] >= 0.5)
        assert one["model_version"] == "1" and re.fullmatch(r"[0-9a-f]{32}", one["request_id"])


BAD_REQUESTS = {
    "wrong type": ({"applicant": with_(age="thirty")}, ["applicant", "age"], "integer"),
    "float for an integer": ({"applicant": with_(duration=12.5)}, ["applicant", "duration"], ""),
    "boolean for an integer": ({"applicant": with_(job=True)}, ["applicant", "job"], "integer"),
    "missing field": ({"applicant": with_(housing=DROP)}, ["applicant", "housing"], "required"),
    "extra field": ({"applicant": with_(income=1)}, ["applicant", "income"], "not permitted"),
    "extra top-level key": ({"applicant": GOOD, "debug": 1}, ["debug"], "not permitted"),
    "out of range": (
        {"applicant": with_(credit_amount=0)},
        ["applicant", "credit_amount"],
        "greater than or equal to 1",
    ),
    "unknown category": ({"applicant": with_(purpose="yacht")}, ["applicant", "purpose"], "car"),
    "null": ({"applicant": with_(age=None)}, ["applicant", "age"], "integer"),
    "empty batch": ({"applicants": []}, ["applicants"], "at least 1"),
    "bad row in a batch": (
        {"applicants": [GOOD, with_(age=300)]},
        ["applicants", 1, "age"],
        "less than or equal to 100",
    ),
    "not an object": ([GOOD], [], "object"),
}


@pytest.mark.parametrize("route", ["/predict", "/explain"])  # /explain: the same bodies
@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_4xx_with_field_and_reason(server: Server, case: str, route: str) -> None:
    body, loc, reason = BAD_REQUESTS[case]
    path = f"{route}_batch" if isinstance(body, dict) and "applicants" in body else route
    status, answer = server.call(path, body)
    assert 400 <= status < 500, answer
    detail = answer["detail"]
    assert any(d["loc"] == loc and reason in d["msg"] for d in detail), detail


@pytest.mark.parametrize(
    "raw",
    [
        b'{"applicant": {"sex": "female",',  # malformed JSON
        b'{"applicant": ' + str(GOOD).replace("'", '"').replace("35", "NaN").encode() + b"}",
        b'{"applicant": ' + str(GOOD).replace("'", '"').replace("35", "Infinity").encode() + b"}",
        b"",
    ],
    ids=["malformed JSON", "NaN", "Infinity", "empty body"],
)
def test_unparseable_or_non_finite_body_gets_4xx(server: Server, raw: bytes) -> None:
    status, answer = server.call("/predict", raw=raw)
    assert 400 <= status < 500, answer
    assert answer["detail"][0]["msg"]


def test_oversized_batch_is_refused(server: Server, trained_repo: Path) -> None:
    status, answer = server.call("/predict_batch", {"applicants": [GOOD] * 1001})
    assert status == 400
    # answered by the service's lean route, which names the request model as it is declared
    # (BentoML's router would say PredictBatchRequestIODescriptor)
    assert answer["error"] == "1 validation error for PredictBatchRequest", answer
    assert answer["detail"][0]["loc"] == ["applicants"]
    assert "at most 1000" in answer["detail"][0]["msg"]


def test_oversized_body_is_refused_before_it_is_read(server: Server) -> None:
    # The client announces 2 MB and, as curl does for large bodies, waits for the server
    # (Expect: 100-continue) before sending it. The 413 must come without one byte of body
    # sent: "refused before it is read" is then what is tested, on any load.
    conn = http.client.HTTPConnection(urlsplit(server.url).netloc, timeout=30)
    try:
        conn.putrequest("POST", "/predict")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", "2000000")
        conn.putheader("Expect", "100-continue")
        conn.endheaders()
        resp = conn.getresponse()  # a "100 Continue" here would wait for the body: timeout
        status, answer = resp.status, json.loads(resp.read())
    finally:
        conn.close()
    assert status == 413
    assert "at most 1048576" in answer["detail"][0]["msg"]
    assert server.call("/predict", {"applicant": GOOD})[0] == 200


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_predictions_and_rejections(server: Server) -> None:
    _, before = server.call("/metrics")
    for _ in range(3):
        assert server.call("/predict", {"applicant": GOOD})[0] == 200
    assert server.call("/predict", {"applicant": with_(age=5)})[0] == 400
    assert server.call("/predict_batch", {"applicants": [GOOD, GOOD]})[0] == 200
    _, after = server.call("/metrics")

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("mlgate_predictions_total") == 5
    assert delta("mlgate_rejected_requests_total", endpoint="predict", status="400") == 1
    # BentoML's own request metrics are there too
    assert (
        delta("bentoml_service_request_total", endpoint="/predict", http_response_code="200") == 3
    )


def test_feedback_sink_holds_one_record_per_prediction(server: Server) -> None:
    marker = "feedback-test-0001"
    status, body = server.call("/predict_batch", {"applicants": [GOOD, with_(age=61)]})
    assert status == 200
    ids = {body["request_id"]}
    for _ in range(2):
        status, one = server.call("/predict", {"applicant": with_(credit_amount=1234)})
        ids.add(one["request_id"])
    # an unknown field named after the marker: the error record quotes its path
    assert server.call("/predict", {"applicant": {**GOOD, marker: 1}})[0] == 400

    deadline = time.monotonic() + 60  # flushed every few seconds; generous on a busy machine
    while time.monotonic() < deadline:
        records = read_records(server.feedback)
        mine = [r for r in records if r.get("request_id") in ids]
        errors = [r for r in records if r["kind"] == "error" and marker in r["error"]]
        if len(mine) >= 4 and errors:
            break
        time.sleep(0.2)
    assert len(mine) == 4  # 2 batch rows + 2 single rows, one record each
    batch = sorted((r for r in mine if r["endpoint"] == "predict_batch"), key=lambda r: r["row"])
    assert [r["inputs"]["age"] for r in batch] == [35, 61]
    for r in mine:
        assert r["model_version"] == "1"
        assert set(r) >= {"ts", "inputs", "probability", "decision", "latency_ms", "request_id"}
        assert 0 <= r["probability"] <= 1
    assert len(errors) == 1 and errors[0]["status"] == 400


def test_still_healthy_after_bad_requests(server: Server) -> None:
    for case in BAD_REQUESTS.values():
        server.call("/predict", case[0])
    server.call("/predict", raw=b"{{{")
    assert server.status("/livez") == 200
    assert server.status("/readyz") == 200
    assert server.call("/predict", {"applicant": GOOD})[0] == 200
    assert server.proc.poll() is None


def test_bento_carries_lineage_and_only_serving_packages(bento: tuple[str, Path]) -> None:
    import yaml

    tag, home = bento
    name, version = tag.split(":")
    with (home / "bentos" / name / version / "bento.yaml").open() as fh:
        info = yaml.safe_load(fh)
    assert info["labels"]["model_version"] == "1" and info["labels"]["gate_passed"] == "true"
    assert re.fullmatch(r"[0-9a-f]{40}", info["labels"]["git_commit"])
    packages = (home / "bentos" / name / version / "env/python/requirements.txt").read_text()
    needed_packages = ("bentoml", "scikit-learn", "pandera", "numpy", "uvloop", "httptools")
    for needed in (f"{package}==" for package in needed_packages):
        assert needed in packages
    for unwanted in ("dvc", "mlflow", "pytest", "ruff"):
        assert unwanted not in packages.lower()


def test_the_worker_runs_on_uvloop_and_httptools(server: Server) -> None:
    """uvicorn under `bentoml serve` takes the C event loop and HTTP parser when they are
    installed (docs/SERVING.md#speed): their compiled modules are mapped in the worker that
    answers, which h11 and asyncio alone would not be."""
    assert server.call("/predict", {"applicant": GOOD})[0] == 200
    workers, mapped = server.mapped_files(workers_only=True)
    assert workers, "bentoml serve started no worker"
    for package in ("/uvloop/", "/httptools/"):
        assert any(package in path for path in mapped), f"no {package} module in the worker"


def test_model_info_carries_the_lineage(server: Server) -> None:
    status, info = server.call("/model_info")  # a GET, as the README lists it
    assert status == 200, info
    assert server.call("/model_info", {}) == (200, info)  # and POST {}, as BentoML's APIs are
    assert info["model_version"] == "1"
    assert re.fullmatch(r"[0-9a-f]{40}", info["lineage"]["git_commit"])
    assert info["lineage"]["data_hash"] and info["lineage"]["gate_passed"] == "true"
