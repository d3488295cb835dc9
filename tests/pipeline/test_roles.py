"""Column roles (data.roles): a key is kept and echoed but never learned from, a timestamp is
checked as a date/time and orders `split.by: time`; params refuse a role that is also a feature."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
import yaml
from pandera.typing import Series
from pydantic import ValidationError

from mlgate.config import Params, parse_params
from mlgate.errors import DataValidationError, MlgateError
from mlgate.loop.chunks import output_keys
from mlgate.pipeline import data
from mlgate.pipeline.stages import split
from mlgate.serving.contract import Contract, contract_spec
from tests.conftest import ROOT

RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


class Visit(pa.DataFrameModel):
    """A row with an identifier, a date and free text beside two features."""

    visit_id: Series[int] | None = pa.Field(nullable=True)
    seen: Series[str] | None = pa.Field(nullable=True)
    note: Series[str] | None = pa.Field(nullable=True)
    amount: Series[float] = pa.Field(ge=0)
    kind: Series[str] = pa.Field(isin=["a", "b"])

    class Config:
        strict = True
        coerce = True


class LabelledVisit(Visit):
    label: Series[int] = pa.Field(isin=[0, 1])


def params(**split: Any) -> Params:
    raw = copy.deepcopy(RAW)
    raw["data"].update(
        schema="tests.pipeline.test_roles:LabelledVisit",
        target="label",
        roles={"visit_id": "key", "seen": "timestamp", "note": "text"},
        contract={"min_rows": 10, "min_rows_per_class": 2, "max_duplicate_share": 0.5},
    )
    raw["features"] = {"numeric": ["amount"], "categorical": ["kind"]}
    raw["evaluate"]["sensitive"] = {}
    raw["gate"]["max_fairness_gap"] = {}
    raw["split"].update(split)
    return parse_params(raw)


def visits(n: int = 40) -> pd.DataFrame:
    """Rows in no time order: the dates are shuffled against the file's order."""
    rng = np.random.default_rng(0)
    days = rng.permutation(n)
    return pd.DataFrame(
        {
            "visit_id": np.arange(1000, 1000 + n),
            "seen": [f"2024-{1 + d // 28:02d}-{1 + d % 28:02d}T10:00:00" for d in days],
            "note": [f"note {i}" for i in range(n)],
            "amount": rng.uniform(0, 100, n).round(2),
            "kind": ["a", "b"] * (n // 2),
            "label": [0, 1, 1, 0] * (n // 4),
        }
    )


def test_a_timestamp_that_is_not_a_date_is_refused_with_column_check_and_rows() -> None:
    frame = visits()
    frame.loc[[3, 7], "seen"] = "not a date"
    p = params()
    with pytest.raises(DataValidationError) as err:
        data.validate(frame, data.contract_schema(p), "visits.csv", data.dataset_rules(p))
    assert "column 'seen' fails iso8601_datetime: 2 row(s); values: 'not a date'" in str(err.value)


def test_the_next_export_with_new_ids_and_a_missing_date_validates() -> None:
    p = params()
    frame = visits().assign(visit_id=lambda f: f["visit_id"] + 10**6)
    frame.loc[0, "seen"] = None
    assert len(data.validate(frame, data.contract_schema(p), "next.csv")) == len(frame)


def test_a_role_for_a_column_the_schema_lacks_is_refused() -> None:
    raw = copy.deepcopy(params().model_dump(by_alias=True, mode="json"))
    raw["data"]["roles"] = {"visited": "timestamp"}
    with pytest.raises(MlgateError, match=r"data.roles names \['visited'\], which are not columns"):
        data.load_schema(parse_params(raw))


def test_split_by_time_tests_on_the_latest_rows() -> None:
    frame = visits()
    train, test = split.split_frame(frame, params(by="time", test_size=0.25))
    assert (len(train), len(test)) == (30, 10)
    assert pd.to_datetime(train["seen"]).max() < pd.to_datetime(test["seen"]).min()
    latest = frame.sort_values("seen")["visit_id"].tail(10)
    assert sorted(test["visit_id"]) == sorted(latest)
    # the default is still the seeded random split: some of the latest rows train
    train, test = split.split_frame(frame, params())
    assert pd.to_datetime(train["seen"]).max() > pd.to_datetime(test["seen"]).min()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"split": {"by": "time"}, "roles": {}}, "split.by: time needs one timestamp column"),
        ({"roles": {"amount": "key"}}, "'amount' is a key (data.roles) and listed as a feature"),
        ({"roles": {"label": "key"}}, "the target 'label' cannot be a key"),
        ({"roles": {"seen": "date"}}, "data.roles.seen"),
    ],
)
def test_params_refuse_roles_that_contradict(change: dict[str, Any], message: str) -> None:
    raw = params().model_dump(by_alias=True, mode="json")
    raw["split"].update(change.get("split", {}))
    raw["data"]["roles"] = change["roles"]
    with pytest.raises(MlgateError, match=re.escape(message)):
        parse_params(raw)


def contract() -> Contract:
    """As the service gets it: the spec `mlgate build` stores as JSON."""
    return Contract(json.loads(json.dumps(contract_spec(data.input_schema(params())))))


def test_a_served_timestamp_must_be_a_date_and_keys_are_known() -> None:
    row = {"amount": 3.0, "kind": "a"}
    c = contract()
    assert c.keys == ["visit_id"]
    assert c.row_model(**row).seen is None  # optional
    assert c.row_model(**row, seen="2024-05-31", visit_id=7).seen == "2024-05-31"
    with pytest.raises(ValidationError) as err:
        c.row_model(**row, seen="not a date")
    (error,) = err.value.errors()
    assert error["loc"] == ("seen",) and "ISO 8601" in error["msg"]
    assert c.row_model(**c.example_row())  # the OpenAPI example is a date too


def test_batch_output_always_carries_the_keys_the_input_has(tmp_path: Path) -> None:
    columns = ["visit_id", "amount", "kind"]
    assert output_keys(("amount",), columns, tmp_path, always=["visit_id"]) == [
        "amount",
        "visit_id",
    ]
    assert output_keys(None, columns, tmp_path, always=["visit_id"]) == columns
    assert output_keys(("amount",), ["amount"], tmp_path, always=["visit_id"]) == ["amount"]
