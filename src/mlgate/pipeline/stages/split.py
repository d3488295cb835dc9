"""split: a seeded, stratified train/test split of the validated data, or by time: the most
recent rows are the test split."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlgate.errors import DataValidationError
from mlgate.pipeline import data

if TYPE_CHECKING:
    import pandas as pd

    from mlgate.config import Params


def split_frame(frame: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    if params.split.by == "time":
        return _split_by_time(frame, params)
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


def _split_by_time(frame: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on the past, test on the latest `test_size` share (as many rows as the random
    split would test); rows without a time go to train, ties keep the file's order."""
    import math

    column = params.data.role_columns("timestamp")[0]
    times = data.parse_times(frame[column]).reset_index(drop=True)
    ordered = frame.iloc[times.sort_values(kind="stable", na_position="first").index]
    n_test = math.ceil(len(frame) * params.split.test_size)
    if not 0 < n_test < len(frame):
        raise DataValidationError(
            f"{len(frame)} rows cannot be split by time (split.test_size {params.split.test_size})"
        )
    train, test = ordered.iloc[:-n_test], ordered.iloc[-n_test:]
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
