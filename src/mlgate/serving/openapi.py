"""The OpenAPI document the service publishes at /docs.json, made to say what it answers.

BentoML's own document declares every error's `detail` a string (it is a list of problems),
a 404 on routes that never answer one, no 413/415/503/504, no body shape for the answers,
`/outcome`'s two request forms as one object of optional fields, and POST alone for
/model_info (GET answers too). `describe` takes that document and the service's facts and
returns one a client (or schemathesis, tests/serving/test_openapi_conformance.py) can hold
the service to."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REF = "#/components/schemas/"

PROBLEM: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "Why a request was not answered: `error` says it in a sentence; `detail` "
    "(when there is one) lists each problem: where (`loc`, the path of the field in the "
    "request body; empty for the body as a whole), what kind (`type`) and why (`msg`). "
    "Never the values sent.",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "loc", "msg"],
                "properties": {
                    "type": {"type": "string"},
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    },
                    "msg": {"type": "string"},
                    "url": {"type": "string"},
                },
            },
        },
    },
}

REQUEST_ID_HEADER = {
    "description": "The request's id: the client's X-Request-Id when it is 1-128 printable "
    "ASCII characters, else a new one. Every feedback record of the request carries it.",
    "required": True,
    "schema": {"type": "string"},
}


@dataclass(frozen=True)
class ApiFacts:
    """What the document states, from the service's configuration and its model."""

    predict_paths: tuple[str, ...]  # /predict (one row), /predict_batch
    max_body_bytes: int
    timeout_seconds: float
    classifier: bool  # its answers and outcomes are classes (binary or multiclass)
    classes: tuple[Any, ...]  # the model's classes; () when not known (not loaded yet)
    variants: bool  # a challenger beside the champion: answers name the variant
    one_worker: bool  # an unknown request id: 404 with one worker, else 202 (not verified)
    example: dict[str, Any]  # a row the contract accepts
    request_field: str
    batch_field: str
    multiclass: bool = False  # the class and every class's probability, no threshold
    keys: tuple[str, ...] = ()  # data.roles' keys: echoed in an answer when the request sent them
    explain_paths: tuple[str, ...] = ()  # /explain (one row), /explain_batch
    top_k: int = 4  # serving.explain.top_k: reasons in an explained row's answer, at most


