"""The served OpenAPI document shows the request contract: the field names from params
(serving.request_field; the example keeps `applicant`) and the row's schema."""

from __future__ import annotations

from typing import Any

import pytest

from tests.serving.conftest import Server

pytestmark = pytest.mark.slow


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


@pytest.mark.parametrize(
    ("path", "field"), [("/predict", "applicant"), ("/predict_batch", "applicants")]
)
def test_openapi_shows_the_request_field_and_the_row(server: Server, path: str, field: str) -> None:
    status, doc = server.call("/docs.json")
    assert status == 200
    body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    body = resolve(doc, body)
    assert body["required"] == [field]
    assert set(body["properties"]) == {field}
    row = resolve(doc, body["properties"][field])
    if path == "/predict_batch":
        assert row["type"] == "array" and row["maxItems"] == 1000
        row = resolve(doc, row["items"])
    assert {"age", "purpose", "credit_amount"} <= set(row["properties"])
    assert "car" in row["properties"]["purpose"]["enum"]
