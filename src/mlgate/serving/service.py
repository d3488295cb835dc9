"""The BentoML service: the registered model behind /predict and /predict_batch (and, with
each row's reasons, /explain and /explain_batch), observed."""

# No `from __future__ import annotations` here: BentoML reads the API signatures' types at
# class-definition time, and the request types are built at import from the stored contract.

import json
import logging
import os
import sys
import threading
import time
import uuid
from collections import Counter, OrderedDict
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import bentoml
import yaml
from bentoml.validators import ContentType
from pydantic import ValidationError as PydanticValidationError

from mlgate.config import Params, parse_params
from mlgate.serving.build import BENTO_MODEL_NAME, CHALLENGER_MODEL_NAME, MODEL_ENV
from mlgate.serving.contract import Contract, request_models, row_model_name
from mlgate.serving.explainers import DOCS as EXPLAIN_DOCS
from mlgate.serving.feedback import SCHEMA_VERSION, FeedbackSink, error_record, record_time
from mlgate.serving.guard import (
    VARIANT_HEADER,
    VARIANT_STATE,
    InfoByGet,
    QuietRejections,
    RequestGuard,
    _problem,
    _problem_body,
)
from mlgate.serving.metrics import FEEDBACK_DROPPED, PREDICTIONS
from mlgate.serving.openapi import ApiFacts, PublishedDocument, describe
from mlgate.serving.outcome import (
    RECENT_REQUEST_IDS,
    Outcome,
    OutcomeValue,
    checked_outcomes,
    outcome_answer,
    outcome_request,
)
from mlgate.serving.strategy import Shadow, Variant, assign


def _model_tag(name: str = BENTO_MODEL_NAME) -> str:
    """The exact model `name` (the champion, or the challenger) this bento was built with.

    `mlgate build` names it in MLGATE_BENTO_MODEL (MLGATE_BENTO_CHALLENGER) while BentoML
    imports this module. A built bento records it in its bento.yaml
    (<bento>/src/mlgate/serving/service.py -> <bento>/bento.yaml): `latest` is not good
    enough, because locally the model store is shared and `latest` is whatever was saved
    last (another bento's model, another config).
    """
    if os.environ.get(MODEL_ENV[name]):
        return os.environ[MODEL_ENV[name]]
    manifest = Path(__file__).resolve().parents[3] / "bento.yaml"
    if manifest.is_file():
        with manifest.open(encoding="utf-8") as fh:
            info = yaml.safe_load(fh) or {}
        for service in info.get("services") or []:
            for model in service.get("models") or []:
                if str(model.get("tag", "")).startswith(f"{name}:"):
                    return str(model["tag"])
    return f"{name}:latest"


MODEL_TAG = _model_tag()
# One OpenMP thread per worker, read when scikit-learn's OpenMP runtime loads (in _load): the
# service's parallelism is its workers. With a thread per core, spinning, a one-row
# HistGradientBoosting call took 25-294 ms instead of 2.5 ms on a busy 2-core machine
# (measured). A per-thread limit (threadpoolctl) would not reach the event loop's thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")

_stored = bentoml.models.get(MODEL_TAG)
# The params.yaml the model was built with travels in the model's metadata: the service
# needs no file outside the bento, and its contract is the one the model was trained under.
PARAMS: Params = parse_params(
    json.loads(_stored.info.metadata["params_json"]), f"model {_stored.tag} metadata"
)
LINEAGE: dict[str, str] = dict(_stored.info.metadata.get("lineage", {}))
SERVING = PARAMS.serving
STRATEGY = SERVING.strategy
# The challenger, packaged beside the champion when serving.strategy.mode is not none
CHALLENGER_TAG = _model_tag(CHALLENGER_MODEL_NAME) if STRATEGY.mode != "none" else None
_challenger_stored = bentoml.models.get(CHALLENGER_TAG) if CHALLENGER_TAG else None
CHALLENGER_LINEAGE: dict[str, str] = (
    dict(_challenger_stored.info.metadata.get("lineage", {})) if _challenger_stored else {}
)
CLASSIFIER = PARAMS.data.task == "classification"  # binary: a positive class, a threshold
# the class and every class's probability (the most probable class is the decision)
MULTICLASS = PARAMS.data.task == "multiclass"
# Derived from the pandera schema by `mlgate build` (contract_spec); not imported from
# pandera here because pandas + pandera cost seconds of cold start in every process.
CONTRACT = Contract(
    json.loads(_stored.info.metadata["contract_json"]), row_model_name(SERVING.request_field)
)
Row = CONTRACT.row_model
# Request bodies: {"<request_field>": {...}} and {"<batch_field>": [{...}, ...]} (params).
PredictRequest, PredictBatchRequest = request_models(
    Row, SERVING.request_field, SERVING.batch_request_field, SERVING.max_batch_rows
)

