"""`dvc repro` for real, in temporary copies of this repository."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import run
from tests.pipeline.conftest import read_json, registry_state

pytestmark = pytest.mark.slow
STAGES = ["validate", "split", "train", "evaluate", "gate"]


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def set_param(repo: Path, dotted: str, value: object) -> None:
    path = repo / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    *parents, last = dotted.split(".")
    node = raw
    for key in parents:
        node = node[key]
    node[last] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def test_a_clean_run_produces_a_gated_registered_model(trained_repo):
    gate = read_json(trained_repo / "artifacts/gate.json")
    assert gate["passed"] is True
    assert {c["kind"] for c in gate["checks"]} == {"quality", "fairness", "champion", "chance"}
    metrics = read_json(trained_repo / "artifacts/metrics.json")
    assert metrics["roc_auc"] >= 0.7
    # beside each point value its bootstrap interval, and each bound checked against it
    intervals = read_json(trained_repo / "artifacts/intervals.json")
    assert set(intervals["metrics"]) == set(metrics)
    for name, (lo, hi) in intervals["metrics"].items():
        assert lo <= metrics[name] <= hi, name
    fairness = read_json(trained_repo / "artifacts/fairness.json")
    for attr, gaps in intervals["fairness"].items():
        for gap, (lo, hi) in gaps.items():
            assert lo <= fairness[attr][gap] <= hi, (attr, gap)
    bounded = [c for c in gate["checks"] if c["kind"] in ("quality", "fairness")]
    assert all(c["interval"] and c["verdict"] in ("pass", "uncertain") for c in bounded)
    # it beats what the same training reaches on shuffled labels, scored on the same rows
    (chance,) = [c for c in gate["checks"] if c["kind"] == "chance"]
    assert chance["verdict"] == "pass" and set(intervals["chance"]["metrics"]) == {
        "roc_auc", "brier"}  # fmt: skip
    metric = chance["name"].removeprefix("chance:")
    assert chance["threshold"] == intervals["chance"]["metrics"][metric]["bound"]
    # what drives it: every feature ranked, exactly (a linear model), the largest first
    drivers = read_json(trained_repo / "artifacts/importance.json")
    assert drivers["method"] == "exact-linear"
    ranked = list(drivers["columns"].values())
    assert len(ranked) == 8 and ranked == sorted(ranked, reverse=True) and ranked[-1] > 0
    state = registry_state(trained_repo)
    assert list(state) == ["1"]
    tags = state["1"]["tags"]
    assert state["1"]["aliases"] == ["candidate"]
    for key in ("git_commit", "git_dirty", "data_hash", "params_hash", "dvc_lock_hash"):
        assert tags[f"mlgate.{key}"], key
    assert tags["mlgate.git_dirty"] == "false"
    assert (
        tags["mlgate.data_hash"]
        == yaml.safe_load((trained_repo / "data.dvc").read_text())["outs"][0]["md5"]
    )
    assert tags["mlgate.gate_passed"] == "true"


def test_dvc_metrics_and_plots_read_the_outputs(trained_repo, tmp_path):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], trained_repo).stdout)
    files = shown[""]["data"]
    # only metrics.json: the per-group fairness table and the data summary are plain outputs,
    # so `dvc metrics show|diff` stays one readable row
    assert list(files) == ["artifacts/metrics.json"]
    assert "roc_auc" in files["artifacts/metrics.json"]["data"]
    shown = json.loads(run(["dvc", "plots", "show", "--json"], trained_repo).stdout)
    assert "errors" not in shown
    plots = {Path(k).name: v[0]["content"] for k, v in shown["data"].items()}
    assert set(plots) == {"roc.json", "precision_recall.json", "confusion.csv"}
    # nothing per row: curves are thinned, the confusion matrix is its four cells, summed by
    # the project's template (.dvc/plots/confusion_counts.json)
    assert all(
        len(plots[p]["data"]["values"]) <= 101 for p in ("roc.json", "precision_recall.json")
    )
    cells = plots["confusion.csv"]["data"]["values"]
    assert {(c["actual"], c["predicted"]) for c in cells} == {
        ("0", "0"),
        ("0", "1"),
        ("1", "0"),
        ("1", "1"),
    }
    test_rows = read_json(trained_repo / "artifacts/fairness.json")["sex"]["groups"]
    assert sum(int(c["count"]) for c in cells) == sum(g["count"] for g in test_rows.values())
    assert "cell_count" in json.dumps(plots["confusion.csv"]["spec"])
    run(["dvc", "plots", "show", "-o", str(tmp_path)], trained_repo)  # the HTML page renders
    page = (tmp_path / "index.html").read_text()
    assert page.count("vegaEmbed(") == 3


def test_a_second_repro_runs_no_stage(repo):
    out = run(["dvc", "repro"], repo)
    assert ran_stages(out.stdout) == []
    assert run(["dvc", "status"], repo).stdout.strip() == "Data and pipelines are up to date."


def test_changing_one_hyperparameter_reruns_train_and_what_follows(repo):
    set_param(repo, "train.hyperparameters.C", 0.5)
    out = run(["dvc", "repro"], repo)
    assert ran_stages(out.stdout) == ["train", "evaluate", "gate"]


BAD_ROWS = [
    # wrong column: `housing` renamed; out of range: age 150; unknown category; nulls
    ("age", 150),
    ("purpose", "yacht"),
    ("credit_amount", None),
]


def test_bad_data_fails_at_validate_reports_everything_and_changes_nothing(repo):
    csv = repo / "data/german_credit.csv"
    import pandas as pd

    frame = pd.read_csv(csv).rename(columns={"housing": "home"})
    frame["credit_amount"] = frame["credit_amount"].astype(object)
    for i, (column, value) in enumerate(BAD_ROWS):
        frame.loc[i * 10, column] = value
    csv.unlink()  # DVC may link files from its cache: replace, never write through
    frame.to_csv(csv, index=False)
    before = {
        p: (repo / p).read_bytes()
        for p in ("dvc.lock", "artifacts/metrics.json", "artifacts/gate.json")
    }
    registry_before = registry_state(repo)

    out = run(["dvc", "repro"], repo, check=False)

    assert out.returncode != 0
    assert ran_stages(out.stdout) == ["validate"]
    report = out.stderr
    assert "1000 rows checked" in report
    assert "missing column 'housing'" in report and "unexpected column 'home'" in report
    assert "column 'age' fails less_than_or_equal_to(100): 1 row(s); values: 150" in report
    assert "column 'purpose' fails isin(" in report and "'yacht'" in report
    assert "column 'credit_amount' fails not_nullable: 1 row(s)" in report
    assert "Traceback" not in report
    for path, content in before.items():
        assert (repo / path).read_bytes() == content, f"{path} changed"
    assert registry_state(repo) == registry_before


def test_a_failed_gate_says_which_check_and_nothing_gets_registered(repo):
    set_param(repo, "gate.max_fairness_gap.demographic_parity_difference.age", 0.05)
    registry_before = registry_state(repo)
    lock_before = (repo / "dvc.lock").read_text()

    out = run(["dvc", "repro"], repo, check=False)

    assert out.returncode != 0
    assert ran_stages(out.stdout) == ["gate"]
    assert "gate: FAILED (demographic_parity_difference:age)" in out.stdout
    assert "FAIL  fairness  demographic_parity_difference:age" in out.stdout
    gate = read_json(repo / "artifacts/gate.json")
    assert gate["passed"] is False
    # the failed stage is not recorded as done
    assert yaml.safe_load((repo / "dvc.lock").read_text()) == yaml.safe_load(lock_before)

    refused = run(["mlgate", "register"], repo, check=False)
    assert refused.returncode != 0
    assert (
        "refusing to register" in refused.stderr
        and "demographic_parity_difference:age" in refused.stderr
    )
    assert registry_state(repo) == registry_before


def test_a_candidate_worse_than_production_beyond_tolerance_fails_the_champion_rule(repo):
    run(["mlgate", "promote", "1", "--to", "staging"], repo)
    run(["mlgate", "promote", "1", "--to", "production"], repo)
    # a much weaker model: a single uninformative feature
    set_param(repo, "features.numeric", ["job"])
    set_param(repo, "features.categorical", ["housing"])
    set_param(repo, "gate.min_metrics", {})
    set_param(repo, "gate.max_fairness_gap", {})

    out = run(["dvc", "repro"], repo, check=False)

    assert out.returncode != 0
    assert "FAIL  champion  champion:roc_auc" in out.stdout
    assert "production is version 1" in out.stdout
    assert "paired difference [-" in out.stdout
    champion = read_json(repo / "artifacts/gate.json")["champion"]
    assert champion["version"] == "1"
    # worse beyond the tolerance with 95 % confidence: the paired interval is all below -0.01
    assert champion["difference_interval"][1] < -0.01
    baseline = read_json(repo / "artifacts/metrics.json")
    assert champion["roc_auc"] > baseline["roc_auc"]


def test_mlgate_repro_judges_again_even_when_nothing_changed(repo):
    """M4: with a store that knows the committed training run (a shared server), plain
    `dvc repro` skips every stage and keeps the committed gate.json; `mlgate repro` (what CI
    and CD run) evaluates and gates here, against the registry's production of now."""
    assert ran_stages(run(["dvc", "repro"], repo).stdout) == []
    out = run(["mlgate", "repro"], repo)
    assert ran_stages(out.stdout) == ["evaluate", "gate"], out.stdout
