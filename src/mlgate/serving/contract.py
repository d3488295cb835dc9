"""The request contract: a pydantic model derived from the pipeline's pandera schema."""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, create_model

from mlgate.errors import MlgateError
from mlgate.names import ROLE_METADATA, TIMESTAMP_CHECK

if TYPE_CHECKING:
    import pandera.pandas as pa

# pandera check name -> (pydantic Field keyword, the statistic that holds the bound)
_BOUNDS = {
    "greater_than_or_equal_to": ("ge", "min_value"),
    "greater_than": ("gt", "min_value"),
    "less_than_or_equal_to": ("le", "max_value"),
    "less_than": ("lt", "max_value"),
}


def contract_spec(schema: pa.DataFrameSchema) -> dict[str, Any]:
    """What the schema says about one row, as plain JSON-able data.

    `mlgate build` stores this in the bento's model, so the service builds its request model
    without importing pandas/pandera (seconds of cold start). It is computed from the
    schema, never written by hand. Checks pydantic cannot express are kept by name in
    `residual_checks`; the service then also validates each request with pandera itself."""
    residual: list[str] = [str(c) for c in schema.checks]
    columns = []
    for name, column in schema.columns.items():
        constraints: dict[str, Any] = {}
        allowed: list[Any] | None = None
        kind = _kind(str(column.dtype), name)
        timestamp = False
        for check in column.checks:
            stats = check.statistics or {}
            if check.name in _BOUNDS:
                key, stat = _BOUNDS[check.name]
                constraints[key] = stats[stat]
            elif check.name == "in_range":
                constraints["ge" if stats.get("include_min", True) else "gt"] = stats["min_value"]
                constraints["le" if stats.get("include_max", True) else "lt"] = stats["max_value"]
            elif check.name == "isin":
                allowed = list(stats["allowed_values"])
            elif check.name == TIMESTAMP_CHECK and kind == "str":
                timestamp = True  # a date/time written as text: checked in pydantic (_field)
            else:
                residual.append(f"{name}: {check.name}")
        columns.append(
            {
                "name": name,
                "kind": kind,
                "timestamp": timestamp,
                "constraints": constraints,
                "allowed": allowed,
                # a column the schema does not require may be left out of a request
                "nullable": bool(column.nullable) or not column.required,
                "description": column.description,
                "role": (column.metadata or {}).get(ROLE_METADATA, "feature"),
            }
        )
    return {
        "schema": schema.name,
        "strict": bool(schema.strict),
        "columns": columns,
        "residual_checks": residual,
    }


class Contract:
    """What a request row must be, and how to tell a client what is wrong with theirs.

    `row_model` checks one row in pydantic (µs per row, with the field path in each error);
    the schema's bounds become ge/le, `isin` becomes a Literal, integers and strings are
    strict (no "12" for 12, no true for 1), floats must be finite."""

    def __init__(self, spec: dict[str, Any], name: str = "Applicant") -> None:
        self.spec = spec
        self.columns = [c["name"] for c in spec["columns"]]
        # identifiers (data.roles) an answer echoes, so outcomes join on them
        self.keys = [c["name"] for c in spec["columns"] if c.get("role") == "key"]
        self.residual_checks: list[str] = list(spec["residual_checks"])
        fields = {_field_name(c["name"], i): _field(c) for i, c in enumerate(spec["columns"])}
        self.row_model: type[BaseModel] = create_model(  # type: ignore[call-overload]
            name,
            __config__=ConfigDict(extra="forbid" if spec["strict"] else "ignore", frozen=True),
            __doc__=f"One row of {spec['schema'] or 'the schema'} (from its pandera schema).",
            **fields,
        )

    @classmethod
    def from_schema(cls, schema: pa.DataFrameSchema, name: str = "Applicant") -> Contract:
        return cls(contract_spec(schema), name)

    @property
    def needs_pandera(self) -> bool:
        return bool(self.residual_checks)

    def example_row(self) -> dict[str, Any]:
        """A row the contract accepts, made from its bounds and allowed values (never a row of
        the data): the OpenAPI document's example, which a reader can send as it is."""
        return {c["name"]: _example_value(c) for c in self.spec["columns"]}