def describe(spec: dict[str, Any], facts: ApiFacts) -> dict[str, Any]:
    """BentoML's document `spec` (not changed), made to state what the service answers."""
    doc = copy.deepcopy(spec)
    schemas = doc["components"]["schemas"]
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):
        schemas.pop(name, None)
    schemas["Problem"] = PROBLEM
    paths = doc["paths"]
    one, batch = facts.predict_paths
    _operation(paths[one]["post"], facts, _answer(facts, batch=False), predicts=True)
    _example(paths[one]["post"], {facts.request_field: facts.example})
    _operation(paths[batch]["post"], facts, _answer(facts, batch=True), predicts=True)
    _example(paths[batch]["post"], {facts.batch_field: [facts.example]})
    if facts.explain_paths:
        one, batch = facts.explain_paths
        _operation(paths[one]["post"], facts, _explained(facts, False), True, explains=True)
        _example(paths[one]["post"], {facts.request_field: facts.example})
        _operation(paths[batch]["post"], facts, _explained(facts, True), True, explains=True)
        _example(paths[batch]["post"], {facts.batch_field: [facts.example]})
    _outcome(paths["/outcome"]["post"], schemas, facts)
    info = paths["/model_info"]["post"]
    _operation(info, facts, _model_info())
    paths["/model_info"]["get"] = {
        "tags": info["tags"],
        "description": info["description"] + "\n\nA read: the same answer as `POST {}`.",
        "operationId": info["operationId"] + "_get",
        "responses": {
            # no X-Request-Id: a read is no request to trace
            "200": {k: v for k, v in info["responses"]["200"].items() if k != "headers"},
            **_errors((500, 504), facts.timeout_seconds),
        },
    }
    paths["/readyz"]["get"]["responses"]["503"] = {
        "description": "Not ready: the model is loading or failed its self-check (the log "
        "says which); keep traffic away.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    return doc


def _operation(
    op: dict[str, Any],
    facts: ApiFacts,
    answer: dict[str, Any],
    predicts: bool = False,
    explains: bool = False,
) -> None:
    """The POST operation's body is required and its answers are what the service sends
    (a prediction also 503 until the model is loaded, and names the variant; an explanation
    501 when the model has none)."""
    op["requestBody"]["required"] = True
    statuses = (400, 413, 415, 500, *((501,) if explains else ()), *((503,) if predicts else ()))
    statuses = (*statuses, 504)
    op["responses"] = {
        "200": {
            "description": "Answered",
            "content": {"application/json": {"schema": answer}},
        },
        **_errors(statuses, facts.timeout_seconds, facts.max_body_bytes),
    }
    for status, response in op["responses"].items():
        if status != "504":  # BentoML's timeout answers in front of the service's middleware
            response["headers"] = {"X-Request-Id": REQUEST_ID_HEADER}
    if facts.variants and predicts:
        op["responses"]["200"]["headers"]["X-Mlgate-Variant"] = {
            "description": "Which model answered (`mixed`: a batch the two shared).",
            "required": True,
            "schema": {"type": "string", "enum": ["champion", "challenger", "mixed"]},
        }


def _errors(
    statuses: tuple[int, ...], timeout_seconds: float, max_body_bytes: int = 0
) -> dict[str, Any]:
    why = {
        400: "The body is not valid JSON or breaks the contract: `detail` names each field.",
        404: "A row this service did not answer: `row` beyond its request's rows, or (one "
        "worker) a request id not among those it answered lately.",
        413: f"The body is larger than {max_body_bytes} bytes; it was read no further.",
        415: "The body is not plain JSON: Content-Type application/json and no "
        "Content-Encoding (or identity) are required.",
        500: "The service failed; its log says why (the answer does not).",
        501: "The model has no exact attributions (a multiclass model, an estimator without "
        "an exact method, or a bento built before explanations): `error` says why.",
        503: "The model is not loaded yet (see /readyz).",
        504: f"Not answered within {timeout_seconds:g} seconds.",
    }
    return {
        str(status): {
            "description": why[status],
            "content": {"application/json": {"schema": {"$ref": REF + "Problem"}}},
        }
        for status in statuses
    }


def _label(facts: ApiFacts) -> dict[str, Any]:
    """A value of the target: one of the classes (a classifier), else a number."""
    if not facts.classifier:
        return {"type": "number"}
    if facts.classes:
        return {"enum": list(facts.classes)}
    return {"anyOf": [{"type": "integer"}, {"type": "string"}]}


def _answer(facts: ApiFacts, batch: bool) -> dict[str, Any]:
    """The 200 body of /predict or /predict_batch (ModelService.answer)."""
    if facts.multiclass:
        row = _multiclass_answer(facts)
    elif facts.classifier:
        row = {
            "probability": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "the probability of the positive class",
            },
            "decision": {**_label(facts), "description": "the class at the threshold"},
        }
    else:
        row = {"prediction": {"type": "number"}}
    echoed = {
        k: {"description": "the key sent with the row, echoed (data.roles)"} for k in facts.keys
    }
    common = {
        "model_version": {"type": "string", "description": "the registered model's version"},
        "request_id": {"type": "string", "description": "the X-Request-Id header's value"},
    }
    names = ["champion", "challenger", *(["mixed"] if batch else [])]
    each = {"type": "object", "required": list(row), "properties": {**echoed, **row}}
    if batch:
        if facts.variants:  # a batch the two models shared: each row says which answered
            each["properties"] = {**echoed, **row, "variant": {"type": "string"}, **common}
            each["properties"].pop("request_id")
        body = {
            "title": "PredictBatchAnswer",
            "type": "object",
            "required": ["predictions", *common],
            "properties": {"predictions": {"type": "array", "items": each}, **common},
        }
    else:
        body = {
            "title": "PredictAnswer",
            "type": "object",
            "required": [*row, *common],
            "properties": {**echoed, **row, **common},
        }
    if facts.variants:
        body["required"].append("variant")
        body["properties"]["variant"] = {"type": "string", "enum": names}
    return body


REASON: dict[str, Any] = {
    "type": "object",
    "required": ["column", "contribution", "value"],
    "properties": {
        "column": {
            "type": "string",
            "description": "a feature column: the contract's name, or one the project's "
            "feature code makes",
        },
        "contribution": {
            "type": "number",
            "description": "what the column's value adds to the raw score (signed), against "
            "the base value",
        },
        "value": {"description": "the row's value of the column, as sent (or as made)"},
    },
}
ATTRIBUTION: dict[str, Any] = {
    "type": "object",
    "description": "base_value + the sum of contributions = raw_score (to rounding): the "
    "positive class's log-odds, a forest's probability, or the prediction (`scale`); a "
    "multiclass model's: the decided class's probability (a forest) or centred logit (its "
    "logit less the mean of every class's)",
    "required": ["method", "scale", "base_value", "raw_score", "contributions"],
    "properties": {
        "class": {"description": "the class explained (multiclass: the decided one)"},
        "method": {"type": "string", "enum": ["exact-linear", "treeshap", "lightgbm-treeshap"]},
        "scale": {
            "type": "string",
            "enum": ["log-odds", "probability", "prediction", "centred log-odds"],
        },
        "base_value": {"type": "number"},
        "raw_score": {"type": "number"},
        "contributions": {
            "type": "object",
            "description": "every feature column's contribution",
            "additionalProperties": {"type": "number"},
        },
    },
}


