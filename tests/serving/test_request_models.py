"""The request bodies take their field names from params (serving.request_field)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from mlgate.config import Serving
from mlgate.serving.contract import Contract, request_models, row_model_name

SPEC: dict[str, Any] = {
    "schema": "Passenger",
    "strict": True,
    "columns": [
        {"name": "age", "kind": "int", "constraints": {"ge": 0}, "allowed": None,
         "nullable": False, "description": "years"},
        {"name": "cabin", "kind": "str", "constraints": {}, "allowed": ["A", "B"],
         "nullable": False, "description": None},
    ],
    "residual_checks": [],
}  # fmt: skip


def models(serving: Serving) -> tuple[Any, Any]:
    row = Contract(SPEC, row_model_name(serving.request_field)).row_model
    return request_models(
        row, serving.request_field, serving.batch_request_field, serving.max_batch_rows
    )


def test_the_field_names_come_from_params() -> None:
    one, batch = models(Serving(request_field="passenger", max_batch_rows=2))
    got = one.model_validate({"passenger": {"age": 30, "cabin": "A"}})
    assert got.row.age == 30  # the service reads .row whatever the JSON name
    assert len(batch.model_validate({"passengers": [{"age": 1, "cabin": "B"}]}).rows) == 1

    with pytest.raises(ValidationError) as err:
        one.model_validate({"applicant": {"age": 30, "cabin": "A"}})
    assert {tuple(e["loc"]) for e in err.value.errors()} == {("passenger",), ("applicant",)}
    with pytest.raises(ValidationError) as err:
        batch.model_validate({"passengers": [{"age": 1, "cabin": "B"}, {"age": -1, "cabin": "B"}]})
    assert [e["loc"] for e in err.value.errors()] == [("passengers", 1, "age")]
    with pytest.raises(ValidationError, match="at most 2"):
        batch.model_validate({"passengers": [{"age": 1, "cabin": "B"}] * 3})


def test_the_openapi_schema_shows_the_contract() -> None:
    one, batch = models(Serving(request_field="record", batch_field="rows_to_score"))
    schema = one.model_json_schema()
    assert schema["required"] == ["record"]
    assert schema["$defs"]["Record"]["properties"]["cabin"]["enum"] == ["A", "B"]
    assert batch.model_json_schema()["required"] == ["rows_to_score"]


def test_a_request_field_must_be_a_json_name_a_client_can_type() -> None:
    with pytest.raises(ValidationError):
        Serving(request_field="the row")
    assert Serving().request_field == "record" and Serving().batch_request_field == "records"


def test_the_example_row_is_one_the_contract_accepts() -> None:
    """The OpenAPI document's example is made from the bounds: inside strict ones too."""

    def column(name: str, kind: str, **constraints: Any) -> dict[str, Any]:
        return {"name": name, "kind": kind, "constraints": constraints, "allowed": None,
                "nullable": False, "description": None}  # fmt: skip

    spec = {
        **SPEC,
        "columns": [
            *SPEC["columns"],
            column("share", "float", gt=0, lt=1),
            column("deck", "int", gt=0, le=1),
            column("floor", "int", lt=-3),
            column("score", "float"),
            column("name", "str"),
            column("member", "bool"),
        ],
    }
    contract = Contract(spec)
    example = contract.example_row()
    assert example["cabin"] == "A" and example["deck"] == 1 and example["floor"] == -4
    assert contract.row_model.model_validate(example).model_dump() == example
