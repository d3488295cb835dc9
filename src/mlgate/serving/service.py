"""The BentoML service: the registered model behind /predict and /predict_batch, observed."""

# No `from __future__ import annotations` here: BentoML reads the API signatures' types at
# class-definition time, and the request types are built at import from the stored contract.

import json
import logging
import os
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import bentoml
import yaml
from bentoml.validators import ContentType

from mlgate.config import Params, parse_params
from mlgate.serving.build import (
    BENTO_MODEL_NAME,
    MODEL_FILE,
    ONNX_FILE,
    ONNX_SPEC_FILE,
    REFERENCE_FILE,
    SCORER_FILE,
)
from mlgate.serving.contract import Contract, request_models, row_model_name
from mlgate.serving.feedback import SCHEMA_VERSION, FeedbackSink


def _model_tag() -> str:
    """The exact model this bento was built with.

    `mlgate build` names it in MLGATE_BENTO_MODEL while BentoML imports this module. A
    built bento records it in its bento.yaml (<bento>/src/mlgate/serving/service.py ->
    <bento>/bento.yaml): `latest` is not good enough, because locally the model store is
    shared and `latest` is whatever was saved last (another bento's model, another config).
    """
    if os.environ.get("MLGATE_BENTO_MODEL"):
        return os.environ["MLGATE_BENTO_MODEL"]
    manifest = Path(__file__).resolve().parents[3] / "bento.yaml"
    if manifest.is_file():
        with manifest.open(encoding="utf-8") as fh:
            info = yaml.safe_load(fh) or {}
        for service in info.get("services") or []:
            for model in service.get("models") or []:
                if str(model.get("tag", "")).startswith(f"{BENTO_MODEL_NAME}:"):
                    return str(model["tag"])
    return f"{BENTO_MODEL_NAME}:latest"


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
MAX_BODY_BYTES = SERVING.max_body_kb * 1024