def _explained(facts: ApiFacts, batch: bool) -> dict[str, Any]:
    """The 200 body of /explain or /explain_batch: /predict's, each row with its reasons
    (largest |contribution| first) and its attribution."""
    body = _answer(facts, batch)
    body["title"] = body["title"].replace("Predict", "Explain")
    row = body["properties"]["predictions"]["items"] if batch else body
    reasons = {"type": "array", "minItems": 1, "maxItems": facts.top_k, "items": REASON}
    attribution = copy.deepcopy(ATTRIBUTION)
    if facts.multiclass:
        attribution["required"] = ["class", *attribution["required"]]
        attribution["properties"]["class"] |= _label(facts)
    row["properties"] |= {"reasons": reasons, "attribution": attribution}
    row["required"] += ["reasons", "attribution"]
    return body


def _multiclass_answer(facts: ApiFacts) -> dict[str, Any]:
    """A multiclass row's answer: the decided class and each class's probability."""
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    probabilities: dict[str, Any] = {
        "type": "object",
        "description": "each class's probability (they sum to 1), keyed by the class label "
        "as a string",
        "additionalProperties": probability,
    }
    if facts.classes:
        keys = [str(c) for c in facts.classes]
        probabilities |= {
            "required": keys,
            "properties": dict.fromkeys(keys, probability),
            "additionalProperties": False,
        }
    return {
        "class": {
            **_label(facts),
            "description": "the most probable class (argmax of predict_proba; on a tie, the "
            "first in the model's class order)",
        },
        "probabilities": probabilities,
    }


def _model_info() -> dict[str, Any]:
    strings = {"type": "object", "additionalProperties": {"type": "string"}}
    return {
        "title": "ModelInfo",
        "type": "object",
        "required": ["model_version", "ready", "lineage", "threshold", "scorer", "contract"],
        "properties": {
            "model_version": {"type": "string"},
            "ready": {"type": "boolean", "description": "loaded and self-checked"},
            "lineage": {**strings, "description": "run, commit, data and params hashes"},
            "threshold": {"type": "number"},
            "scorer": {"type": "string", "description": "numpy, tree, onnx or pipeline"},
            "explain": {
                "type": "object",
                "description": "how /explain answers: `method` and `scale`, or (`method` "
                "null) the `reason` it answers 501",
            },
            "contract": {"type": "object", "description": "the row's JSON schema"},
            "strategy": {"type": "object", "description": "serving.strategy"},
            "challenger": {"type": "object", "description": "with a challenger: its lineage"},
        },
    }


def _outcome(op: dict[str, Any], schemas: dict[str, Any], facts: ApiFacts) -> None:
    """/outcome takes one of two bodies: one row's outcome (`Outcome`: request_id, row,
    outcome) or several (`{"outcomes": [Outcome, ...]}`); fields of both, or neither, are
    refused. The outcome is one of the model's classes (a regression: a number)."""
    outcome = schemas["Outcome"]
    outcome["properties"]["outcome"] = {
        **_label(facts),
        "description": outcome["properties"]["outcome"].get("description", ""),
    }
    many = op["requestBody"]["content"]["application/json"]["schema"]["properties"]["outcomes"]
    schemas["Outcomes"] = {
        "type": "object",
        "title": "Outcomes",
        "description": "The observed outcomes of several answered rows.",
        "required": ["outcomes"],
        "properties": {"outcomes": {k: v for k, v in many.items() if k != "default"}},
        "additionalProperties": False,
    }
    op["requestBody"]["content"]["application/json"]["schema"] = {
        "oneOf": [{"$ref": REF + "Outcome"}, {"$ref": REF + "Outcomes"}]
    }
    recorded = {
        "title": "OutcomeAnswer",
        "type": "object",
        "required": ["recorded", "verified"],
        "properties": {
            "recorded": {"type": "integer", "minimum": 1},
            "verified": {
                "type": "boolean",
                "description": "every request id was answered by the worker that recorded it",
            },
        },
    }
    _operation(op, facts, recorded)
    op["responses"]["404"] = {
        **_errors((404,), facts.timeout_seconds)["404"],
        "headers": {"X-Request-Id": REQUEST_ID_HEADER},
    }
    if not facts.one_worker:
        op["responses"]["202"] = {
            "description": "Recorded, not verified: another worker may have answered the "
            "request (the records are joined later: mlgate outcomes import).",
            "content": {"application/json": {"schema": recorded}},
            "headers": {"X-Request-Id": REQUEST_ID_HEADER},
        }
    label = facts.classes[0] if facts.classes else (0 if facts.classifier else 0.0)
    _example(op, {"request_id": "8c0f6a1e0e2b4bb39a6d1d5bb0f1f0aa", "row": 0, "outcome": label})


def _example(op: dict[str, Any], body: dict[str, Any]) -> None:
    op["requestBody"]["content"]["application/json"]["example"] = body


class PublishedDocument:
    """ASGI middleware: GET /docs.json answers the OpenAPI document that says what the service
    answers (`document()`: its bytes and whether they are final, i.e. made once the model is
    loaded: kept from then on), not BentoML's own."""

    def __init__(self, app: Any, *, document: Callable[[], tuple[bytes, bool]]) -> None:
        self.app = app
        self.make = document
        self.document: bytes | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/docs.json" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        body = self.document
        if body is None:
            body, final = self.make()
            self.document = body if final else None
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