def _field_name(column: str, position: int) -> str:
    """The row model's attribute for a column: its own name, unless pydantic would read it
    otherwise (a leading `_` is private, `schema`, `copy`, `json`, `model_*` are BaseModel's,
    a keyword cannot be one); then a name of its own, the column's name being its alias (what
    the JSON, the errors' field paths and the JSON schema show)."""
    import keyword

    taken = column.startswith(("_", "model_")) or hasattr(BaseModel, column)
    if column.isidentifier() and not taken and not keyword.iskeyword(column):
        return column
    return f"column_{position}"


def _field(column: dict[str, Any]) -> tuple[Any, Any]:
    kind = column["kind"]
    if column["allowed"] is not None:
        annotation: Any = Literal[tuple(column["allowed"])]  # type: ignore[valid-type]
    elif kind == "int":
        # strict: "12", 12.5 and true are not integers (coercing them would hide client bugs)
        annotation = Annotated[int, Strict()]
    elif kind == "float":
        annotation = Annotated[float, Field(allow_inf_nan=False)]
    elif kind == "bool":
        annotation = Annotated[bool, Strict()]
    elif column.get("timestamp"):
        annotation = Annotated[str, Strict(), AfterValidator(_iso8601)]
    else:
        annotation = Annotated[str, Strict()]
    annotation = Annotated[
        annotation, Field(description=column["description"], **column["constraints"])
    ]
    if column["nullable"]:
        return (annotation | None, Field(default=None, alias=column["name"]))
    return (annotation, Field(alias=column["name"]))


def _iso8601(value: str) -> str:
    """A timestamp field stays the text sent; it must read as an ISO 8601 date/time."""
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO 8601 date or date-time (e.g. 2024-05-31T12:00:00)") from None
    return value


def _example_value(column: dict[str, Any]) -> Any:
    if column["allowed"]:
        return column["allowed"][0]
    kind, bounds = column["kind"], column["constraints"]
    if kind == "bool":
        return False
    if column.get("timestamp"):
        return "2024-01-01T00:00:00"
    if kind == "str":
        return "text"
    low = bounds.get("ge", bounds.get("gt"))
    high = bounds.get("le", bounds.get("lt"))
    if low is not None and high is not None:
        value = (low + high) / 2  # inside strict bounds too
    elif low is not None:
        value = low + 1
    elif high is not None:
        value = high - 1
    else:
        value = 0
    if kind == "int":
        value = math.floor(value)
        # floor may land on a strict lower bound: (0, 1] has no integer but 1
        if "gt" in bounds and value <= bounds["gt"]:
            value += 1
        return value
    return float(value)


def _kind(dtype: str, column: str) -> str:
    dtype = dtype.lower()
    if dtype.startswith(("int", "uint")):
        return "int"
    if dtype.startswith("float"):
        return "float"
    if dtype.startswith("bool"):
        return "bool"
    if dtype.startswith(("str", "object", "category")):
        return "str"
    raise MlgateError(f"schema column {column!r}: dtype {dtype} cannot be served as JSON yet")


def request_models(
    row_model: type[BaseModel], field: str, batch_field: str, max_rows: int
) -> tuple[type[BaseModel], type[BaseModel]]:
    """The request bodies `{"<field>": {row}}` and `{"<batch_field>": [rows]}` (names from
    serving.request_field / batch_field). The Python attributes are `row` / `rows` whatever
    the JSON names are, so the service's code does not change with a project's vocabulary;
    errors and the OpenAPI schema show the JSON names. Unknown keys are refused at the top
    level too (BentoML's own input models would ignore them)."""
    one = create_model(  # type: ignore[call-overload]
        "PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        row=(row_model, Field(alias=field, description="one row to score")),
    )
    batch = create_model(  # type: ignore[call-overload]
        "PredictBatchRequest",
        __config__=ConfigDict(extra="forbid"),
        rows=(
            list[row_model],  # type: ignore[valid-type]
            Field(
                alias=batch_field,
                min_length=1,
                max_length=max_rows,
                description=f"1 to {max_rows} rows to score",
            ),
        ),
    )
    return one, batch


def row_model_name(field: str) -> str:
    """`applicant` -> `Applicant`, `loan_record` -> `LoanRecord`: the row's name in OpenAPI."""
    return "".join(part[:1].upper() + part[1:] for part in field.split("_") if part) or "Row"
