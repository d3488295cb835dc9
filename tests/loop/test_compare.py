"""`mlgate outcomes import` and `mlgate compare` on recorded champion/challenger traffic.

The traffic is the example's test split scored by real models trained the project's way
(`train.fit` on the split's training part): the real pipeline, and one trained on shuffled
labels (no signal). Records are written in the feedback format (docs/SERVING.md#feedback-records);
the outcomes are the test split's true labels, imported through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from mlgate.cli import main
from mlgate.config import Params, load_params
from mlgate.pipeline.model import positive_scores
from mlgate.pipeline.stages import split, train
from tests.conftest import ROOT

PARAMS = ROOT / "params.yaml"


@pytest.fixture(scope="module")
def params() -> Params:
    """The example's params with a 20 % test split: its 200 rows are the traffic the figures
    below count (the example itself tests on 30 %)."""
    params = load_params(PARAMS)
    return params.model_copy(update={"split": params.split.model_copy(update={"test_size": 0.2})})


@pytest.fixture(scope="module")
def test_split(params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    from mlgate.pipeline import data

    return split.split_frame(data.load(ROOT / params.data.raw, params), params)


@pytest.fixture(scope="module")
def models(params: Params, test_split: tuple[pd.DataFrame, pd.DataFrame]) -> dict[str, Any]:
    """The example pipeline, and the same pipeline fitted to shuffled labels."""
    training = test_split[0]
    shuffled = training.copy()
    target = params.data.target
    shuffled[target] = np.random.default_rng(0).permutation(shuffled[target].to_numpy())
    return {"real": train.fit(training, params), "shuffled": train.fit(shuffled, params)}


@pytest.fixture(scope="module")
def halves(params: Params, models: dict) -> tuple[dict[str, Any], pd.DataFrame]:
    """Models trained on half the data and the other half as traffic: a canary splits its
    rows, and the example's 200 test rows make halves too small to tell two models apart."""
    from mlgate.pipeline import data

    half = params.model_copy(update={"split": params.split.model_copy(update={"test_size": 0.5})})
    training, rows = split.split_frame(data.load(ROOT / params.data.raw, half), half)
    shuffled = training.copy()
    target = params.data.target
    shuffled[target] = np.random.default_rng(0).permutation(shuffled[target].to_numpy())
    fitted = {"real": train.fit(training, params), "shuffled": train.fit(shuffled, params)}
    return fitted, rows.reset_index(drop=True)


@pytest.fixture(scope="module")
def test_rows(test_split: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    return test_split[1].reset_index(drop=True)


def scored(model: Any, frame: pd.DataFrame, params: Params) -> list[dict[str, Any]]:
    """The fields the service records for a classifier's answer."""
    scores = positive_scores(model, frame[params.features.all], params.data.positive_label)
    t = params.evaluate.threshold
    return [{"probability": float(s), "decision": int(s >= t), "threshold": t} for s in scores]


def request_of(i: int) -> tuple[str, int]:
    """Two rows per request, as /predict_batch records them: (request id, row)."""
    return f"req-{i // 2:05d}", i % 2


def contract_columns(params: Params) -> list[str]:
    """The request's fields: what the service records as `inputs`."""
    from mlgate.pipeline import data

    return list(data.input_schema(params).columns)


def inputs(frame: pd.DataFrame, i: int) -> dict[str, Any]:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in frame.iloc[i].items()}


def write_records(folder: Path, records: list[dict[str, Any]], name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / name).open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)


