"""Column inference for `mlgate init`, pure: from a data set to the contract, task, positive
label, sensitive groups and first gate a new project starts with."""

from __future__ import annotations

import functools
import keyword
import math
import re
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.errors import MlgateError

if TYPE_CHECKING:
    import pandas as pd


MAX_CATEGORIES = 20  # more distinct text values than this: an identifier or free text


MAX_CLASSES = 50  # a class label with more distinct values is refused (not a multiclass target)


MAX_CODES = 3  # an integer-valued column with at most this many values is a code (1/2, 0/1/9)


MAX_LEVELS = 500  # a text column of more distinct words or codes than this is no category


WIDEN = 0.10  # schema bounds: the observed range widened by this share of its span


METRICS = {
    "classification": (
        "roc_auc",
        "average_precision",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "brier",
        "log_loss",
    ),
    "multiclass": (
        "roc_auc_ovr",
        "balanced_accuracy",
        "accuracy",
        "f1_macro",
        "f1_weighted",
        "log_loss",
    ),
    "regression": ("rmse", "mae", "r2"),
}


POSITIVE_GUESSES = (1, True, "1", "yes", "true", "positive", "good", "y")


# Words in a column name that suggest a protected attribute (a feature of that name is flagged)
PROTECTED_WORDS = (
    "gender", "sex", "race", "racial", "ethnic", "ethnicity", "religion", "religious",
    "age", "nationality", "national", "origin", "disability", "disabled", "pregnant",
    "pregnancy", "marital", "orientation", "caste", "color", "colour", "birth", "dob",
)  # fmt: skip


# The first fairness bounds: the first model's gap plus this margin (absolute for the
# classification gaps, a share of the model's MAE for the regression gap, in target units)
FAIRNESS_MARGIN = {"classification": 0.05, "multiclass": 0.05, "regression": 0.10}

# The metric init bounds in gate.min_metrics for each task, and the bar it never goes below
# (better than chance; better than always predicting the mean)
QUALITY_FLOOR = {
    "classification": ("roc_auc", 0.55),
    "multiclass": ("roc_auc_ovr", 0.55),
    "regression": ("r2", 0.0),
}


def attr_name(column: str, taken: set[str]) -> str:
    """A Python identifier for a column (the schema keeps the real name as an alias): each
    character no identifier may hold is `_` (`²` and `½` are word characters to a regex, not
    to Python), in the NFKC form Python reads identifiers in (`µ` is read as `μ`, `ﬁ` as
    `fi`), never a keyword or an attribute pandera's DataFrameModel has (`validate`), nor
    private to it (`_id`: pandera leaves out an attribute with a leading `_`)."""
    kept = "".join(c if f"a{c}".isidentifier() else "_" for c in column.strip())
    name = unicodedata.normalize("NFKC", kept) or "column"
    if not name.isidentifier() or name.startswith("_"):  # a digit first, or private
        name = f"c_{name}"
    if keyword.iskeyword(name) or name in _model_attributes():
        name = f"{name}_"
    base, i = name, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


@functools.cache
def _model_attributes() -> frozenset[str]:
    import pandera.pandas as pa

    return frozenset(n for n in dir(pa.DataFrameModel) if not n.startswith("_"))


