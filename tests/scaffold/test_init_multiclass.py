"""A three-class data set through `mlgate init` and the new project's own README commands
(`make run`: DVC's pipeline and MLflow for real; `make test`), its metrics and fairness gaps
held against scikit-learn and fairlearn computed here, its PR report, and its model built and
served (`make build`, `make serve`): each class's probability and the decided class over
HTTP, as the model computes them."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import jsonschema
import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from sklearn import metrics as m
from sklearn.datasets import load_wine

from tests.conftest import run
from tests.scaffold.test_init_projects import (
    Generated,
    generate,
    passed_count,
    registered,
    served,
)

pytestmark = pytest.mark.slow

CULTIVARS = np.array(["barolo", "grignolino", "barbera"])


def wine_frame() -> pd.DataFrame:
    """scikit-learn's wine data (bundled, offline): 178 wines, three cultivars named as a
    team's export would name them, and a sensitive column drawn with a fixed seed."""
    wine = load_wine(as_frame=True)
    frame = wine.data.iloc[:, :6].rename(columns=lambda c: c.replace("/", "_"))
    frame["region"] = np.random.default_rng(11).choice(["north", "south"], len(frame))
    frame["cultivar"] = CULTIVARS[wine.target.to_numpy()]
    return frame


@pytest.fixture(scope="module")
def wine_project(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    tmp = tmp_path_factory.mktemp("wine")
    return generate(
        tmp, "wine-model", wine_frame(), "--target", "cultivar", "--sensitive", "region"
    )


def test_a_three_class_target_becomes_a_multiclass_project(wine_project: Generated) -> None:
    init, clone = wine_project.init_output, wine_project.clone
    assert "multiclass of 'cultivar', 3 classes: the most probable one is the decision" in init
    assert "primary metric roc_auc_ovr" in init
    assert "WARNING" not in init
    assert passed_count(wine_project) >= 10  # the project's own data and model tests
    assert registered(clone, "wine-model")["gate_passed"] == "true"


def test_the_metrics_are_scikit_learns_on_the_test_split(wine_project: Generated) -> None:
    clone = wine_project.clone
    model = joblib.load(clone / "artifacts" / "model" / "model.joblib")
    test = pd.read_parquet(clone / "artifacts" / "data" / "test.parquet")
    assert set(test["cultivar"]) == set(CULTIVARS)  # stratified: every class is tested
    y, proba = test["cultivar"], model.predict_proba(test.drop(columns=["cultivar"]))
    decided = model.predict(test.drop(columns=["cultivar"]))
    expected = {
        "accuracy": m.accuracy_score(y, decided),
        "balanced_accuracy": m.balanced_accuracy_score(y, decided),
        "f1_macro": m.f1_score(y, decided, average="macro"),
        "f1_weighted": m.f1_score(y, decided, average="weighted"),
        "log_loss": m.log_loss(y, proba, labels=model.classes_),
        "roc_auc_ovr": m.roc_auc_score(y, proba, multi_class="ovr", labels=model.classes_),
    }
    precision, recall, _, _ = m.precision_recall_fscore_support(y, decided, labels=CULTIVARS)
    for label, p, r in zip(CULTIVARS, precision, recall, strict=True):
        expected |= {f"precision:{label}": p, f"recall:{label}": r}
    reported = json.loads((clone / "artifacts" / "metrics.json").read_text())
    assert reported == pytest.approx(expected, abs=5e-5)

    cells = pd.read_csv(clone / "artifacts" / "plots" / "confusion.csv")
    assert len(cells) == 9
    matrix = m.confusion_matrix(y, decided, labels=CULTIVARS)
    for i, actual in enumerate(CULTIVARS):
        for j, predicted in enumerate(CULTIVARS):
            row = cells[(cells["actual"] == actual) & (cells["predicted"] == predicted)]
            assert int(row["count"].iloc[0]) == matrix[i, j]


def test_the_fairness_gaps_are_fairlearns_per_class_and_the_largest_is_gated(
    wine_project: Generated,
) -> None:
    clone = wine_project.clone
    model = joblib.load(clone / "artifacts" / "model" / "model.joblib")
    test = pd.read_parquet(clone / "artifacts" / "data" / "test.parquet")
    decided = model.predict(test.drop(columns=["cultivar"]))
    region = json.loads((clone / "artifacts" / "fairness.json").read_text())["region"]
    for label in CULTIVARS:
        y, d = test["cultivar"] == label, decided == label
        gaps = region["classes"][label]
        dp = demographic_parity_difference(y, d, sensitive_features=test["region"])
        eo = equalized_odds_difference(y, d, sensitive_features=test["region"])
        assert gaps["demographic_parity_difference"] == pytest.approx(dp, abs=5e-5)
        assert gaps["equalized_odds_difference"] == pytest.approx(eo, abs=5e-5)
    for gap in ("demographic_parity_difference", "equalized_odds_difference"):
        assert region[gap] == max(c[gap] for c in region["classes"].values())
    gate = json.loads((clone / "artifacts" / "gate.json").read_text())
    fairness_checks = {c["name"]: c for c in gate["checks"] if c["kind"] == "fairness"}
    assert set(fairness_checks) == {
        "demographic_parity_difference:region",
        "equalized_odds_difference:region",
    }
    check = fairness_checks["equalized_odds_difference:region"]
    assert check["value"] == region["equalized_odds_difference"] and check["passed"]
    quality = {c["name"] for c in gate["checks"] if c["kind"] == "quality"}
    assert quality == {"roc_auc_ovr"}


def test_the_pr_report_shows_each_class_and_the_confusion_matrix(
    wine_project: Generated, tmp_path: Path
) -> None:
    clone = wine_project.clone
    out = tmp_path / "report.md"
    subprocess.run(
        [str(clone / ".venv" / "bin" / "mlgate"), "report", "--output", str(out)],
        cwd=clone,
        check=True,
        capture_output=True,
    )
    text = out.read_text()
    metrics = json.loads((clone / "artifacts" / "metrics.json").read_text())
    assert "### Classes" in text
    assert (
        f"| barolo | {metrics['precision:barolo']:.4f} | {metrics['recall:barolo']:.4f} |" in text
    )
    assert "| actual \\ decided | barbera | barolo | grignolino |" in text
    assert "| class (one vs rest) | demographic_parity_difference" in text


@dataclass(frozen=True)
class Served:
    """The wine project's version 1 built (`make build`) and served (`make serve`)."""

    clone: Path
    built: str  # what `make build` printed
    call: Any  # call(path, body) -> (status, json)
    feedback: Path


@pytest.fixture(scope="module")
def served_wine(
    wine_project: Generated, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    clone, tmp = wine_project.clone, tmp_path_factory.mktemp("wine-served")
    home = tmp / "bentoml"
    built = run(["env", f"BENTOML_HOME={home}", "make", "build", "MODEL=1"], clone)
    with served(clone, home, tmp) as call:
        yield Served(clone, built.stdout + built.stderr, call, tmp / "feedback")


def wine_test_split(clone: Path) -> tuple[Any, list[dict[str, Any]], np.ndarray]:
    """The trained model, the test split's rows as a client sends them, predict_proba's."""
    model = joblib.load(clone / "artifacts" / "model" / "model.joblib")
    test = pd.read_parquet(clone / "artifacts" / "data" / "test.parquet")
    features = test.drop(columns=["cultivar"])
    return model, features.to_dict("records"), model.predict_proba(features)


def test_build_packages_the_multinomial_model_on_the_numpy_path(served_wine: Served) -> None:
    assert "build: scorer numpy: NumPy (multinomial logistic regression" in served_wine.built
    assert "WARNING" not in served_wine.built
    status, info = served_wine.call("/model_info", None)
    assert status == 200 and info["scorer"] == "numpy" and info["model_version"] == "1"


def test_served_answers_are_each_class_probability_and_the_most_probable_class(
    served_wine: Served,
) -> None:
    model, rows, proba = wine_test_split(served_wine.clone)
    classes = list(model.classes_)
    status, batch = served_wine.call("/predict_batch", {"records": rows})
    assert status == 200, batch
    assert set(batch) == {"predictions", "model_version", "request_id"}
    assert len(batch["predictions"]) == len(rows)
    for answer, expected in zip(batch["predictions"], proba, strict=True):
        assert set(answer) == {"class", "probabilities"}
        assert list(answer["probabilities"]) == classes  # the model's classes_ order
        got = np.array([answer["probabilities"][c] for c in classes])
        assert np.max(np.abs(got - expected)) <= 1e-9
        assert answer["class"] == classes[int(np.argmax(expected))]
    decided = [a["class"] for a in batch["predictions"]]
    assert decided == list(model.predict(pd.DataFrame.from_records(rows)))
    for i in (0, 5, len(rows) - 1):
        status, one = served_wine.call("/predict", {"record": rows[i]})
        assert status == 200, one
        assert set(one) == {"class", "probabilities", "model_version", "request_id"}
        assert one["class"] == decided[i] and one["model_version"] == "1"
        got = np.array([one["probabilities"][c] for c in classes])
        assert np.max(np.abs(got - proba[i])) <= 1e-9


def test_a_bad_row_is_refused_with_its_field_path(served_wine: Served) -> None:
    _, rows, _ = wine_test_split(served_wine.clone)
    status, problem = served_wine.call("/predict", {"record": {**rows[0], "alcohol": "strong"}})
    assert status == 400, problem
    assert [d["loc"] for d in problem["detail"]] == [["record", "alcohol"]]
    bad_batch = {"records": [rows[0], {**rows[1], "region": None}]}
    status, problem = served_wine.call("/predict_batch", bad_batch)
    assert status == 400 and [d["loc"] for d in problem["detail"]] == [["records", 1, "region"]]


def test_the_document_describes_the_multiclass_answer(served_wine: Served) -> None:
    """Served answers validate against /docs.json's schemas, which name the classes."""
    _, rows, _ = wine_test_split(served_wine.clone)
    status, doc = served_wine.call("/docs.json", None)
    assert status == 200
    for path, body in (("/predict", {"record": rows[0]}), ("/predict_batch", {"records": rows})):
        answer = doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]
        schema = answer["schema"]
        status, got = served_wine.call(path, body)
        assert status == 200
        jsonschema.validate(got, schema)
        one = schema["properties"]["predictions"]["items"] if path.endswith("batch") else schema
        assert one["properties"]["class"]["enum"] == sorted(CULTIVARS)
        assert one["properties"]["probabilities"]["required"] == sorted(CULTIVARS)
        binary = {"probability": 0.5, "decision": "barolo"}  # a two-class answer is not one
        wrong = {**got, "predictions": [binary]} if path.endswith("batch") else binary
        with pytest.raises(jsonschema.ValidationError, match="required property"):
            jsonschema.validate(wrong, schema)
        with pytest.raises(jsonschema.ValidationError):  # every class has its probability
            row = got["predictions"][0] if path.endswith("batch") else got
            jsonschema.validate({**row, "probabilities": {"barolo": 1.0}}, one)


def test_feedback_records_carry_the_class_and_the_probabilities(served_wine: Served) -> None:
    _, rows, _ = wine_test_split(served_wine.clone)
    status, answer = served_wine.call("/predict", {"record": rows[3]})
    assert status == 200
    record = wait_for_record(served_wine.feedback, answer["request_id"])
    assert record["class"] == answer["class"]
    assert record["probabilities"] == answer["probabilities"]
    assert record["inputs"] == rows[3] and "threshold" not in record


def wait_for_record(folder: Path, request_id: str) -> dict[str, Any]:
    """The prediction record of `request_id`, once the sink has written it."""
    deadline = time.monotonic() + 60  # the writer flushes within serving.feedback.flush_seconds
    while time.monotonic() < deadline:
        for path in folder.glob("*.jsonl"):
            for line in path.read_text().splitlines():
                record = json.loads(line)
                if record.get("request_id") == request_id and record["kind"] == "prediction":
                    return record
        time.sleep(0.2)
    raise AssertionError(f"no prediction record of {request_id}")


def wine_batch(clone: Path, out: Path, *engine: str, mlgate: Path | None = None) -> pd.DataFrame:
    """`mlgate predict` of the test split (without its target) with version 1: the scored rows."""
    csv = out.parent / "wine-test.csv"
    if not csv.exists():
        test = pd.read_parquet(clone / "artifacts" / "data" / "test.parquet")
        test.drop(columns=["cultivar"]).to_csv(csv, index=False)
    mlgate = mlgate or clone / ".venv" / "bin" / "mlgate"
    command = [str(mlgate), "predict", "--model", "1", "--input", str(csv), "--output", str(out)]
    # the project's package (its schema module) for this checkout's mlgate (--engine spark)
    run([*command, *engine], clone, PYTHONPATH=str(clone / "src"))
    return pd.read_parquet(out / "scored.parquet")


def test_explain_answers_the_decided_classs_reasons(served_wine: Served, tmp_path: Path) -> None:
    """A multinomial model's reasons are for the class it decided: each class's centred logit
    (its logit less the mean of every class's, softmax of them is the probabilities) is
    attributed exactly; /explain says the class, as the document declares; batch --explain
    writes the same reasons."""
    model, rows, proba = wine_test_split(served_wine.clone)
    classes = list(model.classes_)
    assert "build: explain exact-linear: contributions to the centred log-odds of each class" in (
        served_wine.built
    )
    status, info = served_wine.call("/model_info", None)
    assert info["explain"] == {"method": "exact-linear", "scale": "centred log-odds"}
    status, batch = served_wine.call("/explain_batch", {"records": rows})
    assert status == 200, batch
    status, plain = served_wine.call("/predict_batch", {"records": rows})
    doc = served_wine.call("/docs.json", None)[1]
    schema = doc["paths"]["/explain_batch"]["post"]["responses"]["200"]["content"]
    jsonschema.validate(batch, schema["application/json"]["schema"])
    features = list(model.feature_names_in_)
    x = model.steps[0][1].transform(pd.DataFrame.from_records(rows))
    logits = x @ model.steps[-1][1].coef_.T + model.steps[-1][1].intercept_
    for i, (answer, predicted) in enumerate(
        zip(batch["predictions"], plain["predictions"], strict=True)
    ):
        assert {k: answer[k] for k in predicted} == predicted  # /predict's answer
        whole = answer["attribution"]
        k = classes.index(answer["class"])
        assert whole["class"] == answer["class"] and k == int(np.argmax(proba[i]))
        assert list(whole["contributions"]) == features
        total = whole["base_value"] + sum(whole["contributions"].values())
        assert abs(total - whole["raw_score"]) <= 1e-6
        assert abs(whole["raw_score"] - (logits[i, k] - logits[i].mean())) <= 1e-9
        assert [r["column"] for r in answer["reasons"]] == sorted(
            features, key=lambda c: -abs(whole["contributions"][c])
        )[: len(answer["reasons"])]
    status, one = served_wine.call("/explain", {"record": rows[5]})
    assert status == 200 and one["attribution"] == batch["predictions"][5]["attribution"]
    assert one["class"] == one["attribution"]["class"]
    csv = tmp_path / "wine.csv"
    pd.DataFrame.from_records(rows).to_csv(csv, index=False)
    mlgate = str(served_wine.clone / ".venv" / "bin" / "mlgate")
    out = tmp_path / "out"
    command = [mlgate, "predict", "--model", "1", "--input", str(csv), "--output", str(out)]
    run([*command, "--explain", "2"], served_wine.clone)
    scored = pd.read_parquet(out / "scored.parquet")
    for i in (0, 5, len(rows) - 1):
        reasons = batch["predictions"][i]["reasons"][:2]
        assert scored["reason_1"][i] == reasons[0]["column"]
        assert abs(scored["reason_1_contribution"][i] - reasons[0]["contribution"]) <= 1e-9


def test_batch_scores_are_the_class_and_each_class_probability_as_served(
    served_wine: Served, tmp_path: Path
) -> None:
    model, rows, proba = wine_test_split(served_wine.clone)
    scored = wine_batch(served_wine.clone, tmp_path / "local")
    outputs = ["class", "p_barbera", "p_barolo", "p_grignolino"]
    assert list(scored.columns) == [
        *rows[0],
        *outputs,
        "model_name",
        "model_version",
        "batch_id",
    ]
    assert np.max(np.abs(scored[outputs[1:]].to_numpy() - proba)) <= 1e-12
    status, batch = served_wine.call("/predict_batch", {"records": rows})
    assert status == 200
    assert list(scored["class"]) == [a["class"] for a in batch["predictions"]]
    served_proba = [[a["probabilities"][c] for c in model.classes_] for a in batch["predictions"]]
    assert np.max(np.abs(scored[outputs[1:]].to_numpy() - np.array(served_proba))) <= 1e-9


def test_the_spark_engine_writes_the_local_engines_rows(
    wine_project: Generated, tmp_path: Path
) -> None:
    from tests.conftest import VENV_BIN

    clone = wine_project.clone
    local = wine_batch(clone, tmp_path / "local").drop(columns=["batch_id"])
    spark = ["--engine", "spark", "--spark-master", "local[1]"]
    # PySpark is this checkout's dev dependency (the project installs mlgate without `spark`)
    on_spark = wine_batch(clone, tmp_path / "spark", *spark, mlgate=VENV_BIN / "mlgate")
    assert list(on_spark.columns) == [*local.columns, "batch_id"]
    pd.testing.assert_frame_equal(
        on_spark.drop(columns=["batch_id"]), local, check_dtype=False, atol=1e-12
    )


def served_traffic(served_wine: Served, rows: list[dict[str, Any]], folder: Path) -> None:
    """`rows` sent to the service, and the prediction records it wrote of them copied into
    `folder` (the service's feedback folder holds every other test's requests too)."""
    status, answer = served_wine.call("/predict_batch", {"records": rows})
    assert status == 200, answer
    wait_for_record(served_wine.feedback, answer["request_id"])
    folder.mkdir()
    with (folder / "predictions-served.jsonl").open("w") as out:
        for path in sorted(served_wine.feedback.glob("*.jsonl")):
            for line in path.read_text().splitlines():
                if json.loads(line).get("request_id") == answer["request_id"]:
                    out.write(line + "\n")


def test_monitor_watches_the_served_classes(served_wine: Served, tmp_path: Path) -> None:
    """The service's records of training-like traffic: no drift of the predicted classes;
    of traffic the model decides as one class: the predicted classes drifted (PSI over the
    classes), reported beside the features'."""
    clone = served_wine.clone
    model = joblib.load(clone / "artifacts" / "model" / "model.joblib")
    train = pd.read_parquet(clone / "artifacts" / "data" / "train.parquet")
    features = train.drop(columns=["cultivar"])
    like_training = features.sample(300, replace=True, random_state=1)
    decided = model.predict(features)
    one_class = features[decided == "barolo"].sample(300, replace=True, random_state=1)
    mlgate = str(clone / ".venv" / "bin" / "mlgate")
    reports = {}
    for name, frame in (("training", like_training), ("barolo", one_class)):
        served_traffic(served_wine, frame.to_dict("records"), tmp_path / name)
        command = [mlgate, "monitor", "--feedback", str(tmp_path / name)]
        monitored = run([*command, "--out", str(tmp_path / f"{name}-report")], clone, check=False)
        assert monitored.returncode in (0, 1), monitored.stdout + monitored.stderr
        reports[name] = json.loads((tmp_path / f"{name}-report" / "drift.json").read_text())
    quiet, loud = reports["training"], reports["barolo"]
    assert quiet["rows"] == 300 and quiet["enough_data"]
    assert quiet["prediction"]["kind"] == "categorical" and not quiet["prediction_drifted"]
    assert set(quiet["prediction"]["reference_share"]) == set(CULTIVARS)
    assert loud["prediction_drifted"] and loud["drift"]
    assert loud["prediction"]["current_share"]["barolo"] == 1.0
    assert len(loud["features"]) == len(quiet["features"]) >= 6  # beside the features' drift
    summary = (tmp_path / "barolo-report" / "summary.md").read_text()
    assert "| prediction (model output) | categorical |" in summary


def test_outcomes_of_a_multiclass_model_are_its_classes(
    served_wine: Served, tmp_path: Path
) -> None:
    """By the API and in bulk (`mlgate outcomes import`): the true classes of answered rows
    are recorded for `mlgate compare`; a label that is no class is refused, nothing written."""
    clone = served_wine.clone
    _, rows, _ = wine_test_split(clone)
    truth = list(pd.read_parquet(clone / "artifacts" / "data" / "test.parquet")["cultivar"])
    status, batch = served_wine.call("/predict_batch", {"records": rows})
    assert status == 200
    request_id = batch["request_id"]
    wait_for_record(served_wine.feedback, request_id)
    status, one = served_wine.call(
        "/outcome", {"request_id": request_id, "row": 0, "outcome": truth[0]}
    )
    assert status == 200 and one == {"recorded": 1, "verified": True}, one
    status, bad = served_wine.call(
        "/outcome", {"request_id": request_id, "row": 0, "outcome": "merlot"}
    )
    assert status == 400 and [d["loc"] for d in bad["detail"]] == [["outcome"]], bad

    mlgate = str(clone / ".venv" / "bin" / "mlgate")
    command = [mlgate, "outcomes", "import", "--feedback", str(served_wine.feedback)]
    wrong = pd.DataFrame({"request_id": request_id, "row": [0, 1], "outcome": ["barolo", "merlot"]})
    wrong.to_csv(tmp_path / "wrong.csv", index=False)
    refused = run([*command, str(tmp_path / "wrong.csv")], clone, check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "'merlot'" in refused.stderr
    assert "one of the classes ['barbera', 'barolo', 'grignolino']" in refused.stderr
    before = set(served_wine.feedback.glob("outcomes-import-*.jsonl"))
    assert not before

    labelled = pd.DataFrame({"request_id": request_id, "row": range(len(rows)), "outcome": truth})
    labelled.to_csv(tmp_path / "outcomes.csv", index=False)
    run([*command, str(tmp_path / "outcomes.csv")], clone)
    (written,) = served_wine.feedback.glob("outcomes-import-*.jsonl")
    records = [json.loads(line) for line in written.read_text().splitlines()]
    assert [(r["row"], r["outcome"]) for r in records] == list(enumerate(truth))
