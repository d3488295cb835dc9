"""A three-class data set through `mlgate init` and the new project's own README commands
(`make run`: DVC's pipeline and MLflow for real; `make test`), its metrics and fairness gaps
held against scikit-learn and fairlearn computed here, its PR report, and `mlgate build`'s
refusal while serving a multiclass model is not supported."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from sklearn import metrics as m
from sklearn.datasets import load_wine

from tests.scaffold.test_init_projects import Generated, generate, passed_count, registered

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


def test_build_refuses_a_multiclass_model_in_one_line(wine_project: Generated) -> None:
    clone = wine_project.clone
    built = subprocess.run(
        [str(clone / ".venv" / "bin" / "mlgate"), "build", "--model", "1"],
        cwd=clone,
        capture_output=True,
        text=True,
    )
    assert built.returncode != 0
    assert "serving a multiclass model is not supported yet" in built.stderr
    assert "Traceback" not in built.stderr
    assert len(built.stderr.strip().splitlines()) == 1
