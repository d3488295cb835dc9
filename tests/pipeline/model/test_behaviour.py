"""The model's behaviour: performance overall and by group, invariance, direction, repeatability."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mlgate.pipeline.fairness import groups
from mlgate.pipeline.stages import evaluate, train

INVARIANCE_TOLERANCE = 0.02  # a score may move this much when only `sex` changes
INVARIANCE_SHARE = 0.95  # ... for at least this share of applicants


def test_minimum_performance_meets_the_gate(model, test_frame, params):
    metrics = evaluate.evaluate(model, test_frame, params)["metrics"]
    for name, minimum in params.gate.min_metrics.items():
        assert metrics[name] >= minimum, f"{name} {metrics[name]} < {minimum}"


def test_performance_holds_in_every_sensitive_group(score, test_frame, params):
    y = (test_frame[params.data.target] == params.data.positive_label).astype(int)
    for name, spec in params.evaluate.sensitive.items():
        by_group = groups(test_frame, name, spec)
        for group in by_group.unique():
            mask = (by_group == group).to_numpy()
            auc = roc_auc_score(y[mask], score(test_frame[mask]))
            assert auc >= 0.60, f"ROC AUC {auc:.3f} for {name}={group}"


def sex_flip_moves(score, frame) -> np.ndarray:
    flipped = frame.assign(sex=frame["sex"].map({"male": "female", "female": "male"}))
    return np.abs(score(flipped) - score(frame))


def test_changing_sex_alone_barely_changes_the_score(score, test_frame):
    moved = sex_flip_moves(score, test_frame)
    share = (moved < INVARIANCE_TOLERANCE).mean()
    assert share >= INVARIANCE_SHARE, f"only {share:.0%} move by < {INVARIANCE_TOLERANCE}"


def test_the_invariance_check_catches_a_model_that_uses_sex(params, test_frame, splits):
    """The invariance test above can fail: a model trained with `sex` as a feature fails it."""
    from mlgate.config import parse_params
    from mlgate.pipeline.model import positive_scores

    raw = params.model_dump(mode="json", by_alias=True)
    raw["features"]["categorical"] = ["sex", *raw["features"]["categorical"]]
    with_sex = parse_params(raw)
    biased = train.fit(splits[0], with_sex)

    def score_biased(frame):
        return positive_scores(biased, frame[with_sex.features.all], 1)

    share = (sex_flip_moves(score_biased, test_frame) < INVARIANCE_TOLERANCE).mean()
    assert share < INVARIANCE_SHARE


@pytest.mark.parametrize(
    ("column", "change", "why"),
    [
        ("duration", lambda v: v * 2, "a loan twice as long is not a safer loan"),
        ("credit_amount", lambda v: v * 2, "twice the amount is not a safer loan"),
    ],
)
def test_a_clearly_riskier_application_never_scores_better(score, test_frame, column, change, why):
    riskier = test_frame.assign(**{column: change(test_frame[column])})
    worse_or_equal = score(riskier) <= score(test_frame) + 1e-9
    assert worse_or_equal.all(), f"{why}: {int((~worse_or_equal).sum())} applicants improved"


def test_a_rich_savings_account_scores_at_least_as_well_as_little(score, test_frame):
    little = test_frame.assign(saving_accounts="little")
    rich = test_frame.assign(saving_accounts="rich")
    assert (score(rich) >= score(little) - 1e-9).mean() >= 0.95


def test_same_data_params_and_seed_give_the_same_metrics(params, splits, test_frame):
    first = evaluate.evaluate(train.fit(splits[0], params), test_frame, params)["metrics"]
    second = evaluate.evaluate(train.fit(splits[0], params), test_frame, params)["metrics"]
    assert first == second


def test_the_in_process_model_matches_what_the_pipeline_reported(model, test_frame, params):
    """The fixture trains what `dvc repro` trains: the metrics equal the committed ones."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    committed = json.loads((root / params.evaluate.metrics).read_text())
    assert evaluate.evaluate(model, test_frame, params)["metrics"] == committed
