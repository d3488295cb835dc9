"""Registry commands on a real MLflow store: register, promote, rollback, lineage."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import run
from tests.pipeline.conftest import registry_state

pytestmark = pytest.mark.slow


def aliases(repo) -> dict[str, list[str]]:
    return {v: s["aliases"] for v, s in registry_state(repo).items()}


def test_promotion_road_rollback_and_lineage(retrained_repo, tmp_path):
    # the trained repo with a second training run (C=0.3) in its store, not registered yet
    repo = Path(shutil.copytree(retrained_repo, tmp_path / "repo", symlinks=True))
    # production straight from candidate is refused, and nothing moves
    refused = run(["mlgate", "promote", "1", "--to", "production"], repo, check=False)
    assert refused.returncode != 0
    assert "was never in staging; promote it --to staging first" in refused.stderr
    assert aliases(repo) == {"1": ["candidate"]}

    run(["mlgate", "promote", "1", "--to", "staging"], repo)
    run(["mlgate", "promote", "1", "--to", "production", "--note", "first release"], repo)

    # a second model (new params, new run: retrained_repo): version 2
    out = run(["mlgate", "register"], repo)
    assert "credit-risk version 2" in out.stdout
    again = run(["mlgate", "register"], repo)
    assert "already credit-risk version 2; nothing to do" in again.stdout
    run(["mlgate", "promote", "2", "--to", "staging"], repo)
    run(["mlgate", "promote", "2", "--to", "production"], repo, GITHUB_ACTOR="alice")
    assert aliases(repo) == {"1": [], "2": ["candidate", "production", "staging"]}

    out = run(["mlgate", "rollback", "--note", "latency regression"], repo)
    assert "production -> version 1 (was 2)" in out.stdout
    assert aliases(repo) == {"1": ["production"], "2": ["candidate", "staging"]}

    again = run(["mlgate", "rollback"], repo, check=False)
    assert again.returncode != 0
    assert "no earlier production version" in again.stderr
    assert aliases(repo)["1"] == ["production"]

    info = json.loads(run(["mlgate", "lineage", "credit-risk@production", "--json"], repo).stdout)
    assert info["version"] == "1"
    commit = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    assert info["git_commit"] == commit
    assert info["params"]["hp.C"] == "1.0"
    assert info["metrics"]["test_roc_auc"] > 0.7
    assert info["gate_passed"] == "true"
    assert info["gates"]["demographic_parity_difference:sex"].startswith("pass: ")
    # lineage shows the interval the gate judged, and an uncertain verdict as such
    shown = info["gates"]["demographic_parity_difference:sex"]
    assert re.fullmatch(r"pass: [\d.]+ \[[\d.]+, [\d.]+\] <= 0\.1( \(uncertain\))?", shown), shown
    actions = [(e["action"], e["alias"]) for e in info["alias_history"]]
    assert actions == [
        ("register", "candidate"), ("promote", "staging"), ("promote", "production"),
        ("rollback", "production"),
    ]  # fmt: skip
    assert info["alias_history"][-1]["note"] == "latency regression"
    # what drives it, as the gate kept it with the run: the example's strongest column first
    assert info["drivers"]["method"] == "exact-linear"
    assert next(iter(info["drivers"]["columns"])) == "checking_account"

    text = run(["mlgate", "lineage", "credit-risk/2"], repo).stdout
    assert text.startswith("credit-risk version 2  (aliases: candidate, staging)")
    assert "promote  production by alice" in text
    assert f"commit:      {commit}" in text
    assert "  drivers:     checking_account " in text and "(exact-linear)" in text


def test_a_version_registered_outside_mlgate_without_gates_cannot_be_promoted(repo):
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{repo / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)  # MLflow resolves `models:/m-…` sources via the global URI
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    v1 = client.get_model_version("credit-risk", "1")
    rogue = client.create_model_version("credit-risk", source=v1.source, run_id=v1.run_id)

    out = run(["mlgate", "promote", str(rogue.version), "--to", "staging"], repo, check=False)

    assert out.returncode != 0
    assert f"version {rogue.version} did not pass its gates; refusing to promote" in out.stderr
    assert registry_state(repo)[str(rogue.version)]["aliases"] == []


def test_unknown_versions_and_aliases_are_clear_errors(repo):
    out = run(["mlgate", "promote", "42", "--to", "staging"], repo, check=False)
    assert out.returncode != 0 and "credit-risk has no version 42" in out.stderr
    out = run(["mlgate", "lineage", "credit-risk@production"], repo, check=False)
    assert (
        out.returncode != 0 and "no version of credit-risk holds alias 'production'" in out.stderr
    )
    out = run(["mlgate", "rollback"], repo, check=False)
    assert out.returncode != 0 and "nothing to roll back" in out.stderr


def test_building_production_before_any_promotion_suggests_the_candidate(trained_repo, tmp_path):
    # read-only on the shared repo: the alias is looked up before anything is built
    out = run(["mlgate", "build"], trained_repo, check=False, BENTOML_HOME=str(tmp_path))
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    assert "no version of credit-risk holds alias 'production'" in out.stderr
    assert "make build MODEL=candidate" in out.stderr and "(version 1)" in out.stderr
    assert not any(tmp_path.iterdir()), "nothing may be written to the BentoML store"
