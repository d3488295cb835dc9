"""split: a seeded, stratified train/test split of the validated data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlgate.errors import DataValidationError
from mlgate.pipeline import data

if TYPE_CHECKING:
    import pandas as pd

    from mlgate.config import Params


def split_frame(frame: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    stratify = None
    if params.split.stratify and params.data.classes:
        stratify = frame[params.data.target]
    try:
        train, test = train_test_split(
            frame,
            test_size=params.split.test_size,
            random_state=params.split.seed,
            stratify=stratify,
        )
    except ValueError as err:  # validate's rules should make this unreachable: say it plainly
        raise DataValidationError(
            f"{len(frame)} rows cannot be split (split.test_size {params.split.test_size}): {err}"
        ) from None
    return train.reset_index(drop=True), test.reset_index(drop=True)


def run(params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = data.load(params.data.validated, params)
    train, test = split_frame(frame, params)
    data.save(train, params.split.train)
    data.save(test, params.split.test)
    target = params.data.target
    for name, part in (("train", train), ("test", test)):
        balance = ""
        if params.data.classes:
            shares = part[target].value_counts(normalize=True).sort_index()
            balance = ", class balance " + ", ".join(f"{k}: {v:.1%}" for k, v in shares.items())
        print(f"split: {name} {len(part)} rows{balance}")
    return train, test
