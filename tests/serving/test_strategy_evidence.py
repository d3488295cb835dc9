"""Champion against challenger end to end: served traffic, its outcomes, `mlgate compare`.

The example's test split goes over HTTP to a served bento, its true labels come back (POST
/outcome in shadow, `mlgate outcomes import` in canary) and the real `mlgate compare` decides.
One repository copy holds version 1 (the example's model) and version 2 (the same pipeline
fitted to the training split with its labels shuffled: no signal). Shadow with version 2 as
the challenger must abort; a canary where version 1 challenges version 2 must promote.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlgate.io import read_json
from tests.conftest import run
from tests.pipeline.test_repro import set_param
from tests.serving.conftest import Server, serving
from tests.serving.test_strategy import build, built_tag, post, records_of

pytestmark = pytest.mark.slow

CANARY_SHARE = 0.5
# A 0.5 canary over the 300 test rows gives each model about half of them (the split by key
# is a stable hash, the same for these keys every run), below compare's default min_rows
# 200. The canary's compare params are lowered to 80 rather than the rows sent again under
# new request ids: the bootstrap would count the copies as independent evidence. Shadow
# keeps the defaults: both models score all 300 rows.
CANARY_MIN_ROWS = 80


@pytest.fixture(scope="module")
def shuffled_repo(trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained repo where version 2 is the example pipeline fitted to the
    training split with its labels shuffled, through the real stages and `mlgate register`.

    The gate's thresholds and chance check are dropped in this copy, or a model without
    signal would not register (nor could it be served: the build refuses ungated models).
    What is shown is that `mlgate compare` catches on live traffic a model the offline gate
    let through."""
    import numpy as np
    import pandas as pd

    repo = tmp_path_factory.mktemp("evidence") / "repo"
    shutil.copytree(trained_repo, repo, symlinks=True)
    set_param(repo, "gate.min_metrics", {})
    set_param(repo, "gate.max_fairness_gap", {})
    train = repo / "artifacts/data/train.parquet"
    target = yaml.safe_load((repo / "params.yaml").read_text())["data"]["target"]
    frame = pd.read_parquet(train)
    frame[target] = np.random.default_rng(0).permutation(frame[target].to_numpy())
    frame.to_parquet(train)
    # the stages one by one: `dvc repro` would rebuild the split it depends on
    for stage in ("train", "evaluate"):
        run(["mlgate", stage], repo)
    # the offline gate's chance check refuses it (its training on shuffled labels does as
    # well): switched off too, to show what `mlgate compare` does with one that got through
    refused = run(["mlgate", "gate"], repo, check=False)
    assert refused.returncode == 1 and "FAIL  chance" in refused.stdout, refused.stdout
    set_param(repo, "evaluate.chance", {"refits": 0})
    for stage in ("evaluate", "gate"):
        run(["mlgate", stage], repo)
    assert "credit-risk version 2" in run(["mlgate", "register"], repo).stdout
    return repo