def shadow_traffic(
    folder: Path,
    params: Params,
    frame: pd.DataFrame,
    champion: Any,
    challenger: Any,
    failing: int = 0,
) -> None:
    """Shadow mode: the champion answers every row (records without `variant`, as before
    the strategy existed), the challenger's score of each is a shadow record; the first
    `failing` rows the challenger fails instead."""
    ts = "2026-12-01T10:00:00.000Z"
    features = frame[contract_columns(params)]
    answers = scored(champion, frame, params)
    shadows = scored(challenger, frame, params)
    records = []
    for i in range(len(frame)):
        request_id, row = request_of(i)
        base = {"schema": 1, "ts": ts, "request_id": request_id, "row": row}
        records.append(
            {
                **base,
                "kind": "prediction",
                "endpoint": "predict_batch",
                "model_version": "1",
                "inputs": inputs(features, i),
                **answers[i],
                "latency_ms": 1.0 + i % 7,
            }
        )
        if i < failing and row == 0:  # one error record for the request's rows
            records.append(
                {  # as the service writes it: no row, the request failed as a whole
                    "schema": 1,
                    "ts": ts,
                    "request_id": request_id,
                    "kind": "error",
                    "variant": "challenger",
                    "endpoint": "predict_batch",
                    "status": 500,
                    "error": "ValueError: broken",
                    "shadow": True,
                    "latency_ms": 2.0,
                    "model_version": "2",
                }
            )
        elif i >= failing:
            records.append(
                {
                    **base,
                    "kind": "shadow",
                    "endpoint": "predict_batch",
                    "variant": "challenger",
                    "model_version": "2",
                    **shadows[i],
                    "latency_ms": 2.0 + i % 5,
                }
            )
    write_records(folder, records, "predictions-host-1-1-0001.jsonl")


def labelled_shadow(
    tmp_path: Path, params: Params, frame: pd.DataFrame, champion: Any, challenger: Any
) -> Path:
    """Shadow traffic with every row's true label imported: the feedback folder."""
    fb = tmp_path / "feedback"
    shadow_traffic(fb, params, frame, champion, challenger)
    assert import_outcomes(fb, true_outcomes(frame, params)) == 0
    return fb


