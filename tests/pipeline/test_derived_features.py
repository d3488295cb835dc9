"""Features the model derives from a timestamp (its age in days, month, weekday) or a free text
(TF-IDF) of data.roles: computed inside the pickled Pipeline, so a row scores the same in
training, serving and batch; attributed to their source column; optional in a request."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlgate.config import Params, parse_params
from mlgate.errors import MlgateError
from mlgate.pipeline import explain
from mlgate.pipeline.derive import TimestampParts
from mlgate.pipeline.stages import train
from mlgate.serving.scorer import PipelineScorer, fast_scorer
from tests.pipeline.test_roles import params as role_params
from tests.pipeline.test_roles import visits

DERIVED = {
    "from_timestamp": {"seen": ["days_since", "month", "weekday"]},
    "from_text": {"note": {"max_features": 5}},
}


def params(**features: Any) -> Params:
    raw = role_params().model_dump(by_alias=True, mode="json")
    raw["features"].update(features or DERIVED)
    return parse_params(raw)


def labelled_visits(n: int = 120) -> pd.DataFrame:
    """Visits whose label the note's words and the month tell, with a date and a note missing
    on some rows (such columns are optional)."""
    frame = visits(n)
    rng = np.random.default_rng(3)
    label = rng.integers(0, 2, n)
    words = np.where(label == 1, "late refund", "thanks fine")
    frame["note"] = [f"{w} visit {i % 7}" for i, w in enumerate(words)]
    frame["label"] = label
    frame.loc[[5, 17], "note"] = None
    frame.loc[[8], "seen"] = None
    return frame


def test_a_timestamp_gives_its_parts_against_a_reference_fixed_at_fit() -> None:
    seen = pd.DataFrame({"seen": ["2024-03-01", "2024-03-04T12:00:00", "2024-02-29", None]})
    parts = TimestampParts(("days_since", "month", "weekday", "hour")).fit(seen)
    later = pd.DataFrame({"seen": ["2024-03-04T12:00:00", "2024-05-04", None, "not a date"]})
    out = parts.transform(later)
    # days from each date to the latest training date (2024-03-04 12:00), whenever scored
    assert out[0].tolist() == [0.0, 3.0, 0.0, 12.0]  # a Monday
    assert out[1].tolist() == [-60.5, 5.0, 5.0, 0.0]  # a Saturday, after the reference
    assert np.isnan(out[2]).all() and np.isnan(out[3]).all()  # missing, or refused upstream
    assert parts.transform(seen)[:, 0].tolist()[:3] == [3.5, 0.0, 4.5]
    assert list(parts.get_feature_names_out()) == [
        "seen:days_since",
        "seen:month",
        "seen:weekday",
        "seen:hour",
    ]


def test_the_model_reads_the_date_and_the_note_through_their_derived_features() -> None:
    p, frame = params(), labelled_visits()
    model = train.fit(frame, p)
    assert list(model.feature_names_in_) == ["amount", "kind", "seen", "note"]
    rows = frame.drop(columns=["label", "visit_id"])
    proba = model.predict_proba(rows)[:, 1]
    assert np.isfinite(proba).all()
    # the words decide: a model that could not read the note would be near 0.5
    assert proba[frame["label"].to_numpy() == 1].mean() > 0.8
    alone = [model.predict_proba(rows.iloc[[i]])[0, 1] for i in (0, 5, 8)]
    assert alone == pytest.approx(proba[[0, 5, 8]], abs=1e-12)
    blank = rows.assign(seen=None, note=None)
    assert np.isfinite(model.predict_proba(blank)).all()
    unseen = rows.assign(note="words never seen in training", seen="2031-12-31")
    assert np.isfinite(model.predict_proba(unseen)).all()


def test_every_derived_output_is_attributed_to_its_source_column() -> None:
    p, frame = params(), labelled_visits()
    model = train.fit(frame, p)
    preprocess = model.named_steps["preprocess"]
    names = list(preprocess.get_feature_names_out())
    owners = explain.output_columns(preprocess)
    assert {o for n, o in zip(names, owners, strict=True) if n.startswith("seen:")} == {"seen"}
    assert {o for n, o in zip(names, owners, strict=True) if n.startswith("note:")} == {"note"}
    assert "note:refund" in names and "seen:days_since" in names
    assert sum(n.startswith("note:") for n in names) == 5  # the vocabulary's bound
    test = frame.iloc[:40]
    method, base, columns, terms = explain.contributions(model, test[p.features.inputs], frame)  # type: ignore[misc]
    assert method == "exact-linear" and columns == ["amount", "kind", "seen", "note"]
    raw = explain.raw_score(model, test[p.features.inputs])
    assert np.abs(base + terms.sum(axis=1) - raw).max() < 1e-6
    ranked = explain.importance(model, test, frame, p)["columns"]
    assert next(iter(ranked)) == "note"


def test_a_served_row_scores_as_the_pipeline_and_no_fast_path_claims_it() -> None:
    """Served by the Pipeline itself, reading the contract's columns (missing ones as None):
    the fast scorers cover the standard preprocessing only, and the build says why."""
    p, frame = params(), labelled_visits()
    model = train.fit(frame, p)
    rows = frame.drop(columns=["label"]).astype(object)
    records = rows.where(rows.notna(), None).to_dict("records")
    records[0] = {k: v for k, v in records[0].items() if k not in ("seen", "note")}
    expected = model.predict_proba(pd.DataFrame.from_records(records, columns=p.features.inputs))
    served = PipelineScorer(model, 1, p.features.inputs).scores(records)
    assert served == pytest.approx(expected[:, 1], abs=1e-12)
    scorer, why = fast_scorer(model, 1, records, served, "auto")
    assert scorer is None
    assert "derives features from a timestamp or a text (features.from_timestamp" in why


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({"from_timestamp": {"note": ["month"]}}, "features.from_timestamp names ['note'], "),
        ({"from_text": {"amount": {}}}, "features.from_text names ['amount'], which data.roles"),
        ({"from_timestamp": {"seen": ["month", "month"]}}, "seen: name each part once"),
        ({"from_timestamp": {"seen": ["year"]}}, "features.from_timestamp.seen.0"),
        ({"from_text": {"note": {"max_features": 0}}}, "from_text.note.max_features"),
    ],
)
def test_params_refuse_a_derived_feature_they_cannot_make(
    features: dict[str, Any], message: str
) -> None:
    with pytest.raises(MlgateError, match=re.escape(message)):
        params(**features)
