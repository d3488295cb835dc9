"""Champion and challenger in one service: the models as variants, who answers which row
(canary/ab), and the shadow that scores off the response path (serving.strategy)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import random
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlgate.serving.build import MODEL_FILE, REFERENCE_FILE
from mlgate.serving.features import EVERY_CLASS
from mlgate.serving.feedback import SCHEMA_VERSION, FeedbackSink, error_record, record_time
from mlgate.serving.metrics import SHADOW

# shadow mode: requests waiting for the challenger; when full, the challenger's work is
# dropped and counted (a slow challenger never holds memory or the champion's answers)
SHADOW_QUEUE_REQUESTS = 1000
# reference rows the explainer re-explains at load (a forest's TreeSHAP: milliseconds a row;
# the build checked it on the whole test split)
EXPLAIN_CHECK_ROWS = 20
LOG = logging.getLogger("mlgate.service")


class Variant:
    """One packaged model as the service uses it: its scorer, version and classes, loaded
    from its BentoML model and checked against the reference rows the Pipeline scored at
    build time. The champion always; the challenger beside it (serving.strategy)."""

    def __init__(
        self,
        name: str,
        model: Any,
        lineage: dict[str, str],
        scorer_kind: str,
        *,
        threshold: float,
        positive: Any,
        classifier: bool,
        features: Sequence[str],
        multiclass: bool = False,
    ) -> None:
        self.name = name
        self.model = model  # a BentoML model: files by path_of
        self.lineage = lineage
        self.version = lineage.get("version", "unknown")
        self.scorer_kind = scorer_kind
        self.threshold = threshold
        self.classifier = classifier  # binary: a positive class and a threshold
        self.multiclass = multiclass
        self.positive = positive if classifier else EVERY_CLASS if multiclass else None
        self.features = list(features)
        self.negative: Any = None
        self.classes: list[Any] = []
        self.scorer: Any = None
        self.explainer: Any = None  # what /explain answers with; None: `unexplained` says why
        self.unexplained = "not loaded"

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
            self.scorer = make_scorer(model, self.positive, self.features)
            labelled = self.classifier or self.multiclass
            fitted = getattr(model, "classes_", []) if labelled else []
            classes = [c.item() if hasattr(c, "item") else c for c in fitted]
        self.classes = list(classes or [])
        self.negative = next((c for c in self.classes if c != self.positive), None)
        # Self-check: this process scores the reference rows as the Pipeline did at build time.
        with open(self.model.path_of(REFERENCE_FILE), encoding="utf-8") as fh:
            reference = json.load(fh)
        got = self.scorer.scores(reference["rows"])
        if not np.allclose(got, reference["scores"], rtol=0, atol=PARITY_TOLERANCE):
            return f"the {self.name}'s scorer disagrees with the Pipeline on the reference rows"
        self._load_explainer(read, reference)
        return None

    def _load_explainer(self, read: Any, reference: dict[str, Any]) -> None:
        """The explainer `mlgate build` stored and checked, checked again as the scorer is:
        its raw score through the link gives the first reference rows' scores."""
        import numpy as np

        from mlgate.serving.explainers import PARITY, Unexplained, load_explainer, scores_of
        from mlgate.serving.scorer import PipelineScorer

        def pipeline() -> Any:  # the Pipeline explains: unpickled once, here
            import joblib

            if isinstance(self.scorer, PipelineScorer):
                return self.scorer.model
            return joblib.load(self.model.path_of(MODEL_FILE))

        try:
            self.explainer = load_explainer(read, self.scorer, pipeline)
        except Unexplained as err:  # no exact method: the build said so, /explain says so
            self.unexplained = str(err)
            return
        # a damaged explainer file: /predict still serves, /explain answers 501 saying why
        except (OSError, ValueError, KeyError) as err:
            self.unexplained = f"the {self.name}'s explainer did not load ({type(err).__name__})"
        else:
            rows = reference["rows"][:EXPLAIN_CHECK_ROWS]
            score = scores_of(self.explainer.scale, self.explainer.every_class(rows).raw)
            if np.allclose(score, reference["scores"][: len(rows)], rtol=0, atol=PARITY):
                return
            self.unexplained = f"the {self.name}'s explainer disagrees with the Pipeline"
        self.explainer = None
        print(f"mlgate service: /explain unavailable: {self.unexplained}", file=sys.stderr)

    def answers(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each row's answer: probability and decision at the threshold (a regressor's
        score is the prediction: no decision to make; a multiclass model's, the class and
        every class's probability)."""
        if self.multiclass:
            return self._classes(records)
        scores = self.scorer.scores(records).tolist()
        if not self.classifier:
            return [{"prediction": value} for value in scores]
        return [
            {
                "probability": score,
                "decision": self.positive if score >= self.threshold else self.negative,
            }
            for score in scores
        ]

    def explain_info(self) -> dict[str, Any]:
        """How /explain answers for this model (/model_info): its method and scale, or why not."""
        if self.explainer is None:
            return {"method": None, "reason": self.unexplained}
        return {"method": self.explainer.method, "scale": self.explainer.scale}

    def explained(self, records: list[dict[str, Any]], top_k: int) -> list[dict[str, Any]]:
        """Each row's answer with its reasons and attribution (an explainer is loaded); a
        multiclass answer's are for the class it decided."""
        from mlgate.serving.explainers import explanations

        answers = self.answers(records)
        decided = [self.classes.index(a["class"]) for a in answers] if self.multiclass else None
        found = self.explainer.explain(records, decided)
        for answer, why in zip(
            answers, explanations(self.explainer, found, records, top_k), strict=True
        ):
            answer.update(why)
        return answers

    def _classes(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A multiclass answer: the most probable class, the first of them in the model's
        classes_ order on a tie (np.argmax takes the first, as scikit-learn's predict), as
        the training data had it, and each class's probability keyed by the label (JSON
        object keys are strings)."""
        probabilities = self.scorer.scores(records)
        keys = [str(c) for c in self.classes]
        return [
            {"class": self.classes[int(best)], "probabilities": dict(zip(keys, p, strict=True))}
            for best, p in zip(probabilities.argmax(axis=1), probabilities.tolist(), strict=True)
        ]


def challenger_point(value: Any) -> float:
    """Where an entity falls in [0, 1): the same value lands at the same point in every
    process and every release (a stable hash; Python's hash() is salted per process)."""
    digest = hashlib.blake2b(str(value).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign(
    records: list[dict[str, Any]],
    header: str | None,
    champion: Variant,
    challenger: Variant,
    share: float,
    field: str | None,
) -> list[Variant]:
    """canary/ab: which model answers each row. Sticky by serving.strategy.key: a `field`
    (per row) or a header (its value: `header`, per request); without a key, or without
    its value in the request, each request is drawn on its own."""
    values = [r.get(field) for r in records] if field is not None else [header] * len(records)
    drawn = random.random()
    return [
        challenger if (drawn if value is None else challenger_point(value)) < share else champion
        for value in values
    ]


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
            threshold = {"threshold": self.variant.threshold} if self.variant.classifier else {}
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
                        **threshold,
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
        # the type only: an exception's message may quote the request's values
        error = f"{kind}: the challenger failed to score the request's rows"
        self.sink.record(
            error_record(
                request_id,
                endpoint,
                500,
                error,
                started,
                self.variant.version,
                variant=self.variant.name,
                shadow=True,
            )
        )
