"""The request contract is derived from the pipeline's pandera schema, and follows its changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mlgate.config import Params, load_params
from mlgate.pipeline.data import input_schema
from mlgate.serving.contract import Contract, contract_spec
from tests.conftest import ROOT

ROW = {
    "sex": "male",
    "job": 1,
    "housing": "rent",
    "saving_accounts": "rich",
    "checking_account": "little",
    "credit_amount": 50_000,
    "duration": 12,
    "purpose": "education",
    "age": 30,
}


def contract_for(params: Params) -> Contract:
    """The path to the service: `mlgate build` stores the spec as JSON, the service reads it."""
    return Contract(json.loads(json.dumps(contract_spec(input_schema(params)))))


def errors(contract: Contract, row: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    try:
        contract.row_model(**row)
    except ValidationError as err:
        return [(e["loc"], e["type"]) for e in err.errors()]
    return []


def test_contract_matches_the_schema_columns_and_checks() -> None:
    contract = contract_for(load_params(ROOT / "params.yaml"))
    schema = contract.row_model.model_json_schema()
    assert set(schema["properties"]) == set(input_schema(load_params(ROOT / "params.yaml")).columns)
    assert "risk" not in schema["properties"]  # the target is not an input
    assert schema["properties"]["age"]["minimum"] == 18
    assert schema["properties"]["age"]["maximum"] == 100
    assert "education" in schema["properties"]["purpose"]["enum"]
    assert schema["additionalProperties"] is False  # strict schema => extra fields refused
    assert contract.residual_checks == []
    assert errors(contract, ROW) == []


def test_a_schema_change_changes_what_the_service_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Edit only the pandera schema module: the derived contract follows, no other edit."""
    source = (ROOT / "src/credit_risk/schema.py").read_text()
    changed = source.replace("le=100_000", "le=20_000").replace(
        '"vacation/others",', '"vacation/others",\n    "yacht",'
    )
    assert changed != source
    (tmp_path / "credit_risk_changed.py").write_text(changed)
    monkeypatch.syspath_prepend(str(tmp_path))
    params = load_params(ROOT / "params.yaml")
    raw = params.model_dump(mode="json", by_alias=True)
    raw["data"]["schema"] = "credit_risk_changed:LabelledCreditApplication"
    changed_params = Params.model_validate(raw)

    before, after = contract_for(params), contract_for(changed_params)
    assert errors(before, ROW) == []
    assert errors(after, ROW) == [(("credit_amount",), "less_than_equal")]
    yacht = {**ROW, "credit_amount": 1000, "purpose": "yacht"}
    assert errors(before, yacht) == [(("purpose",), "literal_error")]
    assert errors(after, yacht) == []


def test_checks_pydantic_cannot_express_are_kept_for_pandera() -> None:
    import pandera.pandas as pa

    schema = pa.DataFrameSchema(
        {"name": pa.Column(str, pa.Check.str_matches(r"^[a-z]+$")), "n": pa.Column(int)},
        strict=True,
    )
    contract = Contract.from_schema(schema)
    assert contract.needs_pandera
    assert contract.residual_checks == ["name: str_matches"]


def test_nullable_column_accepts_null_and_float_refuses_nan() -> None:
    import pandera.pandas as pa

    schema = pa.DataFrameSchema(
        {"x": pa.Column(float, pa.Check.ge(0), nullable=True), "y": pa.Column(float)}
    )
    model = Contract.from_schema(schema).row_model
    assert model(x=None, y=1.5).x is None
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValidationError, match="finite"):
            model(x=1.0, y=bad)
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        model(x=-1.0, y=1.0)
