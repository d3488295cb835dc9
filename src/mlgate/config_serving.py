"""params.yaml's `serving` section: the service's limits and scoring path, its prediction
records (feedback), champion and challenger (strategy) and reason codes (explain)
(docs/SERVING.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from mlgate.names import CHALLENGER, PRODUCTION
from mlgate.section import Section as _Section


class Feedback(_Section):
    sink: Literal["files", "stdout", "off"] = "files"
    path: Path = Path("feedback")
    max_file_mb: float = Field(default=64, gt=0)
    flush_seconds: float = Field(default=1.0, gt=0)
    max_queue_records: int = Field(default=20_000, ge=1)  # full => new records dropped, counted
    keep_mb: float | None = Field(default=1024, gt=0)  # all files in `path`; oldest deleted first
    keep_days: float | None = Field(default=30, gt=0)  # older rotated files deleted


class Strategy(_Section):
    """Champion and challenger in one service (docs/SERVING.md#champion-and-challenger)."""

    mode: Literal["none", "shadow", "canary", "ab"] = "none"
    # the model packaged beside serving.model when mode != none: an alias or a version number
    challenger: str = Field(default=CHALLENGER, min_length=1)
    # canary/ab: the share of entities (or requests, without a key) the challenger answers
    share: float = Field(default=0.1, gt=0, lt=1)
    # sticky assignment: a request field (checked against the contract at build) or
    # `header:<name>`; None => each request is assigned on its own
    key: str | None = Field(
        default=None, pattern=r"^([A-Za-z_][A-Za-z0-9_]*|header:[A-Za-z0-9!#$%&'*+.^_`|~-]+)$"
    )

    @property
    def header(self) -> str | None:
        """The header name (lower case) when the key is `header:<name>`."""
        if self.key and self.key.startswith("header:"):
            return self.key.removeprefix("header:").lower()
        return None

    @property
    def field(self) -> str | None:
        """The request field when the key names one."""
        return self.key if self.key and not self.key.startswith("header:") else None


class Explain(_Section):
    """POST /explain and /explain_batch (docs/SERVING.md#reason-codes-explain)."""

    # reasons in each answer, by |contribution| (a model with fewer columns: all of them)
    top_k: int = Field(default=4, ge=1)
    # each explained row's feedback record carries its reasons (column, contribution; the
    # values are the record's inputs already)
    record: bool = True


class Serving(_Section):
    model: str = PRODUCTION
    workers: int = Field(default=1, ge=1)
    max_batch_rows: int = Field(default=1000, ge=1)
    max_body_kb: int = Field(default=1024, ge=1)
    timeout_seconds: int = Field(default=10, ge=1)
    access_log: bool = False
    tracing: bool = (
        False  # BentoML's OpenTelemetry span per request (an exporter is configured in BentoML)
    )
    # how the service scores (docs/SERVING.md#scoring-paths): auto = the fastest path whose
    # scores equal the Pipeline's within 1e-5 on the test split; onnx = ONNX Runtime or no build
    scorer: Literal["auto", "onnx", "pipeline"] = "auto"
    # /predict and /predict_batch answered by mlgate's lean route (docs/SERVING.md#speed);
    # false => by BentoML's router: the same predictions, about half the requests a second
    lean_route: bool = True
    gc_freeze: bool = True
    gc_thresholds: tuple[int, int, int] | None = (2000, 20, 1000)
    # this project's bentos and metrics dir; BENTOML_HOME wins
    bentoml_home: Path = Path(".bentoml")
    # the image keeps BentoML's compiler layer (build-essential, git): only for a package that
    # has no wheel and compiles at image build (docs/SERVING.md#the-image)
    build_tools: bool = False
    # the JSON fields carrying the rows: {"<request_field>": {...}} on /predict and
    # {"<batch_field>": [...]} on /predict_batch (default: request_field + "s")
    request_field: str = Field(default="record", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    batch_field: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    feedback: Feedback = Feedback()
    strategy: Strategy = Strategy()
    explain: Explain = Explain()

    @model_validator(mode="after")
    def _challenger_is_another_model(self) -> Serving:
        if self.strategy.mode != "none" and self.strategy.challenger == self.model:
            raise ValueError(
                f"strategy.challenger is serving.model ({self.model!r}): "
                "the challenger must be another model"
            )
        return self

    @property
    def batch_request_field(self) -> str:
        return self.batch_field or f"{self.request_field}s"
