"""POST /outcome's request: its models, and the checks of the outcomes it carries."""

# No `from __future__ import annotations` here: BentoML reads OutcomeRequest's field types
# (its input_spec) and the /outcome API's signature types at the service's import.

import math
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from mlgate.serving.feedback import SCHEMA_VERSION, record_time
from mlgate.serving.guard import _problem_body

OutcomeValue = StrictInt | StrictFloat | StrictStr
# request ids a worker answered -> their row counts, for POST /outcome (bounded: older ids
# are unknown to the service; `mlgate outcomes import` joins them from the records)
RECENT_REQUEST_IDS = 50_000
Loc = tuple[str | int, ...]


class Outcome(BaseModel):
    """The observed label (classification) or value (regression) of one answered row."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=128, description="the prediction's id")
    row: StrictInt = Field(default=0, ge=0, description="the row of a /predict_batch request")
    outcome: OutcomeValue = Field(description="one of the model's classes, or a number")


ONE_OUTCOME_FIELDS = ("request_id", "row", "outcome")


def outcome_request(max_rows: int) -> type[BaseModel]:
    """The body of POST /outcome, with at most `max_rows` outcomes (serving.max_batch_rows)."""

    class OutcomeRequest(BaseModel):
        """`{"request_id": ..., "row": 0, "outcome": ...}` or `{"outcomes": [{...}, ...]}`,
        one form or the other (the OpenAPI document says it as a oneOf:
        mlgate.serving.openapi).

        A field may be left out, never sent as null: the defaults are None, the types are not
        Optional (pydantic does not validate a default, and refuses an explicit null)."""

        model_config = ConfigDict(extra="forbid")
        request_id: str = Field(default=None, min_length=1, max_length=128)
        row: StrictInt = Field(default=0, ge=0)
        outcome: OutcomeValue = Field(default=None)
        outcomes: list[Outcome] = Field(default=None, min_length=1, max_length=max_rows)

        @model_validator(mode="before")
        @classmethod
        def _one_form(cls, data: Any) -> Any:
            both = (
                isinstance(data, dict) and "outcomes" in data and data.keys() & ONE_OUTCOME_FIELDS
            )
            if both:
                raise PydanticCustomError(
                    "one_form", "send request_id/row/outcome or outcomes, not both"
                )
            return data

    return OutcomeRequest


def invalid(title: str, errors: list[tuple[Loc, str, str]]) -> NoReturn:
    """A 400 shaped like pydantic's (field path, type, message; never the value)."""
    raise PydanticValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(type=PydanticCustomError(kind, msg), loc=loc, input=None)
            for loc, kind, msg in errors
        ],
    )


def outcome_problem(value: Any, classifier: bool, classes: list[Any]) -> tuple[str, str] | None:
    """Why `value` cannot be an outcome of the model (type and message), or None."""
    if not classifier:
        if isinstance(value, str) or not math.isfinite(value):
            return "finite_number", "the outcome of a regression is a finite number"
        return None
    if not any(type(c) is type(value) and c == value for c in classes):
        return "outcome_class", f"the outcome must be one of the model's classes {classes}"
    return None


def checked_outcomes(
    request_id: str | None,
    row: int,
    outcome: OutcomeValue | None,
    outcomes: list[Outcome] | None,
    classifier: bool,
    classes: list[Any],
) -> tuple[list[Outcome], list[Loc]]:
    """The outcomes of a request in either form, with each one's field path; a 400
    (pydantic's ValidationError) for a missing field or an outcome the model cannot have:
    what the OpenAPI document's schema refuses too."""
    if outcomes is None:  # one row's outcome (OutcomeRequest refuses both forms at once)
        if request_id is None or outcome is None:
            given = (("request_id", request_id), ("outcome", outcome))
            missing = [field for field, value in given if value is None]
            invalid(
                "OutcomeRequest",
                [((f,), "missing", "Field required (or send `outcomes`)") for f in missing],
            )
        items = [Outcome(request_id=request_id, row=row, outcome=outcome)]
        prefix: Loc = ()
    else:
        items, prefix = outcomes, ("outcomes",)
    locs = [(*prefix, n) if prefix else () for n in range(len(items))]
    errors = []
    for loc, item in zip(locs, items, strict=True):
        problem = outcome_problem(item.outcome, classifier, classes)
        if problem:
            errors.append(((*loc, "outcome"), *problem))
    if errors:
        invalid("OutcomeRequest", errors)
    return items, locs


def outcome_answer(
    items: list[Outcome],
    locs: list[Loc],
    recent: Mapping[str, int],
    one_worker: bool,
    record: Callable[[dict[str, Any]], Any],
) -> tuple[int, dict[str, Any]]:
    """POST /outcome's status and body for its checked outcomes, each recorded (`record`: the
    feedback sink's) when answered. `recent`: the request ids this worker answered lately,
    with their rows. 404 for a row beyond its request's rows, or (one worker) an id this
    worker did not answer; 202 and "verified": false for an id another worker may have."""
    absent = []
    for loc, item in zip(locs, items, strict=True):
        rows = recent.get(item.request_id)
        if rows is not None and item.row >= rows:
            absent.append(
                {"type": "row_range", "loc": [*loc, "row"], "msg": f"the request had {rows} row(s)"}
            )
    if absent:
        return 404, {
            "error": f"{len(absent)} row(s) not among their request's rows",
            "detail": absent,
        }
    unknown = [item.request_id for item in items if item.request_id not in recent]
    if unknown and one_worker:
        return 404, _problem_body(
            "not_found",
            f"request id {unknown[0]} is not among the last {RECENT_REQUEST_IDS} requests "
            "this service answered since it started; older outcomes: mlgate outcomes import",
        )
    ts = record_time()
    for item in items:
        record(
            {
                "schema": SCHEMA_VERSION,
                "kind": "outcome",
                "ts": ts,
                "request_id": item.request_id,
                "row": item.row,
                "outcome": item.outcome,
                "source": "api",
                "verified": item.request_id in recent,
            }
        )
    return (202 if unknown else 200), {"recorded": len(items), "verified": not unknown}
