"""The BentoML service: the registered model behind /predict and /predict_batch, observed."""

# No `from __future__ import annotations` here: BentoML reads the API signatures' types at
# class-definition time, and the request types are built at import from the stored contract.

import hashlib
import json
import logging
import math
import os
import queue
import random
import sys
import threading
import time
import uuid
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Annotated, Any

import bentoml
import yaml
from bentoml.validators import ContentType
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from mlgate.config import Params, parse_params
from mlgate.serving.build import (
    BENTO_MODEL_NAME,
    CHALLENGER_MODEL_NAME,
    MODEL_ENV,
    MODEL_FILE,
    REFERENCE_FILE,
)
from mlgate.serving.contract import Contract, request_models, row_model_name
from mlgate.serving.feedback import SCHEMA_VERSION, FeedbackSink, record_time
from mlgate.serving.openapi import ApiFacts, describe


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
CLASSIFIER = PARAMS.data.task == "classification"
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
# answered by the lean route in RejectionObserver (serving.lean_route: false => BentoML's router)
LEAN_PATHS = PREDICT_PATHS if SERVING.lean_route else ()
# the paths RejectionObserver guards (JSON bodies within the size limit)
GUARDED_PATHS = (*PREDICT_PATHS, "/outcome", "/model_info")
MAX_BODY_BYTES = SERVING.max_body_kb * 1024

PREDICTIONS = bentoml.metrics.Counter(
    name="mlgate_predictions",
    documentation="Predictions answered, by decision, model version and variant "
    "(champion, challenger)",
    labelnames=["decision", "model_version", "variant"],
)
REJECTED = bentoml.metrics.Counter(
    name="mlgate_rejected_requests",
    documentation="Requests answered 4xx (bad request) or 5xx, by endpoint, status and variant "
    "(unknown when the request was refused before a model was assigned)",
    labelnames=["endpoint", "status", "variant"],
)
SHADOW = bentoml.metrics.Counter(
    name="mlgate_shadow_scores",
    documentation="Shadow mode: the challenger's scores of answered rows, by result (scored; "
    "error: the challenger raised; dropped: it fell behind and its queue was full)",
    labelnames=["result"],
)

FEEDBACK_DROPPED = bentoml.metrics.Counter(
    name="mlgate_feedback_dropped_records",
    documentation="Feedback records dropped, by reason (queue_full: the writer fell behind)",
    labelnames=["reason"],
)
LOG = logging.getLogger("mlgate.service")
# The answers' media type, declared: otherwise BentoML derives it from the return type's JSON
# schema on every response (pydantic schema generation: ~14% of a worker's CPU under load,
# measured with py-spy).
JSON = ContentType("application/json")

_sink: FeedbackSink | None = None  # set per worker process in ModelService.__init__
# The worker's service instance, for the lean route in RejectionObserver (set in __init__)
_service: "ModelService | None" = None
VARIANT_STATE = "mlgate_variant"  # the request.state key of the variant that answered
VARIANT_HEADER = "x-mlgate-variant"
# serving.strategy.key's header as ASGI names it (lower-case bytes), for the lean route
STRATEGY_HEADER = STRATEGY.header.lower().encode("latin-1") if STRATEGY.header else None
# request ids this worker answered -> their row counts, for POST /outcome (bounded: older
# ids are unknown to the service; `mlgate outcomes import` joins them from the records)
RECENT_REQUEST_IDS = 50_000
# shadow mode: requests waiting for the challenger; when full, the challenger's work is
# dropped and counted (a slow challenger never holds memory or the champion's answers)
SHADOW_QUEUE_REQUESTS = 1000
# Test-only (docs/SERVING.md#champion-and-challenger): a file; while it exists and says
# `raise` or `sleep:<seconds>`, the challenger's scorer fails or is slow (after its self-check),
# to show that the champion's answers do not depend on it.
FAULT_ENV = "MLGATE_TEST_CHALLENGER_FAULT_FILE"


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


def _problem_body(kind: str, msg: str) -> dict[str, Any]:
    """An error answer, shaped as every 4xx/5xx of the service is (OpenAPI: Problem)."""
    return {"error": msg, "detail": [{"type": kind, "loc": [], "msg": msg}]}


def _problem(kind: str, msg: str) -> bytes:
    return json.dumps(_problem_body(kind, msg)).encode()