def widened_bounds(low: float, high: float, integer: bool) -> tuple[float, float]:
    """[low, high] widened by WIDEN of the span, rounded outwards; >= 0 stays >= 0."""
    span = high - low or abs(high) or 1.0
    lo, hi = low - WIDEN * span, high + WIDEN * span
    if low >= 0:
        lo = max(lo, 0.0)
    if integer:
        return math.floor(lo), math.ceil(hi)
    step = 10.0 ** (math.floor(math.log10(span)) - 2)
    digits = max(0, -math.floor(math.log10(step)))
    return round(math.floor(lo / step) * step, digits), round(math.ceil(hi / step) * step, digits)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def infer_columns(
    frame: pd.DataFrame,
    target: str,
    task: str,
    sensitive: tuple[str, ...],
    numeric_kept: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """A first draft of the data contract and of each column's role, from the data alone.
    A numeric column of few whole values (1/2, 0/1/9) is a code: a category, unless it is in
    `numeric_kept` (declared monotone: its order means something)."""
    import pandas as pd

    columns: list[dict[str, Any]] = []
    taken: set[str] = set()
    for name in frame.columns:
        series = frame[name]
        values = series.dropna()
        col: dict[str, Any] = {
            "name": str(name),
            "attr": attr_name(str(name), taken),
            "nullable": bool(series.isna().any()),
            "ge": None,
            "le": None,
            "isin": None,
        }
        if pd.api.types.is_bool_dtype(series):
            col.update(dtype="bool", kind="categorical")
        elif pd.api.types.is_numeric_dtype(series):
            integer = pd.api.types.is_integer_dtype(series)
            col["dtype"] = "int" if integer else "float"
            col["kind"] = "numeric"
            if len(values):
                col["ge"], col["le"] = widened_bounds(
                    float(values.min()), float(values.max()), integer
                )
            if _is_code(values) and name != target and name not in numeric_kept:
                codes = sorted(_plain(v) for v in values.astype(int).unique())
                col.update(kind="categorical", code=True, isin=codes, ge=None, le=None)
        else:
            col["dtype"] = "str"
            distinct = values.astype(str).unique()
            if len(distinct) <= MAX_CATEGORIES:
                col.update(kind="categorical", isin=sorted(distinct.tolist()))
            elif many_levels(values):  # unbounded: the next export brings new towns
                col.update(kind="categorical", levels=len(distinct))
        role = column_role(str(name), series, len(frame))
        if name in sensitive:
            col["kind"] = "sensitive"
        elif role is not None and name != target:
            # not read by the model: the next export's new IDs are no contract failure, and a
            # request need not carry it (served, batch and monitor alike)
            col.update(kind=role[0], why=role[1], code=False)
            col.update(ge=None, le=None, isin=None, nullable=True, optional=True)
        if name == target:
            col["kind"] = "target"
            if task != "regression" and col["dtype"] != "bool":  # bool: the type suffices
                col.update(isin=sorted(_plain(v) for v in values.unique()), ge=None, le=None)
        columns.append(col)
    return columns


ROLES = ("key", "timestamp", "text")  # what init infers; `ignored` is only ever declared


def _named_id(column: str) -> bool:
    """`id`, `customer_id`, `CustomerID`, `order-id`, `uuid`: a name that says identifier."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", column)
    words = re.split(r"[^a-z0-9]+", spaced.lower())
    return bool(words) and words[-1] in ("id", "uuid", "guid", "key")


def column_role(name: str, series: pd.Series, rows: int) -> tuple[str, str] | None:
    """The role of a column that is no feature, and why (one line for init's summary):
    a key (every value distinct: whole numbers or text without spaces, or named like an id),
    a timestamp (every value reads as an ISO 8601 date/time), or free text (more distinct
    texts than a category has). None: a feature candidate."""
    import pandas as pd

    values = series.dropna()
    named = _named_id(name)
    if values.empty or pd.api.types.is_bool_dtype(series):
        return None
    if pd.api.types.is_float_dtype(series) and not (named and (values == values.round()).all()):
        return None  # a measurement; whole numbers named like an id had gaps (NaN: float)
    text = not pd.api.types.is_numeric_dtype(series)
    if text:
        times = pd.to_datetime(values.astype(str), format="ISO8601", errors="coerce", utc=True)
        if times.notna().all():
            return (
                "timestamp",
                f"every value reads as a date/time, {values.min()} … {values.max()}",
            )
    # distinct on every row; named like an id, distinct where given (an export may have gaps)
    distinct = len(values) > MAX_CATEGORIES and values.nunique() == len(values)
    spaced = text and values.astype(str).str.contains(r"\s").mean() > 0.5
    if distinct and (named or (len(values) == rows and not spaced)):
        return "key", "every value is distinct" + (", named like an id" if named else "")
    texts = values.astype(str).nunique()
    if text and texts > MAX_CATEGORIES and not many_levels(values):
        return "text", f"{texts} distinct text values, free text rather than a category"
    return None


def many_levels(values: pd.Series) -> bool:
    """Text of more than MAX_CATEGORIES values that still reads as a category (a town, a
    product code): words or codes without spaces, each repeating (at most one distinct value
    per two rows), at most MAX_LEVELS of them. Sentences are free text."""
    text = values.astype(str)
    levels = text.nunique()
    return levels <= min(MAX_LEVELS, len(text) / 2) and text.str.contains(r"\s").mean() <= 0.5


def _is_code(values: pd.Series) -> bool:
    """A few whole values, e.g. 1/2 for two groups: categories that happen to be numbers."""
    distinct = values.unique()
    return 0 < len(distinct) <= MAX_CODES and bool((distinct == distinct.round()).all())


def looks_protected(column: str) -> bool:
    """The column's name has a word that suggests a protected attribute (gender, age, ...)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", column)  # camelCase -> camel Case
    words = re.split(r"[^a-z0-9]+", spaced.lower())
    return any(w in PROTECTED_WORDS for w in words)


def parse_monotone(items: list[str]) -> tuple[tuple[str, int], ...]:
    """`COLUMN:+1` / `COLUMN:-1` (also `+`, `-`, comma-separated) as (column, direction)."""
    found: dict[str, int] = {}
    for item in (s.strip() for given in items for s in given.split(",")):
        if not item:
            continue
        column, _, sign = item.rpartition(":")
        direction = {"+1": 1, "+": 1, "1": 1, "-1": -1, "-": -1}.get(sign.strip())
        if not column.strip() or direction is None:
            raise MlgateError(
                f"--monotone {item!r}: give COLUMN:+1 (the prediction rises with it) or "
                "COLUMN:-1 (it falls)"
            )
        found[column.strip()] = direction
    return tuple(found.items())


def sensitive_specs(frame: pd.DataFrame, sensitive: tuple[str, ...]) -> dict[str, Any]:
    """Groups per sensitive attribute: its values, or quartile bands for a numeric one."""
    import pandas as pd

    specs: dict[str, Any] = {}
    for name in sensitive:
        series = frame[name].dropna()
        if pd.api.types.is_numeric_dtype(series) and series.nunique() > MAX_CATEGORIES:
            cuts = sorted({_round_cut(float(q)) for q in series.quantile([0.25, 0.5, 0.75])})
            specs[name] = {"bands": cuts}
        else:
            specs[name] = {}
    return specs


def _round_cut(value: float) -> float | int:
    return round(value) if abs(value) >= 10 else round(value, 2)


def infer_task(series: pd.Series) -> str:
    import pandas as pd

    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    return "regression" if numeric and series.nunique() > MAX_CATEGORIES else "classification"


def choose_positive_label(classes: list[Any], given: str | None) -> Any:
    if given is not None:
        for c in classes:
            if str(c) == given or str(c).lower() == given.lower():
                return c
        raise MlgateError(f"--positive-label {given!r} is not a class of the target {classes}")
    for guess in POSITIVE_GUESSES:
        for c in classes:
            if c == guess or (isinstance(c, str) and c.lower() == str(guess).lower()):
                return c
    raise MlgateError(f"which class is the positive one? pass --positive-label (one of {classes})")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def read_data(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise MlgateError(f"data file {path} not found")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise MlgateError(f"{path}: not a readable CSV file: {err}") from None
    if frame.empty:
        raise MlgateError(f"{path} has a header but no rows")
    return frame


def dataset_contract(frame: pd.DataFrame, target: str, task: str) -> dict[str, Any]:
    """A first bar for the whole-dataset rules (data.contract): a new data version may shrink
    to half the rows and half the rarest class, and repeat rows twice as often (at least 1%)."""
    rows = len(frame)
    repeated = float(frame.duplicated().mean()) if rows else 0.0
    contract: dict[str, Any] = {
        "rows": rows,
        "min_rows": max(1, rows // 2),
        "max_duplicate_share": min(1.0, max(0.01, math.ceil(repeated * 200) / 100)),
    }
    if task != "regression":
        contract["min_rows_per_class"] = max(2, int(frame[target].value_counts().min()) // 2)
    return contract


def _shown(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def _ceil(value: float, digits: int) -> float:
    scale = 10.0**digits
    return math.ceil(round(value * scale, 6)) / scale


def quality_gate(task: str, measured: dict[str, Any]) -> dict[str, Any]:
    """gate.min_metrics from the first model: the lower end of its metric's bootstrap interval
    on the test split, rounded down to 2 decimals, and never below chance (QUALITY_FLOOR). A
    model as good as the first passes whatever the split; one clearly worse (its whole
    interval below the bar, the default `gate.uncertain.quality: pass`) fails, and so does a
    model that learnt nothing. The answers `quality_gate` ({metric: [bound, measured, low,
    high]}, measured and the interval null when there was none) and `quality_why` (how the
    bound was chosen, in words)."""
    metric, floor = QUALITY_FLOOR[task]
    value = (measured.get("metrics") or {}).get(metric)
    ci = (measured.get("metric_intervals") or {}).get(metric)
    if value is None or not ci or not all(math.isfinite(x) for x in (value, *ci)):
        return {"quality_gate": {metric: [floor, None, None, None]},
                "quality_why": "better than chance"}  # fmt: skip
    low = math.floor(round(ci[0] * 100, 6)) / 100
    confidence = f"{measured.get('confidence', 0.95):.0%}"
    if low > floor:
        why = f"the lower end of a first model's {confidence} bootstrap interval, rounded down"
    else:
        why = f"better than chance (a first model's {confidence} interval reaches below it)"
    return {
        "quality_gate": {metric: [max(floor, low), round(value, 4), *(round(x, 4) for x in ci)]},
        "quality_why": why,
    }


def fairness_gate(task: str, measured: dict[str, Any]) -> dict[str, Any]:
    """gate.max_fairness_gap from the first model's gaps: each bound the upper end of the
    gap's bootstrap interval on the test split (`measured["intervals"]`: what another split
    of the same data may show), else the gap plus a margin (FAIRNESS_MARGIN). A bar the first
    model passes with room for split noise, that a clearly less fair model fails. The
    answers `fairness_gate` ({gap: {attr: [bound, measured]}}) and `fairness_margin` (how
    the bound was chosen, in words)."""
    intervals = measured.get("intervals") or {}
    if intervals:
        margin = 0.0
        why = f"raised to the upper end of its {measured['confidence']:.0%} bootstrap interval"
    elif task != "regression":  # gaps of decision rates, 0 to 1
        margin = FAIRNESS_MARGIN[task]
        why = f"+ {margin}"
    else:
        mae = float(measured["metrics"]["mae"])
        margin = FAIRNESS_MARGIN[task] * mae
        why = f"+ {FAIRNESS_MARGIN[task]:.0%} of its MAE ({_shown(mae)})"
    gate: dict[str, dict[str, list[float]]] = {}
    for attr, gaps in measured["fairness"].items():
        for gap, value in gaps.items():
            if not math.isfinite(value):  # e.g. a group with no positives: nothing to bound
                continue
            ci = intervals.get(attr, {}).get(gap)
            bound = max(value, ci[1]) if ci else value + margin
            if task != "regression":
                bound = min(1.0, _ceil(bound, 2))
            elif bound > 0:
                bound = _ceil(bound, 2 - math.floor(math.log10(bound)))  # 3 significant
            gate.setdefault(gap, {})[attr] = [bound, value]
    return {"fairness_gate": gate, "fairness_margin": why}
