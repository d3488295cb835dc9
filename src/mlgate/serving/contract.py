"""The request contract: a pydantic model derived at runtime from the pipeline's pandera schema."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, create_model

from mlgate.errors import MlgateError

if TYPE_CHECKING:
    import pandera.pandas as pa

# pandera check name -> pydantic Field keyword, for the statistics these checks carry
_BOUNDS = {
    "greater_than_or_equal_to": ("ge", "min_value"),
    "greater_than": ("gt", "min_value"),
    "less_than_or_equal_to": ("le", "max_value"),
    "less_than": ("lt", "max_value"),
}


class Contract:
    """What a request row must be, and how to tell a client what is wrong with theirs.

    `row_model` checks one row in pydantic (µs per row, with the field path in each error).
    Checks pydantic cannot express are not dropped: they are listed in `residual_checks`
    and every accepted batch is then also validated by pandera itself (`needs_pandera`).
    """

    def __init__(self, schema: pa.DataFrameSchema, name: str = "Applicant") -> None:
        self.schema = schema
        self.columns = list(schema.columns)
        self.residual_checks: list[str] = [str(c) for c in schema.checks]
        fields: dict[str, Any] = {}
        for col_name, column in schema.columns.items():
            fields[col_name] = self._field(col_name, column)
        extra = "forbid" if schema.strict else "ignore"
        self.row_model: type[BaseModel] = create_model(  # type: ignore[call-overload]
            name,
            __config__=ConfigDict(extra=extra, frozen=True),
            __doc__=f"One row of {schema.name or 'the schema'} (derived from the pandera schema).",
            **fields,
        )

    @property
    def needs_pandera(self) -> bool:
        return bool(self.residual_checks)

    def _field(self, col_name: str, column: Any) -> tuple[Any, Any]:
        kind = _kind(str(column.dtype), col_name)
        constraints: dict[str, Any] = {}
        literal: list[Any] | None = None
        for check in column.checks:
            stats = check.statistics or {}
            if check.name in _BOUNDS:
                key, stat = _BOUNDS[check.name]
                constraints[key] = stats[stat]
            elif check.name == "in_range":
                inclusive_min = stats.get("include_min", True)
                inclusive_max = stats.get("include_max", True)
                constraints["ge" if inclusive_min else "gt"] = stats["min_value"]
                constraints["le" if inclusive_max else "lt"] = stats["max_value"]
            elif check.name == "isin":
                literal = list(stats["allowed_values"])
            else:
                self.residual_checks.append(f"{col_name}: {check.name}")
        if literal is not None:
            annotation: Any = Literal[tuple(literal)]  # type: ignore[valid-type]
        elif kind is int:
            # strict: "12", 12.5 and true are not integers (coercing them would hide client bugs)
            annotation = Annotated[int, Strict()]
        elif kind is float:
            annotation = Annotated[float, Field(allow_inf_nan=False)]
        elif kind is bool:
            annotation = Annotated[bool, Strict()]
        else:
            annotation = Annotated[str, Strict()]
        annotation = Annotated[annotation, Field(description=column.description, **constraints)]
        if column.nullable:
            return (annotation | None, None)
        return (annotation, ...)


def _kind(dtype: str, column: str) -> type:
    dtype = dtype.lower()
    if dtype.startswith(("int", "uint")):
        return int
    if dtype.startswith("float"):
        return float
    if dtype.startswith("bool"):
        return bool
    if dtype.startswith(("str", "object", "category")):
        return str
    raise MlgateError(f"schema column {column!r}: dtype {dtype} cannot be served as JSON yet")
