"""`mlgate init` on data sets it has never seen: the new repository passes its own README
commands in a fresh clone, registers a model, its workflows lint clean, and its own model
tests fail on a model built to break them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, free_port, run, stop_group, tool_env
from tests.scaffold.conftest import (
    VENV_BIN,
    churn_export,
    houses_export,
    mlgate_init,
    with_params,
)

pytestmark = pytest.mark.slow

MIN_PROJECT_TESTS = 12  # a generated project tests its data and model at least this deeply


def readme_commands(project: Path) -> list[list[str]]:
    """The commands the generated README promises, read from it (not restated here)."""
    text = (project / "README.md").read_text()
    block = text.split("## The two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].split() for line in block.strip().splitlines()]
    assert commands == [["make", "run"], ["make", "test"]]
    return commands


def readme_request(project: Path) -> Any:
    """The body of the generated README's `curl … /predict` example."""
    text = (project / "README.md").read_text()
    body = re.search(r"localhost:3000/predict .*? -d '(.*?)'", text, re.DOTALL)
    assert body, "the README shows no /predict example"
    return json.loads(body.group(1))


@dataclass(frozen=True)
class Generated:
    """A project made by `mlgate init`, and a clone of it where its README commands ran."""

    origin: Path
    clone: Path
    init_output: str  # what init printed (stdout and stderr)
    run_output: str  # `make run`
    test_output: str  # `make test`


def generate(tmp: Path, name: str, frame: pd.DataFrame, *args: str) -> Generated:
    """`mlgate init` on the frame, then what a teammate does: clone, and run the README's
    commands; `make lint` as the CI workflow's lint job does."""
    csv = tmp / "input" / f"{name}.csv"
    csv.parent.mkdir()
    frame.to_csv(csv, index=False)
    origin = tmp / name
    init = mlgate_init(origin, "--data", csv, *args)
    assert run(["git", "status", "--porcelain"], origin).stdout == ""  # all of it committed
    clone = tmp / "clone" / name
    clone.parent.mkdir()
    run(["git", "clone", "-q", str(origin), str(clone)], tmp)
    outputs = [run(command, clone).stdout for command in readme_commands(clone)]
    run(["make", "lint"], clone)
    return Generated(origin, clone, init.stdout + init.stderr, *outputs)


