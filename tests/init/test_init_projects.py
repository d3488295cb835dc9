"""`mlgate init` on data sets it has never seen: the new repository passes its own README
commands in a fresh clone, registers a model, and its workflows lint clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run
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
    assert [w.name for w in workflows] == [
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
