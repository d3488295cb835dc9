"""params.yaml, loaded once into typed, frozen, validated objects."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from mlgate.config_deploy import Deploy
from mlgate.config_serving import Serving
from mlgate.errors import MlgateError, shown
from mlgate.io import load_yaml
from mlgate.names import PRODUCTION
from mlgate.section import Section as _Section

DEFAULT_PARAMS = Path("params.yaml")


class Project(_Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class DatasetRules(_Section):
    """Whole-dataset rules of the data contract, checked at validate beside the schema."""

    min_rows: int = Field(default=50, ge=1)
    min_rows_per_class: int = Field(default=10, ge=1)  # classification only
    max_duplicate_share: float = Field(default=0.1, ge=0, le=1)  # rows repeating an earlier row


class DataSource(_Section):
    """Where `mlgate data refresh` takes a new version of the raw data from, and its guardrails."""

    path: str = ""  # a CSV file or URL (pandas reads http(s)://); what `command` writes
    command: str = ""  # a shell command that writes `path` first (e.g. a warehouse export)
    command_timeout: float = Field(default=3600, gt=0)  # seconds; then it and its children end
    # or the service's own traffic: feedback records joined with late labels (outcomes: a CSV
    # of request_id, row and the target column); instead of `path`
    feedback: str = ""
    outcomes: str = ""
    mode: Literal["append", "replace"] = "append"
    dedupe: bool = True  # drop new rows repeating a row already there or an earlier new row
    window_column: str = ""  # with window_days: keep rows whose date is within the window
    window_days: float | None = Field(default=None, gt=0)
    max_shrink: float = Field(default=0.1, ge=0, le=1)  # share of rows a refresh may remove
    max_class_shift: float = Field(default=0.1, ge=0, le=1)  # change of any class's share
    report: Path = Path("artifacts/data/refresh.md")  # the data summary (the PR's body)


# A column's role (data.roles; unlisted: a feature candidate). Only a feature reaches the model
# and the monitor; a key is echoed in answers, a timestamp checked as an ISO 8601 date/time.
Role = Literal["feature", "key", "timestamp", "text", "ignored"]


class Data(_Section):
    raw: Path
    schema_ref: str = Field(alias="schema", pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    target: str
    positive_label: int | str = 1  # classification (two classes) only
    # classification: two classes, a positive one scored; multiclass: 3 or more classes, each
    # with its probability, decided by the most probable one (positive_label is not used)
    task: Literal["classification", "multiclass", "regression"] = "classification"
    validated: Path
    summary: Path
    contract: DatasetRules = DatasetRules()
    source: DataSource = DataSource()
    roles: dict[str, Role] = Field(default_factory=dict)

    def role_columns(self, role: str) -> list[str]:
        """The columns data.roles gives `role`, in the order listed."""
        return [c for c, r in self.roles.items() if r == role]

    @property
    def not_features(self) -> list[str]:
        """Columns whose role keeps them from the model and the monitor."""
        return [c for c, r in self.roles.items() if r != "feature"]

    @property
    def classes(self) -> bool:
        """The target is a class label (two classes or more), not an amount."""
        return self.task != "regression"


class Split(_Section):
    test_size: float = Field(gt=0, lt=1)
    seed: int = 42
    stratify: bool = True
    # time: train on the past, test on the latest test_size share (data.roles' timestamp)
    by: Literal["random", "time"] = "random"
    train: Path
    test: Path


class Derived(_Section):
    """The columns features.transform adds, by kind: the standard preprocessing scales the
    numeric ones and one-hot encodes the categorical ones, as it does the contract's."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()


# What features.from_timestamp derives from a timestamp column inside the model: the days from
# it to the latest training date (fixed at fit), its month (1-12), weekday (0 = Monday), hour
TimestampPart = Literal["days_since", "month", "weekday", "hour"]


class FromText(_Section):
    """features.from_text: a text column (data.roles) as TF-IDF features inside the model."""

    max_features: int = Field(default=100, ge=1, le=5000)  # the vocabulary: its commonest terms


