"""Champion and challenger in one bento: shadow and canary over real HTTP, and POST /outcome.

One repository copy holds two gated versions (1: the champion; 2: retrained with another C,
alias `challenger`); one shadow bento and one canary bento of them are each served once.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlgate.serving.feedback import read_records
from tests.conftest import run
from tests.serving.conftest import Server, bentoml_env, serving
from tests.serving.fault import challenger_fault_env
from tests.serving.test_service import GOOD, metric

pytestmark = pytest.mark.slow

SHARE = 0.3
EXPLAIN_PATHS = ("/explain", "/explain_batch")


@pytest.fixture(scope="module")
def two_models(retrained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the retrained repo with version 2 registered (C=0.3) and promoted to
    `challenger`, and version 3, made outside mlgate without gates, aliased `rogue` (registry
    API calls)."""
    repo = tmp_path_factory.mktemp("strategy") / "repo"
    shutil.copytree(retrained_repo, repo, symlinks=True)
    assert "credit-risk version 2" in run(["mlgate", "register"], repo).stdout

    promoted = run(["mlgate", "promote", "2", "--to", "challenger"], repo).stdout
    assert "promote: credit-risk challenger -> version 2" in promoted

    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{repo / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)  # MLflow resolves `models:/m-…` sources via the global URI
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    # a version made outside mlgate (no gates), aliased by hand: the build must refuse it
    v1 = client.get_model_version("credit-risk", "1")
    rogue = client.create_model_version("credit-risk", source=v1.source, run_id=v1.run_id)
    client.set_registered_model_alias("credit-risk", "rogue", rogue.version)
    return repo


def build(
    repo: Path,
    home: Path,
    model: str = "1",
    tracing: bool = False,
    lean_route: bool = True,
    **strategy: Any,
) -> Any:
    """`mlgate build --model MODEL` with serving.strategy (and serving.tracing,
    serving.lean_route) set in a params copy."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["serving"]["strategy"] = {"challenger": "challenger", **strategy}
    params["serving"]["tracing"] = tracing
    params["serving"]["lean_route"] = lean_route
    params_file = home / f"params-{strategy['mode']}-{strategy.get('challenger', '')}.yaml"
    params_file.write_text(yaml.safe_dump(params), encoding="utf-8")
    cmd = ["mlgate", "build", "--model", model, "--params", str(params_file)]
    return run(cmd, repo, check=False, **bentoml_env(home))


def built_tag(proc: Any, challenger: str = "2") -> str:
    """The bento's tag, once the build said it packed challenger version `challenger`."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = (
        f"build: {mode}: challenger credit-risk version {challenger} -> "
        for mode in ("shadow", "canary")
    )
    assert any(line in proc.stdout for line in said), proc.stdout[-3000:]
    return str(proc.stdout.strip().rsplit("bento ", 1)[-1])


@pytest.fixture(scope="module")
def shadow_server(
    two_models: Path, home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path]]:
    """The shadow bento, served with the test-only fault switch (tests/serving/fault.py): while
    the returned file exists, the challenger's scorer does what it says (`raise`). Built with
    serving.lean_route: false, so BentoML's router answers its predictions (the canary bento
    and tests/serving/test_service.py's serve the lean route)."""
    tag = built_tag(build(two_models, home, lean_route=False, mode="shadow"))
    fault = tmp_path_factory.mktemp("fault") / "challenger-fault"
    with serving(tag, home, two_models, tmp_path_factory, **challenger_fault_env(fault)) as srv:
        yield srv, fault


@pytest.fixture(scope="module")
def canary_server(
    two_models: Path, home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path]]:
    """The canary bento (share 0.3, keyed by the X-Customer header), with the fault switch,
    and with serving.tracing: true (the shadow bento keeps the default, false)."""
    tag = built_tag(
        build(two_models, home, tracing=True, mode="canary", share=SHARE, key="header:X-Customer")
    )
    fault = tmp_path_factory.mktemp("fault") / "challenger-fault"
    with serving(tag, home, two_models, tmp_path_factory, **challenger_fault_env(fault)) as srv:
        yield srv, fault


