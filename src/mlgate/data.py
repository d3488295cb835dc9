"""The data contract: load the project's pandera schema, validate frames, report failures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mlgate.errors import DataValidationError, MlgateError
from mlgate.io import import_ref

if TYPE_CHECKING:
    import pandera.pandas as pa

    from mlgate.config import Params

MAX_VALUES_SHOWN = 5


def load_schema(params: Params) -> pa.DataFrameSchema:
    """The schema of a labelled training row, from `data.schema` in params.yaml."""
    import pandera.pandas as pa

    model = import_ref(params.data.schema_ref)
    if not (isinstance(model, type) and issubclass(model, pa.DataFrameModel)):
        raise MlgateError(f"data.schema {params.data.schema_ref!r} is not a pandera DataFrameModel")
    schema = model.to_schema()
    if params.data.target not in schema.columns:
        raise MlgateError(
            f"data.target {params.data.target!r} is not a column of {params.data.schema_ref}"
        )
    missing = [f for f in params.features.all if f not in schema.columns]
    if missing:
        raise MlgateError(f"features {missing} are not columns of {params.data.schema_ref}")
    return schema


def input_schema(params: Params) -> pa.DataFrameSchema:
    """The schema of one request: the training schema without the target."""
    return load_schema(params).remove_columns([params.data.target])


def read_csv(path: Path | str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise MlgateError(
            f"data file {path} not found (is the data pulled? try `dvc pull`)"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataValidationError(f"{path}: not a readable CSV file: {err}") from None


def load(
    path: Path | str, params: Params, schema: pa.DataFrameSchema | None = None
) -> pd.DataFrame:
    """Read a CSV the pipeline wrote and give it the schema's types again."""
    return validate(read_csv(path), schema or load_schema(params), str(path))


def validate(frame: pd.DataFrame, schema: pa.DataFrameSchema, source: str = "data") -> pd.DataFrame:
    """Validate lazily: every failure is collected, then reported at once."""
    import pandera.errors as pae

    try:
        return schema.validate(frame, lazy=True)
    except pae.SchemaErrors as err:
        raise DataValidationError(format_failures(err.failure_cases, source, len(frame))) from None


def format_failures(cases: pd.DataFrame, source: str, n_rows: int) -> str:
    """One line per (column, check): how many rows fail and which values."""
    lines = [f"{source}: {n_rows} rows checked, the data contract is broken:"]
    cases = _drop_null_echoes(cases.assign(column=cases["column"].astype(str)))
    for (column, check), group in cases.groupby(["column", "check"], sort=False, dropna=False):
        values = group["failure_case"]
        shown = ", ".join(repr(_plain(v)) for v in values.drop_duplicates().head(MAX_VALUES_SHOWN))
        more = " …" if values.nunique(dropna=False) > MAX_VALUES_SHOWN else ""
        if check == "column_in_schema":
            lines.append(f"  - unexpected column {_plain(values.iloc[0])!r} (not in the schema)")
            continue
        if check == "column_in_dataframe":
            lines.append(f"  - missing column {_plain(values.iloc[0])!r}")
            continue
        rows = group["index"].dropna()
        where = f"{len(rows)} row(s)" if len(rows) else "column"
        check_text = check if len(check) <= 80 else check[:77] + "…"
        lines.append(f"  - column {column!r} fails {check_text}: {where}; values: {shown}{more}")
    return "\n".join(lines)


def _drop_null_echoes(cases: pd.DataFrame) -> pd.DataFrame:
    """A null in a typed column also fails its dtype checks; report it once, as a null."""
    nullable_fails = set(cases.loc[cases["check"] == "not_nullable", "column"])
    echo = (
        cases["column"].isin(nullable_fails)
        & cases["check"].str.match(r"^(coerce_)?dtype\(")
        & cases["failure_case"].isna()
    )
    return cases[~echo]


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value
