"""Group metrics for each sensitive attribute: fairlearn's definitions, computed vectorised."""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlgate.errors import MlgateError

if TYPE_CHECKING:
    from mlgate.config import SensitiveAttribute


def band_labels(bands: tuple[float, ...]) -> list[str]:
    """[25, 35, 50] -> ["<25", "25-34", "35-49", "50+"] (integer cut points, as for ages)."""
    cuts = [int(b) if float(b).is_integer() else b for b in bands]
    labels = [f"<{cuts[0]}"]
    for low, high in pairwise(cuts):
        top = high - 1 if isinstance(high, int) else high
        labels.append(f"{low}-{top}")
    labels.append(f"{cuts[-1]}+")
    return labels


def groups(frame: pd.DataFrame, column: str, spec: SensitiveAttribute) -> pd.Series:
    """The group of each row: the value itself, or its band when bands are configured."""
    if spec.bands is None:
        return frame[column].astype(str)
    edges = [-np.inf, *spec.bands, np.inf]
    banded = pd.cut(frame[column], bins=edges, right=False, labels=band_labels(spec.bands))
    # ordered categories: every table lists "<25" before "25-34", not in text order
    return banded.cat.remove_unused_categories()


def _group_codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Each row's group as an integer code, and the group names in table order: bands in
    their own order, other values sorted as text (the order fairlearn's MetricFrame uses)."""
    codes, uniques = pd.factorize(values, sort=True)
    if (codes < 0).any():  # the contract forbids nulls; a hand-made frame may still have them
        missing = int((codes < 0).sum())
        raise MlgateError(
            f"sensitive attribute {values.name!r}: {missing} rows have no value, so no group"
        )
    return codes, [str(u) for u in uniques]


def _sums(codes: np.ndarray, n_groups: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(codes, weights=weights, minlength=n_groups).astype(float)


def _rate(hits: np.ndarray, total: np.ndarray) -> np.ndarray:
    """hits / total, 0 where a group has no rows to divide by (as sklearn's
    `confusion_matrix(normalize="true")` and so fairlearn's rates define it)."""
    out = np.zeros_like(hits)
    np.divide(hits, total, out=out, where=total > 0)
    return out


def classification_table(y_true: Any, y_pred: Any, values: pd.Series) -> pd.DataFrame:
    """fairlearn's count, accuracy, selection rate, TPR and FPR per group, from one pass of
    `np.bincount` per quantity: O(rows) with no Python loop over rows or groups."""
    y_true = np.asarray(y_true).astype(bool)
    y_pred = np.asarray(y_pred).astype(bool)
    codes, names = _group_codes(values)
    n = len(names)
    count = _sums(codes, n)
    positives = _sums(codes, n, y_true.astype(float))
    table = pd.DataFrame(
        {
            "count": count,
            "accuracy": _rate(_sums(codes, n, (y_true == y_pred).astype(float)), count),
            "selection_rate": _rate(_sums(codes, n, y_pred.astype(float)), count),
            "true_positive_rate": _rate(
                _sums(codes, n, (y_true & y_pred).astype(float)), positives
            ),
            "false_positive_rate": _rate(
                _sums(codes, n, (~y_true & y_pred).astype(float)), count - positives
            ),
        },
        index=names,
    )
    return table


def _between_groups(column: pd.Series) -> float:
    return float(column.max() - column.min())


def group_metrics(
    y_true: Any, y_pred: Any, sensitive: dict[str, pd.Series]
) -> dict[str, dict[str, Any]]:
    """Per attribute: metrics by group, and the gaps the gates compare with thresholds.

    The gaps are fairlearn's: demographic parity difference = largest minus smallest
    selection rate; equalized odds difference = the larger of the TPR and FPR gaps
    (tests/pipeline/test_fairness.py holds fairlearn's MetricFrame as the oracle)."""
    result: dict[str, dict[str, Any]] = {}
    for name, values in sensitive.items():
        table = classification_table(y_true, y_pred, values)
        result[name] = {"groups": _as_dict(table), **_decision_gaps(table)}
    return result


def _decision_gaps(table: pd.DataFrame) -> dict[str, float]:
    """fairlearn's demographic parity and equalized odds differences of a group table."""
    return {
        "demographic_parity_difference": _round(_between_groups(table["selection_rate"])),
        "equalized_odds_difference": _round(
            max(
                _between_groups(table["true_positive_rate"]),
                _between_groups(table["false_positive_rate"]),
            )
        ),
    }


def multiclass_group_metrics(
    y_true: Any, y_pred: Any, classes: list[Any], sensitive: dict[str, pd.Series]
) -> dict[str, dict[str, Any]]:
    """Multiclass: each class one-vs-rest (this class decided or not), its two fairlearn gaps
    between groups under `classes`; the gap gated is the largest over the classes (the class
    served least equally). Per group: count and accuracy."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    result: dict[str, dict[str, Any]] = {}
    for name, values in sensitive.items():
        per_class = {
            str(label): _decision_gaps(
                classification_table(y_true == label, y_pred == label, values)
            )
            for label in classes
        }
        codes, names = _group_codes(values)
        count = _sums(codes, len(names))
        correct = _sums(codes, len(names), (y_true == y_pred).astype(float))
        overall = pd.DataFrame({"count": count, "accuracy": _rate(correct, count)}, index=names)
        result[name] = {
            "groups": _as_dict(overall),
            **{
                gap: max(c[gap] for c in per_class.values())
                for gap in ("demographic_parity_difference", "equalized_odds_difference")
            },
            "classes": per_class,
        }
    return result


def gaps(measured: dict[str, Any]) -> dict[str, float]:
    """The gap measures of one attribute (what a gate may bound), without its tables."""
    return {k: v for k, v in measured.items() if k not in ("groups", "classes")}


def _as_dict(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    return {str(group): {k: _round(v) for k, v in row.items()} for group, row in table.iterrows()}


def _round(value: Any) -> float:
    return round(float(value), 4)


def regression_table(y_true: Any, y_pred: Any, values: pd.Series) -> pd.DataFrame:
    """Count, mean absolute error and mean prediction per group (vectorised)."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    codes, names = _group_codes(values)
    n = len(names)
    count = _sums(codes, n)
    return pd.DataFrame(
        {
            "count": count,
            "mae": _rate(_sums(codes, n, np.abs(y_true - y_pred)), count),
            "mean_prediction": _rate(_sums(codes, n, y_pred), count),
        },
        index=names,
    )


def regression_group_metrics(
    y_true: Any, y_pred: Any, sensitive: dict[str, pd.Series]
) -> dict[str, dict[str, Any]]:
    """Regression: error by group. The gap is `mae_difference`, the largest minus the
    smallest group MAE (same units as the target; 0 = every group is served equally well)."""
    result: dict[str, dict[str, Any]] = {}
    for name, values in sensitive.items():
        table = regression_table(y_true, y_pred, values)
        result[name] = {
            "groups": _as_dict(table),
            "mae_difference": _round(_between_groups(table["mae"])),
        }
    return result


# A feature this associated with a sensitive attribute can stand in for it (a proxy): the PR
# report flags it when the model leans on it more than base did (docs/FAIRNESS.md).
PROXY_ASSOCIATION = 0.3


def association(feature: pd.Series, group: pd.Series) -> float:
    """How much a feature tells about a sensitive group, 0 (nothing) to 1 (determines it):
    Cramér's V for a categorical feature (a missing value is its own category), the
    correlation ratio η for a numeric one (rows without a value left out)."""
    group = group.astype(str)
    if pd.api.types.is_numeric_dtype(feature) and not pd.api.types.is_bool_dtype(feature):
        known = feature.notna().to_numpy()
        x = feature.to_numpy(dtype=float)[known]
        codes, _ = _group_codes(group[known])
        if x.size < 2 or float(x.var()) == 0.0:
            return 0.0
        n = np.bincount(codes)
        means = np.bincount(codes, weights=x) / np.maximum(n, 1)
        between = float((n * (means - x.mean()) ** 2).sum())
        return float(np.sqrt(between / float(((x - x.mean()) ** 2).sum())))
    table = pd.crosstab(feature.astype(str).fillna("<missing>"), group).to_numpy(dtype=float)
    if min(table.shape) < 2:
        return 0.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / table.sum() / (min(table.shape) - 1)))


def proxies(
    frame: pd.DataFrame, features: list[str], sensitive: dict[str, SensitiveAttribute]
) -> dict[str, dict[str, float]]:
    """Each feature's association with each sensitive attribute on frame (the test split):
    {feature: {attribute: 0..1}}; empty without sensitive attributes."""
    found: dict[str, dict[str, float]] = {}
    for attr, spec in sensitive.items():
        group = groups(frame, attr, spec)
        for column in features:
            if column != attr:
                found.setdefault(column, {})[attr] = round(association(frame[column], group), 4)
    return found
