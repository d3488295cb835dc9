"""Schema and role inference of `mlgate init`: pure functions on small frames."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlgate.config import load_params
from mlgate.errors import MlgateError
from mlgate.scaffold.infer import (
    attr_name,
    choose_positive_label,
    dataset_contract,
    fairness_gate,
    infer_columns,
    infer_task,
    looks_protected,
    parse_monotone,
    quality_gate,
    sensitive_specs,
    widened_bounds,
)
from mlgate.scaffold.init import InitRequest, _summary, answers_for, render
from mlgate.scaffold.source import TEMPLATE_DIR
from mlgate.serving.contract import Contract
from tests.scaffold.conftest import churn_frame, turn_on_derived_features


def test_bounds_widen_by_a_tenth_of_the_span_and_keep_non_negative() -> None:
    assert widened_bounds(10, 110, integer=True) == (0, 120)
    assert widened_bounds(-5, 5, integer=True) == (-6, 6)
    low, high = widened_bounds(0.2, 0.7, integer=False)
    assert (low, high) == (0.15, 0.75)
    assert widened_bounds(3, 3, integer=True) == (2, 4)  # a constant column still has room


def test_column_names_become_identifiers_without_clashes() -> None:
    taken: set[str] = set()
    assert attr_name("monthly income", taken) == "monthly_income"
    assert attr_name("monthly-income", taken) == "monthly_income_2"
    assert attr_name("2nd", taken) == "c_2nd"
    assert attr_name("class", taken) == "class_"
    # what a regex calls a word character Python may not take in a name, or reads otherwise
    assert attr_name("lot m²", taken) == "lot_m_"
    assert attr_name("µs ½", taken) == "μs__"
    assert attr_name("ﬁle", taken) == "file"
    assert attr_name("١٢", taken) == "c_١٢"
    assert attr_name("empty", taken) == "empty_"  # pandera's DataFrameModel.empty
    assert attr_name("_id", taken) == "c__id"  # pandera leaves private attributes out
    assert all(name.isidentifier() for name in taken)


def test_a_schema_of_any_column_names_is_python_that_reads_those_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lot m²` became the attribute `lot_m²`, which is no Python: the generated schema.py did
    not import. Every name a CSV header can hold comes back as the column's name."""
    import importlib.util

    names = ["lot m²", "µs", "ﬁle", "2nd.score", "plan/tier", "canal d'achat", 'say "hi"']
    names += ["empty", "_id", "schema", "model_config"]
    frame = pd.DataFrame({**{n: [1.5, 2.5] * 30 for n in names}, "label": [0, 1] * 30})
    request = InitRequest(dest=tmp_path / "odd", data=tmp_path / "odd.csv", target="label")
    answers = answers_for(request, frame)
    render(str(TEMPLATE_DIR), tmp_path / "odd", answers, None)
    path = tmp_path / "odd" / "src" / answers["package_name"] / "schema.py"
    spec = importlib.util.spec_from_file_location("odd_schema", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "odd_schema", module)  # pandera reads its annotations there
    spec.loader.exec_module(module)
    schema = module.LabelledRecord.to_schema()
    assert list(schema.columns) == [*names, "label"]
    module.LabelledRecord.validate(frame)
    # served: the request row takes each name as it is (pydantic keeps `_id` private and
    # `schema` as BaseModel's: those fields are named otherwise, the name is their alias)
    row = Contract.from_schema(schema.remove_columns(["label"]), "Row").row_model
    sent = {n: 2.5 for n in names}
    assert row.model_validate(sent).model_dump(by_alias=True) == sent
    assert set(row.model_json_schema()["properties"]) == set(names)


