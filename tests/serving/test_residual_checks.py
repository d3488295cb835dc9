"""A schema check pydantic cannot express (a pandera dataframe check) is enforced by the
served model too: `mlgate build` keeps it in the contract's residual checks and the service
validates every request with pandera, answering 400 with the check's name."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from mlgate.serving.feedback import read_records
from tests.conftest import run
from tests.serving.conftest import bentoml_env, serving
from tests.serving.test_service import GOOD

pytestmark = pytest.mark.slow

# At most 10,000 DM a month: every row of the example passes (its largest is ~4,600).
CHECK = """
    @pa.dataframe_check
    def monthly_instalment_at_most_10000(cls, df):
        return df["credit_amount"] / df["duration"] <= 10_000
"""


def test_a_check_only_pandera_can_express_is_enforced_over_http(
    trained_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    repo = tmp_path_factory.mktemp("residual") / "repo"
    shutil.copytree(trained_repo, repo, symlinks=True)
    schema = repo / "src/credit_risk/schema.py"
    source = schema.read_text()
    anchor = "    class Config:\n        strict = True\n        coerce = True\n"
    assert source.count(anchor) == 1
    schema.write_text(source.replace(anchor, anchor + CHECK))
    home = tmp_path_factory.mktemp("bentoml-home")
    # the copy's schema module, as the project's own editable install would import it (this
    # venv's `credit_risk` is the repository's)
    built = run(
        ["mlgate", "build", "--model", "candidate"],
        repo,
        **bentoml_env(home, PYTHONPATH=str(repo / "src")),
    )
    assert "build: contract: 1 check(s) pydantic cannot express" in built.stdout, built.stdout
    tag = built.stdout.strip().rsplit("bento ", 1)[-1]

    with serving(tag, home, repo, tmp_path_factory) as srv:
        _, info = srv.call("/model_info")
        assert info["ready"]
        assert srv.call("/predict", {"applicant": GOOD})[0] == 200
        steep = {**GOOD, "credit_amount": 90_317, "duration": 2}  # 45,158 a month
        status, answer = srv.call("/predict", {"applicant": steep})
        assert status == 400, answer
        assert "monthly_instalment_at_most_10000" in answer["error"], answer
        assert answer["detail"][0]["type"] == "bad_request", answer
        # one bad row refuses its batch, and nothing of it is recorded as a prediction
        status, answer = srv.call("/predict_batch", {"applicants": [GOOD, steep]})
        assert status == 400, answer
        deadline = time.monotonic() + 60  # flushed every second; generous on a busy machine
        while time.monotonic() < deadline:
            records = read_records(srv.feedback)
            if len(records) >= 3:
                break
            time.sleep(0.2)
        log = srv.log.read_text()
    assert "status=400" in log  # logged once each, at WARNING…
    assert "90317" not in log and "90,317" not in log  # …never with the request's values
    predictions = [r for r in records if r["kind"] == "prediction"]
    assert [r["inputs"]["credit_amount"] for r in predictions] == [GOOD["credit_amount"]]
    errors = [r for r in records if r["kind"] == "error"]
    assert [(r["endpoint"], r["status"]) for r in errors] == [
        ("predict", 400),
        ("predict_batch", 400),
    ]