PREDICT_PATHS = ("/predict", "/predict_batch")
# the same bodies, answered with each row's reasons (serving.explain)
EXPLAIN_PATHS = ("/explain", "/explain_batch")
EXPLAIN = SERVING.explain
EXPLAIN_ENDPOINTS = frozenset(p[1:] for p in EXPLAIN_PATHS)
ONE_ROW_ENDPOINTS = frozenset(("predict", "explain"))
# answered by the lean route in RequestGuard (serving.lean_route: false => BentoML's router)
LEAN_PATHS = (*PREDICT_PATHS, *EXPLAIN_PATHS) if SERVING.lean_route else ()
# the paths RequestGuard guards (JSON bodies within the size limit)
GUARDED_PATHS = (*PREDICT_PATHS, *EXPLAIN_PATHS, "/outcome", "/model_info")
MAX_BODY_BYTES = SERVING.max_body_kb * 1024

LOG = logging.getLogger("mlgate.service")
# The answers' media type, declared: otherwise BentoML derives it from the return type's JSON
# schema on every response (pydantic schema generation: ~14% of a worker's CPU under load,
# measured with py-spy).
JSON = ContentType("application/json")

# The worker's service instance, for RequestGuard's lean route (set in __init__)
_service: "ModelService | None" = None
# serving.strategy.key's header as ASGI names it (lower-case bytes), for the lean route
STRATEGY_HEADER = STRATEGY.header.lower().encode("latin-1") if STRATEGY.header else None


def _sent_keys(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in CONTRACT.keys if record.get(k) is not None}


class NotExplained(bentoml.exceptions.BentoMLException):
    """/explain of a model with no exact attributions: 501 Not Implemented, saying why."""

    error_code = HTTPStatus.NOT_IMPLEMENTED


def _recorded(result: dict[str, Any]) -> dict[str, Any]:
    """An explained row's answer as its feedback record keeps it: no attribution, and its
    reasons (serving.explain.record) as column and contribution (the values are its inputs)."""
    kept = {k: v for k, v in result.items() if k not in ("reasons", "attribution")}
    if EXPLAIN.record:
        kept["reasons"] = [
            {"column": r["column"], "contribution": r["contribution"]} for r in result["reasons"]
        ]
    return kept


def tune_gc(freeze: bool, thresholds: tuple[int, int, int] | None) -> None:
    """Keep full GC collections off the request path (they were BentoML's p99 tail).

    Measured: with Python's defaults, a worker ran a full collection about once a second,
    each walking ~250k long-lived objects (bentoml, pydantic, sklearn, the model) for
    80-160 ms on the event loop. Frozen objects are never walked again; the thresholds
    (serving.gc_thresholds) keep full collections rare. Measurements: docs/SERVING.md."""
    import gc

    if freeze:
        gc.collect()
        gc.freeze()
    if thresholds:
        gc.set_threshold(*thresholds)


OutcomeRequest = outcome_request(SERVING.max_batch_rows)


def _variant(name: str, model: Any, lineage: dict[str, str], stored: Any) -> Variant:
    """The champion or the challenger, as the params the model was built under describe it."""
    return Variant(
        name,
        model,
        lineage,
        stored.info.metadata.get("scorer", "pipeline"),
        threshold=PARAMS.evaluate.threshold,
        positive=PARAMS.data.positive_label,
        classifier=CLASSIFIER,
        features=PARAMS.features.inputs,
        multiclass=MULTICLASS,
    )