# what BentoML's router puts on every answer, the lean route too
LEAN_HEADERS = [(b"content-type", b"application/json"), (b"server", b"BentoML Service/mlgate")]


def _span_header() -> list[tuple[bytes, bytes]]:
    """serving.tracing: true: the request's span id, as BentoML's router names it."""
    if not SERVING.tracing:
        return []
    from opentelemetry import trace

    span = trace.get_current_span().get_span_context()
    return (
        [(b"x-bentoml-request-id", format(span.span_id, "016x").encode())] if span.is_valid else []
    )


def _request_id(headers: dict[bytes, bytes]) -> str:
    """The client's X-Request-Id when it is a sane token, else a new one."""
    given = headers.get(b"x-request-id", b"")
    if 0 < len(given) <= 128 and all(33 <= c < 127 for c in given):
        return given.decode()
    return uuid.uuid4().hex


class RejectionObserver:
    """ASGI middleware in front of /predict, /predict_batch, /outcome and /model_info: the
    request's guard and witness.

    - refuses what is not a plain JSON body before BentoML parses it: a Content-Type other
      than application/json (missing, text, multipart...) or a Content-Encoding other than
      identity => 415; a body larger than serving.max_body_kb => 413, checked on
      Content-Length and again while reading, so a chunked upload is read no further than
      the limit;
    - gives every request an id (the client's X-Request-Id or a new one), echoed in the
      response header and carried by every feedback record;
    - answers /predict and /predict_batch itself, once the worker's service exists (the
      lean route: ModelService.respond parses the body against the contract in one pydantic
      call, scores, records and answers). BentoML's middleware in front of this one still
      runs (request metrics, timeout, tracing when on); its router, context and IO
      descriptors do not: about half a request's CPU (docs/SERVING.md#speed). With
      serving.lean_route: false, BentoML's router answers them (the same predictions and
      records; error bodies as BentoML words them);
    - counts every answer that is not a 2xx in /metrics, records it (no field values) and
      logs it once at WARNING with the field paths only (BentoML's own ERROR log with the
      traceback, which quotes the values, is filtered out: see QuietRejections)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in GUARDED_PATHS:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":  # GET, OPTIONS…: no body to guard; BentoML answers 405
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        request_id = _request_id(headers)
        id_header = (b"x-request-id", request_id.encode())
        # Starlette's request.state is this dict: the service notes there which variant
        # it assigned, so a failure after the assignment is recorded with it.
        state = scope.setdefault("state", {})
        scope = {
            **scope,
            "headers": [h for h in scope.get("headers") or [] if h[0] != b"x-request-id"]
            + [id_header],
        }

        async def refuse(status: int, kind: str, msg: str) -> None:
            payload = _problem(kind, msg)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json"), id_header],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            self.rejected(scope, status, payload, started, request_id)

        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media != b"application/json":
            shown = media.decode(errors="replace") or "none"
            await refuse(
                415,
                "unsupported_media_type",
                f"Content-Type {shown[:80]}: "
                "the body must be JSON (Content-Type: application/json)",
            )
            return
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"", b"identity"):
            shown = encoding.decode(errors="replace")[:80]
            await refuse(
                415,
                "unsupported_encoding",
                f"Content-Encoding {shown}: only identity is accepted (send the JSON uncompressed)",
            )
            return
        length = headers.get(b"content-length")
        too_large = f"body larger than {MAX_BODY_BYTES} bytes; at most {MAX_BODY_BYTES} accepted"
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            await refuse(413, "too_large", too_large)
            return
        # Read the body here, at most MAX_BODY_BYTES of it (chunked uploads carry no length).
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                await refuse(413, "too_large", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        received = b"".join(chunks)
        if _service is not None and scope["path"] in LEAN_PATHS:
            # The lean route (docs/SERVING.md#speed): parse, score, record and answer here.
            endpoint = scope["path"][1:]
            status, payload, said = _service.respond(
                endpoint, received, request_id, headers, state, started
            )
            answer_headers = [
                *LEAN_HEADERS,
                (b"content-length", str(len(payload)).encode()),
                id_header,
                *_span_header(),
            ]
            if said:
                answer_headers.append((VARIANT_HEADER.encode(), said.encode()))
            await send({"type": "http.response.start", "status": status, "headers": answer_headers})
            await send({"type": "http.response.body", "body": payload})
            if status >= 400:
                self.rejected(scope, status, payload, started, request_id, state.get(VARIANT_STATE))
            return
        replay: list[Any] = [{"type": "http.request", "body": received, "more_body": False}]

        async def replayed() -> Any:
            return replay.pop() if replay else await receive()

        status = 0
        body: list[bytes] = []

        async def observe(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), id_header]}
            elif message["type"] == "http.response.body" and status >= 400:
                body.append(message.get("body", b""))
            await send(message)

        await self.app(scope, replayed, observe)
        if status >= 400:
            variant = state.get(VARIANT_STATE)
            self.rejected(scope, status, b"".join(body), started, request_id, variant)

    @staticmethod
    def rejected(
        scope: Any,
        status: int,
        body: bytes,
        started: float,
        request_id: str,
        variant: str | None = None,
    ) -> None:
        endpoint = scope["path"].lstrip("/")
        REJECTED.labels(endpoint=endpoint, status=str(status), variant=variant or "unknown").inc()
        LOG.warning(
            "rejected %s request_id=%s status=%d: %s",
            endpoint,
            request_id,
            status,
            _reasons(body),
        )
        if _sink is not None:
            _sink.record(
                {
                    "schema": SCHEMA_VERSION,
                    "kind": "error",
                    "ts": record_time(),
                    "request_id": request_id,
                    "endpoint": endpoint,
                    "status": status,
                    "error": body[:2000].decode("utf-8", "replace"),
                    "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                    "model_version": (
                        CHALLENGER_LINEAGE if variant == "challenger" else LINEAGE
                    ).get("version"),
                    **({"variant": variant} if variant else {}),
                }
            )


def _reasons(body: bytes) -> str:
    """Where and what kind of error, never the values: `applicant.age: int_type; ...`."""
    try:
        answer = json.loads(body)
    except ValueError:
        return "unreadable error body"
    detail = answer.get("detail") if isinstance(answer, dict) else None
    if not isinstance(detail, list):
        return "no detail"
    parts = [
        (".".join(str(p) for p in d.get("loc") or []) or "body") + f": {d.get('type', '?')}"
        for d in detail[:10]
        if isinstance(d, dict)
    ]
    return "; ".join(parts) + (f" (+{len(detail) - 10} more)" if len(detail) > 10 else "")


class QuietRejections(logging.Filter):
    """Drops BentoML's ERROR + traceback for a client's bad request (a pydantic or BentoML
    4xx error): the traceback quotes the request's values, and one bad client would flood the
    log. RejectionObserver logs each rejection once, without values. 5xx errors still log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            return False
        code = getattr(getattr(exc, "error_code", None), "value", 500)
        return not (isinstance(exc, bentoml.exceptions.BentoMLException) and code < 500)


