"""The request's guard and witness in front of the service: JSON bodies within bounds, a
request id, the lean route to the service, and every rejection counted and logged."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import bentoml

from mlgate.serving.metrics import REJECTED

LOG = logging.getLogger("mlgate.service")
VARIANT_STATE = "mlgate_variant"  # the request.state key of the variant that answered
VARIANT_HEADER = "x-mlgate-variant"
# what BentoML's router puts on every answer, the lean route too
LEAN_HEADERS = [(b"content-type", b"application/json"), (b"server", b"BentoML Service/mlgate")]


def _problem_body(kind: str, msg: str) -> dict[str, Any]:
    """An error answer, shaped as every 4xx/5xx of the service is (OpenAPI: Problem)."""
    return {"error": msg, "detail": [{"type": kind, "loc": [], "msg": msg}]}


def _problem(kind: str, msg: str) -> bytes:
    return json.dumps(_problem_body(kind, msg)).encode()


def _request_id(headers: dict[bytes, bytes]) -> str:
    """The client's X-Request-Id when it is a sane token, else a new one."""
    given = headers.get(b"x-request-id", b"")
    if 0 < len(given) <= 128 and all(33 <= c < 127 for c in given):
        return given.decode()
    return uuid.uuid4().hex


def _span_header() -> list[tuple[bytes, bytes]]:
    """serving.tracing: true: the request's span id, as BentoML's router names it."""
    from opentelemetry import trace

    span = trace.get_current_span().get_span_context()
    return (
        [(b"x-bentoml-request-id", format(span.span_id, "016x").encode())] if span.is_valid else []
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
    log. RequestGuard logs each rejection once, without values. 5xx errors still log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            return False
        code = getattr(getattr(exc, "error_code", None), "value", 500)
        return not (isinstance(exc, bentoml.exceptions.BentoMLException) and code < 500)


@dataclass
class _Exchange:
    """One guarded request: its scope (with the request id header), id and start time."""

    scope: dict[str, Any]
    headers: dict[bytes, bytes]
    request_id: str
    id_header: tuple[bytes, bytes]
    # Starlette's request.state is this dict: the service notes there which variant it
    # assigned, so a failure after the assignment is recorded with it.
    state: dict[str, Any]
    started: float

    @classmethod
    def begin(cls, scope: Any) -> _Exchange:
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        request_id = _request_id(headers)
        id_header = (b"x-request-id", request_id.encode())
        state = scope.setdefault("state", {})
        scope = {
            **scope,
            "headers": [h for h in scope.get("headers") or [] if h[0] != b"x-request-id"]
            + [id_header],
        }
        return cls(scope, headers, request_id, id_header, state, started)


class RequestGuard:
    """ASGI middleware in front of the guarded paths (/predict, /predict_batch, /outcome and
    /model_info): the request's guard and witness.

    - refuses what is not a plain JSON body before BentoML parses it: a Content-Type other
      than application/json (missing, text, multipart...) or a Content-Encoding other than
      identity => 415; a body larger than `max_body_bytes` (serving.max_body_kb) => 413,
      checked on Content-Length and again while reading, so a chunked upload is read no
      further than the limit;
    - gives every request an id (the client's X-Request-Id or a new one), echoed in the
      response header and carried by every feedback record;
    - answers the `lean_paths` (/predict, /predict_batch, /explain, /explain_batch) itself,
      once the worker's service exists (the lean route: the service's `respond` parses the
      body against the contract in one pydantic call, scores, records and answers).
      BentoML's middleware in front of this one still runs (request metrics, timeout,
      tracing when on); its router, context and IO descriptors do not: about half a
      request's CPU (docs/SERVING.md#speed).
      With serving.lean_route: false (no lean paths), BentoML's router answers them (the
      same predictions and records; error bodies as BentoML words them);
    - counts every answer that is not a 2xx in /metrics, logs it once at WARNING with the
      field paths only (BentoML's own ERROR log with the traceback, which quotes the values,
      is filtered out: see QuietRejections), and has the service record it (no values).

    Configured by `ModelService.add_asgi_middleware(RequestGuard, **options)`: `service` is
    a getter of the worker's service (None until it is made): its `respond` answers the lean
    route, its `record_rejection` records a rejection in the feedback records."""

    def __init__(
        self,
        app: Any,
        *,
        guarded_paths: Sequence[str],
        lean_paths: Sequence[str],
        max_body_bytes: int,
        tracing: bool,
        service: Callable[[], Any],
    ) -> None:
        self.app = app
        self.guarded_paths = frozenset(guarded_paths)
        self.lean_paths = frozenset(lean_paths)
        self.max_body_bytes = max_body_bytes
        self.tracing = tracing
        self.service = service
        self.too_large = (
            f"body larger than {max_body_bytes} bytes; at most {max_body_bytes} accepted"
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.guarded_paths:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":  # GET, OPTIONS…: no body to guard; BentoML answers 405
            await self.app(scope, receive, send)
            return
        exchange = _Exchange.begin(scope)
        refusal = self.refusal(exchange.headers)
        if refusal is not None:
            await self.refuse(exchange, send, *refusal)
            return
        received = await self.read_body(exchange, receive, send)
        if received is None:  # the client left, or the body was too large (refused)
            return
        service = self.service()
        if service is not None and scope["path"] in self.lean_paths:
            await self.answer(service, exchange, received, send)
            return
        await self.pass_on(exchange, received, receive, send)

    def refusal(self, headers: dict[bytes, bytes]) -> tuple[int, str, str] | None:
        """Why the request's headers refuse it before any body is read (status, type,
        message), or None."""
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media != b"application/json":
            shown = media.decode(errors="replace") or "none"
            return (
                415,
                "unsupported_media_type",
                f"Content-Type {shown[:80]}: "
                "the body must be JSON (Content-Type: application/json)",
            )
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"", b"identity"):
            shown = encoding.decode(errors="replace")[:80]
            return (
                415,
                "unsupported_encoding",
                f"Content-Encoding {shown}: only identity is accepted (send the JSON uncompressed)",
            )
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return 413, "too_large", self.too_large
        return None

    async def read_body(self, exchange: _Exchange, receive: Any, send: Any) -> bytes | None:
        """The body, at most max_body_bytes of it (chunked uploads carry no length); None
        when the client disconnected or the body was too large (refused here)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self.refuse(exchange, send, 413, "too_large", self.too_large)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def refuse(
        self, exchange: _Exchange, send: Any, status: int, kind: str, msg: str
    ) -> None:
        payload = _problem(kind, msg)
        headers = [(b"content-type", b"application/json"), exchange.id_header]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        self.rejected(exchange, status, payload)

    async def answer(self, service: Any, exchange: _Exchange, received: bytes, send: Any) -> None:
        """The lean route (docs/SERVING.md#speed): the service parses, scores, records and
        answers; this sends it."""
        status, payload, said = service.respond(
            exchange.scope["path"][1:],
            received,
            exchange.request_id,
            exchange.headers,
            exchange.state,
            exchange.started,
        )
        headers = [
            *LEAN_HEADERS,
            (b"content-length", str(len(payload)).encode()),
            exchange.id_header,
            *(_span_header() if self.tracing else ()),
        ]
        if said:
            headers.append((VARIANT_HEADER.encode(), said.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        if status >= 400:
            self.rejected(exchange, status, payload, exchange.state.get(VARIANT_STATE))

    async def pass_on(self, exchange: _Exchange, received: bytes, receive: Any, send: Any) -> None:
        """BentoML's router answers, with the body read here replayed to it; the answer gets
        the request id, and a 4xx/5xx is counted and recorded."""
        replay: list[Any] = [{"type": "http.request", "body": received, "more_body": False}]

        async def replayed() -> Any:
            return replay.pop() if replay else await receive()

        status = 0
        body: list[bytes] = []

        async def observe(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), exchange.id_header]}
            elif message["type"] == "http.response.body" and status >= 400:
                body.append(message.get("body", b""))
            await send(message)

        await self.app(exchange.scope, replayed, observe)
        if status >= 400:
            variant = exchange.state.get(VARIANT_STATE)
            self.rejected(exchange, status, b"".join(body), variant)

    def rejected(
        self, exchange: _Exchange, status: int, body: bytes, variant: str | None = None
    ) -> None:
        """Count, log (field paths only) and have the service record a 4xx/5xx answer."""
        endpoint = exchange.scope["path"].lstrip("/")
        REJECTED.labels(endpoint=endpoint, status=str(status), variant=variant or "unknown").inc()
        LOG.warning(
            "rejected %s request_id=%s status=%d: %s",
            endpoint,
            exchange.request_id,
            status,
            _reasons(body),
        )
        service = self.service()
        if service is not None:
            service.record_rejection(
                endpoint, status, body, exchange.started, exchange.request_id, variant
            )


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
