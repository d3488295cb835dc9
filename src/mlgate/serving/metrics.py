"""The service's Prometheus counters (GET /metrics), made once per process.

Their own module: `mlgate build` imports the service module afresh for each bento it builds in
one process (`mlgate release image` builds the candidate's and the trial's), and a counter
made twice is refused by the registry (DuplicateTimeseries).
"""

from __future__ import annotations

import bentoml

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
