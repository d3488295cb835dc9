"""The data contract of a credit application: used by validation, tests and serving alike.

What the data set must be as a whole (rows, rows per class, repeated rows) is set in
params.yaml under data.contract; `mlgate validate` adds those rules to this schema.
"""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

SAVINGS = ["little", "moderate", "not_known", "quite rich", "rich"]
CHECKING = ["little", "moderate", "not_known", "rich"]
PURPOSES = [
    "business",
    "car",
    "domestic appliances",
    "education",
    "furniture/equipment",
    "radio/TV",
    "repairs",
    "vacation/others",
]


class CreditApplication(pa.DataFrameModel):
    """One loan applicant: the model's inputs (everything but the target)."""

    sex: Series[str] = pa.Field(isin=["female", "male"])
    job: Series[int] = pa.Field(ge=0, le=3, description="skill level, 0 (unskilled) to 3")
    housing: Series[str] = pa.Field(isin=["free", "own", "rent"])
    saving_accounts: Series[str] = pa.Field(isin=SAVINGS)
    checking_account: Series[str] = pa.Field(isin=CHECKING)
    credit_amount: Series[int] = pa.Field(ge=1, le=100_000, description="amount in DM")
    duration: Series[int] = pa.Field(ge=1, le=120, description="months")
    purpose: Series[str] = pa.Field(isin=PURPOSES)
    age: Series[int] = pa.Field(ge=18, le=100, description="years")

    class Config:
        strict = True
        coerce = True


class LabelledCreditApplication(CreditApplication):
    """A training row: an application with its observed outcome."""

    risk: Series[int] = pa.Field(isin=[0, 1], description="1 = good credit, 0 = bad")