@pytest.fixture(scope="module")
def shadow_server(
    shuffled_repo: Path, home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Version 1 answers, version 2 (shuffled labels) scores every row in its shadow."""
    tag = built_tag(build(shuffled_repo, home, mode="shadow", challenger="2"))
    with serving(tag, home, shuffled_repo, tmp_path_factory) as srv:
        yield srv


@pytest.fixture(scope="module")
def canary_server(
    shuffled_repo: Path, home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Version 2 (shuffled labels) is the champion; version 1 answers half the customers,
    keyed by the X-Customer header."""
    proc = build(
        shuffled_repo,
        home,
        model="2",
        mode="canary",
        challenger="1",
        share=CANARY_SHARE,
        key="header:X-Customer",
    )
    with serving(built_tag(proc, challenger="1"), home, shuffled_repo, tmp_path_factory) as srv:
        yield srv


def split_requests(repo: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """The test split as the service receives it (contract columns) and its true labels."""
    from mlgate.config import load_params
    from mlgate.pipeline import data
    from mlgate.serving.build import split_rows

    params = load_params(repo / "params.yaml")
    path = repo / params.split.test
    labels = data.load(path, params)[params.data.target]
    return split_rows(params, path), [int(v) for v in labels]


def wait_for(srv: Server, kind: str, keys: set[tuple[str, int]]) -> None:
    """Until every (request id, row) in `keys` has a record of `kind` in the feedback files."""

    def held(records: list[dict[str, Any]]) -> set[tuple[str, int]]:
        return {(r["request_id"], r.get("row", 0)) for r in records if r["kind"] == kind} & keys

    missing = keys - held(records_of(srv, lambda rs: held(rs) == keys))
    assert not missing, f"{len(missing)} {kind} records never reached the feedback files"


def compare(repo: Path, srv: Server, out: Path, params: Path) -> tuple[int, dict[str, Any], str]:
    """`mlgate compare` on the server's feedback folder, as a CI step runs it."""
    cmd = ["mlgate", "compare", "--feedback", str(srv.feedback), "--report", str(out)]
    proc = run([*cmd, "--params", str(params)], repo, check=False)
    assert proc.returncode in (0, 3, 4), proc.stderr[-3000:]
    return proc.returncode, read_json(out / "compare.json"), (out / "compare.md").read_text()


def params_with_compare(repo: Path, dest: Path, **compare_keys: Any) -> Path:
    """The repo's params.yaml with other compare.* values, written to `dest`."""
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["compare"].update(compare_keys)
    dest.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return dest


def test_a_challenger_trained_on_shuffled_labels_is_aborted_in_shadow(
    shuffled_repo: Path, trained_repo: Path, shadow_server: Server, tmp_path: Path
) -> None:
    srv = shadow_server
    rows, labels = split_requests(shuffled_repo)
    n = len(rows)
    assert n >= 200  # compare's defaults as they are: min_rows 200, min_outcomes 100
    # the rows one by one, the last 50 in one batch: both routes answer and are shadowed
    single, batch = rows[:-50], rows[-50:]
    answered = []
    for row in single:
        status, _, body = post(srv, "/predict", {"applicant": row})
        assert status == 200, body
        assert (body["variant"], body["model_version"]) == ("champion", "1")
        answered.append((body["request_id"], 0))
    status, _, body = post(srv, "/predict_batch", {"applicants": batch})
    assert status == 200 and body["variant"] == "champion", body
    answered += [(body["request_id"], i) for i in range(len(batch))]
    assert len(set(answered)) == n  # every answer carried its own id

    # the labels come back through the service, with the ids the answers carried
    for (request_id, _), label in zip(answered[:-50], labels[:-50], strict=True):
        got = post(srv, "/outcome", {"request_id": request_id, "outcome": label})
        assert got[::2] == (200, {"recorded": 1, "verified": True}), got
    later = [
        {"request_id": request_id, "row": row, "outcome": label}
        for (request_id, row), label in zip(answered[-50:], labels[-50:], strict=True)
    ]
    assert post(srv, "/outcome", {"outcomes": later})[::2] == (
        200, {"recorded": 50, "verified": True}
    )  # fmt: skip
    keys = set(answered)
    for kind in ("prediction", "shadow", "outcome"):
        wait_for(srv, kind, keys)

    code, report, md = compare(
        shuffled_repo, srv, tmp_path / "compare", shuffled_repo / "params.yaml"
    )
    assert (code, report["verdict"], report["exit_code"]) == (4, "abort", 4), report["reasons"]
    assert report["mode"] == "shadow" and report["difference"]["design"] == "paired"
    champion, challenger = report["champion"], report["challenger"]
    assert (champion["model_versions"], challenger["model_versions"]) == (["1"], ["2"])
    # joined: every served row has its outcome, for both models
    assert champion["predictions"] == challenger["predictions"] == n
    assert champion["outcomes"] == challenger["outcomes"] == n
    assert champion["errors"] == challenger["errors"] == 0
    # the served scores joined with the returned labels give what evaluate measured offline
    # on the same split (to metrics.json's 4 decimals; a wrong join would give ~0.5)
    offline = {
        "1": read_json(trained_repo / "artifacts/metrics.json")["roc_auc"],
        "2": read_json(shuffled_repo / "artifacts/metrics.json")["roc_auc"],
    }
    assert champion["metric"] == pytest.approx(offline["1"], abs=5e-5)
    assert challenger["metric"] == pytest.approx(offline["2"], abs=5e-5)
    difference = report["difference"]
    assert difference["metric"] == "roc_auc" and difference["rows"]["challenger"] == n
    assert difference["value"] == pytest.approx(challenger["metric"] - champion["metric"])
    assert difference["value"] < difference["ci"][1] < -report["thresholds"]["max_metric_loss"]
    assert any(r.startswith("confidently worse") for r in report["reasons"])
    assert "**Abort**" in md and "paired bootstrap" in md


def test_a_better_challenger_is_promoted_in_canary_with_imported_outcomes(
    shuffled_repo: Path, canary_server: Server, tmp_path: Path
) -> None:
    srv = canary_server
    rows, labels = split_requests(shuffled_repo)
    answered: dict[str, list[str]] = {"champion": [], "challenger": []}
    table = []
    for n, (row, label) in enumerate(zip(rows, labels, strict=True)):
        status, headers, body = post(
            srv, "/predict", {"applicant": row}, {"X-Customer": f"customer-{n}"}
        )
        assert status == 200, body
        assert body["model_version"] == {"champion": "2", "challenger": "1"}[body["variant"]]
        assert headers["x-mlgate-variant"] == body["variant"]
        answered[body["variant"]].append(body["request_id"])
        table.append({"request_id": body["request_id"], "outcome": label})
    assert min(map(len, answered.values())) >= CANARY_MIN_ROWS

    # the labels arrive later, in bulk, as a file: imported once the predictions are recorded
    wait_for(srv, "prediction", {(r["request_id"], 0) for r in table})
    labels_csv = tmp_path / "labels.csv"
    with labels_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["request_id", "outcome"])
        writer.writeheader()
        writer.writerows(table)
    cmd = ["mlgate", "outcomes", "import", str(labels_csv), "--feedback", str(srv.feedback)]
    run(cmd, shuffled_repo)
    (imported,) = srv.feedback.glob("outcomes-import-*.jsonl")
    written = [json.loads(line) for line in imported.read_text().splitlines()]
    assert len(written) == len(rows) and {r["source"] for r in written} == {"import"}

    lowered = {"min_rows": CANARY_MIN_ROWS, "min_outcomes": CANARY_MIN_ROWS}
    params = params_with_compare(shuffled_repo, tmp_path / "params.yaml", **lowered)
    code, report, md = compare(shuffled_repo, srv, tmp_path / "compare", params)
    assert (code, report["verdict"], report["exit_code"]) == (0, "promote", 0), report["reasons"]
    assert report["mode"] == "split" and report["agreement"] is None
    champion, challenger = report["champion"], report["challenger"]
    assert (champion["model_versions"], challenger["model_versions"]) == (["2"], ["1"])
    # compare counted each model's rows as the answers said which model gave them, all joined
    for name, variant in (("champion", champion), ("challenger", challenger)):
        assert variant["predictions"] == variant["outcomes"] == len(answered[name])
    difference = report["difference"]
    assert difference["design"] == "independent"
    assert difference["rows"] == {k: len(v) for k, v in answered.items()}
    assert difference["value"] > 0
    assert difference["ci"][0] > -report["thresholds"]["max_metric_loss"]
    assert [r.split(" ")[0] for r in report["reasons"]] == ["challenger", "non-inferior:"]
    assert "**Promote**" in md and "independent bootstrap" in md
