"""`mlgate init` on data sets it has never seen: the new repository passes its own README
commands in a fresh clone, registers a model, and its workflows lint clean."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
import yaml

from tests.conftest import free_port, run, stop_group, tool_env
from tests.init.conftest import VENV_BIN, mlgate_init

pytestmark = pytest.mark.slow


def readme_commands(project: Path) -> list[list[str]]:
    """The commands the generated README promises, read from it (not restated here)."""
    text = (project / "README.md").read_text()
    block = text.split("## The two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].split() for line in block.strip().splitlines()]
    assert commands == [["make", "run"], ["make", "test"]]
    return commands


def run_as_a_user(origin: Path, tmp_path: Path, name: str) -> Path:
    """Clone the generated repository (what a teammate does) and run its README commands."""
    clone = tmp_path / "clone" / name
    clone.parent.mkdir()
    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    for command in readme_commands(clone):
        out = run(command, clone).stdout
    assert " passed" in out and "skipped" not in out  # the model tests ran, on the new model
    run(["make", "lint"], clone)  # what the CI workflow's lint job runs
    return clone


def registered(clone: Path, name: str) -> dict[str, object]:
    out = run([str(clone / ".venv" / "bin" / "mlgate"), "lineage", f"{name}/1", "--json"], clone)
    return json.loads(out.stdout)


def test_binary_classification_project(
    churn_csv: Path, tmp_path: Path, actionlint: list[str]
) -> None:
    origin = tmp_path / "churn-model"
    init = mlgate_init(
        origin, "--data", churn_csv, "--target", "churned", "--sensitive", "gender,age"
    )
    assert "positive label 'yes'" in init.stdout
    assert "not a feature: customer_id" in init.stdout  # an identifier is not learned from
    assert run(["git", "status", "--porcelain"], origin).stdout == ""  # all of it committed

    clone = run_as_a_user(origin, tmp_path, "churn-model")
    info = registered(clone, "churn-model")
    assert info["gate_passed"] == "true"
    assert "roc_auc" in json.loads((clone / "artifacts" / "metrics.json").read_text())
    fairness = json.loads((clone / "artifacts" / "fairness.json").read_text())
    assert set(fairness) == {"gender", "age"}
    assert set(fairness["gender"]["groups"]) == {"female", "male", "other"}

    workflows = sorted((clone / ".github" / "workflows").glob("*.yml"))
    assert [w.name for w in workflows] == ["cd.yml", "ci.yml", "monitor.yml", "rollback.yml"]
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
    # Missing values => imputers, which skl2onnx's graph does not reproduce: the build says
    # so loudly and serves with scikit-learn; required (serving.scorer: onnx), it refuses.
    assert "WARNING: no fast path: the Pipeline is not (scaler + one-hot" in built.stderr
    with (clone / "params.yaml").open() as fh:
        params = yaml.safe_load(fh)
    params["serving"]["scorer"] = "onnx"
    (tmp_path / "params-onnx.yaml").write_text(yaml.safe_dump(params))
    store = sorted(p.relative_to(home) for p in home.glob("[bm]*/*/*"))  # bentos, models
    refused = run(
        [
            str(clone / ".venv" / "bin" / "mlgate"),
            "build",
            "--model",
            "1",
            "--params",
            str(tmp_path / "params-onnx.yaml"),
        ],
        clone,
        check=False,
        BENTOML_HOME=str(home),
    )
    assert refused.returncode == 2, refused.stderr  # mlgate's exit code for a refusal
    assert "serving.scorer is onnx, but the Pipeline is not" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert sorted(p.relative_to(home) for p in home.glob("[bm]*/*/*")) == store  # nothing added


def test_regression_project(houses_csv: Path, tmp_path: Path) -> None:
    origin = tmp_path / "house-price"
    init = mlgate_init(origin, "--data", houses_csv, "--target", "price", "--sensitive", "town")
    assert "regression of 'price', primary metric rmse" in init.stdout

    clone = run_as_a_user(origin, tmp_path, "house-price")
    assert registered(clone, "house-price")["gate_passed"] == "true"
    metrics = json.loads((clone / "artifacts" / "metrics.json").read_text())
    assert set(metrics) == {"rmse", "mae", "r2"}
    assert metrics["r2"] > 0.5
    fairness = json.loads((clone / "artifacts" / "fairness.json").read_text())
    assert fairness["town"]["mae_difference"] >= 0
    points = json.loads((clone / "artifacts" / "plots" / "predictions.json").read_text())
    assert {"actual", "predicted", "residual"} <= set(points["predictions"][0])

    # Version 1 becomes the champion; the gate then scores it on the same test set and
    # compares in rmse's direction: lower is better, so the bound is champion + tolerance.
    mlgate = str(clone / ".venv" / "bin" / "mlgate")
    run([mlgate, "promote", "1", "--to", "staging"], clone)
    run([mlgate, "promote", "1", "--to", "production"], clone)
    run([mlgate, "gate"], clone)
    gate = json.loads((clone / "artifacts" / "gate.json").read_text())
    champion = next(c for c in gate["checks"] if c["kind"] == "champion")
    assert champion["op"] == "<="
    assert champion["threshold"] == pytest.approx(metrics["rmse"] + 0.01)
    assert champion["passed"] and gate["champion"]["version"] == "1"

    # Served on the fast path: ONNX Runtime scores the Ridge, over HTTP, as the model does.
    home = tmp_path / "bentoml"
    built = run(["env", f"BENTOML_HOME={home}", "make", "build", "MODEL=1"], clone)
    assert "build: scorer onnx: ONNX Runtime (max |Δ|" in built.stdout
    test = pd.read_csv(clone / "artifacts" / "data" / "test.csv")
    rows = test.drop(columns=["price"]).head(3).to_dict("records")
    expected = joblib.load(clone / "artifacts" / "model" / "model.joblib").predict(
        pd.DataFrame.from_records(rows)
    )
    with served(clone, home, tmp_path) as call:
        status, one = call("/predict", {"record": rows[0]})
        assert status == 200, one
        assert one["prediction"] == pytest.approx(expected[0], abs=1e-5)
        assert "probability" not in one and "decision" not in one
        status, batch = call("/predict_batch", {"records": rows})
        assert status == 200, batch
        got = [p["prediction"] for p in batch["predictions"]]
        assert got == pytest.approx(list(expected), abs=1e-5)
        assert call("/model_info", None)[1]["scorer"] == "onnx"


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
