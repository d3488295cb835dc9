"""validate: the raw data must honour the project's pandera schema and whole-dataset rules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlgate import io
from mlgate.errors import DataValidationError
from mlgate.pipeline import data, dataversion

if TYPE_CHECKING:
    import pandas as pd

    from mlgate.config import Params


def summarize(frame: pd.DataFrame, params: Params) -> dict[str, Any]:
    """Rows, class balance and the column contract: what the PR report compares."""
    target = frame[params.data.target]
    summary: dict[str, Any] = {
        "rows": len(frame),
        "columns": {c: str(t) for c, t in frame.dtypes.items()},
    }
    if params.data.classes:
        shares = target.value_counts(normalize=True).sort_index()
        summary["class_balance"] = {str(k): round(float(v), 4) for k, v in shares.items()}
    return summary


def run(params: Params) -> pd.DataFrame:
    schema, rules = data.contract_schema(params), data.dataset_rules(params)
    try:
        frame = data.validate(data.read_csv(params.data.raw), schema, str(params.data.raw), rules)
    except DataValidationError as err:
        # nothing is written: the outputs of the last good run stay (dvc.yaml: persist)
        raise DataValidationError(f"{err}\n{dataversion.unpin_failed(params.data.raw)}") from None
    data.save(frame, params.data.validated)
    io.write_json(params.data.summary, summarize(frame, params))
    print(f"validate: {len(frame)} rows of {params.data.raw} honour {params.data.schema_ref}")
    return frame
