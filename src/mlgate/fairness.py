"""Group metrics for each sensitive attribute, with fairlearn's MetricFrame."""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

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


def group_metrics(
    y_true: Any, y_pred: Any, sensitive: dict[str, pd.Series]
) -> dict[str, dict[str, Any]]:
    """Per attribute: metrics by group, and the gaps the gates compare with thresholds."""
    from fairlearn.metrics import (
        count,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score

    metrics = {
        "count": count,
        "accuracy": accuracy_score,
        "selection_rate": selection_rate,
        "true_positive_rate": true_positive_rate,
        "false_positive_rate": false_positive_rate,
    }
    result: dict[str, dict[str, Any]] = {}
    for name, values in sensitive.items():
        _, by_group = _by_group(metrics, y_true, y_pred, values)
        result[name] = {
            "groups": by_group,
            "demographic_parity_difference": _round(
                demographic_parity_difference(y_true, y_pred, sensitive_features=values)
            ),
            "equalized_odds_difference": _round(
                equalized_odds_difference(y_true, y_pred, sensitive_features=values)
            ),
        }
    return result


def _by_group(
    metrics: dict[str, Any], y_true: Any, y_pred: Any, values: pd.Series
) -> tuple[Any, dict[str, dict[str, float]]]:
    """fairlearn's MetricFrame for one attribute, and its table as {group: {metric: value}}."""
    from fairlearn.metrics import MetricFrame

    frame = MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=values)
    table = {
        str(group): {k: _round(v) for k, v in row.items()}
        for group, row in frame.by_group.iterrows()
    }
    if isinstance(values.dtype, pd.CategoricalDtype):  # bands: fairlearn sorts them as text
        table = {g: table[g] for g in map(str, values.cat.categories) if g in table}
    return frame, table


def _round(value: Any) -> float:
    return round(float(value), 4)


def regression_group_metrics(
    y_true: Any, y_pred: Any, sensitive: dict[str, pd.Series]
) -> dict[str, dict[str, Any]]:
    """Regression: error by group. The gap is `mae_difference`, the largest minus the
    smallest group MAE (same units as the target; 0 = every group is served equally well)."""
    from fairlearn.metrics import count
    from sklearn.metrics import mean_absolute_error

    def mean_prediction(_: Any, pred: Any) -> float:
        return float(np.mean(pred))

    metrics = {"count": count, "mae": mean_absolute_error, "mean_prediction": mean_prediction}
    result: dict[str, dict[str, Any]] = {}
    for name, values in sensitive.items():
        frame, by_group = _by_group(metrics, y_true, y_pred, values)
        result[name] = {
            "groups": by_group,
            "mae_difference": _round(frame.difference(method="between_groups")["mae"]),
        }
    return result