def post(
    srv: Server, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(
        srv.url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, got, text = resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            status, got, text = err.code, dict(err.headers), err.read().decode()
    return status, {k.lower(): v for k, v in got.items()}, json.loads(text)


def records_of(srv: Server, want: Any, timeout: float = 60) -> list[dict[str, Any]]:
    """The feedback records once `want(records)` holds (flushed every second or so)."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(srv.feedback)
        if want(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


# ---------------------------------------------------------------- build


@pytest.mark.parametrize(
    ("strategy", "refusal"),
    [
        (
            {"challenger": "1"},
            "challenger '1' is credit-risk version 1, the champion itself ('1'); not building",
        ),
        (
            {"challenger": "rogue"},
            "challenger: credit-risk version 3 did not pass its gates; not building",
        ),
        (
            {"key": "customer_id"},
            "serving.strategy.key 'customer_id' is not a field of the request contract",
        ),
    ],
    ids=["champion-itself", "ungated", "key-outside-the-contract"],
)
def test_build_refuses_a_strategy_it_cannot_serve(
    two_models: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    strategy: dict[str, str],
    refusal: str,
) -> None:
    """In process (a `mlgate build` process costs ~25 s of imports on a busy machine; the
    CLI's error exit is tested in tests/cli/test_cli.py), on the real registry."""
    from mlgate.config import parse_params
    from mlgate.errors import MlgateError
    from mlgate.serving.build import build

    monkeypatch.chdir(two_models)
    monkeypatch.setenv("BENTOML_HOME", str(home / "refused"))
    raw = yaml.safe_load((two_models / "params.yaml").read_text())
    raw["serving"]["strategy"] = {"mode": "canary", "challenger": "challenger", **strategy}
    with pytest.raises(MlgateError) as refused:
        build(parse_params(raw), "1")
    assert refusal in str(refused.value)
    assert not (home / "refused" / "models").exists()  # nothing saved


def test_the_bento_records_both_models(shadow_server: tuple[Server, Path], home: Path) -> None:
    _srv, _ = shadow_server
    (bento_yaml,) = [p for p in (home / "bentos").glob("*/*/bento.yaml")]
    info = yaml.safe_load(bento_yaml.read_text())
    names = sorted(m["tag"].split(":")[0] for s in info["services"] for m in s["models"])
    assert names == ["mlgate-challenger", "mlgate-model"]
    labels = info["labels"]
    assert (labels["model_version"], labels["strategy"], labels["challenger_version"]) == (
        "1",
        "shadow",
        "2",
    )


# ---------------------------------------------------------------- shadow


def test_model_info_shows_both_models_and_the_strategy(
    shadow_server: tuple[Server, Path],
) -> None:
    srv, _ = shadow_server
    status, info = srv.call("/model_info")
    assert status == 200, info
    assert info["model_version"] == "1" and info["lineage"]["gate_passed"] == "true"
    assert info["strategy"] == {
        "mode": "shadow", "challenger": "challenger", "share": 0.1, "key": None
    }  # fmt: skip
    assert info["challenger"]["model_version"] == "2"
    assert info["challenger"]["lineage"]["gate_passed"] == "true"
    assert info["challenger"]["lineage"]["run_id"] != info["lineage"]["run_id"]


def test_shadow_the_champion_answers_and_the_challenger_scores_every_row(
    shadow_server: tuple[Server, Path],
) -> None:
    srv, _ = shadow_server
    ids = set()
    for age in range(30, 40):
        status, headers, body = post(srv, "/predict", {"applicant": {**GOOD, "age": age}})
        assert status == 200, body
        assert (body["variant"], body["model_version"]) == ("champion", "1")
        assert headers["x-mlgate-variant"] == "champion"
        ids.add(body["request_id"])
    status, _, batch = post(srv, "/predict_batch", {"applicants": [GOOD, {**GOOD, "age": 61}]})
    assert status == 200 and batch["variant"] == "champion"
    ids.add(batch["request_id"])

    def mine(records: list[dict[str, Any]], kind: str) -> dict[tuple[str, int], dict[str, Any]]:
        return {
            (r["request_id"], r["row"]): r
            for r in records
            if r["kind"] == kind and r["request_id"] in ids
        }

    records = records_of(srv, lambda rs: len(mine(rs, "shadow")) >= 12)
    answered, shadowed = mine(records, "prediction"), mine(records, "shadow")
    assert len(answered) == 12 and set(shadowed) == set(answered)
    for key, shadow in shadowed.items():
        assert (answered[key]["variant"], answered[key]["model_version"]) == ("champion", "1")
        assert (shadow["variant"], shadow["model_version"]) == ("challenger", "2")
        assert "inputs" not in shadow and 0 <= shadow["probability"] <= 1
        assert shadow["decision"] in (0, 1) and shadow["threshold"] == 0.5
    # another model: its scores are not the champion's
    assert any(
        abs(shadowed[k]["probability"] - answered[k]["probability"]) > 1e-6 for k in answered
    )


def test_with_the_lean_route_off_bentoml_s_router_answers(
    shadow_server: tuple[Server, Path],
) -> None:
    """serving.lean_route: false: /predict and /predict_batch go through BentoML's router and
    IO descriptors (its wording of a 400 says so), with the contract's field path, and the
    rejection is still counted in /metrics."""
    srv, _ = shadow_server
    _, before = srv.call("/metrics")
    status, headers, answer = post(srv, "/predict", {"applicant": {**GOOD, "age": "old"}})
    assert status == 400, answer
    assert answer["error"] == "1 validation error for PredictRequestIODescriptor", answer
    assert answer["detail"][0]["loc"] == ["applicant", "age"]
    assert headers["x-request-id"]
    _, after = srv.call("/metrics")
    rejected = [metric(t, "mlgate_rejected_requests_total") for t in (before, after)]
    assert rejected[1] == rejected[0] + 1


def test_a_failing_challenger_never_changes_the_champions_answer(
    shadow_server: tuple[Server, Path],
) -> None:
    srv, fault = shadow_server
    rows = [{**GOOD, "age": age} for age in range(40, 50)]
    before = [post(srv, "/predict", {"applicant": row}) for row in rows]
    # shadowed before the fault goes on: a failure of theirs would count in the metrics below
    done = {b["request_id"] for _, _, b in before}
    records_of(srv, lambda rs: done <= {r["request_id"] for r in rs if r["kind"] == "shadow"})
    _, metrics_before = srv.call("/metrics")

    def failures(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in records if r["kind"] == "error" and r["request_id"] in ids]

    fault.write_text("raise")
    try:
        during = [post(srv, "/predict", {"applicant": row}) for row in rows]
        ids = {b["request_id"] for _, _, b in during}
        # the shadow thread scores after the answers: the fault stays until it has, or the
        # last requests are scored without it on a busy machine (seen: 9 errors of 10)
        errors = failures(records_of(srv, lambda rs: len(failures(rs)) >= len(ids)))
    finally:
        fault.unlink()
    for (s0, _h0, b0), (s1, h1, b1) in zip(before, during, strict=True):
        assert s1 == s0 == 200
        assert h1["x-mlgate-variant"] == "champion"
        assert {**b1, "request_id": None} == {**b0, "request_id": None}
    assert len(errors) == len(ids)
    for r in errors:
        assert (r["variant"], r["shadow"], r["model_version"]) == ("challenger", True, "2")
        assert r["error"].startswith("RuntimeError: ")
    _, metrics_after = srv.call("/metrics")
    grew = metric(metrics_after, "mlgate_shadow_scores_total", result="error") - metric(
        metrics_before, "mlgate_shadow_scores_total", result="error"
    )
    assert grew == len(ids)
    # and the service's own error count did not move: the answers were all the champion's
    assert metric(metrics_after, "mlgate_rejected_requests_total") == metric(
        metrics_before, "mlgate_rejected_requests_total"
    )
    # the challenger is back once the fault is gone
    status, _, body = post(srv, "/predict", {"applicant": GOOD})
    assert status == 200
    shadows = records_of(
        srv,
        lambda rs: any(r["kind"] == "shadow" and r["request_id"] == body["request_id"] for r in rs),
    )
    assert any(r["kind"] == "shadow" and r["request_id"] == body["request_id"] for r in shadows)


# ---------------------------------------------------------------- outcomes


def test_outcomes_are_validated_and_recorded(shadow_server: tuple[Server, Path]) -> None:
    srv, _ = shadow_server
    _, _, one = post(srv, "/predict", {"applicant": GOOD})
    _, _, two = post(srv, "/predict_batch", {"applicants": [GOOD, GOOD]})
    rid, bid = one["request_id"], two["request_id"]

    assert post(srv, "/outcome", {"request_id": rid, "outcome": 1})[::2] == (
        200, {"recorded": 1, "verified": True}
    )  # fmt: skip
    both = {
        "outcomes": [{"request_id": bid, "row": 1, "outcome": 0}, {"request_id": rid, "outcome": 0}]
    }
    assert post(srv, "/outcome", both)[::2] == (200, {"recorded": 2, "verified": True})

    def refused(body: Any, status: int = 400) -> list[Any]:
        got, _, answer = post(srv, "/outcome", body)
        assert got == status, answer
        return [d["loc"] for d in answer["detail"]] if status == 400 else answer

    assert refused({"request_id": rid, "outcome": True})[0][0] == "outcome"  # a bool, not a class
    assert refused({"request_id": rid, "outcome": 2}) == [["outcome"]]  # not one of the classes
    assert refused({"request_id": rid, "outcome": "1"}) == [["outcome"]]  # "1" is not 1
    # 2 rows, 0 and 1: row 2 does not exist (404, as the OpenAPI document says)
    absent = refused({"request_id": bid, "row": 2, "outcome": 1}, status=404)
    assert [d["loc"] for d in absent["detail"]] == [["row"]]
    assert refused({"request_id": rid, "row": "0", "outcome": 1}) == [["row"]]
    assert refused({"outcome": 1}) == [["request_id"]]
    assert refused({"outcomes": [{"request_id": rid, "outcome": 7}]}) == [
        ["outcomes", 0, "outcome"]
    ]
    assert refused({"request_id": rid, "outcome": 1, "extra": 1}) == [["extra"]]
    unknown = refused({"request_id": "no-such-request", "outcome": 1}, status=404)
    assert "no-such-request is not among the last" in json.dumps(unknown)
    status, _ = srv.call("/outcome", raw=b"{not json")
    assert status == 400
    req = urllib.request.Request(
        srv.url + "/outcome", data=b"request_id=x", headers={"Content-Type": "text/plain"}
    )
    with pytest.raises(urllib.error.HTTPError) as text:
        urllib.request.urlopen(req, timeout=30)
    with text.value:
        assert text.value.code == 415

    def outcomes(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in records if r["kind"] == "outcome" and r["request_id"] in (rid, bid)]

    got = outcomes(records_of(srv, lambda rs: len(outcomes(rs)) >= 3))
    assert sorted((r["request_id"] == rid, r["row"], r["outcome"]) for r in got) == [
        (False, 1, 0), (True, 0, 0), (True, 0, 1)
    ]  # fmt: skip
    assert all(r["source"] == "api" and r["schema"] == 1 for r in got)


# ---------------------------------------------------------------- canary


def test_canary_answers_from_the_assigned_model_and_says_which(
    canary_server: tuple[Server, Path],
) -> None:
    srv, _ = canary_server
    seen = {}
    for n in range(40):
        status, headers, body = post(srv, "/predict", {"applicant": GOOD}, {"X-Customer": f"c{n}"})
        assert status == 200, body
        assert headers["x-mlgate-variant"] == body["variant"]
        assert body["model_version"] == {"champion": "1", "challenger": "2"}[body["variant"]]
        seen[body["variant"]] = body["probability"]
    assert set(seen) == {"champion", "challenger"}
    assert not math.isclose(seen["champion"], seen["challenger"], abs_tol=1e-9)
    _, text = srv.call("/metrics")
    assert metric(text, "mlgate_predictions_total", variant="challenger", model_version="2") > 0


def test_tracing_is_off_by_default_and_on_when_asked(
    shadow_server: tuple[Server, Path], canary_server: tuple[Server, Path]
) -> None:
    """serving.tracing: false (the default) excludes every URL from BentoML's OpenTelemetry
    middleware: no span, so no X-BentoML-Request-ID (the span id) on an answer; true keeps a
    span per request, and each answer names its own."""
    _, headers, _ = post(shadow_server[0], "/predict", {"applicant": GOOD})
    assert "x-bentoml-request-id" not in headers, headers
    ids = set()
    for n in range(3):
        status, headers, _ = post(
            canary_server[0], "/predict", {"applicant": GOOD}, {"X-Customer": f"t{n}"}
        )
        assert status == 200
        ids.add(headers.get("x-bentoml-request-id"))
    assert None not in ids and len(ids) == 3, ids
    # mlgate's own request id is there either way
    assert headers["x-request-id"]


def test_canary_assignment_is_sticky_and_shares_hold(canary_server: tuple[Server, Path]) -> None:
    srv, _ = canary_server

    def variant(customer: str | None) -> str:
        headers = {"X-Customer": customer} if customer else {}
        status, _, body = post(srv, "/predict", {"applicant": GOOD}, headers)
        assert status == 200, body
        return str(body["variant"])

    n = 2000
    with ThreadPoolExecutor(8) as pool:
        keyed = list(pool.map(variant, [f"customer-{i}" for i in range(n)]))
        again = list(pool.map(variant, [f"customer-{i}" for i in range(200)]))
        unkeyed = list(pool.map(variant, [None] * 400))
    # binomial: within 4 standard deviations of the configured share
    observed = keyed.count("challenger") / n
    assert abs(observed - SHARE) < 4 * math.sqrt(SHARE * (1 - SHARE) / n), observed
    assert again == keyed[:200]  # the same customer, the same model, every time
    # without the key each request is drawn on its own: both models, in about the same share
    drawn = unkeyed.count("challenger") / len(unkeyed)
    assert abs(drawn - SHARE) < 4 * math.sqrt(SHARE * (1 - SHARE) / len(unkeyed)), drawn


def test_a_failing_canary_challenger_is_counted_and_recorded_as_the_challengers(
    canary_server: tuple[Server, Path],
) -> None:
    """In canary the challenger answers its share: its failure is that request's 500, and
    the metrics and the error record say which model failed."""
    customers = [f"failing-{n}" for n in range(40)]
    srv, fault = canary_server
    answers = [post(srv, "/predict", {"applicant": GOOD}, {"X-Customer": c})[2] for c in customers]
    customer = next(
        c for c, a in zip(customers, answers, strict=True) if a["variant"] == "challenger"
    )
    _, before = srv.call("/metrics")
    fault.write_text("raise")
    try:
        status, _, body = post(
            srv,
            "/predict",
            {"applicant": GOOD},
            {"X-Customer": customer, "X-Request-Id": "canary-failure-1"},
        )
    finally:
        fault.unlink()
    assert status == 500, body
    _, after = srv.call("/metrics")
    labels = {"endpoint": "predict", "status": "500", "variant": "challenger"}
    grew = metric(after, "mlgate_rejected_requests_total", **labels) - metric(
        before, "mlgate_rejected_requests_total", **labels
    )
    assert grew == 1

    def failure(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in records if r.get("request_id") == "canary-failure-1"]

    (error,) = failure(records_of(srv, failure))
    assert (error["kind"], error["variant"], error["model_version"]) == ("error", "challenger", "2")
    assert "shadow" not in error


def test_explain_gives_the_answering_models_reasons_or_501_naming_it(
    canary_server: tuple[Server, Path], shadow_server: tuple[Server, Path]
) -> None:
    """/explain with two models: the reasons are those of the model whose answer it is (the
    body and header say which); while the challenger has no exact attributions, a request it
    answers is refused 501 naming it and why (never the champion's reasons for the
    challenger's decision), the champion's are explained, /predict is unchanged. In shadow
    mode the champion answers and explains; the challenger only scores."""
    srv, fault = canary_server
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    for n in range(40):
        status, headers, body = post(srv, "/explain", {"applicant": GOOD}, {"X-Customer": f"e{n}"})
        assert status == 200 and headers["x-mlgate-variant"] == body["variant"], body
        seen.setdefault(body["variant"], (f"e{n}", body))
    assert set(seen) == {"champion", "challenger"}
    for name, (_, body) in seen.items():
        assert body["model_version"] == {"champion": "1", "challenger": "2"}[name]
        whole = body["attribution"]
        assert (
            abs(whole["base_value"] + sum(whole["contributions"].values()) - whole["raw_score"])
            <= 1e-6
        )
    assert seen["champion"][1]["attribution"] != seen["challenger"][1]["attribution"]
    fault.write_text("unexplained")
    try:
        challenger, champion = seen["challenger"][0], seen["champion"][0]
        status, _, problem = post(srv, "/explain", {"applicant": GOOD}, {"X-Customer": challenger})
        assert status == 501, problem
        said = "/explain: the challenger (version 2) answers these rows: no exact attributions"
        assert problem["error"].startswith(said) and "KNeighborsClassifier" in problem["error"]
        assert problem["detail"][0]["type"] == "not_implemented"
        doc = srv.call("/docs.json")[1]
        assert all("501" in doc["paths"][path]["post"]["responses"] for path in EXPLAIN_PATHS)
        status, _, body = post(srv, "/explain", {"applicant": GOOD}, {"X-Customer": champion})
        assert status == 200 and body == {**seen["champion"][1], "request_id": body["request_id"]}
        status, _, body = post(srv, "/predict", {"applicant": GOOD}, {"X-Customer": challenger})
        assert status == 200 and body["variant"] == "challenger"
        info = srv.call("/model_info")[1]
        assert info["challenger"]["explain"]["method"] is None
        assert info["explain"]["method"] == "exact-linear"
        shadow, switch = shadow_server
        switch.write_text("unexplained")
        status, headers, body = post(shadow, "/explain", {"applicant": GOOD})
        assert status == 200 and (body["variant"], body["model_version"]) == ("champion", "1")
        assert headers["x-mlgate-variant"] == "champion" and body["reasons"]
    finally:
        fault.unlink()
        shadow_server[1].unlink(missing_ok=True)
