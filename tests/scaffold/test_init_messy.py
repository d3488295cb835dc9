"""A team's export as it really is (issue 26): an ID, a signup date, free-text notes, a town of
120 values, a fifth of the values missing in seven columns, three account states under a
target name with spaces, and column names with spaces, slashes, dots, unicode and a leading
digit. Through `mlgate init` and the new project's README commands with its defaults; then
the date's parts and the notes' terms turned on as init's summary offers, and that model
built, served, batch-scored, monitored and given its outcomes by customer ID. No command
prints a traceback; replayed training rows are no drift, a shifted spend (a column with
missing values) is."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import run
from tests.scaffold.conftest import accounts_frame, turn_on_derived_features, with_params
from tests.scaffold.test_init_multiclass import Served, served_traffic
from tests.scaffold.test_init_projects import (
    MIN_PROJECT_TESTS,
    Generated,
    generate,
    passed_count,
    served,
)

pytestmark = pytest.mark.slow

TARGET = "Account Status"
ROLES = {"Customer ID": "key", "signup date": "timestamp", "notes / comments": "text"}
# features whose names no Python identifier could be: each has its pandera alias
ODD_NAMES = ["monthly spend ($)", "Größe (cm)", "2nd.score", "tenure years", "plan/tier"]


@dataclass(frozen=True)
class Messy:
    """The generated project (its defaults' road), then the same clone after the derived
    features were turned on: make run and make test again, version 2 built and served."""

    generated: Generated
    examples: list[str]  # the params.yaml lines init offered and the user turned on
    derived_run: str
    derived_test: str
    served: Served

    @property
    def clone(self) -> Path:
        return self.generated.clone

    @property
    def mlgate(self) -> str:
        return str(self.clone / ".venv" / "bin" / "mlgate")


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Messy]:
    tmp = tmp_path_factory.mktemp("messy")
    generated = generate(tmp, "accounts", accounts_frame(), "--target", TARGET)
    clone = generated.clone
    examples = turn_on_derived_features(clone / "params.yaml")
    derived_run = run(["make", "run"], clone).stdout
    derived_test = run(["make", "test"], clone).stdout
    home = tmp / "bentoml"
    built = run(["env", f"BENTOML_HOME={home}", "make", "build", "MODEL=2"], clone)
    with served(clone, home, tmp) as call:
        yield Messy(
            generated,
            examples,
            derived_run,
            derived_test,
            Served(clone, built.stdout + built.stderr, call, tmp / "feedback"),
        )


def as_sent(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a client sends them: a missing value is null (JSON has no NaN)."""
    objects = frame.astype(object)
    return objects.where(frame.notna(), None).to_dict("records")


def model_probabilities(messy: Messy, rows: list[dict[str, Any]]) -> tuple[list[Any], Any]:
    """The trained Pipeline's classes and probabilities of the rows (what serving must give)."""
    model = joblib.load(messy.clone / "artifacts" / "model" / "model.joblib")
    frame = pd.DataFrame.from_records(rows).reindex(columns=model.feature_names_in_)
    return list(model.classes_), model.predict_proba(frame)


def test_init_and_the_readme_commands_take_the_export_as_it_is(messy: Messy) -> None:
    generated = messy.generated
    init = generated.init_output
    assert f"multiclass of {TARGET!r}, 3 classes" in init
    for column, role in ROLES.items():
        assert f"not a feature: {column} ({role}: " in init
    assert "left out by default; params.yaml features.from_text makes it TF-IDF" in init
    assert re.search(r"  town: a category of 1\d\d values, unbounded", init)
    assert "WARNING" not in init
    assert yaml.safe_load((generated.origin / "params.yaml").read_text())["data"]["roles"] == ROLES
    schema = (generated.origin / "src" / "accounts" / "schema.py").read_text()
    for name in [*ODD_NAMES, *ROLES, TARGET]:
        if not name.isidentifier():
            assert f"alias={json.dumps(name)}" in schema, name
    for output in (init, generated.run_output, generated.test_output):
        assert "Traceback" not in output
    assert "gate: passed" in generated.run_output
    assert passed_count(generated) >= MIN_PROJECT_TESTS


def test_the_date_and_the_notes_become_features_of_the_model(messy: Messy) -> None:
    """Turned on as init's summary offers (params.yaml's commented examples): the model reads
    the date's parts and the notes' terms, which tell the state; its own tests still pass."""
    assert messy.examples == [
        'from_timestamp: {"signup date": [days_since, month, weekday]}',
        'from_text: {"notes / comments": {max_features: 100}}',
    ]
    assert "gate: passed" in messy.derived_run and "Traceback" not in messy.derived_run
    assert "register: accounts version 2" in messy.derived_run
    assert "failed" not in messy.derived_test and "skipped" not in messy.derived_test
    importance = json.loads((messy.clone / "artifacts" / "importance.json").read_text())
    ranked = list(importance["columns"])
    assert ranked[0] == "notes / comments" and "signup date" in ranked  # by source column
    assert not [c for c in ranked if ":" in c]  # no derived output named on its own


def test_the_next_export_with_new_ids_dates_and_towns_validates(
    messy: Messy, tmp_path: Path
) -> None:
    raw = pd.read_csv(messy.clone / "data" / "accounts.csv")
    later = raw.assign(
        **{
            "Customer ID": range(900_000, 900_000 + len(raw)),
            "signup date": "2026-12-07",
            "town": [f"town-{500 + i % 40}" for i in range(len(raw))],
        }
    )
    later.to_csv(tmp_path / "export.csv", index=False)
    paths = {"validated": str(tmp_path / "v.parquet"), "summary": str(tmp_path / "s.json")}
    export = str(tmp_path / "export.csv")
    params = with_params(messy.clone, tmp_path, {"data": {**paths, "raw": export}})
    checked = run([messy.mlgate, "validate", "--params", str(params)], messy.clone, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_request_without_the_id_and_the_notes_is_scored_as_the_model_scores_it(
    messy: Messy,
) -> None:
    """No fast path reproduces the derived features, and the build says so; the Pipeline
    serves every row, odd names and missing values included, with the model's probabilities."""
    call = messy.served.call
    assert "no fast path: the model derives features from a timestamp or a text" in (
        messy.served.built
    )
    test = pd.read_parquet(messy.clone / "artifacts" / "data" / "test.parquet")
    rows = as_sent(test.drop(columns=[TARGET]))
    classes, expected = model_probabilities(messy, rows)
    status, batch = call("/predict_batch", {"records": rows})
    assert status == 200, batch
    got = [[p["probabilities"][c] for c in classes] for p in batch["predictions"]]
    assert np.max(np.abs(np.array(got) - expected)) <= 1e-9
    bare = {k: v for k, v in rows[0].items() if k not in ("Customer ID", "notes / comments")}
    status, one = call("/predict", {"record": bare})
    assert status == 200 and "Customer ID" not in one, one
    _, alone = model_probabilities(messy, [bare])
    assert [one["probabilities"][c] for c in classes] == pytest.approx(alone[0], abs=1e-9)
    status, one = call("/predict", {"record": {**bare, "Customer ID": 123}})
    assert status == 200 and one["Customer ID"] == 123, one
    status, refused = call("/predict", {"record": {**bare, "2nd.score": "high"}})
    assert status == 400 and refused["detail"][0]["loc"] == ["record", "2nd.score"], refused


def test_batch_scores_every_row_of_the_export_as_the_model_does(
    messy: Messy, tmp_path: Path
) -> None:
    export = messy.clone / "data" / "accounts.csv"
    command = [messy.mlgate, "predict", "--model", "2", "--input", str(export)]
    done = run([*command, "--output", str(tmp_path / "out"), "--format", "csv"], messy.clone)
    assert "800 read, 800 scored, 0 quarantined" in done.stdout and "Traceback" not in done.stderr
    scored = pd.read_csv(tmp_path / "out" / "scored.csv")
    raw = pd.read_csv(export)
    assert list(scored.columns[: len(raw.columns)]) == list(raw.columns)  # every name as it is
    classes, expected = model_probabilities(messy, as_sent(raw.drop(columns=[TARGET])))
    got = scored[[f"p_{c}" for c in classes]].to_numpy()
    assert np.max(np.abs(got - expected)) <= 1e-9


def test_monitor_sees_no_drift_in_replayed_rows_and_the_shifted_spend(
    messy: Messy, tmp_path: Path
) -> None:
    """Training rows replayed for new customers (new IDs, never monitored): no drift. The same
    rows with the spend tripled (a column with missing values; kept within its bounds): the
    spend drifted, named."""
    train = pd.read_parquet(messy.clone / "artifacts" / "data" / "train.parquet")
    replay = train.drop(columns=[TARGET]).sample(300, replace=True, random_state=8)
    replay = replay.assign(**{"Customer ID": range(700_000, 700_300)}).reset_index(drop=True)
    spend = replay["monthly spend ($)"]
    shifted = replay.assign(**{"monthly spend ($)": (spend * 3).clip(0, spend.max())})
    assert shifted["monthly spend ($)"].isna().sum() > 30
    reports = {}
    for name, frame in (("replayed", replay), ("shifted", shifted)):
        served_traffic(messy.served, as_sent(frame), tmp_path / name)
        out = tmp_path / f"{name}-report"
        command = [messy.mlgate, "monitor", "--feedback", str(tmp_path / name), "--out", str(out)]
        monitored = run(command, messy.clone, check=False)
        assert monitored.returncode in (0, 1) and "Traceback" not in monitored.stderr, (
            monitored.stdout + monitored.stderr
        )
        reports[name] = json.loads((out / "drift.json").read_text())
        assert (out / "report.html").is_file()
    quiet, loud = reports["replayed"], reports["shifted"]
    watched = {f["name"] for f in quiet["features"]}
    assert watched == {*ODD_NAMES, "région", "town"}  # no ID, date or notes
    assert quiet["enough_data"] and not quiet["drift"], quiet["drifted_features"]
    assert loud["drifted_features"] == ["monthly spend ($)"]


def test_outcomes_join_the_served_predictions_by_customer_id(messy: Messy, tmp_path: Path) -> None:
    """The team's labels name the customer, not the request: joined to each customer's
    latest answer (docs/COMPARE.md#outcomes)."""
    test = pd.read_parquet(messy.clone / "artifacts" / "data" / "test.parquet").head(50)
    ids = range(600_000, 600_050)
    rows = as_sent(test.drop(columns=[TARGET]).assign(**{"Customer ID": ids}))
    served_traffic(messy.served, rows, tmp_path / "traffic")
    labels = pd.DataFrame({"Customer ID": ids, "outcome": test[TARGET].to_numpy()})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    command = [messy.mlgate, "outcomes", "import", str(tmp_path / "labels.csv")]
    imported = run([*command, "--feedback", str(tmp_path / "traffic")], messy.clone)
    assert "50 outcomes written" in imported.stdout and "joined by Customer ID" in imported.stdout
    (written,) = (tmp_path / "traffic").glob("outcomes-import-*.jsonl")
    outcomes = [json.loads(line)["outcome"] for line in written.read_text().splitlines()]
    assert outcomes == list(test[TARGET])
