"""Hostile and malformed traffic against the real `bentoml serve`: every answer a 4xx with a
reason, body limits that hold for chunked uploads, rejections logged once without values."""

from __future__ import annotations

import http.client
import json
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from mlgate.serving.feedback import read_records
from tests.serving.conftest import Server
from tests.serving.test_service import GOOD, metric

pytestmark = pytest.mark.slow

BODY = json.dumps({"applicant": GOOD}).encode()


def post(
    server: Server, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, Any, dict[str, str]]:
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode()
        got = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    try:
        return resp.status, json.loads(text), got
    except json.JSONDecodeError:
        return resp.status, text, got


@pytest.mark.parametrize("path", ["/predict", "/predict_batch", "/explain", "/explain_batch"])
@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data; boundary=xyz",
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        None,
    ],
)
def test_a_body_that_is_not_json_gets_415(
    server: Server, path: str, content_type: str | None
) -> None:
    body = BODY
    if content_type and content_type.startswith("multipart"):
        body = b'--xyz\r\nContent-Disposition: form-data; name="applicant"\r\n\r\n{}\r\n--xyz--\r\n'
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, answer, _ = post(server, path, body, headers)
    assert status == 415, answer
    assert "application/json" in answer["detail"][0]["msg"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_a_compressed_body_is_refused_not_scored(server: Server, encoding: str) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    status, answer, _ = post(server, "/predict", BODY, headers)
    assert status == 415, answer
    assert encoding in answer["detail"][0]["msg"] and "identity" in answer["detail"][0]["msg"]
    # identity is no encoding at all, and a charset parameter is still JSON
    headers = {"Content-Type": "application/json; charset=utf-8", "Content-Encoding": "identity"}
    assert post(server, "/predict", BODY, headers)[0] == 200


def test_a_chunked_oversized_body_is_refused_at_the_limit(server: Server) -> None:
    url = urlsplit(server.url)
    chunk = b"x" * 65536
    sent = 0
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        opening = b'{"applicant": "'
        sock.sendall(b"%x\r\n%s\r\n" % (len(opening), opening))
        # 1.25 MB of a 1 MB limit, and the body never ends: an answer proves the server
        # stopped reading at the limit instead of waiting for (and buffering) the whole body
        while sent < 1_310_720:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # and the service goes on answering
    assert server.call("/predict", {"applicant": GOOD})[0] == 200


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/predict", {"applicant": {**GOOD, "age": {"years": 35}}}, ["applicant", "age"]),
        ("/predict", {"applicant": {**GOOD, "purpose": ["car"]}}, ["applicant", "purpose"]),
        (
            "/predict_batch",
            {"applicants": [GOOD, GOOD, {**GOOD, "duration": [[24]]}]},
            ["applicants", 2, "duration"],
        ),
    ],
    ids=["object for an integer", "list for a category", "nested list in a batch row"],
)
def test_a_bad_nested_value_gets_400_with_its_field_path(
    server: Server, path: str, body: Any, loc: list[Any]
) -> None:
    status, answer = server.call(path, body)
    assert status == 400, answer
    assert [d["loc"] for d in answer["detail"]] == [loc], answer


def test_every_response_carries_a_request_id_and_every_error_record_too(server: Server) -> None:
    mine = f"client-{uuid.uuid4().hex}"
    headers = {"Content-Type": "application/json", "X-Request-Id": mine}
    status, answer, got = post(server, "/predict", BODY, headers)
    assert status == 200 and answer["request_id"] == mine and got["x-request-id"] == mine

    ids = []
    for body, ctype in [(b"{", "application/json"), (BODY, "text/plain")]:
        status, _, got = post(server, "/predict", body, {"Content-Type": ctype})
        assert status in (400, 415)
        ids.append(got["x-request-id"])
    assert len(set(ids)) == 2 and all(ids)

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        records = {r.get("request_id"): r for r in read_records(server.feedback)}
        if mine in records and all(i in records for i in ids):
            break
        time.sleep(0.2)
    assert records[mine]["kind"] == "prediction"
    assert [records[i]["status"] for i in ids] == [400, 415]
    assert all(records[i]["kind"] == "error" for i in ids)


def test_rejections_are_logged_once_without_values_and_counted(server: Server) -> None:
    secret = f"yacht-{uuid.uuid4().hex}"  # a value no log line may show
    _, before = server.call("/metrics")
    status, _, got = post(
        server,
        "/predict",
        json.dumps({"applicant": {**GOOD, "purpose": secret, "age": 300}}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 400
    request_id = got["x-request-id"]
    status, _, _ = post(server, "/predict_batch", secret.encode(), {"Content-Type": "text/plain"})
    assert status == 415
    _, after = server.call("/metrics")

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("mlgate_rejected_requests_total", endpoint="predict", status="400") == 1
    assert delta("mlgate_rejected_requests_total", endpoint="predict_batch", status="415") == 1
    # a full feedback queue is counted too (zero here: the writer keeps up)
    assert "mlgate_feedback_dropped_records_total" in after

    deadline = time.monotonic() + 5
    while request_id not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = server.log.read_text()
    assert secret not in log
    lines = [line for line in log.splitlines() if request_id in line]
    assert len(lines) == 1, lines
    assert "WARNING" in lines[0] or "rejected" in lines[0]
    assert "applicant.purpose" in lines[0] and "applicant.age" in lines[0]
    assert "Traceback" not in log


def test_a_get_on_a_prediction_route_is_405_not_a_media_type_error(server: Server) -> None:
    assert server.status("/predict") == 405
