"""The data contract: load the project's pandera schema, validate frames, report failures."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mlgate.errors import DataValidationError, MlgateError
from mlgate.io import import_ref
from mlgate.names import ROLE_METADATA, TIMESTAMP_CHECK

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
    missing = [f for f in params.features.inputs if f not in schema.columns]
    if missing:
        raise MlgateError(f"features {missing} are not columns of {params.data.schema_ref}")
    return with_roles(schema, params.data.roles, params.data.schema_ref)


def with_roles(schema: pa.DataFrameSchema, roles: dict[str, str], ref: str) -> pa.DataFrameSchema:
    """The schema with each declared role in its column's metadata, and a timestamp column
    checked as an ISO 8601 date/time (its type stays the text it was written as)."""
    import pandera.pandas as pa

    unknown = [c for c in roles if c not in schema.columns]
    if unknown:
        raise MlgateError(f"data.roles names {unknown}, which are not columns of {ref}")
    if not roles:
        return schema
    schema = copy.deepcopy(schema)  # pandera caches a model's schema: never mutate it
    for name, role in roles.items():
        column = schema.columns[name]
        checks = list(column.checks)
        if role == "timestamp":
            checks.append(pa.Check(_parses_as_time, name=TIMESTAMP_CHECK, error=TIMESTAMP_CHECK))
        metadata = {**(column.metadata or {}), ROLE_METADATA: role}
        schema = schema.update_column(name, checks=checks, metadata=metadata)
    return schema


def _parses_as_time(values: pd.Series) -> pd.Series:
    return values.isna() | parse_times(values, coerce=True).notna()


def parse_times(values: pd.Series, coerce: bool = False) -> pd.Series:
    """A timestamp column as UTC datetimes (validated: every value parses; `coerce`: NaT for
    a value that does not)."""
    errors = "coerce" if coerce else "raise"
    return pd.to_datetime(values.astype("string"), format="ISO8601", utc=True, errors=errors)


@dataclass(frozen=True)
class DatasetRule:
    """A whole-dataset rule of the contract (data.contract in params.yaml): a pandera
    dataframe-level check, and what to say when a data set breaks it."""

    name: str
    holds: Callable[[pd.DataFrame], bool]
    explain: Callable[[pd.DataFrame], str]

    def check(self) -> pa.Check:
        import pandera.pandas as pa

        return pa.Check(self.holds, element_wise=False, name=self.name, error=self.name)


def dataset_rules(params: Params, part: bool = False) -> list[DatasetRule]:
    """Rules a data set must honour as a whole: enough rows, enough of every class, a target
    that varies, few repeated rows, and rows enough for the configured split. A `part` (a
    split the pipeline wrote) must only have rows and a target that varies."""
    d = _Dataset(params)
    rules = params.data.contract
    varies = DatasetRule(
        "target_varies", lambda f: d.target not in f or len(d.counts(f)) >= 2, d.single_value
    )
    if part:
        return [DatasetRule("not_empty", lambda f: len(f) > 0, lambda f: "no rows at all"), varies]
    checks = [
        DatasetRule(
            f"min_rows({rules.min_rows})",
            lambda f: len(f) >= rules.min_rows,
            lambda f: f"{len(f)} rows, at least {rules.min_rows} required (data.contract.min_rows)",
        ),
        varies,
    ]
    if d.classification:
        checks.append(
            DatasetRule(
                f"min_rows_per_class({rules.min_rows_per_class})",
                lambda f: d.rare(f).empty,
                d.rare_explained,
            )
        )
    return [
        *checks,
        DatasetRule(
            f"max_duplicate_share({rules.max_duplicate_share})",
            lambda f: len(f) == 0 or f.duplicated(keep="first").mean() <= rules.max_duplicate_share,
            d.duplicates_explained,
        ),
        DatasetRule("split_fits", d.split_fits, d.split_explained),
    ]


class _Dataset:
    """What the data set rules measure of a frame, and how they explain a failure."""

    def __init__(self, params: Params) -> None:
        self.rules = params.data.contract
        self.target = params.data.target
        self.classification = params.data.classes
        self.stratified = (
            self.classification and params.split.stratify and params.split.by == "random"
        )
        self.test_size = params.split.test_size

    def counts(self, frame: pd.DataFrame) -> pd.Series:
        if self.target not in frame:  # reported as a missing column
            return pd.Series(dtype="int64")
        return frame[self.target].value_counts(dropna=True)

    def rare(self, frame: pd.DataFrame) -> pd.Series:
        found = self.counts(frame)
        return found[found < self.rules.min_rows_per_class]

    def rare_explained(self, frame: pd.DataFrame) -> str:
        return (
            "; ".join(f"class {_plain(k)!r} has {int(v)} rows" for k, v in self.rare(frame).items())
            + f"; at least {self.rules.min_rows_per_class} required "
            "(data.contract.min_rows_per_class)"
        )

    def split_parts(self, frame: pd.DataFrame) -> tuple[int, int, int]:
        n_test = math.ceil(len(frame) * self.test_size)
        needed = len(self.counts(frame)) if self.stratified else 1
        return len(frame) - n_test, n_test, max(needed, 1)

    def split_fits(self, frame: pd.DataFrame) -> bool:
        n_train, n_test, needed = self.split_parts(frame)
        return n_train >= needed and n_test >= needed

    def split_explained(self, frame: pd.DataFrame) -> str:
        n_train, n_test, needed = self.split_parts(frame)
        why = " (one of each class: the split is stratified)" if self.stratified else ""
        return (
            f"split.test_size {self.test_size} leaves {n_train} train and {n_test} test rows; "
            f"each part needs at least {needed}{why}"
        )

    def duplicates_explained(self, frame: pd.DataFrame) -> str:
        repeated = frame.duplicated(keep="first")
        rows = ", ".join(str(i) for i in frame.index[repeated][:MAX_VALUES_SHOWN])
        return (
            f"{int(repeated.sum())} of {len(frame)} rows ({repeated.mean():.1%}) repeat an "
            f"earlier row (rows {rows}{' …' if repeated.sum() > MAX_VALUES_SHOWN else ''}); "
            f"at most {self.rules.max_duplicate_share:.1%} allowed "
            "(data.contract.max_duplicate_share)"
        )

    def single_value(self, frame: pd.DataFrame) -> str:
        found = self.counts(frame)
        what = "class" if self.classification else "value"
        if found.empty:
            return f"target {self.target!r} has no value at all"
        return (
            f"target {self.target!r} has one {what} only ({_plain(found.index[0])!r}: "
            f"{int(found.iloc[0])} rows); a model needs at least two"
        )


def contract_schema(params: Params) -> pa.DataFrameSchema:
    """The schema of the raw data set: the row schema plus the whole-dataset rules. Only
    `validate` applies it: a split, a batch or a request is not a whole data set."""
    return with_rules(load_schema(params), dataset_rules(params))


def with_rules(schema: pa.DataFrameSchema, rules: Sequence[DatasetRule]) -> pa.DataFrameSchema:
    schema = copy.deepcopy(schema)  # pandera caches a model's schema: never mutate it
    schema.checks = [*schema.checks, *(rule.check() for rule in rules)]
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
    """Read a file the pipeline wrote; as a part of the data set it must still have rows and
    a target that varies. A Parquet file keeps the types validate fixed (text columns as
    categories): only the columns the stages use and those rules are checked, nothing is
    coerced again and pandera is not even imported. A CSV file is given the schema's types
    again through the whole contract."""
    rules = dataset_rules(params, part=True)
    try:
        if Path(path).suffix == ".parquet":
            used = list(schema.columns) if schema is not None else used_columns(params)
            return check_part(read_parquet(path), used, str(path), rules)
        schema = with_rules(schema or load_schema(params), rules)
        return validate(read_csv(path), schema, str(path), rules)
    except DataValidationError as err:
        raise DataValidationError(
            f"{err}\n{path} is a file the pipeline wrote: `dvc checkout --force {path}` puts "
            "back the version of the last good run (or `dvc repro` remakes it)"
        ) from None


def used_columns(params: Params) -> list[str]:
    """The columns the stages read: the target, the features and the sensitive attributes."""
    names = [params.data.target, *params.features.inputs, *params.evaluate.sensitive]
    if params.split.by == "time":
        names += params.data.role_columns("timestamp")
    return list(dict.fromkeys(names))


def save(frame: pd.DataFrame, path: Path | str) -> None:
    """Write a validated frame for the next stage. A `.parquet` path keeps its types, text
    columns as categories (read back as `category`: no per-row Python strings, a smaller
    one-hot); any other path is CSV, as projects made before Parquet name theirs."""
    from mlgate import io

    if Path(path).suffix != ".parquet":
        io.write_with(path, lambda p: frame.to_csv(p, index=False))
        return
    text = frame.select_dtypes(include=["object", "string"]).columns
    frame = frame.astype({c: "category" for c in text})
    io.write_with(path, lambda p: frame.to_parquet(p, index=False))


def read_parquet(path: Path | str) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except FileNotFoundError:
        raise MlgateError(f"data file {path} not found (run `dvc repro`)") from None
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise DataValidationError(f"{path}: not a readable Parquet file: {err}") from None
    # pandas 3 keeps Arrow's buffers read-only: a categorical's codes then refuse a `.loc`
    # assignment ("assignment destination is read-only"). Its own codes: a few bytes a row.
    for column in frame.select_dtypes("category").columns:
        frame[column] = frame[column].copy()
    return frame


def check_part(
    frame: pd.DataFrame, columns: Sequence[str], source: str, rules: Sequence[DatasetRule]
) -> pd.DataFrame:
    """`columns` present and the whole-dataset `rules` honoured: what a typed file the
    pipeline wrote must still be. Failures are reported as `validate` reports them."""
    cases: list[dict[str, object]] = [
        {"schema_context": "DataFrameSchema", "check": "column_in_dataframe", "failure_case": c}
        for c in columns
        if c not in frame
    ]
    broken = [r for r in rules if not r.holds(frame)]
    cases += [
        {"schema_context": "DataFrameSchema", "check": r.name, "check_number": i}
        for i, r in enumerate(broken)
    ]
    if not cases:
        return frame
    layout = ["schema_context", "column", "check", "check_number", "failure_case", "index"]
    explained = {r.name: r.explain(frame) for r in broken}
    raise DataValidationError(
        format_failures(pd.DataFrame(cases, columns=layout), source, len(frame), explained)
    )


def validate(
    frame: pd.DataFrame,
    schema: pa.DataFrameSchema,
    source: str = "data",
    rules: Sequence[DatasetRule] = (),
) -> pd.DataFrame:
    """Validate lazily: every failure is collected, then reported at once. A value that
    coercion would change (2.5 into an integer column) is a failure, not a conversion.
    `rules` explain the schema's whole-dataset checks when they fail."""
    import pandera.errors as pae

    lossy = lossy_coercions(frame, schema)
    try:
        valid = schema.validate(frame, lazy=True)
        cases = lossy
    except pae.SchemaErrors as err:
        cases = pd.concat([lossy, err.failure_cases], ignore_index=True)
    if cases.empty:
        return valid
    explained = {r.name: r.explain(frame) for r in rules if r.name in set(cases["check"])}
    raise DataValidationError(format_failures(cases, source, len(frame), explained)) from None


