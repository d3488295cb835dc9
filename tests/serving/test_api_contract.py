"""The served OpenAPI document shows the request contract: the field names from params
(serving.request_field; the example keeps `applicant`) and the row's schema."""

from __future__ import annotations

from typing import Any

import pytest

from tests.serving.conftest import Server
from tests.serving.test_service import GOOD

pytestmark = pytest.mark.slow


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/predict", "applicant"),
        ("/predict_batch", "applicants"),
        ("/explain", "applicant"),
        ("/explain_batch", "applicants"),
    ],
)
def test_openapi_shows_the_request_field_and_the_row(server: Server, path: str, field: str) -> None:
    status, doc = server.call("/docs.json")
    assert status == 200
    body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    body = resolve(doc, body)
    assert body["required"] == [field]
    assert set(body["properties"]) == {field}
    row = resolve(doc, body["properties"][field])
    if path.endswith("_batch"):
        assert row["type"] == "array" and row["maxItems"] == 1000
        row = resolve(doc, row["items"])
    assert {"age", "purpose", "credit_amount"} <= set(row["properties"])
    assert "car" in row["properties"]["purpose"]["enum"]


def test_openapi_shows_the_explained_answer_and_the_refusal(server: Server) -> None:
    """/explain's answer: the prediction with its reasons (at most serving.explain.top_k) and
    attribution, validated against a served answer; 501 declared for a model without one."""
    import jsonschema

    status, doc = server.call("/docs.json")
    assert status == 200
    for path, body in (
        ("/explain", {"applicant": GOOD}),
        ("/explain_batch", {"applicants": [GOOD, GOOD]}),
    ):
        responses = doc["paths"][path]["post"]["responses"]
        assert "501" in responses and "501" not in doc["paths"]["/predict"]["post"]["responses"]
        schema = responses["200"]["content"]["application/json"]["schema"]
        status, answer = server.call(path, body)
        assert status == 200, answer
        jsonschema.validate(answer, schema)
        one = schema["properties"]["predictions"]["items"] if path.endswith("batch") else schema
        assert {"reasons", "attribution", "probability"} <= set(one["required"])
        assert one["properties"]["reasons"]["maxItems"] == 4
        with pytest.raises(jsonschema.ValidationError):  # a reason names its column
            row = answer["predictions"][0] if path.endswith("batch") else answer
            jsonschema.validate({**row, "reasons": [{"contribution": 1.0, "value": 1}]}, one)
