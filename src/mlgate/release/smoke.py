"""Smoke and contract test of a live service over HTTP: health, metrics, predictions, rejections."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from mlgate.errors import MlgateError, shown
from mlgate.io import read_bounded

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mlgate.release.config import Deploy


MAX_BODY = 10 * 1024 * 1024  # a smoke answer is a few hundred bytes
CALL_DEADLINE = 30.0  # one request, its body included


def _call(url: str, body: Any = None, timeout: float | None = None) -> tuple[int, bytes]:
    """One request with a total deadline of `timeout` s (a body that drips ends too); a service
    that cannot be reached or answers no HTTP is an MlgateError naming the endpoint."""
    import http.client

    data = None if body is None else json.dumps(body).encode()
    method = "GET" if body is None else "POST"
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    endpoint = f"{method} {shown(url, 200)[1:-1]}"
    timeout = CALL_DEADLINE if timeout is None else timeout
    deadline = time.monotonic() + timeout
    try:
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, read_bounded(resp, deadline, endpoint, MAX_BODY)
        except urllib.error.HTTPError as err:
            return err.code, read_bounded(err, deadline, endpoint, MAX_BODY) if err.fp else b""
    except urllib.error.URLError as err:
        raise MlgateError(f"{endpoint}: {shown(str(err.reason), 200)[1:-1]}") from None
    except (OSError, http.client.HTTPException) as err:  # reset, timed out, not HTTP
        raise MlgateError(
            f"{endpoint}: {type(err).__name__} {shown(str(err), 200)[1:-1]}"
        ) from None


def wait_ready(base: str, cfg: Deploy) -> None:
    """Poll the readiness endpoint until it answers 200, or fail after startup_seconds."""
    deadline = time.monotonic() + cfg.startup_seconds
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, _ = _call(base + cfg.health.ready, timeout=min(5.0, CALL_DEADLINE))
            if status == 200:
                return
            last = f"HTTP {status}"
        except MlgateError as err:  # not up yet: refused, reset, timed out
            last = str(err)
        time.sleep(1)
    raise MlgateError(
        f"{base}{cfg.health.ready} was not ready within {cfg.startup_seconds}s (last: {last})"
    )


def smoke_test(
    base: str,
    rows: list[dict[str, Any]],
    cfg: Deploy,
    field: str = "",
    required: Sequence[str] | None = None,
) -> list[str]:
    """Every check the live endpoint must pass; raises with all failures at once. `required`:
    the fields the contract requires (required_fields), one of which a request leaves out to
    be refused; None: the rows' first field."""
    base = base.rstrip("/")
    name = cfg.smoke.field or field  # field: serving.request_field, from the caller
    if not name:
        raise MlgateError(
            "deploy.smoke.field or serving.request_field must name the request's field"
        )
    wait_ready(base, cfg)
    passed: list[str] = []
    failed: list[str] = []

    def check(ok: bool, what: str) -> None:
        (passed if ok else failed).append(what)

    for path in (cfg.health.live, cfg.health.ready, cfg.health.metrics):
        status, _ = _call(base + path)
        check(status == 200, f"GET {path} -> {status} (want 200)")
    endpoint = base + cfg.smoke.path
    for i, row in enumerate(rows):
        status, body = _call(endpoint, {name: row})
        ok = status == 200 and _is_json(body)
        why = "" if ok else ": " + body[:200].decode(errors="replace")
        check(ok, f"POST {cfg.smoke.path} row {i} -> {status}{why}")
    missing = next(iter(rows[0]), None) if rows and required is None else None
    if rows and required:
        missing = required[0]
    if missing is not None:
        # The contract: a request missing a field is the client's error (4xx), never a crash.
        broken = dict(rows[0])
        broken.pop(missing)
        status, _ = _call(endpoint, {name: broken})
        check(
            400 <= status < 500,
            f"POST {cfg.smoke.path} with a missing field -> {status} (want 4xx)",
        )
    if failed:
        raise MlgateError(
            f"smoke test of {base} failed:\n"
            + "\n".join(f"  FAIL {f}" for f in failed)
            + "".join(f"\n  pass {p}" for p in passed)
        )
    return passed


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def required_fields(params: Any) -> list[str]:
    """The request fields the contract requires: a column a request may leave out (an ID,
    free text: not required, or nullable) is no test of the contract's refusal."""
    from mlgate.pipeline.data import input_schema

    columns = input_schema(params).columns.items()
    return [name for name, column in columns if column.required and not column.nullable]


def sample_rows(params: Any, n: int) -> list[dict[str, Any]]:
    """Rows of the raw data (always there after `dvc pull data.dvc`) as real requests: every
    column of the request contract the service is built with (the schema without the target),
    which includes sensitive attributes that are not model features."""
    import pandas as pd

    from mlgate.pipeline.data import input_schema

    if not params.data.raw.exists():
        raise MlgateError(f"{params.data.raw} not found: run `dvc pull data.dvc` first")
    raw = pd.read_csv(params.data.raw)
    rows = raw[list(input_schema(params).columns)].dropna().head(n)
    return json.loads(rows.to_json(orient="records"))