class Features(_Section):
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    # features computed inside the model from a timestamp or a text column of data.roles
    # (docs/CUSTOMIZING.md#dates-and-free-text-as-features): fitted in train, pickled with it
    from_timestamp: dict[str, tuple[TimestampPart, ...]] = Field(default_factory=dict)
    from_text: dict[str, FromText] = Field(default_factory=dict)
    # fill missing values (median / most frequent) before scaling and encoding
    impute: bool = False
    # numeric features the prediction must follow: +1 rises with it, -1 falls (model tests)
    monotone: dict[str, Literal[-1, 1]] = Field(default_factory=dict)
    # the project's own feature code, `package.module:function`: the function returns a
    # scikit-learn transformer run on the feature columns before the standard preprocessing,
    # fitted in train, pickled inside the model, run by serving and batch (one implementation)
    transform: str | None = Field(
        default=None, pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$"
    )
    derived: Derived = Field(default_factory=Derived)

    @field_validator("from_timestamp")
    @classmethod
    def _parts_named_once(cls, stamps: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for column, parts in stamps.items():
            if not parts or len(set(parts)) != len(parts):
                raise ValueError(f"{column}: name each part once, e.g. [days_since, month]")
        return stamps

    @model_validator(mode="after")
    def _not_empty_no_overlap(self) -> Features:
        if not self.all and not self.derived_from:
            raise ValueError(
                "list at least one feature under numeric or categorical (or from_timestamp, "
                "from_text)"
            )
        both = set(self.numeric) & set(self.categorical)
        if both:
            raise ValueError(f"features listed as both numeric and categorical: {sorted(both)}")
        stray = set(self.monotone) - set(self.numeric)
        if stray:
            raise ValueError(f"monotone names {sorted(stray)}, which are not numeric features")
        made = [*self.derived.numeric, *self.derived.categorical]
        if made and not self.transform:
            raise ValueError(f"derived columns {made} need a features.transform that makes them")
        clash = sorted(set(made) & set(self.all) | {c for c in made if made.count(c) > 1})
        if clash:
            raise ValueError(f"derived columns {clash} are named twice (a derived column is new)")
        return self

    @property
    def all(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def derived_from(self) -> list[str]:
        """The timestamp and text columns the model derives features from (not features
        themselves: never bounded by the training range nor monitored)."""
        return [*self.from_timestamp, *self.from_text]  # one role a column: never both

    @property
    def inputs(self) -> list[str]:
        """The columns the model reads: the features and the columns it derives some from."""
        return [*self.all, *self.derived_from]


class Train(_Section):
    seed: int = 42
    # any scikit-learn-compatible estimator by its import path: sklearn.linear_model.
    # LogisticRegression, lightgbm.LGBMClassifier, or a class of the project's own package
    estimator: str | None = Field(default=None, pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    # full control: `package.module:function` returning the whole model (features + estimator,
    # e.g. a Pipeline) instead of mlgate's preprocessing + train.estimator
    pipeline: str | None = Field(
        default=None, pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$"
    )
    model: Path
    run: Path

    @model_validator(mode="after")
    def _estimator_or_pipeline(self) -> Train:
        if (self.estimator is None) == (self.pipeline is None):
            raise ValueError("name the model: train.estimator, or train.pipeline (not both)")
        if self.pipeline and self.hyperparameters:
            raise ValueError(
                "train.hyperparameters apply to train.estimator; train.pipeline's function "
                "sets its own"
            )
        return self

    @property
    def name(self) -> str:
        """What is trained, for messages and run names."""
        return self.estimator or str(self.pipeline)


class SensitiveAttribute(_Section):
    bands: tuple[float, ...] | None = None

    @field_validator("bands")
    @classmethod
    def _increasing(cls, bands: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if bands is not None and (not bands or list(bands) != sorted(set(bands))):
            raise ValueError("bands must be a non-empty, strictly increasing list of cut points")
        return bands


class Bootstrap(_Section):
    """The bootstrap behind every interval evaluate writes and the champion rule uses."""

    resamples: int = Field(default=1000, ge=100, le=100_000)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)  # of each interval
    seed: int = 0  # the same test rows give the same intervals


class Chance(_Section):
    """A permutation test of the training procedure: the model must beat what the same
    training reaches on shuffled labels, scored on the same test rows
    (docs/CUSTOMIZING.md#beats-chance)."""

    refits: int = Field(default=0, ge=0, le=1000)  # fits on shuffled training labels; 0: off
    max_rows: int = Field(default=20_000, ge=100)  # training rows each refit sees (a sample)
    confidence: float = Field(default=0.99, gt=0.5, lt=1)  # of the bound a null draw stays under

    @field_validator("refits")
    @classmethod
    def _enough_to_spread(cls, refits: int) -> int:
        # the bound needs the refits' standard deviation: a handful at least
        if 0 < refits < 5:
            raise ValueError("0 (off) or at least 5 fits: the bound needs their spread")
        return refits


class Evaluate(_Section):
    threshold: float = Field(default=0.5, ge=0, le=1)
    metrics: Path
    fairness: Path
    plots: Path
    # the bootstrap intervals of every metric and fairness gap (docs/CUSTOMIZING.md#intervals)
    intervals: Path = Path("artifacts/intervals.json")
    # what drives the model: mean |contribution| per column on the test split
    # (docs/CUSTOMIZING.md#what-drives-the-model)
    importance: Path = Path("artifacts/importance.json")
    bootstrap: Bootstrap = Field(default_factory=Bootstrap)
    chance: Chance = Field(default_factory=Chance)
    sensitive: dict[str, SensitiveAttribute] = Field(default_factory=dict)


class Champion(_Section):
    metric: str
    tolerance: float = Field(default=0.0, ge=0)
    # true: tolerance is a share of the champion's metric (0.01 = 1%), for metrics in the
    # target's units (rmse, mae); false: in the metric's own units
    relative: bool = False
    alias: str = PRODUCTION


# metrics evaluate reports whose value lies in [0, 1] (classification) or is never negative
BOUNDED_METRICS = frozenset(
    {"roc_auc", "average_precision", "accuracy", "precision", "recall", "f1", "brier"}
    | {"balanced_accuracy", "f1_macro", "f1_weighted", "roc_auc_ovr"}  # multiclass
)
# multiclass: one class's precision or recall, `precision:<class>` (bounded too)
PER_CLASS_METRICS = ("precision:", "recall:")
NON_NEGATIVE_METRICS = frozenset({"log_loss", "mae", "rmse"})
# metrics where a smaller value is better: the champion rule, the chance bound and the PR
# report's "better"/"worse" flip their direction for them
LOWER_IS_BETTER = frozenset({"rmse", "mae", "brier", "log_loss"})


# What a gate does when the interval straddles its bound (the check is "uncertain"):
# pass (with a warning), fail, or point: the point estimate decides, as before intervals.
UncertainRule = Literal["pass", "fail", "point"]


class Uncertain(_Section):
    quality: UncertainRule = "pass"  # min_metrics / max_metrics
    fairness: UncertainRule = "pass"  # max_fairness_gap
    champion: UncertainRule = "pass"  # the paired difference with the champion


class Gate(_Section):
    report: Path
    uncertain: Uncertain = Field(default_factory=Uncertain)
    min_metrics: dict[str, float] = Field(default_factory=dict)
    max_metrics: dict[str, float] = Field(default_factory=dict)
    max_fairness_gap: dict[
        Literal["demographic_parity_difference", "equalized_odds_difference", "mae_difference"],
        dict[str, float],
    ] = Field(default_factory=dict)
    champion: Champion | None = None

    @field_validator("uncertain", mode="before")
    @classmethod
    def _one_rule_for_all(cls, value: Any) -> Any:
        # `uncertain: point` (or pass, fail) is the same rule for every gate kind
        if isinstance(value, str):
            return {"quality": value, "fairness": value, "champion": value}
        return value

    @field_validator("min_metrics", "max_metrics")
    @classmethod
    def _within_range(cls, thresholds: dict[str, float]) -> dict[str, float]:
        # a threshold outside its metric's range passes (or fails) every model: a typo
        for name, value in thresholds.items():
            if not math.isfinite(value):
                raise ValueError(f"{name}: a threshold must be a finite number")
            bounded = name in BOUNDED_METRICS or name.startswith(PER_CLASS_METRICS)
            if bounded and not 0 <= value <= 1:
                raise ValueError(f"{name} is between 0 and 1, so its threshold must be too")
            if name in NON_NEGATIVE_METRICS and value < 0:
                raise ValueError(f"{name} is never negative, so its threshold cannot be")
        return thresholds

    @field_validator("max_fairness_gap")
    @classmethod
    def _gaps_within_range(cls, gaps: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for gap, by_group in gaps.items():
            for column, value in by_group.items():
                bounded = gap != "mae_difference"  # differences of rates: 0 to 1
                if not math.isfinite(value) or value < 0 or (bounded and value > 1):
                    raise ValueError(
                        f"{gap}.{column} must be {'between 0 and 1' if bounded else '0 or more'}"
                    )
        return gaps


class Tracking(_Section):
    uri: str = "sqlite:///mlflow.db"
    artifacts: Path = Path("mlartifacts")


class Monitor(_Section):
    report: Path = Path("artifacts/monitor")
    min_rows: int = Field(default=100, ge=1)
    bins: int = Field(default=10, ge=2)
    max_psi: float = Field(default=0.2, gt=0)
    alpha: float = Field(default=0.01, gt=0, lt=1)
    max_prediction_psi: float = Field(default=0.2, gt=0)
    max_error_rate: float = Field(default=0.05, ge=0, le=1)
    # attribution drift: half the summed change of each column's share of the model's mean
    # |contribution|, training rows against served ones (0: leans the same; 1: on other columns)
    max_attribution_shift: float = Field(default=0.1, gt=0, le=1)


class Compare(_Section):
    """`mlgate compare`: champion against challenger on recorded traffic (docs/COMPARE.md)."""

    report: Path = Path("artifacts/compare")
    min_rows: int = Field(default=200, ge=1)  # per variant: fewer predictions => collect
    min_outcomes: int = Field(default=100, ge=1)  # per variant: fewer => collect
    max_error_rate: float = Field(default=0.02, ge=0, le=1)  # challenger's; above => abort
    max_metric_loss: float = Field(default=0.01, ge=0)  # in the metric's units (or see relative)
    relative: bool = False  # max_metric_loss is a share of the champion's metric (rmse, mae)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)  # of the difference's interval
    bootstrap: int = Field(default=1000, ge=100, le=100_000)  # resamples
    seed: int = 0


class Batch(_Section):
    """`mlgate predict` (docs/BATCH.md)."""

    model: str = Field(default=PRODUCTION, min_length=1)  # an alias or a version number
    format: Literal["parquet", "csv"] = "parquet"
    keys: tuple[str, ...] = ()  # input columns copied to the output; () => every input column
    chunk_rows: int = Field(default=50_000, ge=1)
    # quarantined rows / rows read above this => exit 1 (the output is kept, for inspection)
    max_quarantined_share: float = Field(default=1.0, ge=0, le=1)


# ---------------------------------------------------------------- deploy (docs/WORKFLOWS.md)


class Params(_Section):
    project: Project
    data: Data
    split: Split
    features: Features
    train: Train
    evaluate: Evaluate
    gate: Gate
    tracking: Tracking = Tracking()
    serving: Serving = Serving()
    deploy: Deploy = Deploy()
    monitor: Monitor = Monitor()
    compare: Compare = Compare()
    batch: Batch = Batch()

    @model_validator(mode="after")
    def _cross_checks(self) -> Params:
        if self.data.target in self.features.all:
            raise ValueError(f"data.target {self.data.target!r} is also listed as a feature")
        self._check_roles()
        if self.train.pipeline and self.features.transform:
            raise ValueError(
                "features.transform runs inside mlgate's model; with train.pipeline (your whole "
                "model) put the feature step in that pipeline"
            )
        stratified = self.split.stratify and self.data.classes and self.split.by == "random"
        if stratified and self.data.contract.min_rows_per_class < 2:
            raise ValueError(
                "data.contract.min_rows_per_class must be at least 2: a stratified split puts "
                "every class in both train and test"
            )
        # regression measures error by group (mae_difference); classification, decisions
        task_gaps = {
            "classification": {"demographic_parity_difference", "equalized_odds_difference"},
            # multiclass: the largest of the per-class (one-vs-rest) gaps
            "multiclass": {"demographic_parity_difference", "equalized_odds_difference"},
            "regression": {"mae_difference"},
        }[self.data.task]
        wrong = set(self.gate.max_fairness_gap) - task_gaps
        if wrong:
            raise ValueError(
                f"gate.max_fairness_gap {sorted(wrong)} do not apply to {self.data.task} "
                f"(use: {', '.join(sorted(task_gaps))})"
            )
        for gap in self.gate.max_fairness_gap.values():
            unknown = set(gap) - set(self.evaluate.sensitive)
            if unknown:
                raise ValueError(
                    f"gate.max_fairness_gap names {sorted(unknown)}, "
                    f"which are not in evaluate.sensitive {sorted(self.evaluate.sensitive)}"
                )
        return self

    def _check_roles(self) -> None:
        for name in self.data.not_features:
            role = self.data.roles[name]
            if name == self.data.target:
                raise ValueError(f"data.roles: the target {name!r} cannot be a {role}")
            if name in self.features.all:
                raise ValueError(
                    f"{name!r} is a {role} (data.roles) and listed as a feature: one or the other"
                )
            if name in self.evaluate.sensitive:
                raise ValueError(f"{name!r} is a {role} (data.roles) and a sensitive attribute")
        for key, role in (("from_timestamp", "timestamp"), ("from_text", "text")):
            wrong = [c for c in getattr(self.features, key) if self.data.roles.get(c) != role]
            if wrong:
                raise ValueError(
                    f"features.{key} names {wrong}, which data.roles does not make a {role} "
                    f"(e.g. `roles: {{{wrong[0]!r}: {role}}}`)"
                )
        stamps = self.data.role_columns("timestamp")
        if self.split.by == "time" and len(stamps) != 1:
            raise ValueError(
                "split.by: time needs one timestamp column in data.roles (e.g. `roles: "
                f"{{signup_date: timestamp}}`), not {len(stamps)}"
            )

    @property
    def model_name(self) -> str:
        return self.project.name

    @property
    def tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or self.tracking.uri

    def fingerprint(self) -> str:
        """A hash of the parameters that determine the trained model, stable under YAML
        formatting. Thresholds, serving and deploy settings are left out: changing them
        does not change the model, so it must not make `register` refuse it."""
        model_sections = self.model_dump(
            mode="json", by_alias=True, include={"data", "split", "features", "train"}
        )
        blob = json.dumps(model_sections, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        given = e.get("input")
        got = "" if e["type"] == "missing" or isinstance(given, dict) else f" (got {shown(given)})"
        lines.append(f"  - {key}: {shown(msg, 300)[1:-1]}{got}")
    return "\n".join(lines)


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise MlgateError(
            f"{source}: expected a mapping at the top level, got {type(raw).__name__}"
        )
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise MlgateError(f"{source} is invalid:\n{_format_errors(err)}") from None


def load_params(path: Path | str = DEFAULT_PARAMS) -> Params:
    path = Path(path)
    what = f"--params {shown(str(path), 200)}"
    try:
        with path.open(encoding="utf-8") as fh:
            raw = load_yaml(fh, what)
    except FileNotFoundError:
        raise MlgateError(
            f"{path} not found: run mlgate from the repository root or pass --params"
        ) from None
    except IsADirectoryError:
        raise MlgateError(f"{what} is a folder: pass the params.yaml file") from None
    except OSError as err:
        raise MlgateError(f"{what} cannot be read: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise MlgateError(f"{what} is not UTF-8 text: pass a YAML file") from None
    return parse_params(raw, str(path))