@bentoml.service(
    name="mlgate",
    workers=SERVING.workers,
    traffic={"timeout": SERVING.timeout_seconds},
    logging={"access": {"enabled": SERVING.access_log}},
    # OpenTelemetry's middleware makes a span per request even with nothing exporting them
    # (~15% of a worker's CPU, measured with py-spy); serving.tracing: true keeps it.
    **({} if SERVING.tracing else {"tracing": {"excluded_urls": [".*"]}}),
)
class ModelService:
    """Scores rows with the registered model (and its challenger), under the pandera contract."""

    bento_model = bentoml.models.BentoModel(MODEL_TAG)
    if CHALLENGER_TAG:
        challenger_model = bentoml.models.BentoModel(CHALLENGER_TAG)

    def __init__(self) -> None:
        global _service
        feedback = SERVING.feedback
        folder = os.environ.get("MLGATE_FEEDBACK_DIR") or str(feedback.path)
        self.sink = FeedbackSink(
            feedback.sink,
            folder,
            feedback.max_file_mb,
            feedback.flush_seconds,
            max_queue_records=feedback.max_queue_records,
            keep_mb=feedback.keep_mb,
            keep_days=feedback.keep_days,
            on_drop=lambda n, reason: FEEDBACK_DROPPED.labels(reason=reason).inc(n),
        )
        logging.getLogger("bentoml._internal.server.http_app").addFilter(QuietRejections())
        FEEDBACK_DROPPED.labels(reason="queue_full")  # exported at 0 from the start
        self.champion = _variant("champion", self.bento_model, LINEAGE, _stored)
        self.challenger: Variant | None = None
        if CHALLENGER_TAG and _challenger_stored is not None:
            self.challenger = _variant(
                "challenger", self.challenger_model, CHALLENGER_LINEAGE, _challenger_stored
            )
        self.version = self.champion.version
        self.threshold = PARAMS.evaluate.threshold
        self.shadow: Shadow | None = None
        # request id -> rows, the ids this worker answered lately (POST /outcome checks them)
        self.recent: OrderedDict[str, int] = OrderedDict()
        self._counters: dict[tuple[str, str], Any] = {}
        self._ready = threading.Event()
        self.load_error: str | None = None
        # Load off the start-up path: /livez answers at once, /readyz only once the models
        # are loaded and have passed their self-checks.
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        _service = self

    def _load(self) -> None:
        # Readiness tests: not ready while this file exists, so the 503 is seen on any load.
        hold = os.environ.get("MLGATE_READY_HOLD_FILE")
        while hold and os.path.exists(hold):
            time.sleep(0.05)
        for variant in (self.champion, self.challenger):
            if variant is None:
                continue
            self.load_error = variant.load()
            if self.load_error:
                # Never ready: the orchestrator keeps traffic away and the log says why.
                print(f"mlgate service: NOT READY: {self.load_error}", file=sys.stderr, flush=True)
                return
        if self.challenger is not None and STRATEGY.mode == "shadow":
            self.shadow = Shadow(self.challenger, self.sink)
        tune_gc(SERVING.gc_freeze, SERVING.gc_thresholds)
        self._ready.set()

    def __is_ready__(self) -> bool:
        return self._ready.is_set()

    def answer(
        self,
        endpoint: str,
        rows: list[Any],
        request_id: str,
        header: str | None,
        state: dict[str, Any],
        started: float,
    ) -> tuple[dict[str, Any], str | None]:
        """The answer to /predict (one row), /predict_batch, /explain or /explain_batch,
        recorded and counted, and the variant to name in the x-mlgate-variant header (with a
        challenger). `header` is the value of serving.strategy.key's header; `state` is the
        request's state dict (the variant is noted there before scoring, so a failure is
        recorded with it)."""
        if not self._ready.is_set():
            raise bentoml.exceptions.ServiceUnavailable("the model is not loaded yet")
        records = [row.model_dump(by_alias=True) for row in rows]  # the columns' own names
        if CONTRACT.needs_pandera:
            self._pandera_check(records)
        if self.challenger is not None and STRATEGY.mode in ("canary", "ab"):
            share, field = STRATEGY.share, STRATEGY.field
            assigned = assign(records, header, self.champion, self.challenger, share, field)
        else:
            assigned = [self.champion] * len(records)
        names = {v.name for v in assigned}
        only = names.pop() if len(names) == 1 else None  # the one variant answering, if one
        state[VARIANT_STATE] = only
        explain = endpoint in EXPLAIN_ENDPOINTS
        out = self._scored(records, assigned, explain)
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        ts = record_time()
        counted: Counter[tuple[str, Variant]] = Counter()
        for i, (features, result, variant) in enumerate(zip(records, out, assigned, strict=True)):
            counted[str(result.get("decision", result.get("class", "none"))), variant] += 1
            self.sink.record(
                {
                    "schema": SCHEMA_VERSION,
                    "kind": "prediction",
                    "ts": ts,
                    "request_id": request_id,
                    "row": i,
                    "endpoint": endpoint,
                    "variant": variant.name,
                    "model_version": variant.version,
                    "inputs": features,
                    **(_recorded(result) if explain else result),
                    **({"threshold": variant.threshold} if CLASSIFIER else {}),
                    "latency_ms": latency_ms,
                }
            )
        for (decision, variant), n in counted.items():
            self._predicted(decision, variant).inc(n)
        self._remember(request_id, len(records))
        if self.shadow is not None:
            self.shadow.submit(request_id, endpoint, records)
        # With a challenger, the answer says which model gave it (body field and header).
        said = (only or "mixed") if STRATEGY.mode != "none" else None
        if CONTRACT.keys:  # data.roles' keys the request carried come back with the answer
            out = [{**_sent_keys(r), **o} for r, o in zip(records, out, strict=True)]
        if endpoint in ONE_ROW_ENDPOINTS:
            body = {**out[0], "model_version": assigned[0].version, "request_id": request_id}
        else:
            if said == "mixed":  # each row says which model answered it
                out = [
                    {**o, "variant": v.name, "model_version": v.version}
                    for o, v in zip(out, assigned, strict=True)
                ]
            version = assigned[0].version if said != "mixed" else "mixed"
            body = {"predictions": out, "model_version": version, "request_id": request_id}
        return ({**body, "variant": said} if said else body), said

    def _scored(
        self, records: list[dict[str, Any]], assigned: list[Variant], explain: bool
    ) -> list[dict[str, Any]]:
        """Each row's answer by the variant assigned to it (with its reasons: `explain`; a
        model without exact attributions refuses the request, 501, naming the model when a
        challenger may answer: reasons are the deciding model's or none, never the other's).
        A field key splits a batch: each model scores its own rows, in one call."""
        variants = [v for v in (self.champion, self.challenger) if v is not None and v in assigned]
        if explain:
            for variant in variants:
                if variant.explainer is None:
                    who = (
                        f"the {variant.name} (version {variant.version}) answers these rows: "
                        if self.challenger is not None
                        else ""
                    )
                    raise NotExplained(f"/explain: {who}{variant.unexplained}; see {EXPLAIN_DOCS}")

        def scored(variant: Variant, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return variant.explained(rows, EXPLAIN.top_k) if explain else variant.answers(rows)

        if len(variants) == 1:
            return scored(variants[0], records)
        out: list[dict[str, Any]] = [{} for _ in records]
        for variant in variants:
            mine = [i for i, v in enumerate(assigned) if v is variant]
            for i, answer in zip(mine, scored(variant, [records[i] for i in mine]), strict=True):
                out[i] = answer
        return out

    def _predicted(self, decision: str, variant: Variant) -> Any:
        """The mlgate_predictions counter of (decision, variant), looked up once (labels()
        cost ~6 % of a worker's time per request, py-spy)."""
        key = (decision, variant.name)
        counter = self._counters.get(key)
        if counter is None:
            counter = PREDICTIONS.labels(
                decision=decision, model_version=variant.version, variant=variant.name
            )
            self._counters[key] = counter
        return counter

    def _remember(self, request_id: str, rows: int) -> None:
        self.recent[request_id] = rows
        self.recent.move_to_end(request_id)
        if len(self.recent) > RECENT_REQUEST_IDS:
            self.recent.popitem(last=False)

    @staticmethod
    def _pandera_check(records: list[dict[str, Any]]) -> None:
        """Checks the schema has that pydantic cannot express (custom or dataframe checks)."""
        import pandas as pd

        from mlgate.errors import DataValidationError
        from mlgate.pipeline.data import input_schema, validate

        try:
            validate(pd.DataFrame.from_records(records), input_schema(PARAMS), "request")
        except DataValidationError as err:
            raise bentoml.exceptions.InvalidArgument(str(err)) from None

    def respond(
        self,
        endpoint: str,
        body: bytes,
        request_id: str,
        headers: dict[bytes, bytes],
        state: dict[str, Any],
        started: float,
    ) -> tuple[int, bytes, str | None]:
        """The lean route's answer to a POST /predict or /predict_batch (RequestGuard has
        checked its media type and size): status, JSON body, the variant to name in the
        header. The raw JSON is validated against the contract in one pydantic call, and the
        errors are shaped as BentoML's (`error`, and `detail` with each field path)."""
        one = endpoint in ONE_ROW_ENDPOINTS
        model = PredictRequest if one else PredictBatchRequest
        value = headers.get(STRATEGY_HEADER) if STRATEGY_HEADER else None
        header = value.decode("latin-1") if value is not None else None
        try:
            parsed = model.model_validate_json(body)
            rows = [parsed.row] if one else parsed.rows
            answer, said = self.answer(endpoint, rows, request_id, header, state, started)
        except PydanticValidationError as exc:
            problem = {
                "error": f"{exc.error_count()} validation error for {exc.title}",
                "detail": exc.errors(include_context=False, include_input=False),
            }
            return 400, json.dumps(problem).encode(), None
        except bentoml.exceptions.BentoMLException as exc:  # the contract's pandera checks, 503
            kind = exc.error_code.name.lower()
            return exc.error_code.value, _problem(kind, str(exc)), None
        except Exception:
            LOG.exception("%s request_id=%s failed", endpoint, request_id)
            return 500, _problem("internal", "the service failed; see its log"), None
        return 200, json.dumps(answer).encode(), said

    def record_rejection(
        self,
        endpoint: str,
        status: int,
        body: bytes,
        started: float,
        request_id: str,
        variant: str | None,
    ) -> None:
        """The feedback record of a 4xx/5xx answer (RequestGuard counts and logs it): the
        error body (field paths and types; never a value), and the model that had the request."""
        lineage = CHALLENGER_LINEAGE if variant == "challenger" else LINEAGE
        error = body[:2000].decode("utf-8", "replace")
        labels = {"variant": variant} if variant else {}
        self.sink.record(
            error_record(
                request_id, endpoint, status, error, started, lineage.get("version"), **labels
            )
        )

    def _bentoml_answer(
        self, endpoint: str, rows: list[Any], ctx: bentoml.Context
    ) -> dict[str, Any]:
        """The answer when BentoML's router calls the API (serving.lean_route: false; else the
        lean route in RequestGuard answers first, and the API methods stay BentoML's
        declaration of the endpoints: OpenAPI, clients)."""
        started = time.perf_counter()
        # RequestGuard set it (the client's X-Request-Id or a new one) and echoes it
        request_id = ctx.request.headers.get("x-request-id") or uuid.uuid4().hex
        header = ctx.request.headers.get(STRATEGY.header) if STRATEGY.header else None
        state = ctx.request.scope.setdefault("state", {})
        try:
            body, said = self.answer(endpoint, rows, request_id, header, state, started)
        except bentoml.exceptions.BentoMLException as exc:  # the pandera checks (400), 503
            # answered here, as the lean route does: BentoML words a raised 4xx as a list
            ctx.response.status_code = exc.error_code.value
            return _problem_body(exc.error_code.name.lower(), str(exc))
        if said:
            ctx.response.headers[VARIANT_HEADER] = said
        return body

    @bentoml.api(route="/predict", input_spec=PredictRequest)
    async def predict(
        self,
        row: Row,  # type: ignore[valid-type]
        ctx: bentoml.Context,
    ) -> Annotated[dict[str, Any], JSON]:
        """One row: probability and decision at the threshold (a regressor: prediction; a
        multiclass model: class and probabilities), model version, request id (and, with a
        challenger, the variant that answered)."""
        return self._bentoml_answer("predict", [row], ctx)

    @bentoml.api(route="/predict_batch", input_spec=PredictBatchRequest)
    async def predict_batch(
        self,
        rows: list[Row],  # type: ignore[valid-type]
        ctx: bentoml.Context,
    ) -> Annotated[dict[str, Any], JSON]:
        """Score a batch of rows (1 to serving.max_batch_rows)."""
        return self._bentoml_answer("predict_batch", rows, ctx)

    @bentoml.api(route="/explain", input_spec=PredictRequest)
    async def explain(
        self,
        row: Row,  # type: ignore[valid-type]
        ctx: bentoml.Context,
    ) -> Annotated[dict[str, Any], JSON]:
        """One row, as /predict answers it, with why: its top serving.explain.top_k reasons
        (column, signed contribution, the row's value) and every column's contribution,
        the base value and the raw score they add up to (docs/SERVING.md)."""
        return self._bentoml_answer("explain", [row], ctx)

    @bentoml.api(route="/explain_batch", input_spec=PredictBatchRequest)
    async def explain_batch(
        self,
        rows: list[Row],  # type: ignore[valid-type]
        ctx: bentoml.Context,
    ) -> Annotated[dict[str, Any], JSON]:
        """A batch of rows, as /predict_batch answers it, each with its reasons."""
        return self._bentoml_answer("explain_batch", rows, ctx)

    @bentoml.api(route="/outcome", input_spec=OutcomeRequest)
    async def outcome(
        self,
        ctx: bentoml.Context,
        request_id: str | None = None,
        row: int = 0,
        outcome: OutcomeValue | None = None,
        outcomes: list[Outcome] | None = None,
    ) -> Annotated[dict[str, Any], JSON]:
        """The observed outcome of an answered row (or `outcomes`: several), recorded for
        `mlgate compare`. 200 when this worker answered the request; 404 when it did not
        (one worker), or the row is beyond its request's rows; with several workers, an id
        another worker answered cannot be checked here: 202 and "verified": false (the
        records are joined later)."""
        items, locs = checked_outcomes(
            request_id, row, outcome, outcomes, CLASSIFIER or MULTICLASS, self.champion.classes
        )
        # answered here, not raised: BentoML words a raised 4xx as a list
        status, body = outcome_answer(
            items, locs, self.recent, SERVING.workers == 1, self.sink.record
        )
        ctx.response.status_code = status
        return body

    @bentoml.api(route="/model_info")
    async def model_info(self) -> Annotated[dict[str, Any], JSON]:
        """The model this service serves and where it came from (lineage); with a challenger,
        its lineage and the strategy too."""
        info = {
            "model_version": self.version,
            "ready": self._ready.is_set(),
            "lineage": LINEAGE,
            "threshold": self.threshold,
            "scorer": self.champion.scorer_kind,
            "explain": self.champion.explain_info(),
            "contract": Row.model_json_schema(),  # type: ignore[attr-defined]
            "strategy": STRATEGY.model_dump(mode="json"),
        }
        if self.challenger is not None:
            info["challenger"] = {
                "model_version": self.challenger.version,
                "lineage": self.challenger.lineage,
                "scorer": self.challenger.scorer_kind,
                "explain": self.challenger.explain_info(),
            }
        return info


def _document() -> tuple[bytes, bool]:
    """The OpenAPI document this service answers (GET /docs.json), and whether it is final:
    made once the model's classes are known (loaded); before that, without them."""
    loaded = _service is not None and _service._ready.is_set()
    classes = tuple(_service.champion.classes) if _service is not None and loaded else ()
    facts = ApiFacts(
        predict_paths=PREDICT_PATHS,
        explain_paths=EXPLAIN_PATHS,
        top_k=EXPLAIN.top_k,
        max_body_bytes=MAX_BODY_BYTES,
        timeout_seconds=SERVING.timeout_seconds,
        classifier=CLASSIFIER or MULTICLASS,
        multiclass=MULTICLASS,
        classes=classes,
        variants=STRATEGY.mode != "none",
        one_worker=SERVING.workers == 1,
        example=CONTRACT.example_row(),
        request_field=SERVING.request_field,
        batch_field=SERVING.batch_request_field,
        keys=tuple(CONTRACT.keys),
    )
    return json.dumps(describe(ModelService.openapi_spec.asdict(), facts)).encode(), loaded


ModelService.add_asgi_middleware(
    RequestGuard,
    guarded_paths=GUARDED_PATHS,
    lean_paths=LEAN_PATHS,
    max_body_bytes=MAX_BODY_BYTES,
    tracing=SERVING.tracing,
    service=lambda: _service,
)
ModelService.add_asgi_middleware(InfoByGet)
ModelService.add_asgi_middleware(PublishedDocument, document=_document)