def lossy_coercions(frame: pd.DataFrame, schema: pa.DataFrameSchema) -> pd.DataFrame:
    """Failure cases (pandera's layout) for numbers an integer column would truncate."""
    found = []
    for name, column in schema.columns.items():
        if name not in frame or not (schema.coerce or column.coerce):
            continue
        values = frame[name]
        target = getattr(column.dtype, "type", None)
        if not (
            pd.api.types.is_float_dtype(values.dtype)
            and target is not None
            and pd.api.types.is_integer_dtype(target)
        ):
            continue
        finite = values[values.notna() & values.abs().ne(float("inf"))]
        changed = finite[finite != finite.round()]
        check = f"lossless_coercion({target})"
        found += [
            {
                "schema_context": "Column",
                "column": name,
                "check": check,
                "failure_case": v,
                "index": i,
            }
            for i, v in changed.items()
        ]
    columns = ["schema_context", "column", "check", "check_number", "failure_case", "index"]
    return pd.DataFrame(found, columns=columns)


def format_failures(
    cases: pd.DataFrame, source: str, n_rows: int, explained: dict[str, str] | None = None
) -> str:
    """One line per (column, check): how many rows fail and which values; one line per
    whole-dataset rule, with what `explained` says about it."""
    explained = explained or {}
    lines = [f"{source}: {n_rows} rows checked, the data contract is broken:"]
    # a dataframe-level check has a number; column presence checks (same context) have none
    dataset = cases["check"].isin(list(explained)) | (
        (cases["schema_context"] == "DataFrameSchema") & cases["check_number"].notna()
    )
    for check, group in cases[dataset].groupby("check", sort=False):
        why = explained.get(check) or f"failure: {_plain(group['failure_case'].iloc[0])!r}"
        lines.append(f"  - the data set fails {check}: {why}")
    cases = cases[~dataset]
    cases = _drop_echoes(cases.assign(column=cases["column"].astype(str)))
    for (column, check), group in cases.groupby(["column", "check"], sort=False, dropna=False):
        values = group["failure_case"]
        shown = ", ".join(repr(_plain(v)) for v in values.drop_duplicates().head(MAX_VALUES_SHOWN))
        more = " …" if values.nunique(dropna=False) > MAX_VALUES_SHOWN else ""
        if check == "column_in_schema":
            for name in values:
                hint = next((f"; is the file delimited by {d!r}?" for d in ";\t|" if d in name), "")
                lines.append(f"  - unexpected column {_plain(name)!r} (not in the schema{hint})")
            continue
        if check == "column_in_dataframe":
            lines += [f"  - missing column {_plain(name)!r}" for name in values]
            continue
        rows = group["index"].dropna()
        where = f"{len(rows)} row(s)" if len(rows) else "column"
        check_text = check if len(check) <= 80 else check[:77] + "…"
        lines.append(f"  - column {column!r} fails {check_text}: {where}; values: {shown}{more}")
    return "\n".join(lines)


def _drop_echoes(cases: pd.DataFrame) -> pd.DataFrame:
    """Report each fault once: a null in a typed column also fails its dtype checks (it is
    reported as a null); a value that fails coercion also fails the dtype check and makes the
    column's value checks raise (it is reported as the failed coercion)."""
    checks = cases["check"].astype(str)
    nullable_fails = set(cases.loc[checks == "not_nullable", "column"])
    null_echo = (
        cases["column"].isin(nullable_fails)
        & checks.str.match(r"^(coerce_)?dtype\(")
        & cases["failure_case"].isna()
    )
    uncoerced = set(cases.loc[checks.str.startswith("coerce_dtype("), "column"])
    coerce_echo = cases["column"].isin(uncoerced) & (
        checks.str.startswith("dtype(") | cases["index"].isna()
    )
    return cases[~(null_echo | coerce_echo)]


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value
