"""The BentoML service: the registered model behind /predict and /predict_batch, observed."""

# No `from __future__ import annotations` here: BentoML reads the API signatures' types at
# class-definition time, and the request types are built at import from the stored contract.

import json
import os
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bentoml
import yaml
from pydantic import ConfigDict, Field, create_model

from mlgate.config import Params, parse_params
from mlgate.serving.build import BENTO_MODEL_NAME, MODEL_FILE, REFERENCE_FILE, SCORER_FILE
from mlgate.serving.contract import Contract
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

_stored = bentoml.models.get(MODEL_TAG)
# The params.yaml the model was built with travels in the model's metadata: the service
# needs no file outside the bento, and its contract is the one the model was trained under.
PARAMS: Params = parse_params(
    json.loads(_stored.info.metadata["params_json"]), f"model {_stored.tag} metadata"
)
LINEAGE: dict[str, str] = dict(_stored.info.metadata.get("lineage", {}))
SERVING = PARAMS.serving
# Derived from the pandera schema by `mlgate build` (contract_spec); not imported from
# pandera here because pandas + pandera cost seconds of cold start in every process.
CONTRACT = Contract(json.loads(_stored.info.metadata["contract_json"]))
Applicant = CONTRACT.row_model
# Request bodies: {"applicant": {...}} and {"applicants": [{...}, ...]}; unknown keys are
# rejected at the top level too (BentoML's own input models would ignore them).
PredictRequest = create_model(
    "PredictRequest", __config__=ConfigDict(extra="forbid"), applicant=(Applicant, ...)
)
PredictBatchRequest = create_model(
    "PredictBatchRequest",
    __config__=ConfigDict(extra="forbid"),
    applicants=(
        list[Applicant],  # type: ignore[valid-type]
        Field(min_length=1, max_length=SERVING.max_batch_rows),
    ),
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


class RejectionObserver:
    """ASGI middleware: counts and records every prediction request that is not a 2xx.

    Request validation happens inside BentoML before the API method runs, so a rejected
    request is only visible at this layer. It also refuses a body larger than
    serving.max_body_kb (413) before the body is read."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in PREDICT_PATHS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            error = {
                "error": "request body too large",
                "detail": [
                    {
                        "type": "too_large",
                        "loc": [],
                        "msg": f"body of {length.decode(errors='replace')} bytes; "
                        f"at most {MAX_BODY_BYTES} accepted",
                    }
                ],
            }
            payload = json.dumps(error).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            self.rejected(scope, 413, payload, started)
            return
        status = 0
        body: list[bytes] = []

        async def observe(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400:
                body.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, observe)
        if status >= 400:
            self.rejected(scope, status, b"".join(body), started)

    @staticmethod
    def rejected(scope: Any, status: int, body: bytes, started: float) -> None:
        endpoint = scope["path"].lstrip("/")
        REJECTED.labels(endpoint=endpoint, status=str(status)).inc()
        if _sink is not None:
            _sink.record(
                {
                    "schema": SCHEMA_VERSION,
                    "kind": "error",
                    "ts": _now(),
                    "endpoint": endpoint,
                    "status": status,
                    "error": body[:2000].decode("utf-8", "replace"),
                    "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                    "model_version": LINEAGE.get("version"),
                }
            )


@bentoml.service(
    name="mlgate",
    workers=SERVING.workers,
    traffic={"timeout": SERVING.timeout_seconds},
    logging={"access": {"enabled": SERVING.access_log}},
)
class ModelService:
    """Scores loan applicants with the registered model, under the pandera contract."""

    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        global _sink
        feedback = SERVING.feedback
        folder = os.environ.get("MLGATE_FEEDBACK_DIR") or str(feedback.path)
        _sink = FeedbackSink(feedback.sink, folder, feedback.max_file_mb, feedback.flush_seconds)
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

        from mlgate.serving.scorer import LeanScorer

        # Readiness tests: not ready while this file exists, so the 503 is seen on any load.
        hold = os.environ.get("MLGATE_READY_HOLD_FILE")
        while hold and os.path.exists(hold):
            time.sleep(0.05)
        positive = PARAMS.data.positive_label
        lean_file = self.bento_model.path_of(SCORER_FILE)
        if os.path.exists(lean_file):
            # The fitted numbers alone: no scikit-learn import, no unpickling.
            with open(lean_file, encoding="utf-8") as fh:
                self.scorer: Any = LeanScorer(json.load(fh))
            classes = self.scorer.spec.get("classes")
        else:
            import joblib

            from mlgate.serving.scorer import make_scorer

            model = joblib.load(self.bento_model.path_of(MODEL_FILE))
            self.scorer = make_scorer(model, positive, PARAMS.features.all)
            classes = [c.item() if hasattr(c, "item") else c for c in model.classes_]
        self.positive = positive
        self.negative = next(c for c in classes if c != positive)
        # Self-check: this process scores the reference rows as the Pipeline did at build time.
        with open(self.bento_model.path_of(REFERENCE_FILE), encoding="utf-8") as fh:
            reference = json.load(fh)
        got = self.scorer.scores(reference["rows"])
        if not np.allclose(got, reference["scores"], rtol=1e-9, atol=1e-12):
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
        request_id = ctx.request.headers.get("x-request-id") or uuid.uuid4().hex
        records = [row.model_dump() for row in rows]
        if CONTRACT.needs_pandera:
            self._pandera_check(records)
        scores = self.scorer.scores(records)
        out = []
        for score in scores.tolist():
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
                    "threshold": self.threshold,
                    "latency_ms": latency_ms,
                }
            )
        ctx.response.headers["x-request-id"] = request_id
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
        applicant: Applicant,  # type: ignore[valid-type]
        ctx: bentoml.Context,
    ) -> dict[str, Any]:
        """One applicant: probability, decision at the threshold, model version, request id."""
        started = time.perf_counter()
        request_id, out = self._predictions([applicant], "predict", ctx, started)
        return {**out[0], "model_version": self.version, "request_id": request_id}

    @bentoml.api(route="/predict_batch", input_spec=PredictBatchRequest)
    async def predict_batch(
        self,
        applicants: list[Applicant],  # type: ignore[valid-type]
        ctx: bentoml.Context,
    ) -> dict[str, Any]:
        """Score a batch of applicants (1 to serving.max_batch_rows rows)."""
        started = time.perf_counter()
        request_id, out = self._predictions(applicants, "predict_batch", ctx, started)
        return {"predictions": out, "model_version": self.version, "request_id": request_id}

    @bentoml.api(route="/model_info")
    async def model_info(self) -> dict[str, Any]:
        """The model this service serves and where it came from (lineage)."""
        return {
            "model_version": self.version,
            "ready": self._ready.is_set(),
            "lineage": LINEAGE,
            "threshold": self.threshold,
            "contract": Applicant.model_json_schema(),  # type: ignore[attr-defined]
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