def canary_traffic(
    folder: Path, params: Params, frame: pd.DataFrame, champion: Any, challenger: Any
) -> None:
    """Canary / A/B: every other request answered by the challenger."""
    features = frame[contract_columns(params)]
    answers = {
        "champion": scored(champion, frame, params),
        "challenger": scored(challenger, frame, params),
    }
    records = []
    for i in range(len(frame)):
        request_id, row = request_of(i)
        variant = "challenger" if (i // 2) % 2 else "champion"
        records.append(
            {
                "schema": 1,
                "kind": "prediction",
                "ts": "2026-12-01T10:00:00.000Z",
                "request_id": request_id,
                "row": row,
                "endpoint": "predict_batch",
                "variant": variant,
                "model_version": "2" if variant == "challenger" else "1",
                "inputs": inputs(features, i),
                **answers[variant][i],
                "latency_ms": 1.5,
            }
        )
    write_records(folder, records, "predictions-host-1-1-0001.jsonl")


def true_outcomes(frame: pd.DataFrame, params: Params) -> pd.DataFrame:
    ids = [request_of(i) for i in range(len(frame))]
    return pd.DataFrame(
        {
            "request_id": [r for r, _ in ids],
            "row": [row for _, row in ids],
            "outcome": frame[params.data.target].to_numpy(),
        }
    )


def import_outcomes(
    feedback: Path, table: pd.DataFrame, name: str = "outcomes.csv", params: Path = PARAMS
) -> int:
    path = feedback.parent / name
    if name.endswith(".csv"):
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    return main(
        ["outcomes", "import", str(path), "--feedback", str(feedback), "--params", str(params)]
    )


def imported(feedback: Path) -> list[Path]:
    return sorted(feedback.glob("outcomes-import-*.jsonl"))


def compare(feedback: Path, report: Path, params: Path = PARAMS, *extra: str) -> tuple[int, dict]:
    code = main(
        [
            "compare",
            "--feedback",
            str(feedback),
            "--report",
            str(report),
            "--params",
            str(params),
            *extra,
        ]
    )
    assert (report / "compare.md").read_text().startswith("# Champion vs challenger")
    return code, json.loads((report / "compare.json").read_text())


def small_params(tmp_path: Path, **compare_keys: Any) -> Path:
    """params.yaml with other compare.* thresholds (the rest as the example's)."""
    raw = yaml.safe_load(PARAMS.read_text())
    raw["compare"].update(compare_keys)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# ---------------------------------------------------------------- shadow (paired)


def test_shadow_challenger_trained_on_shuffled_labels_is_aborted(
    params: Params, models: dict, test_rows: pd.DataFrame, tmp_path: Path
) -> None:
    fb = labelled_shadow(tmp_path, params, test_rows, models["real"], models["shuffled"])
    assert len(imported(fb)) == 1
    code, report = compare(fb, tmp_path / "report")
    assert code == 4 and report["verdict"] == "abort", report["reasons"]
    assert report["mode"] == "shadow" and report["difference"]["design"] == "paired"
    assert report["champion"]["predictions"] == report["challenger"]["predictions"] == 200
    assert report["champion"]["outcomes"] == report["challenger"]["outcomes"] == 200
    assert report["champion"]["metric"] > 0.7 > 0.6 > report["challenger"]["metric"]
    assert report["difference"]["ci"][1] < -0.01 and report["difference"]["p_value"] < 0.01
    assert any(r.startswith("confidently worse") for r in report["reasons"])
    assert (
        report["agreement"]["rows"] == 200 and 0 <= report["agreement"]["decision_agreement"] <= 1
    )


def test_since_compares_only_what_was_served_after_it(
    params: Params,
    models: dict,
    test_rows: pd.DataFrame,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A trial compares the traffic since it began: records served earlier (here all, at
    10:00 UTC) are left out; a time without a zone is UTC; a bad time is refused."""
    fb = labelled_shadow(tmp_path, params, test_rows, models["real"], models["shuffled"])
    code, report = compare(fb, tmp_path / "r1", PARAMS, "--since", "2026-12-01T09:00:00")
    assert code == 4 and report["challenger"]["predictions"] == 200, report["reasons"]
    args = ["compare", "--feedback", str(fb), "--params", str(PARAMS)]
    capsys.readouterr()
    assert main([*args, "--report", str(tmp_path / "r2"), "--since", "2026-12-01T11:00Z"]) == 2
    assert "no predictions served since 2026-12-01T11:00:00.000Z" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()
    with pytest.raises(SystemExit) as bad:
        main([*args, "--since", "yesterday"])
    assert bad.value.code == 2
    assert "'yesterday' is not an ISO 8601 time" in capsys.readouterr().err


def test_shadow_challenger_better_than_a_weak_champion_is_promoted(
    params: Params, models: dict, test_rows: pd.DataFrame, tmp_path: Path
) -> None:
    fb = labelled_shadow(tmp_path, params, test_rows, models["shuffled"], models["real"])
    code, report = compare(fb, tmp_path / "report")
    assert code == 0 and report["verdict"] == "promote", report["reasons"]
    assert report["difference"]["ci"][0] > 0
    assert [r.split(" ")[0] for r in report["reasons"]] == ["challenger", "non-inferior:"]
    md = (tmp_path / "report/compare.md").read_text()
    assert "**Promote**" in md and "paired bootstrap" in md


def test_a_challenger_failing_in_shadow_is_aborted_on_its_error_rate(
    params: Params, models: dict, test_rows: pd.DataFrame, tmp_path: Path
) -> None:
    """No outcomes needed: 10 of 200 shadow scores failed (5% > max_error_rate 2%), in five
    two-row requests, each one error record."""
    fb = tmp_path / "feedback"
    shadow_traffic(fb, params, test_rows, models["real"], models["real"], failing=10)
    code, report = compare(fb, tmp_path / "report")
    assert code == 4 and report["verdict"] == "abort"
    assert report["challenger"]["errors"] == 10 and report["champion"]["errors"] == 0
    assert report["challenger"]["error_rate"] == pytest.approx(10 / 200)
    assert report["reasons"] == [
        "challenger error rate 5.00% (10 errors, 190 predictions) > max_error_rate 2.00%"
    ]


def test_too_few_rows_means_collect_even_for_a_clearly_worse_challenger(
    params: Params, models: dict, test_rows: pd.DataFrame, tmp_path: Path
) -> None:
    rows = test_rows.iloc[:60]
    fb = labelled_shadow(tmp_path, params, rows, models["real"], models["shuffled"])
    code, report = compare(fb, tmp_path / "report")
    assert code == 3 and report["verdict"] == "collect"
    assert report["difference"] is None  # no metric comparison on 60 outcomes
    assert "champion: 60 predictions < min_rows 200" in report["reasons"]
    assert "challenger: 60 outcomes < min_outcomes 100" in report["reasons"]
    # a CI step that only wants the report
    assert compare(fb, tmp_path / "report", PARAMS, "--exit-zero")[0] == 0


def test_outcomes_of_one_class_only_mean_collect(
    params: Params, models: dict, test_rows: pd.DataFrame, tmp_path: Path
) -> None:
    """ROC AUC needs both classes: the first labels to arrive are often all of one."""
    fb = tmp_path / "feedback"
    shadow_traffic(fb, params, test_rows, models["shuffled"], models["real"])
    assert import_outcomes(fb, true_outcomes(test_rows, params).assign(outcome=1)) == 0
    code, report = compare(fb, tmp_path / "report")
    assert (code, report["verdict"], report["difference"]) == (3, "collect", None)
    assert report["reasons"] == ["roc_auc is undefined on the outcomes so far (one class only)"]


def test_the_verdict_and_its_figures_are_stable_for_a_fixed_seed(
    params: Params, models: dict, test_rows: pd.DataFrame, tmp_path: Path
) -> None:
    fb = labelled_shadow(tmp_path, params, test_rows, models["real"], models["shuffled"])
    _, first = compare(fb, tmp_path / "one")
    _, again = compare(fb, tmp_path / "two")
    first.pop("generated_at"), again.pop("generated_at")
    assert first == again
    _, other_seed = compare(fb, tmp_path / "three", small_params(tmp_path, seed=7))
    assert other_seed["verdict"] == first["verdict"]
    assert other_seed["difference"]["ci"] != first["difference"]["ci"]  # the seed is used


# ---------------------------------------------------------------- canary (independent)


@pytest.mark.parametrize(
    ("champion", "challenger", "verdict", "code"),
    [("real", "shuffled", "abort", 4), ("shuffled", "real", "promote", 0)],
)
def test_canary_traffic_is_compared_with_an_independent_bootstrap(
    params: Params,
    halves: tuple[dict, pd.DataFrame],
    tmp_path: Path,
    champion: str,
    challenger: str,
    verdict: str,
    code: int,
) -> None:
    models, rows = halves
    fb = tmp_path / "feedback"
    canary_traffic(fb, params, rows, models[champion], models[challenger])
    assert import_outcomes(fb, true_outcomes(rows, params)) == 0
    got, report = compare(fb, tmp_path / "report")
    assert (got, report["verdict"]) == (code, verdict), report["reasons"]
    assert report["mode"] == "split" and report["agreement"] is None
    assert report["difference"]["design"] == "independent"
    assert report["champion"]["predictions"] == report["challenger"]["predictions"] == 250
    assert report["challenger"]["model_versions"] == ["2"]


# ---------------------------------------------------------------- outcomes import


def test_outcomes_from_parquet_and_the_latest_outcome_wins(
    params: Params, models: dict, test_rows: pd.DataFrame, tmp_path: Path
) -> None:
    fb = tmp_path / "feedback"
    shadow_traffic(fb, params, test_rows, models["real"], models["shuffled"])
    labels = true_outcomes(test_rows, params)
    assert import_outcomes(fb, labels.iloc[:10], "first.parquet") == 0
    flipped = labels.iloc[:1].assign(outcome=1 - labels["outcome"].iloc[:1])
    assert import_outcomes(fb, flipped, "second.csv") == 0
    records = [json.loads(line) for path in imported(fb) for line in path.read_text().splitlines()]
    assert len(records) == 11 and {r["source"] for r in records} == {"import"}
    assert records[0] == {**records[0], "kind": "outcome", "schema": 1, "row": 0}
    assert isinstance(records[0]["outcome"], int)  # the class as the model has it
    from mlgate.loop.compare import load_records

    outcomes = load_records(fb)["outcomes"].set_index(["request_id", "row"])["outcome"]
    assert len(outcomes) == 10
    assert outcomes[("req-00000", 0)] == 1 - labels["outcome"].iloc[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.assign(request_id=t["request_id"].where(t.index % 50 > 0, "nope")),
            [
                "4 of 200 rows refused",
                "unknown request id: 4 rows",
                "row 1, column request_id: 'nope'",
            ],
        ),
        (
            lambda t: t.assign(outcome=t["outcome"].astype(str).where(t.index != 3, "yes")),
            ["wrong type: 1 rows", "row 4, column outcome: 'yes'", "one of the classes [0, 1]"],
        ),
        (
            lambda t: t.assign(outcome=t["outcome"].where(t.index != 5, 2)),
            ["wrong type: 1 rows", "row 6, column outcome: '2'"],
        ),
        (
            lambda t: t.assign(row=t["row"].where(t.index != 7, 5)),
            ["row not recorded: 1 rows", "row 8, column row: 5"],
        ),
        (
            lambda t: pd.concat([t, t.iloc[:2].assign(outcome=1 - t["outcome"].iloc[:2])]),
            ["conflicting duplicate: 2 rows", "row 201, column outcome"],
        ),
        (
            lambda t: t.drop(columns=["outcome"]),
            ["missing column(s) ['outcome']", "it has ['request_id', 'row']"],
        ),
    ],
    ids=[
        "unknown-id",
        "text-label",
        "unknown-class",
        "row-not-recorded",
        "duplicate",
        "no-outcome",
    ],
)
def test_a_bad_outcomes_file_is_refused_whole(
    params: Params,
    models: dict,
    test_rows: pd.DataFrame,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: Any,
    message: list[str],
) -> None:
    fb = tmp_path / "feedback"
    shadow_traffic(fb, params, test_rows, models["real"], models["shuffled"])
    capsys.readouterr()
    assert import_outcomes(fb, change(true_outcomes(test_rows, params))) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlgate outcomes: error: ")
    for part in message:
        assert part in err, err
    assert imported(fb) == [] and not list(fb.glob(".*tmp"))  # nothing written, no leftovers


def test_regression_outcomes_must_be_finite_numbers(tmp_path: Path) -> None:
    from mlgate.loop.outcomes import check_outcomes

    frame = pd.DataFrame(
        {"request_id": ["a", "a", "b"], "row": ["0", "1", "0"], "outcome": ["12.5", "inf", "x"]}
    )
    records, problems, _ = check_outcomes(frame, {"a": {0, 1}, "b": {0}}, "regression", [])
    assert [r["outcome"] for r in records] == [12.5]
    assert [(p.line, p.column, p.value) for p in problems] == [
        (2, "outcome", "inf"),
        (3, "outcome", "x"),
    ]


# ---------------------------------------------------------------- errors and the statistics


def test_no_records_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compare", "--report", str(tmp_path / "r"), "--params", str(PARAMS)]
    assert main([*args, "--feedback", str(tmp_path / "absent")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([*args, "--feedback", str(tmp_path / "empty")]) == 2
    assert "no feedback records" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_resampled_roc_auc_equals_scikit_learns() -> None:
    from sklearn.metrics import roc_auc_score

    from mlgate.loop.compare import metric_resampled

    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.3).astype(float)
    s = np.round(rng.random(300) + y * 0.3, 2)  # rounded: ties
    idx = rng.integers(0, 300, size=(20, 300))
    expected = [roc_auc_score(y[i], s[i]) for i in idx]
    assert metric_resampled("roc_auc", y, s, idx) == pytest.approx(expected, abs=1e-12)


def test_a_larger_rmse_counts_as_worse(params: Params) -> None:
    """For rmse the rule turns around: challenger - champion > 0 is a loss."""
    from mlgate.loop.compare import Difference, Variant, decide

    def variant(name: str) -> Variant:
        return Variant(name, ["1"], 500, 0, 0.0, 1.0, {}, {}, 500)

    def verdict(ci: list[float]) -> str:
        d = Difference("rmse", False, "paired", {}, sum(ci) / 2, ci, 0.5, 1000)
        return decide(params, variant("champion"), variant("challenger"), d, "rmse")[0]

    assert verdict([0.5, 0.9]) == "abort"  # confidently larger error
    assert verdict([-0.3, 0.005]) == "promote"  # at most 0.005 larger: within 0.01
    assert verdict([-0.3, 0.2]) == "collect"


def test_a_relative_loss_is_a_share_of_the_champions_metric(params: Params) -> None:
    """compare.relative: for an rmse of 2,500 (price units), 1 % allows 25 worse; the
    absolute 0.01 would allow nothing a bootstrap interval could show."""
    from mlgate.loop.compare import Difference, Variant, decide

    champion = Variant("champion", ["1"], 500, 0, 0.0, 1.0, {}, {}, 500, metric=2500.0)
    challenger = Variant("challenger", ["2"], 500, 0, 0.0, 1.0, {}, {}, 500, metric=2510.0)
    d = Difference("rmse", False, "paired", {}, 10.0, [-5.0, 20.0], 0.3, 1000)
    relative = params.model_copy(
        update={"compare": params.compare.model_copy(update={"relative": True})}
    )
    verdict, reasons = decide(relative, champion, challenger, d, "rmse")
    assert verdict == "promote", reasons
    assert "max_metric_loss 1.0% of the champion's 2500 = 25" in reasons[-1]
    assert decide(params, champion, challenger, d, "rmse")[0] == "collect"  # absolute 0.01
    worse = Difference("rmse", False, "paired", {}, 40.0, [30.0, 50.0], 0.001, 1000)
    assert decide(relative, champion, challenger, worse, "rmse")[0] == "abort"  # > 25 throughout


def test_regression_traffic_is_compared_on_rmse_where_larger_is_worse(
    params: Params, test_split: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    """A real regressor of the example data (credit amount from duration, age and job)
    against the same fitted to shuffled amounts: outcomes imported as numbers, rmse decides."""
    from sklearn.linear_model import Ridge

    training, rows = test_split[0], test_split[1].reset_index(drop=True)
    features, target = ["duration", "age", "job"], "credit_amount"
    shuffled = np.random.default_rng(0).permutation(training[target].to_numpy())
    champion = Ridge().fit(training[features], training[target])
    challenger = Ridge().fit(training[features], shuffled)
    records = []
    for i, (a, b) in enumerate(
        zip(champion.predict(rows[features]), challenger.predict(rows[features]), strict=True)
    ):
        request_id, row = request_of(i)
        base = {"schema": 1, "ts": "2026-12-01T10:00:00.000Z", "request_id": request_id}
        records.append({**base, "row": row, "kind": "prediction", "prediction": float(a)})
        records.append(
            {**base, "row": row, "kind": "shadow", "variant": "challenger", "prediction": float(b)}
        )
    fb = tmp_path / "feedback"
    write_records(fb, records, "predictions-host-1-1-0001.jsonl")
    raw = yaml.safe_load(PARAMS.read_text())
    raw["data"]["task"] = "regression"
    raw["gate"] = {"report": "artifacts/gate.json", "champion": {"metric": "rmse"}}
    regression = tmp_path / "params.yaml"
    regression.write_text(yaml.safe_dump(raw))
    labels = true_outcomes(rows, params).assign(outcome=rows[target].astype(float))
    assert import_outcomes(fb, labels, params=regression) == 0
    code, report = compare(fb, tmp_path / "report", regression)
    assert (code, report["verdict"], report["metric"]) == (4, "abort", "rmse"), report["reasons"]
    assert report["challenger"]["metric"] > report["champion"]["metric"]
    assert report["difference"]["ci"][0] > 0 and not report["difference"]["higher_is_better"]
    assert "decision_agreement" not in report["agreement"]