def frame() -> pd.DataFrame:
    n = 40
    return pd.DataFrame(
        {
            "id": range(n),
            "score": np.linspace(0, 1, n),
            "colour": ["red", "blue"] * (n // 2),
            "note": [f"free text {i}" for i in range(n)],
            "group": ["a", "b", None, "a"] * (n // 4),
            "label": [0, 1] * (n // 2),
        }
    )


def test_roles_types_and_contract_are_inferred() -> None:
    cols = {c["name"]: c for c in infer_columns(frame(), "label", "classification", ("group",))}
    assert cols["id"]["kind"] == "key"  # every value distinct: an identifier
    assert cols["note"]["kind"] == "text"  # free text
    # no feature: unbounded and optional (new IDs are no contract failure, nor required)
    assert (cols["id"]["ge"], cols["id"]["le"]) == (None, None)
    assert cols["id"]["optional"] and cols["note"]["optional"] and cols["id"]["nullable"]
    assert not cols["score"].get("optional") and not cols["group"].get("optional")
    assert cols["score"]["kind"] == "numeric" and cols["score"]["dtype"] == "float"
    assert (cols["score"]["ge"], cols["score"]["le"]) == (0.0, 1.1)
    assert cols["colour"]["isin"] == ["blue", "red"] and cols["colour"]["kind"] == "categorical"
    assert cols["group"]["kind"] == "sensitive" and cols["group"]["nullable"] is True
    assert cols["label"]["kind"] == "target" and cols["label"]["isin"] == [0, 1]
    assert cols["label"]["ge"] is None  # a class label has classes, not a range


def messy_frame(n: int = 60) -> pd.DataFrame:
    """What an export looks like: an ID, a date, free text, codes without spaces, gaps."""
    rng = np.random.default_rng(1)
    days = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.permutation(n), unit="D")
    frame = pd.DataFrame(
        {
            "OrderID": [f"A-{i:04d}" for i in rng.permutation(n)],
            "ticket": [f"T{i}" for i in range(n)],  # no "id" in the name: distinct, no spaces
            "ordered at": days.strftime("%Y-%m-%dT%H:%M:%S"),
            "comment": [f"late by {i} days, {w}" for i, w in enumerate(["ok", "bad"] * 30)],
            "amount": rng.uniform(1, 50, n).round(2),  # distinct, but a measurement
            "weight": [10 + i % 25 for i in range(n)],  # whole numbers, some repeated
            "label": ["y", "n"] * (n // 2),
        }
    )
    frame.loc[[2, 5], ["ordered at", "comment", "amount"]] = None
    frame.loc[7, "OrderID"] = None  # named like an id: a key despite the gap
    return frame


def test_keys_timestamps_and_free_text_are_told_apart_with_a_reason() -> None:
    frame = messy_frame()
    cols = {c["name"]: c for c in infer_columns(frame, "label", "classification", ())}
    kinds = {name: c["kind"] for name, c in cols.items()}
    assert kinds == {
        "OrderID": "key",
        "ticket": "key",
        "ordered at": "timestamp",
        "comment": "text",
        "amount": "numeric",
        "weight": "numeric",
        "label": "target",
    }
    assert cols["ticket"]["why"] == "every value is distinct"
    assert cols["ordered at"]["why"].startswith("every value reads as a date/time, 2023-")
    assert cols["comment"]["why"] == "58 distinct text values, free text rather than a category"
    assert cols["OrderID"]["why"] == "every value is distinct, named like an id"
    with_gaps = frame.assign(line_id=[float(i) if i % 9 else None for i in range(len(frame))])
    assert infer_columns(with_gaps, "label", "classification", ())[-1]["kind"] == "key"
    for name in ("ticket", "ordered at", "comment"):  # no bound, no category, optional
        assert cols[name]["isin"] is None and cols[name]["ge"] is None and cols[name]["optional"]


def test_the_summary_and_params_name_each_role_and_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request = InitRequest(dest=tmp_path / "orders", data=tmp_path / "o.csv", target="label")
    answers = answers_for(request, messy_frame())
    _summary(request.dest, answers)
    out = capsys.readouterr().out
    assert "not a feature: ticket (key: every value is distinct)" in out
    assert "not a feature: ordered at (timestamp: every value reads as a date/time, 2023-" in out
    assert "`split.by: time` in params.yaml tests on the latest rows by ordered at" in out
    # free text stays out of the model unless asked for, and the summary says how to ask
    assert (
        "not a feature: comment (text: 58 distinct text values, free text rather than a "
        "category; left out by default; params.yaml features.from_text makes it TF-IDF "
        "features)" in out
    )
    assert "features.from_timestamp can derive its days_since, month, weekday, hour)" in out
    render(str(TEMPLATE_DIR), tmp_path / "orders", answers, None)
    params = load_params(tmp_path / "orders" / "params.yaml")
    assert (params.features.from_timestamp, params.features.from_text) == ({}, {})
    # the commented examples name this data's own columns and are valid as they stand
    assert turn_on_derived_features(tmp_path / "orders" / "params.yaml") == [
        'from_timestamp: {"ordered at": [days_since, month, weekday]}',
        'from_text: {"comment": {max_features: 100}}',
    ]
    derived = load_params(tmp_path / "orders" / "params.yaml").features
    assert derived.inputs == [*params.features.all, "ordered at", "comment"]
    assert params.data.roles == {
        "OrderID": "key",
        "ticket": "key",
        "ordered at": "timestamp",
        "comment": "text",
    }
    assert params.split.by == "random"
    assert "ticket" not in params.features.all and "amount" in params.features.all


def test_numeric_sensitive_attributes_get_quartile_bands() -> None:
    data = pd.DataFrame({"age": np.arange(18, 98), "sex": ["f", "m"] * 40})
    specs = sensitive_specs(data, ("age", "sex"))
    assert specs["sex"] == {}
    assert specs["age"] == {"bands": [38, 58, 77]}


def test_task_and_positive_label_guesses() -> None:
    assert infer_task(pd.Series(np.linspace(0, 100, 50))) == "regression"
    assert infer_task(pd.Series(["yes", "no"] * 5)) == "classification"
    assert infer_task(pd.Series([0, 1] * 30)) == "classification"
    assert choose_positive_label(["no", "yes"], None) == "yes"
    assert choose_positive_label([0, 1], None) == 1
    assert choose_positive_label(["bad", "good"], "GOOD") == "good"
    with pytest.raises(MlgateError, match="pass --positive-label"):
        choose_positive_label(["cat", "dog"], None)


def test_a_boolean_target_needs_no_class_list() -> None:
    data = pd.DataFrame({"x": np.arange(30), "ok": [True, False, True] * 10})
    target = infer_columns(data, "ok", "classification", ())[-1]
    assert target["dtype"] == "bool" and target["isin"] is None


def test_the_first_whole_dataset_rules_let_the_data_seen_pass_and_half_of_it() -> None:
    frame = pd.DataFrame({"x": range(60), "y": ["a"] * 40 + ["b"] * 20})
    frame.loc[59, "x"] = 58  # one repeated row
    contract = dataset_contract(frame, "y", "classification")
    assert contract == {
        "rows": 60,
        "min_rows": 30,
        "max_duplicate_share": 0.04,  # twice the share seen (1/60), rounded up to a percent
        "min_rows_per_class": 10,
    }
    assert "min_rows_per_class" not in dataset_contract(frame, "x", "regression")


def test_a_few_whole_numbers_are_category_codes_unless_declared_monotone() -> None:
    data = pd.DataFrame(
        {
            "sex": [1, 2] * 30,  # a code, as in many survey exports
            "grade": [1.0, 2.0, 3.0] * 20,  # whole floats: still a code
            "rooms": [1, 2, 3, 4] * 15,  # four values: a count, numeric
            "score": np.linspace(0, 1, 60),
            "y": [0, 1] * 30,
        }
    )
    cols = {c["name"]: c for c in infer_columns(data, "y", "classification", ())}
    assert cols["sex"]["kind"] == "categorical" and cols["sex"]["isin"] == [1, 2]
    assert cols["sex"]["ge"] is None and cols["sex"]["code"]
    assert cols["grade"]["kind"] == "categorical" and cols["grade"]["isin"] == [1, 2, 3]
    assert cols["rooms"]["kind"] == "numeric" and cols["score"]["kind"] == "numeric"
    kept = {c["name"]: c for c in infer_columns(data, "y", "classification", (), ("grade",))}
    assert kept["grade"]["kind"] == "numeric"  # its order means something: declared monotone


def test_names_that_suggest_a_protected_attribute() -> None:
    for name in ("gender", "Sex", "applicant_age", "RaceCode", "ethnicity", "religion"):
        assert looks_protected(name), name
    for name in ("page_views", "usage", "mileage", "message", "essex_branch", "tenure"):
        assert not looks_protected(name), name


def test_monotone_options_parse_and_refuse_a_missing_direction() -> None:
    assert parse_monotone(["area:+1", "age:-1,rooms:+"]) == (
        ("area", 1),
        ("age", -1),
        ("rooms", 1),
    )
    with pytest.raises(MlgateError, match="COLUMN:\\+1"):
        parse_monotone(["area"])
    with pytest.raises(MlgateError, match="COLUMN:\\+1"):
        parse_monotone(["area:up"])


def test_fairness_bounds_are_the_first_gap_plus_a_visible_margin() -> None:
    measured = {
        "metrics": {"mae": 20_000.0},
        "fairness": {"town": {"mae_difference": 11_856.4}},
    }
    regression = fairness_gate("regression", measured)
    assert regression["fairness_gate"] == {"mae_difference": {"town": [13_900.0, 11_856.4]}}
    assert regression["fairness_margin"] == "+ 10% of its MAE (20,000)"
    gaps = {"demographic_parity_difference": 0.0746, "equalized_odds_difference": 0.97}
    classification = fairness_gate("classification", {"metrics": {}, "fairness": {"g": gaps}})
    assert classification["fairness_gate"] == {
        "demographic_parity_difference": {"g": [0.13, 0.0746]},
        "equalized_odds_difference": {"g": [1.0, 0.97]},  # a gap is at most 1
    }


def test_the_summary_warns_of_a_protected_feature_and_of_no_fairness(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = churn_frame(n=60).assign(sex=[1, 2] * 30)
    request = InitRequest(dest=tmp_path / "churn", data=tmp_path / "churn.csv", target="churned")
    _summary(request.dest, answers_for(request, data))
    out, err = capsys.readouterr()
    assert "fairness: NOT measured (no --sensitive)" in out
    assert "sex: numbers taken as category codes (1, 2)" in out
    for column in ("gender", "age", "sex"):
        assert f"WARNING: {column!r} is a feature and its name suggests a protected" in err
    assert "tenure" not in err


def test_with_intervals_each_fairness_bound_is_the_upper_end_of_the_first_gaps_interval() -> None:
    gaps = {"demographic_parity_difference": 0.0746, "equalized_odds_difference": 0.2}
    measured = {
        "metrics": {},
        "fairness": {"g": gaps},
        "confidence": 0.95,
        "intervals": {
            "g": {
                "demographic_parity_difference": [0.01, 0.1812],
                "equalized_odds_difference": [0.1, 0.9991],
            }
        },
    }
    chosen = fairness_gate("classification", measured)
    assert chosen["fairness_gate"] == {
        "demographic_parity_difference": {"g": [0.19, 0.0746]},
        "equalized_odds_difference": {"g": [1.0, 0.2]},
    }
    assert chosen["fairness_margin"] == "raised to the upper end of its 95% bootstrap interval"


def test_the_quality_bar_is_the_lower_end_of_the_first_models_interval_never_below_chance() -> None:
    def measured(metric: str, value: float, low: float, high: float) -> dict:
        return {"metrics": {metric: value}, "metric_intervals": {metric: [low, high]},
                "confidence": 0.95, "fairness": {}}  # fmt: skip

    chosen = quality_gate("classification", measured("roc_auc", 0.7476, 0.6681, 0.8158))
    assert chosen["quality_gate"] == {"roc_auc": [0.66, 0.7476, 0.6681, 0.8158]}
    assert chosen["quality_why"].startswith("the lower end of a first model's 95% bootstrap")
    # a first model whose interval reaches below chance: the bar stays at chance, and says so
    weak = quality_gate("multiclass", measured("roc_auc_ovr", 0.61, 0.49, 0.72))
    assert weak["quality_gate"] == {"roc_auc_ovr": [0.55, 0.61, 0.49, 0.72]}
    assert weak["quality_why"].startswith("better than chance (a first model's 95% interval")
    regression = quality_gate("regression", measured("r2", 0.83, 0.7949, 0.86))
    assert regression["quality_gate"] == {"r2": [0.79, 0.83, 0.7949, 0.86]}
    # no interval (e.g. too few rows to resample): chance, with nothing claimed measured
    bare = quality_gate("classification", {"metrics": {"roc_auc": 0.7}, "fairness": {}})
    assert bare == {"quality_gate": {"roc_auc": [0.55, None, None, None]},
                    "quality_why": "better than chance"}  # fmt: skip


def test_the_first_quality_bar_reaches_params_and_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request = InitRequest(dest=tmp_path / "churn", data=tmp_path / "c.csv", target="churned")
    answers = answers_for(request, churn_frame())
    answers.update(quality_gate("classification", {
        "metrics": {"roc_auc": 0.8}, "metric_intervals": {"roc_auc": [0.7123, 0.88]},
        "confidence": 0.9, "fairness": {}}))  # fmt: skip
    _summary(request.dest, answers)
    out = capsys.readouterr().out
    assert "roc_auc >= 0.71 (a first model: 0.8 [0.7123, 0.88])" in out
    assert "the lower end of a first model's 90% bootstrap interval, rounded down" in out
    render(str(TEMPLATE_DIR), request.dest, answers, None)
    params = load_params(request.dest / "params.yaml")
    assert params.gate.min_metrics == {"roc_auc": 0.71}


def test_a_town_of_many_values_is_a_category_and_a_sentence_is_free_text() -> None:
    """More than 20 values made every text column free text, so a town of 120 values (or a
    product code) was left out of the model; one that repeats and has no spaces is a category,
    unbounded: the next export's new towns are no contract failure."""
    from tests.scaffold.conftest import accounts_frame

    frame = accounts_frame()
    cols = {c["name"]: c for c in infer_columns(frame, "Account Status", "multiclass", ())}
    town = cols["town"]
    levels = frame["town"].nunique()
    assert (town["kind"], town["isin"], town["levels"]) == ("categorical", None, levels)
    assert levels > 100
    assert cols["notes / comments"]["kind"] == "text"
    assert cols["région"]["isin"] == ["Zürich", "nord", "sud-ouest", "île-de-france"]
    every_row_a_town = frame.assign(town=[f"town-{i}" for i in range(len(frame))])
    assert infer_columns(every_row_a_town, "Account Status", "multiclass", ())[9]["kind"] == "key"