class FaultyScorer:
    """Test-only (MLGATE_TEST_CHALLENGER_FAULT_FILE): a challenger that raises or is slow
    while the file exists."""

    def __init__(self, scorer: Any, switch: str) -> None:
        self.scorer = scorer
        self.switch = switch

    def scores(self, records: list[dict[str, Any]]) -> Any:
        try:
            with open(self.switch, encoding="utf-8") as fh:
                fault = fh.read().strip()
        except FileNotFoundError:
            fault = ""
        if fault == "raise":
            raise RuntimeError("injected challenger failure (MLGATE_TEST_CHALLENGER_FAULT_FILE)")
        if fault.startswith("sleep:"):
            time.sleep(float(fault.removeprefix("sleep:")))
        return self.scorer.scores(records)


class Variant:
    """One packaged model as the service uses it: its scorer, version and classes, loaded
    from its BentoML model and checked against the reference rows the Pipeline scored at
    build time. The champion always; the challenger beside it (serving.strategy)."""

    def __init__(self, name: str, model: Any, lineage: dict[str, str], scorer_kind: str) -> None:
        self.name = name
        self.model = model  # a BentoML model: files by path_of
        self.lineage = lineage
        self.version = lineage.get("version", "unknown")
        self.scorer_kind = scorer_kind
        self.threshold = PARAMS.evaluate.threshold
        self.positive = PARAMS.data.positive_label if CLASSIFIER else None
        self.negative: Any = None
        self.classes: list[Any] = []
        self.scorer: Any = None

    def load(self) -> str | None:
        """Load the scorer and self-check it; the reason it cannot serve, or None."""
        import numpy as np

        from mlgate.serving.scorer import PARITY_TOLERANCE, load_stored

        def read(name: str) -> bytes | None:
            path = self.model.path_of(name)
            return Path(path).read_bytes() if os.path.exists(path) else None

        # The path `mlgate build` chose and checked (serving.scorer): the fitted numbers, the
        # tree arrays or the ONNX graph need no scikit-learn import and no unpickling.
        self.scorer = load_stored(read)
        if self.scorer is not None:
            classes = self.scorer.spec.get("classes")
        else:
            import joblib

            from mlgate.serving.scorer import make_scorer

            model = joblib.load(self.model.path_of(MODEL_FILE))
            self.scorer = make_scorer(model, self.positive, PARAMS.features.all)
            fitted = getattr(model, "classes_", []) if CLASSIFIER else []
            classes = [c.item() if hasattr(c, "item") else c for c in fitted]
        self.classes = list(classes or [])
        self.negative = next((c for c in self.classes if c != self.positive), None)
        # Self-check: this process scores the reference rows as the Pipeline did at build time.
        with open(self.model.path_of(REFERENCE_FILE), encoding="utf-8") as fh:
            reference = json.load(fh)
        got = self.scorer.scores(reference["rows"])
        if not np.allclose(got, reference["scores"], rtol=0, atol=PARITY_TOLERANCE):
            return f"the {self.name}'s scorer disagrees with the Pipeline on the reference rows"
        return None

    def answers(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each row's answer: probability and decision at the threshold (a regressor's
        score is the prediction: no decision to make)."""
        scores = self.scorer.scores(records).tolist()
        if not CLASSIFIER:
            return [{"prediction": value} for value in scores]
        return [
            {
                "probability": score,
                "decision": self.positive if score >= self.threshold else self.negative,
            }
            for score in scores
        ]


def challenger_point(value: Any) -> float:
    """Where an entity falls in [0, 1): the same value lands at the same point in every
    process and every release (a stable hash; Python's hash() is salted per process)."""
    digest = hashlib.blake2b(str(value).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Shadow:
    """Shadow mode: the challenger scores the rows the champion answered, off the response
    path. The request only enqueues (non-blocking); one daemon thread scores and records.
    A challenger that raises is recorded as an `error` record (shadow: true) and counted; one
    that is slow fills the bounded queue and further work is dropped and counted."""

    def __init__(self, variant: Variant, sink: FeedbackSink) -> None:
        self.variant = variant
        self.sink = sink
        self._queue: queue.Queue[tuple[str, str, list[dict[str, Any]]]] = queue.Queue(
            SHADOW_QUEUE_REQUESTS
        )
        self._logged: set[str] = set()
        SHADOW.labels(result="error")  # exported at 0 from the start
        SHADOW.labels(result="dropped")
        threading.Thread(target=self._run, name="shadow-challenger", daemon=True).start()

    def submit(self, request_id: str, endpoint: str, records: list[dict[str, Any]]) -> None:
        try:
            self._queue.put_nowait((request_id, endpoint, records))
        except queue.Full:
            SHADOW.labels(result="dropped").inc(len(records))

    def _run(self) -> None:
        while True:
            request_id, endpoint, records = self._queue.get()
            started = time.perf_counter()
            try:
                answers = self.variant.answers(records)
            # The challenger is on trial: whatever it raises is its failure to record and
            # count, never the service's (the champion has answered already).
            except Exception as err:
                self._failed(request_id, endpoint, err, started, len(records))
                continue
            latency_ms = round((time.perf_counter() - started) * 1000, 3)
            ts = record_time()
            for i, answer in enumerate(answers):
                self.sink.record(
                    {
                        "schema": SCHEMA_VERSION,
                        "kind": "shadow",
                        "ts": ts,
                        "request_id": request_id,
                        "row": i,
                        "endpoint": endpoint,
                        "variant": self.variant.name,
                        "model_version": self.variant.version,
                        **answer,
                        **({"threshold": self.variant.threshold} if CLASSIFIER else {}),
                        "latency_ms": latency_ms,
                    }
                )
            SHADOW.labels(result="scored").inc(len(records))

    def _failed(
        self, request_id: str, endpoint: str, err: Exception, started: float, rows: int
    ) -> None:
        kind = type(err).__name__
        SHADOW.labels(result="error").inc(rows)
        if kind not in self._logged:  # once per kind of failure: the counter has the rate
            self._logged.add(kind)
            LOG.warning("shadow challenger version %s failed: %s", self.variant.version, kind)
        self.sink.record(
            {
                "schema": SCHEMA_VERSION,
                "kind": "error",
                "ts": record_time(),
                "request_id": request_id,
                "endpoint": endpoint,
                "variant": self.variant.name,
                "shadow": True,
                "status": 500,
                # the type only: an exception's message may quote the request's values
                "error": f"{kind}: the challenger failed to score the request's rows",
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                "model_version": self.variant.version,
            }
        )


OutcomeValue = StrictInt | StrictFloat | StrictStr


class Outcome(BaseModel):
    """The observed label (classification) or value (regression) of one answered row."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=128, description="the prediction's id")
    row: StrictInt = Field(default=0, ge=0, description="the row of a /predict_batch request")
    outcome: OutcomeValue = Field(description="one of the model's classes, or a number")


ONE_OUTCOME_FIELDS = ("request_id", "row", "outcome")


class OutcomeRequest(BaseModel):
    """`{"request_id": ..., "row": 0, "outcome": ...}` or `{"outcomes": [{...}, ...]}`, one
    form or the other (the OpenAPI document says it as a oneOf: mlgate.serving.openapi).

    A field may be left out, never sent as null: the defaults are None, the types are not
    Optional (pydantic does not validate a default, and refuses an explicit null)."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(default=None, min_length=1, max_length=128)
    row: StrictInt = Field(default=0, ge=0)
    outcome: OutcomeValue = Field(default=None)
    outcomes: list[Outcome] = Field(default=None, min_length=1, max_length=SERVING.max_batch_rows)

    @model_validator(mode="before")
    @classmethod
    def _one_form(cls, data: Any) -> Any:
        both = isinstance(data, dict) and "outcomes" in data and data.keys() & ONE_OUTCOME_FIELDS
        if both:
            raise PydanticCustomError(
                "one_form", "send request_id/row/outcome or outcomes, not both"
            )
        return data


def _invalid(title: str, errors: list[tuple[tuple[str | int, ...], str, str]]) -> None:
    """A 400 shaped like pydantic's (field path, type, message; never the value)."""
    raise PydanticValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(type=PydanticCustomError(kind, msg), loc=loc, input=None)
            for loc, kind, msg in errors
        ],
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
        global _sink, _service
        feedback = SERVING.feedback
        folder = os.environ.get("MLGATE_FEEDBACK_DIR") or str(feedback.path)
        _sink = FeedbackSink(
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
        self.sink = _sink
        self.champion = Variant(
            "champion", self.bento_model, LINEAGE, _stored.info.metadata.get("scorer", "pipeline")
        )
        self.challenger: Variant | None = None
        if CHALLENGER_TAG and _challenger_stored is not None:
            self.challenger = Variant(
                "challenger",
                self.challenger_model,
                CHALLENGER_LINEAGE,
                _challenger_stored.info.metadata.get("scorer", "pipeline"),
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
        fault = os.environ.get(FAULT_ENV)
        if self.challenger is not None and fault:
            self.challenger.scorer = FaultyScorer(self.challenger.scorer, fault)
        if self.challenger is not None and STRATEGY.mode == "shadow":
            self.shadow = Shadow(self.challenger, self.sink)
        tune_gc(SERVING.gc_freeze, SERVING.gc_thresholds)
        self._ready.set()

    def __is_ready__(self) -> bool:
        return self._ready.is_set()

    def _assign(self, records: list[dict[str, Any]], header: str | None) -> list[Variant]:
        """canary/ab: which model answers each row. Sticky by serving.strategy.key: a field
        (per row) or a header (its value: `header`, per request); without a key, or without
        its value in the request, each request is drawn on its own."""
        assert self.challenger is not None
        share = STRATEGY.share
        if STRATEGY.field is not None:
            values = [r.get(STRATEGY.field) for r in records]
        else:
            values = [header] * len(records)
        drawn = random.random()
        return [
            self.challenger
            if (drawn if value is None else challenger_point(value)) < share
            else self.champion
            for value in values
        ]

    def answer(
        self,
        endpoint: str,
        rows: list[Any],
        request_id: str,
        header: str | None,
        state: dict[str, Any],
        started: float,
    ) -> tuple[dict[str, Any], str | None]:
        """The answer to /predict (one row) or /predict_batch, recorded and counted, and the
        variant to name in the x-mlgate-variant header (with a challenger). `header` is the
        value of serving.strategy.key's header; `state` is the request's state dict (the
        variant is noted there before scoring, so a failure is recorded with it)."""
        if not self._ready.is_set():
            raise bentoml.exceptions.ServiceUnavailable("the model is not loaded yet")
        records = [row.model_dump() for row in rows]
        if CONTRACT.needs_pandera:
            self._pandera_check(records)
        if self.challenger is not None and STRATEGY.mode in ("canary", "ab"):
            assigned = self._assign(records, header)
        else:
            assigned = [self.champion] * len(records)
        names = {v.name for v in assigned}
        only = names.pop() if len(names) == 1 else None  # the one variant answering, if one
        state[VARIANT_STATE] = only
        if only is not None:
            out = assigned[0].answers(records)
        else:  # a field key splits a batch: each model scores its own rows, in one call
            out = [{} for _ in records]
            for variant in (self.champion, self.challenger):
                mine = [i for i, v in enumerate(assigned) if v is variant]
                if variant is not None and mine:
                    answers = variant.answers([records[i] for i in mine])
                    for i, answer in zip(mine, answers, strict=True):
                        out[i] = answer
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        ts = record_time()
        counted: Counter[tuple[str, Variant]] = Counter()
        for i, (features, result, variant) in enumerate(zip(records, out, assigned, strict=True)):
            counted[str(result.get("decision", "none")), variant] += 1
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
                    **result,
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
        if endpoint == "predict":
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
        """The lean route's answer to a POST /predict or /predict_batch (RejectionObserver has
        checked its media type and size): status, JSON body, the variant to name in the
        header. The raw JSON is validated against the contract in one pydantic call, and the
        errors are shaped as BentoML's (`error`, and `detail` with each field path)."""
        model = PredictRequest if endpoint == "predict" else PredictBatchRequest
        value = headers.get(STRATEGY_HEADER) if STRATEGY_HEADER else None
        header = value.decode("latin-1") if value is not None else None
        try:
            parsed = model.model_validate_json(body)
            rows = [parsed.row] if endpoint == "predict" else parsed.rows
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

    def _bentoml_answer(
        self, endpoint: str, rows: list[Any], ctx: bentoml.Context
    ) -> dict[str, Any]:
        """The answer when BentoML's router calls the API (serving.lean_route: false; else the
        lean route in RejectionObserver answers first, and the API methods stay BentoML's
        declaration of the endpoints: OpenAPI, clients)."""
        started = time.perf_counter()
        # RejectionObserver set it (the client's X-Request-Id or a new one) and echoes it
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
        """One row: probability and decision at the threshold (a regressor: prediction),
        model version, request id (and, with a challenger, the variant that answered)."""
        return self._bentoml_answer("predict", [row], ctx)

    @bentoml.api(route="/predict_batch", input_spec=PredictBatchRequest)
    async def predict_batch(
        self,
        rows: list[Row],  # type: ignore[valid-type]
        ctx: bentoml.Context,
    ) -> Annotated[dict[str, Any], JSON]:
        """Score a batch of rows (1 to serving.max_batch_rows)."""
        return self._bentoml_answer("predict_batch", rows, ctx)

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
        if outcomes is None:  # one row's outcome (OutcomeRequest refuses both forms at once)
            if request_id is None or outcome is None:
                given = (("request_id", request_id), ("outcome", outcome))
                missing = [field for field, value in given if value is None]
                _invalid(
                    "OutcomeRequest",
                    [((f,), "missing", "Field required (or send `outcomes`)") for f in missing],
                )
            items = [Outcome(request_id=request_id, row=row, outcome=outcome)]
            prefix: tuple[str | int, ...] = ()
        else:
            items, prefix = outcomes, ("outcomes",)
        locs = [(*prefix, n) if prefix else () for n in range(len(items))]
        errors = []
        for loc, item in zip(locs, items, strict=True):
            problem = self._outcome_problem(item.outcome)
            if problem:
                errors.append(((*loc, "outcome"), *problem))
        if errors:  # what the OpenAPI document's schema refuses too: 400
            _invalid("OutcomeRequest", errors)
        # A row or a request this service has not answered is not found (404), as the
        # document says; answered here, not raised: BentoML words a raised 4xx as a list.
        absent = []
        for loc, item in zip(locs, items, strict=True):
            rows = self.recent.get(item.request_id)
            if rows is not None and item.row >= rows:
                absent.append(
                    {
                        "type": "row_range",
                        "loc": [*loc, "row"],
                        "msg": f"the request had {rows} row(s)",
                    }
                )
        if absent:
            ctx.response.status_code = 404
            return {
                "error": f"{len(absent)} row(s) not among their request's rows",
                "detail": absent,
            }
        unknown = [item.request_id for item in items if item.request_id not in self.recent]
        if unknown and SERVING.workers == 1:
            ctx.response.status_code = 404
            return _problem_body(
                "not_found",
                f"request id {unknown[0]} is not among the last {RECENT_REQUEST_IDS} requests "
                "this service answered since it started; older outcomes: mlgate outcomes import",
            )
        ts = record_time()
        for item in items:
            self.sink.record(
                {
                    "schema": SCHEMA_VERSION,
                    "kind": "outcome",
                    "ts": ts,
                    "request_id": item.request_id,
                    "row": item.row,
                    "outcome": item.outcome,
                    "source": "api",
                    "verified": item.request_id in self.recent,
                }
            )
        if unknown:
            ctx.response.status_code = 202
        return {"recorded": len(items), "verified": not unknown}

    def _outcome_problem(self, value: Any) -> tuple[str, str] | None:
        """Why `value` cannot be an outcome of this model (type and message), or None."""
        if not CLASSIFIER:
            if isinstance(value, str) or not math.isfinite(value):
                return "finite_number", "the outcome of a regression is a finite number"
            return None
        classes = self.champion.classes
        if not any(type(c) is type(value) and c == value for c in classes):
            return "outcome_class", f"the outcome must be one of the model's classes {classes}"
        return None

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
            "contract": Row.model_json_schema(),  # type: ignore[attr-defined]
            "strategy": STRATEGY.model_dump(mode="json"),
        }
        if self.challenger is not None:
            info["challenger"] = {
                "model_version": self.challenger.version,
                "lineage": self.challenger.lineage,
                "scorer": self.challenger.scorer_kind,
            }
        return info


class InfoByGet:
    """ASGI middleware: BentoML APIs are POST only; `GET /model_info` is a read, so it is
    answered as `POST /model_info {}`. Another method is 405 naming both (BentoML's router
    would name POST alone)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        info = scope["type"] == "http" and scope["path"] == "/model_info"
        if info and scope["method"] not in ("GET", "POST"):
            headers = [(b"allow", b"GET, POST"), (b"content-type", b"text/plain; charset=utf-8")]
            await send({"type": "http.response.start", "status": 405, "headers": headers})
            await send({"type": "http.response.body", "body": b"Method Not Allowed"})
            return
        if info and scope["method"] == "GET":
            replaced = (b"content-length", b"content-type")
            headers = [(k, v) for k, v in scope.get("headers") or [] if k not in replaced]
            headers += [(b"content-type", b"application/json"), (b"content-length", b"2")]
            scope = {**scope, "method": "POST", "headers": headers}

            async def receive_empty_object() -> dict[str, Any]:
                return {"type": "http.request", "body": b"{}", "more_body": False}

            await self.app(scope, receive_empty_object, send)
            return
        await self.app(scope, receive, send)


class PublishedDocument:
    """ASGI middleware: GET /docs.json answers the OpenAPI document that says what this
    service answers (mlgate.serving.openapi.describe), not BentoML's own. Made once the
    model's classes are known (loaded); before that, without them."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.document: bytes | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/docs.json" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        body = self.document or self.make()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def make(self) -> bytes:
        loaded = _service is not None and _service._ready.is_set()
        classes = tuple(_service.champion.classes) if _service is not None and loaded else ()
        facts = ApiFacts(
            predict_paths=PREDICT_PATHS,
            max_body_bytes=MAX_BODY_BYTES,
            timeout_seconds=SERVING.timeout_seconds,
            classifier=CLASSIFIER,
            classes=classes,
            variants=STRATEGY.mode != "none",
            one_worker=SERVING.workers == 1,
            example=CONTRACT.example_row(),
            request_field=SERVING.request_field,
            batch_field=SERVING.batch_request_field,
        )
        body = json.dumps(describe(ModelService.openapi_spec.asdict(), facts)).encode()
        if loaded:
            self.document = body
        return body


ModelService.add_asgi_middleware(RejectionObserver)
ModelService.add_asgi_middleware(InfoByGet)
ModelService.add_asgi_middleware(PublishedDocument)