PREDICTIONS = bentoml.metrics.Counter(
    name="mlgate_predictions",
    documentation="Predictions made, by decision and model version",
    labelnames=["decision", "model_version"],
)
REJECTED = bentoml.metrics.Counter(
    name="mlgate_rejected_requests",
    documentation="Prediction requests answered 4xx (bad request) or 5xx, by endpoint and status",
    labelnames=["endpoint", "status"],
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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


def _problem(kind: str, msg: str) -> bytes:
    return json.dumps({"error": msg, "detail": [{"type": kind, "loc": [], "msg": msg}]}).encode()


def _request_id(headers: dict[bytes, bytes]) -> str:
    """The client's X-Request-Id when it is a sane token, else a new one."""
    given = headers.get(b"x-request-id", b"")
    if 0 < len(given) <= 128 and all(33 <= c < 127 for c in given):
        return given.decode()
    return uuid.uuid4().hex


class RejectionObserver:
    """ASGI middleware in front of /predict and /predict_batch: the request's guard and witness.

    - refuses what is not a plain JSON body before BentoML parses it: a Content-Type other
      than application/json (missing, text, multipart...) or a Content-Encoding other than
      identity => 415; a body larger than serving.max_body_kb => 413, checked on
      Content-Length and again while reading, so a chunked upload is read no further than
      the limit;
    - gives every request an id (the client's X-Request-Id or a new one), echoed in the
      response header and carried by every feedback record;
    - counts every answer that is not a 2xx in /metrics, records it (no field values) and
      logs it once at WARNING with the field paths only (BentoML's own ERROR log with the
      traceback, which quotes the values, is filtered out: see QuietRejections)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in PREDICT_PATHS:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":  # GET, OPTIONS…: no body to guard; BentoML answers 405
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        request_id = _request_id(headers)
        id_header = (b"x-request-id", request_id.encode())
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
        replay: list[Any] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

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
            self.rejected(scope, status, b"".join(body), started, request_id)

    @staticmethod
    def rejected(scope: Any, status: int, body: bytes, started: float, request_id: str) -> None:
        endpoint = scope["path"].lstrip("/")
        REJECTED.labels(endpoint=endpoint, status=str(status)).inc()
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
                    "ts": _now(),
                    "request_id": request_id,
                    "endpoint": endpoint,
                    "status": status,
                    "error": body[:2000].decode("utf-8", "replace"),
                    "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                    "model_version": LINEAGE.get("version"),
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
    """Scores rows with the registered model, under the pandera contract."""

    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        global _sink
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
        self.version = LINEAGE.get("version", "unknown")
        self.threshold = PARAMS.evaluate.threshold
        self._ready = threading.Event()
        self.load_error: str | None = None
        # Load off the start-up path: /livez answers at once, /readyz only once the model
        # is loaded and has passed its self-check.
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()

    def _load(self) -> None:
        import numpy as np

        from mlgate.serving.scorer import PARITY_TOLERANCE, LeanScorer, OnnxScorer

        # Readiness tests: not ready while this file exists, so the 503 is seen on any load.
        hold = os.environ.get("MLGATE_READY_HOLD_FILE")
        while hold and os.path.exists(hold):
            time.sleep(0.05)
        positive = PARAMS.data.positive_label if CLASSIFIER else None
        lean_file = self.bento_model.path_of(SCORER_FILE)
        onnx_file = self.bento_model.path_of(ONNX_FILE)
        # The path `mlgate build` chose and checked (serving.scorer): the fitted numbers or the
        # ONNX graph need no scikit-learn import and no unpickling.
        if os.path.exists(lean_file):
            with open(lean_file, encoding="utf-8") as fh:
                self.scorer: Any = LeanScorer(json.load(fh))
            classes = self.scorer.spec.get("classes")
        elif os.path.exists(onnx_file):
            with open(self.bento_model.path_of(ONNX_SPEC_FILE), encoding="utf-8") as fh:
                spec = json.load(fh)
            with open(onnx_file, "rb") as graph:
                self.scorer = OnnxScorer(graph.read(), spec)
            classes = spec.get("classes")
        else:
            import joblib

            from mlgate.serving.scorer import make_scorer

            model = joblib.load(self.bento_model.path_of(MODEL_FILE))
            self.scorer = make_scorer(model, positive, PARAMS.features.all)
            fitted = getattr(model, "classes_", []) if CLASSIFIER else []
            classes = [c.item() if hasattr(c, "item") else c for c in fitted]
        self.positive = positive
        self.negative = next(c for c in classes if c != positive) if classes else None
        # Self-check: this process scores the reference rows as the Pipeline did at build time.
        with open(self.bento_model.path_of(REFERENCE_FILE), encoding="utf-8") as fh:
            reference = json.load(fh)
        got = self.scorer.scores(reference["rows"])
        if not np.allclose(got, reference["scores"], rtol=0, atol=PARITY_TOLERANCE):
            # Never ready: the orchestrator keeps traffic away and the log says why.
            self.load_error = "the scorer disagrees with the Pipeline on the reference rows"
            print(f"mlgate service: NOT READY: {self.load_error}", file=sys.stderr, flush=True)
            return
        tune_gc(SERVING.gc_freeze, SERVING.gc_thresholds)
        self._ready.set()

    def __is_ready__(self) -> bool:
        return self._ready.is_set()

    def _predictions(
        self, rows: list[Any], endpoint: str, ctx: bentoml.Context, started: float
    ) -> tuple[str, list[dict[str, Any]]]:
        if not self._ready.is_set():
            raise bentoml.exceptions.ServiceUnavailable("the model is not loaded yet")
        # RejectionObserver set it (the client's X-Request-Id or a new one) and echoes it
        request_id = ctx.request.headers.get("x-request-id") or uuid.uuid4().hex
        records = [row.model_dump() for row in rows]
        if CONTRACT.needs_pandera:
            self._pandera_check(records)
        scores = self.scorer.scores(records)
        out: list[dict[str, Any]] = []
        if not CLASSIFIER:  # a regressor's score is the prediction; no decision to make
            out = [{"prediction": value} for value in scores.tolist()]
            PREDICTIONS.labels(decision="none", model_version=self.version).inc(len(out))
        for score in scores.tolist() if CLASSIFIER else ():
            decision = self.positive if score >= self.threshold else self.negative
            out.append({"probability": score, "decision": decision})
            PREDICTIONS.labels(decision=str(decision), model_version=self.version).inc()
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        ts = _now()
        for i, (features, result) in enumerate(zip(records, out, strict=True)):
            self.sink.record(
                {
                    "schema": SCHEMA_VERSION,
                    "kind": "prediction",
                    "ts": ts,
                    "request_id": request_id,
                    "row": i,
                    "endpoint": endpoint,
                    "model_version": self.version,
                    "inputs": features,
                    **result,
                    **({"threshold": self.threshold} if CLASSIFIER else {}),
                    "latency_ms": latency_ms,
                }
            )
        return request_id, out

    @staticmethod
    def _pandera_check(records: list[dict[str, Any]]) -> None:
        """Checks the schema has that pydantic cannot express (custom or dataframe checks)."""
        import pandas as pd

        from mlgate.data import input_schema, validate
        from mlgate.errors import DataValidationError

        try:
            validate(pd.DataFrame.from_records(records), input_schema(PARAMS), "request")
        except DataValidationError as err:
            raise bentoml.exceptions.InvalidArgument(str(err)) from None

    @bentoml.api(route="/predict", input_spec=PredictRequest)
    async def predict(
        self,
        row: Row,  # type: ignore[valid-type]
        ctx: bentoml.Context,
    ) -> Annotated[dict[str, Any], JSON]:
        """One row: probability and decision at the threshold (a regressor: prediction),
        model version, request id."""
        started = time.perf_counter()
        request_id, out = self._predictions([row], "predict", ctx, started)
        return {**out[0], "model_version": self.version, "request_id": request_id}

    @bentoml.api(route="/predict_batch", input_spec=PredictBatchRequest)
    async def predict_batch(
        self,
        rows: list[Row],  # type: ignore[valid-type]
        ctx: bentoml.Context,
    ) -> Annotated[dict[str, Any], JSON]:
        """Score a batch of rows (1 to serving.max_batch_rows)."""
        started = time.perf_counter()
        request_id, out = self._predictions(rows, "predict_batch", ctx, started)
        return {"predictions": out, "model_version": self.version, "request_id": request_id}

    @bentoml.api(route="/model_info")
    async def model_info(self) -> Annotated[dict[str, Any], JSON]:
        """The model this service serves and where it came from (lineage)."""
        return {
            "model_version": self.version,
            "ready": self._ready.is_set(),
            "lineage": LINEAGE,
            "threshold": self.threshold,
            "scorer": _stored.info.metadata.get("scorer", "pipeline"),
            "contract": Row.model_json_schema(),  # type: ignore[attr-defined]
        }


class InfoByGet:
    """ASGI middleware: BentoML APIs are POST only; `GET /model_info` is a read, so it is
    answered as `POST /model_info {}`."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/model_info" and scope["method"] == "GET":
            replaced = (b"content-length", b"content-type")
            headers = [(k, v) for k, v in scope.get("headers") or [] if k not in replaced]
            headers += [(b"content-type", b"application/json"), (b"content-length", b"2")]
            scope = {**scope, "method": "POST", "headers": headers}

            async def receive_empty_object() -> dict[str, Any]:
                return {"type": "http.request", "body": b"{}", "more_body": False}

            await self.app(scope, receive_empty_object, send)
            return
        await self.app(scope, receive, send)


ModelService.add_asgi_middleware(RejectionObserver)
ModelService.add_asgi_middleware(InfoByGet)