@pytest.fixture(scope="module")
def churn_project(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """Binary classification with two sensitive attributes, one of them banded (age), and a
    key, a timestamp and free text that are no features."""
    tmp = tmp_path_factory.mktemp("churn")
    args = ("--target", "churned", "--sensitive", "gender,age")
    return generate(tmp, "churn-model", churn_export(), *args)


@pytest.fixture(scope="module")
def house_project(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """Regression with a sensitive attribute and two features declared monotone."""
    tmp = tmp_path_factory.mktemp("houses")
    args = ("--target", "price", "--sensitive", "town", "--monotone", "area:+1,rooms:+1")
    return generate(tmp, "house-price", houses_export(), *args)


def passed_count(generated: Generated) -> int:
    """How many tests `make test` ran in the project; none skipped, none failed."""
    out = generated.test_output
    assert "skipped" not in out and "failed" not in out  # the model tests ran on the model
    return int(re.search(r"(\d+) passed", out).group(1))  # type: ignore[union-attr]


def assert_made_cleanly(generated: Generated) -> None:
    """A folder anyone may read, and nothing printed that is not the user's business."""
    umask = os.umask(0)
    os.umask(umask)
    assert generated.origin.stat().st_mode & 0o777 == 0o777 & ~umask
    for noise in ("No git tags found", "DirtyLocalWarning", "Warning"):
        assert noise not in generated.init_output


def locked(lock: Path) -> set[tuple[str, str]]:
    """The registry packages a uv.lock pins: (name, version)."""
    packages = tomllib.loads(lock.read_text())["package"]
    return {(p["name"], p["version"]) for p in packages if "registry" in p["source"]}


def registered(clone: Path, name: str) -> dict[str, object]:
    out = run([str(clone / ".venv" / "bin" / "mlgate"), "lineage", f"{name}/1", "--json"], clone)
    return json.loads(out.stdout)


def test_binary_classification_project(
    churn_project: Generated, tmp_path: Path, actionlint: list[str]
) -> None:
    init, clone = churn_project.init_output, churn_project.clone
    assert "positive label 'yes'" in init
    assert "not a feature: customer_id" in init  # an identifier is not learned from
    # fairness is gated from the start, the bounds and their reason said (not warned about:
    # gender and age are sensitive, not features)
    assert "fairness gated (params.yaml gate.max_fairness_gap)" in init
    assert re.search(r"demographic_parity_difference:gender <= 0\.\d+ \(a first model: ", init)
    assert (
        "a first model trained here raised to the upper end of its 95% bootstrap interval" in init
    )
    assert "WARNING" not in init
    assert_made_cleanly(churn_project)
    assert passed_count(churn_project) >= MIN_PROJECT_TESTS
    # Locked offline (mlgate_init), from this checkout's lock: the versions mlgate's own tests
    # run with, not what PyPI published since.
    ours, theirs = locked(ROOT / "uv.lock"), locked(churn_project.origin / "uv.lock")
    assert {"mlflow", "bentoml", "scikit-learn", "dvc"} <= {name for name, _ in theirs}
    assert theirs - ours == set()

    info = registered(clone, "churn-model")
    assert info["gate_passed"] == "true"
    assert "roc_auc" in json.loads((clone / "artifacts" / "metrics.json").read_text())
    fairness = json.loads((clone / "artifacts" / "fairness.json").read_text())
    assert set(fairness) == {"gender", "age"}
    assert set(fairness["gender"]["groups"]) == {"female", "male", "other"}
    gate = json.loads((clone / "artifacts" / "gate.json").read_text())
    gated = {c["name"] for c in gate["checks"] if c["kind"] == "fairness"}
    assert gated == {
        f"{gap}:{attr}"
        for gap in ("demographic_parity_difference", "equalized_odds_difference")
        for attr in ("gender", "age")
    }
    gap = fairness["gender"]["demographic_parity_difference"]
    # printed by the gate: the measured value and its interval beside its bound; the bound is
    # the upper end of the first model's interval, so the same model passes it outright
    printed = f"PASS  fairness  demographic_parity_difference:gender: {gap:.4f} ["
    assert printed in churn_project.run_output

    workflows = sorted((clone / ".github" / "workflows").glob("*.yml"))
    assert [w.name for w in workflows] == [
        "batch.yml",
        "cd.yml",
        "ci.yml",
        "monitor.yml",
        "retrain.yml",
        "rollback.yml",
    ]
    run([*actionlint, *map(str, workflows)], clone)
    run([str(VENV_BIN / "zizmor"), "--offline", "--quiet", ".github/workflows"], clone)

    # The bento the CD workflow containerizes: mlgate (a dependency here, not a folder of
    # src/) and the project's own schema module both travel in it.
    home = tmp_path / "bentoml"
    built = run(["env", f"BENTOML_HOME={home}", "make", "build", "MODEL=1"], clone)
    assert "build: churn-model version 1" in built.stdout
    bento_src = next((home / "bentos" / "churn-model").glob("*/src"))
    assert (bento_src / "mlgate" / "serving" / "service.py").is_file()
    assert (bento_src / "churn_model" / "schema.py").is_file()
    assert not (bento_src / "mlgate" / "template").exists()
    # Missing values => imputers: the fast path still serves, after the imputers' fill values
    # (it was scikit-learn, ~4 ms a request); required as ONNX Runtime, that path builds too.
    assert "build: scorer numpy: NumPy (binary logistic regression" in built.stdout
    assert "missing values filled as the imputers fill them" in built.stdout
    with (clone / "params.yaml").open() as fh:
        params = yaml.safe_load(fh)
    params["serving"]["scorer"] = "onnx"
    (tmp_path / "params-onnx.yaml").write_text(yaml.safe_dump(params))
    mlgate = str(clone / ".venv" / "bin" / "mlgate")
    onnx = run(
        [mlgate, "build", "--model", "1", "--params", str(tmp_path / "params-onnx.yaml")],
        clone,
        BENTOML_HOME=str(home),
    )
    assert "build: scorer onnx: ONNX Runtime" in onnx.stdout, onnx.stdout + onnx.stderr
    assert "Traceback" not in onnx.stderr


def test_monitor_watches_features_not_ids_and_counts_missing_values(
    churn_project: Generated, tmp_path: Path
) -> None:
    """Traffic like the training data but for new customers: no drift. `make monitor` crashed
    on the missing plans (TypeError sorting NaN among text) and, once past that, reported the
    identifier customer_id as drifted (every ID is new), a false drift issue every day."""
    from tests.loop.test_monitor import record_traffic

    clone = churn_project.clone
    train = pd.read_parquet(clone / "artifacts/data/train.parquet").drop(columns=["churned"])
    frame = train.sample(400, replace=True, random_state=5).reset_index(drop=True)
    frame["customer_id"] = [f"N{i:05d}" for i in range(len(frame))]  # customers never seen
    assert frame["plan"].isna().sum() > 0
    record_traffic(clone, tmp_path / "feedback", frame)
    mlgate = str(clone / ".venv" / "bin" / "mlgate")
    out = tmp_path / "monitoring"
    proc = run(
        [mlgate, "monitor", "--feedback", str(tmp_path / "feedback"), "--out", str(out)],
        clone,
        check=False,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    report = json.loads((out / "drift.json").read_text())
    watched = {f["name"]: f for f in report["features"]}
    assert not {"customer_id", "signup", "notes"} & set(watched)  # no key, timestamp, text
    assert {"plan", "gender", "tenure", "_visits (n°)", "2nd canal d'achat/vente"} <= set(watched)
    assert watched["plan"]["reference_share"]["(missing)"] > 0
    assert not any(f["drifted"] for f in report["features"])


def test_a_column_that_is_no_feature_is_neither_bounded_nor_required(
    churn_project: Generated,
) -> None:
    """IDs were bounded by the range seen and required: the next export's new customers failed
    validation, and serving answered 400 to a request without the ID or with a new one."""
    clone = churn_project.clone
    schema = (clone / "src/churn_model/schema.py").read_text()
    assert "customer_id: Series[str] | None = pa.Field(nullable=True)" in schema
    script = textwrap.dedent(
        """
        import pandas as pd
        from churn_model.schema import Record
        from mlgate.serving.contract import Contract

        row = {"monthly income": 52000.0, "tenure": 12, "plan": "pro", "gender": "female",
               "age": 41, "_visits (n°)": 3, "2nd canal d'achat/vente": "web"}
        model = Contract.from_schema(Record.to_schema(), "Record").row_model
        print(model.model_validate(row).model_dump(by_alias=True)["customer_id"])
        print(model.model_validate({**row, "customer_id": "Z99999"}).customer_id)
        print(len(Record.validate(pd.DataFrame([{**row, "customer_id": "Z99999"}]))))
        print(len(Record.validate(pd.DataFrame([row]))))
        """
    )
    out = run([str(clone / ".venv/bin/python"), "-c", script], clone).stdout.split()
    assert out == ["None", "Z99999", "1", "1"]


def test_roles_check_timestamps_split_by_time_and_echo_the_key(
    churn_project: Generated, tmp_path: Path
) -> None:
    """The key, date and free text of an export are inferred with a reason; the date is
    checked as one, orders `split.by: time`; the key comes back with every answer."""
    init, clone = churn_project.init_output, churn_project.clone
    assert "not a feature: customer_id (key: every value is distinct, named like an id)" in init
    assert "not a feature: signup (timestamp: every value reads as a date/time, 2022-01-01 " in init
    assert "not a feature: notes (text: 50 distinct text values" in init
    roles = yaml.safe_load((clone / "params.yaml").read_text())["data"]["roles"]
    assert roles == {"customer_id": "key", "signup": "timestamp", "notes": "text"}
    mlgate = str(clone / ".venv" / "bin" / "mlgate")
    raw = pd.read_csv(clone / "data" / "churn-model.csv")
    out = {"validated": str(tmp_path / "v.parquet"), "summary": str(tmp_path / "s.json")}

    def validate(frame: pd.DataFrame) -> subprocess.CompletedProcess[str]:
        frame.to_csv(tmp_path / "export.csv", index=False)
        params = with_params(
            clone, tmp_path, {"data": {**out, "raw": str(tmp_path / "export.csv")}}
        )
        return run([mlgate, "validate", "--params", str(params)], clone, check=False)

    later = raw.assign(customer_id=[f"N{i:05d}" for i in range(len(raw))])  # the next export
    assert validate(later).returncode == 0
    later.loc[[3, 9, 11], "signup"] = "not a date"
    refused = validate(later)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert (
        "column 'signup' fails iso8601_datetime: 3 row(s); values: 'not a date'" in refused.stderr
    )

    parts = {"train": str(tmp_path / "train.parquet"), "test": str(tmp_path / "test.parquet")}
    by_time = with_params(clone, tmp_path, {"split": {**parts, "by": "time"}})
    run([mlgate, "split", "--params", str(by_time)], clone)
    train, test = (pd.read_parquet(tmp_path / f"{p}.parquet") for p in ("train", "test"))
    assert len(test) == 120 and train["signup"].astype(str).max() < test["signup"].astype(str).min()
    assert sorted(test["signup"].astype(str)) == sorted(raw["signup"])[-120:]

    home = tmp_path / "bentoml"
    run(["env", f"BENTOML_HOME={home}", "make", "build", "MODEL=1"], clone)
    rows = raw.drop(columns=["churned"]).dropna().head(3).to_dict("records")
    bare = {k: v for k, v in rows[0].items() if k not in roles}  # no key, date nor notes
    with served(clone, home, tmp_path) as call:
        status, answer = call("/predict", {"record": bare})
        assert status == 200 and "customer_id" not in answer, answer
        status, answer = call("/predict", {"record": rows[0]})
        assert status == 200 and answer["customer_id"] == rows[0]["customer_id"], answer
        status, answer = call("/predict_batch", {"records": [bare, *rows[1:]]})
        assert status == 200, answer
        echoed = [p.get("customer_id") for p in answer["predictions"]]
        assert echoed == [None, rows[1]["customer_id"], rows[2]["customer_id"]]
        status, answer = call("/predict", {"record": {**rows[0], "signup": "not a date"}})
        assert status == 400 and answer["detail"][0]["loc"] == ["record", "signup"], answer
        records = read_records(tmp_path / "feedback", 5)  # the refused request is no prediction
        doc = call("/docs.json", None)[1]["paths"]["/predict"]["post"]["responses"]["200"]
        assert "customer_id" in doc["content"]["application/json"]["schema"]["properties"]
        # /explain echoes it too; a key is no feature, so never a reason
        status, answer = call("/explain", {"record": rows[0]})
        assert status == 200 and answer["customer_id"] == rows[0]["customer_id"], answer
        assert "customer_id" not in answer["attribution"]["contributions"] and answer["reasons"]
    ids = [r["customer_id"] for r in rows]
    assert sorted(r["inputs"].get("customer_id") or "" for r in records) == sorted(["", *ids, ""])

    batch = tmp_path / "batch"
    run(
        [mlgate, "predict", "--model", "1", "--input", str(clone / "data" / "churn-model.csv"),
         "--output", str(batch), "--keys", "tenure", "--format", "csv"],
        clone,
    )  # fmt: skip
    scored = pd.read_csv(next(batch.glob("scored*")))
    assert list(scored["customer_id"]) == list(raw["customer_id"])


def read_records(folder: Path, at_least: int) -> list[dict[str, Any]]:
    """The prediction records the service wrote (it flushes within a second or so)."""
    deadline = time.monotonic() + 60
    while True:
        lines = [ln for f in folder.glob("*.jsonl") for ln in f.read_text().splitlines()]
        records = [r for r in map(json.loads, lines) if r["kind"] == "prediction"]
        if len(records) >= at_least:
            return records
        assert time.monotonic() < deadline, "the service did not record its predictions"
        time.sleep(0.2)


def test_regression_project(house_project: Generated, tmp_path: Path) -> None:
    init, clone = house_project.init_output, house_project.clone
    assert "regression of 'price', primary metric rmse" in init
    assert "monotone (directional test): the prediction rises with area" in init
    assert re.search(r"mae_difference:town <= [\d,]+ \(a first model: ", init)
    assert "at most 1% of it" in init  # the champion tolerance, relative
    compare = yaml.safe_load((clone / "params.yaml").read_text())["compare"]
    assert (compare["max_metric_loss"], compare["relative"]) == (0.01, True)  # 1% of its rmse
    assert_made_cleanly(house_project)
    assert passed_count(house_project) >= MIN_PROJECT_TESTS
    assert "PASS  fairness  mae_difference:town: " in house_project.run_output

    assert registered(clone, "house-price")["gate_passed"] == "true"
    metrics = json.loads((clone / "artifacts" / "metrics.json").read_text())
    assert set(metrics) == {"rmse", "mae", "r2"}
    assert metrics["r2"] > 0.5
    fairness = json.loads((clone / "artifacts" / "fairness.json").read_text())
    assert fairness["town"]["mae_difference"] >= 0
    points = json.loads((clone / "artifacts" / "plots" / "predictions.json").read_text())
    assert {"actual", "predicted", "residual"} <= set(points["predictions"][0])

    # Version 1 becomes the champion; the gate then scores it on the same test set and
    # compares in rmse's direction: lower is better, so the bound is champion + 1% of it.
    mlgate = str(clone / ".venv" / "bin" / "mlgate")
    run([mlgate, "promote", "1", "--to", "staging"], clone)
    run([mlgate, "promote", "1", "--to", "production"], clone)
    run([mlgate, "gate"], clone)
    gate = json.loads((clone / "artifacts" / "gate.json").read_text())
    champion = next(c for c in gate["checks"] if c["kind"] == "champion")
    assert champion["op"] == "<="
    assert champion["threshold"] == pytest.approx(metrics["rmse"] * 1.01, abs=1e-6)
    assert champion["passed"] and gate["champion"]["version"] == "1"

    # Served on the fast path: ONNX Runtime scores the Ridge, over HTTP, as the model does.
    home = tmp_path / "bentoml"
    built = run(["env", f"BENTOML_HOME={home}", "make", "build", "MODEL=1"], clone)
    assert "build: scorer onnx: ONNX Runtime (max |Δ|" in built.stdout
    test = pd.read_parquet(clone / "artifacts" / "data" / "test.parquet")
    rows = test.drop(columns=["price"]).head(3).to_dict("records")
    expected = joblib.load(clone / "artifacts" / "model" / "model.joblib").predict(
        pd.DataFrame.from_records(rows)
    )
    with served(clone, home, tmp_path) as call:
        status, one = call("/predict", {"record": rows[0]})
        assert status == 200, one
        example = readme_request(clone)  # the README's curl example, as a user copies it
        assert call("/predict", example)[0] == 200, example
        assert one["prediction"] == pytest.approx(expected[0], abs=1e-5)
        assert "probability" not in one and "decision" not in one
        status, batch = call("/predict_batch", {"records": rows})
        assert status == 200, batch
        got = [p["prediction"] for p in batch["predictions"]]
        assert got == pytest.approx(list(expected), abs=1e-5)
        assert call("/model_info", None)[1]["scorer"] == "onnx"
        everything = test.drop(columns=["price"]).to_dict("records")
        assert call("/predict_batch", {"records": everything})[0] == 200
        recorded = tmp_path / "feedback"
        deadline = time.monotonic() + 60  # the writer flushes within serving.feedback.flush_seconds
        while (
            sum(len(f.read_text().splitlines()) for f in recorded.glob("*.jsonl")) < len(test) + 5
        ):
            assert time.monotonic() < deadline, "the service did not record every prediction"
            time.sleep(0.2)

    # The recorded traffic (the test split, 3 + 1 rows and the README's example, predicted
    # values) is monitored like a classifier's
    monitored = run(
        [mlgate, "monitor", "--feedback", str(recorded), "--out", str(tmp_path / "m")],
        clone,
        check=False,
    )
    assert monitored.returncode == 0, monitored.stdout + monitored.stderr
    drift = json.loads((tmp_path / "m" / "drift.json").read_text())
    assert drift["rows"] == len(test) + 5 and drift["enough_data"], drift
    assert drift["prediction"] is not None and not drift["prediction_drifted"], drift
    assert {"lot.size / m²", "schema"} <= {f["name"] for f in drift["features"]}


def test_regression_batch_keeps_every_name(house_project: Generated, tmp_path: Path) -> None:
    """Batch-scored: every input column under its own name, beside the model's prediction."""
    clone, export = house_project.clone, house_project.clone / "data" / "house-price.csv"
    command = [str(clone / ".venv/bin/mlgate"), "predict", "--model", "1", "--input", str(export)]
    run([*command, "--output", str(tmp_path / "batch"), "--format", "csv"], clone)
    scored = pd.read_csv(tmp_path / "batch" / "scored.csv")
    raw = pd.read_csv(export)
    assert list(scored.columns[: len(raw.columns)]) == list(raw.columns)
    model = joblib.load(clone / "artifacts" / "model" / "model.joblib")
    assert scored["prediction"].to_numpy() == pytest.approx(model.predict(raw), abs=1e-6)


@contextmanager
def served(clone: Path, home: Path, tmp_path: Path) -> Iterator[Any]:
    """`make serve` of the project's latest bento (its own BentoML home), as a user runs it;
    yields call(path, body) -> (status, json)."""
    port = free_port()
    log = tmp_path / "serve.log"
    env = tool_env(BENTOML_HOME=str(home), MLGATE_FEEDBACK_DIR=str(tmp_path / "feedback"))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["make", "serve", f"PORT={port}"],
            cwd=clone,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def call(path: str, body: Any) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", data, {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:  # /readyz answers plain text
            return status, text

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if call("/readyz", None)[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"make serve did not become ready:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)
        yield call
    finally:
        stop_group(proc)


# ---------------------------------------------------------------- the tests can fail


def build_model(project: Path, tmp: Path, code: str) -> Path:
    """A model built in the project's own environment: `code` sees `params` and the train
    split `frame`, and assigns `model`."""
    path = tmp / "broken.joblib"
    prelude = """
        import joblib
        from mlgate.pipeline import data
        from mlgate.config import load_params, parse_params
        from mlgate.pipeline.stages import train

        params = load_params("params.yaml")
        frame = data.load(params.split.train, params)
    """
    script = (
        textwrap.dedent(prelude) + textwrap.dedent(code) + f"joblib.dump(model, {str(path)!r})\n"
    )
    run([str(project / ".venv" / "bin" / "python"), "-c", script], project)
    return path


def model_tests(project: Path, model: Path, **env: str) -> tuple[int, str]:
    proc = run(
        [str(project / ".venv" / "bin" / "pytest"), "tests/test_model.py", "--model", str(model),
         "-p", "no:cacheprovider"],
        project, check=False, **env,
    )  # fmt: skip
    return proc.returncode, proc.stdout


def failed(output: str) -> set[str]:
    return set(re.findall(r"^FAILED tests/test_model\.py::(\S+)", output, re.M))


def test_the_generated_tests_fail_a_model_that_learned_from_a_sensitive_attribute(
    churn_project: Generated, tmp_path: Path
) -> None:
    """Trained with gender as a feature, on labels that favour one gender: the project's
    own tests catch it three ways; the attribute it did not use (age) is not blamed."""
    biased = build_model(
        churn_project.clone,
        tmp_path,
        """
        raw = params.model_dump(mode="json", by_alias=True)
        raw["features"]["categorical"] = ["gender", *raw["features"]["categorical"]]
        frame.loc[frame["gender"] == "female", params.data.target] = params.data.positive_label
        model = train.fit(frame, parse_params(raw))
        """,
    )
    code, out = model_tests(churn_project.clone, biased)
    assert code == 1, out[-3000:]
    assert {
        "test_the_sensitive_attribute_is_not_a_feature[gender]",
        "test_changing_a_sensitive_attribute_alone_barely_changes_the_prediction[gender]",
        "test_the_fairness_gaps_stay_within_the_gate[gender]",
        "test_the_metrics_are_the_ones_the_pipeline_reported",
    } <= failed(out), out[-3000:]
    assert not any(name.endswith("[age]") and "not_a_feature" in name for name in failed(out))


def test_the_generated_tests_fail_a_model_that_learned_from_a_key(
    churn_project: Generated, tmp_path: Path
) -> None:
    """Trained with the customer ID as a category: the project's own role test names the
    key; the timestamp and the free text it did not use are not blamed."""
    leaky = build_model(
        churn_project.clone,
        tmp_path,
        """
        raw = params.model_dump(mode="json", by_alias=True)
        raw["data"]["roles"] = {}
        raw["features"]["categorical"] = ["customer_id", *raw["features"]["categorical"]]
        model = train.fit(frame, parse_params(raw))
        """,
    )
    code, out = model_tests(churn_project.clone, leaky)
    assert code == 1, out[-3000:]
    roles = {n for n in failed(out) if n.startswith("test_a_column_with_a_role")}
    assert roles == {"test_a_column_with_a_role_never_reaches_the_model[customer_id]"}, out[-3000:]


def test_the_generated_tests_fail_a_model_with_a_reversed_monotone_feature(
    house_project: Generated, tmp_path: Path
) -> None:
    """Trained on area mirrored (bigger reads as smaller): the directional test for area
    fails, the one for rooms (still learned the right way) does not."""
    reversed_area = build_model(
        house_project.clone,
        tmp_path,
        """
        frame["area"] = frame["area"].min() + frame["area"].max() - frame["area"]
        model = train.fit(frame, params)
        """,
    )
    code, out = model_tests(house_project.clone, reversed_area)
    assert code == 1, out[-3000:]
    assert "test_the_prediction_follows_each_monotone_feature[area]" in failed(out), out[-3000:]
    assert "test_the_prediction_follows_each_monotone_feature[rooms]" not in failed(out)


def test_without_a_model_the_model_tests_fail_in_ci(
    churn_project: Generated, tmp_path: Path
) -> None:
    missing = tmp_path / "no-model.joblib"
    code, out = model_tests(churn_project.clone, missing, CI="true")
    summary = out.strip().splitlines()[-1]  # e.g. "==== 15 errors in 0.78s ===="
    assert code == 1 and re.search(r" \d+ errors? in ", summary), out[-3000:]
    assert "passed" not in summary and "skipped" not in summary
    assert "no trained model at" in out
    code, out = model_tests(churn_project.clone, missing)  # on a laptop: skipped, and said
    summary = out.strip().splitlines()[-1]
    assert code == 0 and " skipped" in summary and "passed" not in summary
