"""`mlgate init`: a new model repository for another data set, rendered from the copier template."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import keyword
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate import __version__
from mlgate.errors import MlgateError

if TYPE_CHECKING:
    import pandas as pd

TEMPLATE_DIR = Path(__file__).parent / "template"
MAX_CATEGORIES = 20  # more distinct text values than this: an identifier or free text
WIDEN = 0.10  # schema bounds: the observed range widened by this share of its span
METRICS = {
    "classification": (
        "roc_auc",
        "average_precision",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "brier",
        "log_loss",
    ),
    "regression": ("rmse", "mae", "r2"),
}
POSITIVE_GUESSES = (1, True, "1", "yes", "true", "positive", "good", "y")


@dataclass(frozen=True)
class InitRequest:
    """Everything `mlgate init` needs; every field is checked before anything is written."""

    dest: Path
    data: Path
    target: str
    task: str | None = None
    positive_label: str | None = None
    sensitive: tuple[str, ...] = ()
    metric: str | None = None
    name: str | None = None
    template: str | None = None
    vcs_ref: str | None = None
    mlgate_path: str | None = None
    mlgate_repo: str = "OWNER/mlgate"
    mlgate_ref: str = f"v{__version__}"


# ---------------------------------------------------------------- inference (pure)


def attr_name(column: str, taken: set[str]) -> str:
    """A Python identifier for a column (the schema keeps the real name as an alias)."""
    name = re.sub(r"\W", "_", column.strip()) or "column"
    if name[0].isdigit():
        name = f"c_{name}"
    if keyword.iskeyword(name) or name in {"Config"}:
        name = f"{name}_"
    base, i = name, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def widened_bounds(low: float, high: float, integer: bool) -> tuple[float, float]:
    """[low, high] widened by WIDEN of the span, rounded outwards; >= 0 stays >= 0."""
    span = high - low or abs(high) or 1.0
    lo, hi = low - WIDEN * span, high + WIDEN * span
    if low >= 0:
        lo = max(lo, 0.0)
    if integer:
        return math.floor(lo), math.ceil(hi)
    step = 10.0 ** (math.floor(math.log10(span)) - 2)
    digits = max(0, -math.floor(math.log10(step)))
    return round(math.floor(lo / step) * step, digits), round(math.ceil(hi / step) * step, digits)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def infer_columns(
    frame: pd.DataFrame, target: str, task: str, sensitive: tuple[str, ...]
) -> list[dict[str, Any]]:
    """A first draft of the data contract and of each column's role, from the data alone."""
    import pandas as pd

    columns: list[dict[str, Any]] = []
    taken: set[str] = set()
    for name in frame.columns:
        series = frame[name]
        values = series.dropna()
        col: dict[str, Any] = {
            "name": str(name),
            "attr": attr_name(str(name), taken),
            "nullable": bool(series.isna().any()),
            "ge": None,
            "le": None,
            "isin": None,
        }
        if pd.api.types.is_bool_dtype(series):
            col.update(dtype="bool", kind="categorical")
        elif pd.api.types.is_numeric_dtype(series):
            integer = pd.api.types.is_integer_dtype(series)
            col["dtype"] = "int" if integer else "float"
            col["kind"] = "numeric"
            if len(values):
                col["ge"], col["le"] = widened_bounds(
                    float(values.min()), float(values.max()), integer
                )
            if integer and values.nunique() == len(frame) > MAX_CATEGORIES:
                col.update(kind="ignored", why="every value is distinct: an identifier?")
        else:
            col["dtype"] = "str"
            distinct = values.astype(str).unique()
            if len(distinct) <= MAX_CATEGORIES:
                col.update(kind="categorical", isin=sorted(distinct.tolist()))
            else:
                col.update(
                    kind="ignored", why=f"{len(distinct)} distinct text values: an id or free text?"
                )
        if name in sensitive:
            col["kind"] = "sensitive"
        if name == target:
            col["kind"] = "target"
            if task == "classification" and col["dtype"] != "bool":  # bool: the type suffices
                col.update(isin=sorted(_plain(v) for v in values.unique()), ge=None, le=None)
        columns.append(col)
    return columns


def sensitive_specs(frame: pd.DataFrame, sensitive: tuple[str, ...]) -> dict[str, Any]:
    """Groups per sensitive attribute: its values, or quartile bands for a numeric one."""
    import pandas as pd

    specs: dict[str, Any] = {}
    for name in sensitive:
        series = frame[name].dropna()
        if pd.api.types.is_numeric_dtype(series) and series.nunique() > MAX_CATEGORIES:
            cuts = sorted({_round_cut(float(q)) for q in series.quantile([0.25, 0.5, 0.75])})
            specs[name] = {"bands": cuts}
        else:
            specs[name] = {}
    return specs


def _round_cut(value: float) -> float | int:
    return round(value) if abs(value) >= 10 else round(value, 2)


def infer_task(series: pd.Series) -> str:
    import pandas as pd

    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    return "regression" if numeric and series.nunique() > MAX_CATEGORIES else "classification"


def choose_positive_label(classes: list[Any], given: str | None) -> Any:
    if given is not None:
        for c in classes:
            if str(c) == given or str(c).lower() == given.lower():
                return c
        raise MlgateError(f"--positive-label {given!r} is not a class of the target {classes}")
    for guess in POSITIVE_GUESSES:
        for c in classes:
            if c == guess or (isinstance(c, str) and c.lower() == str(guess).lower()):
                return c
    raise MlgateError(f"which class is the positive one? pass --positive-label (one of {classes})")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# ---------------------------------------------------------------- checks, then answers


def check_dest(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise MlgateError(f"{dest} exists and is not an empty directory: choose a new one")
    if not dest.parent.is_dir():
        raise MlgateError(f"{dest.parent} does not exist: create it first")


def read_data(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise MlgateError(f"data file {path} not found")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise MlgateError(f"{path}: not a readable CSV file: {err}") from None
    if frame.empty:
        raise MlgateError(f"{path} has a header but no rows")
    return frame


def answers_for(request: InitRequest, frame: pd.DataFrame) -> dict[str, Any]:
    """Check the request against the data and turn it into the template's answers."""
    target = request.target
    if target not in frame.columns:
        raise MlgateError(
            f"target column {target!r} is not in {request.data} "
            f"(its columns: {', '.join(map(str, frame.columns))})"
        )
    if frame[target].isna().any():
        raise MlgateError(
            f"target column {target!r} has {int(frame[target].isna().sum())} missing values: "
            "drop or fill those rows first"
        )
    task = request.task or infer_task(frame[target])
    if task not in METRICS:
        raise MlgateError(f"--task must be classification or regression, not {task!r}")
    answers: dict[str, Any] = {"task": task}
    if task == "classification":
        classes = sorted(_plain(v) for v in frame[target].unique())
        if len(classes) < 2:
            raise MlgateError(
                f"target column {target!r} has one class only ({classes[0]!r}): "
                "a classifier needs examples of both outcomes"
            )
        if len(classes) > 2:
            raise MlgateError(
                f"target column {target!r} has {len(classes)} classes: binary classification "
                "only (or pass --task regression for a continuous target)"
            )
        # the template renders it by the target's dtype (see params.yaml.jinja)
        answers["positive_label"] = str(choose_positive_label(classes, request.positive_label))
    else:
        import pandas as pd

        if not pd.api.types.is_numeric_dtype(frame[target]):
            raise MlgateError(f"regression needs a numeric target; {target!r} is not")
    unknown = [s for s in request.sensitive if s not in frame.columns]
    if unknown:
        raise MlgateError(f"sensitive attributes {unknown} are not columns of {request.data}")
    if target in request.sensitive:
        raise MlgateError(f"the target {target!r} cannot also be a sensitive attribute")
    metric = request.metric or METRICS[task][0]
    if metric not in METRICS[task]:
        raise MlgateError(
            f"--metric {metric!r} is not a {task} metric (one of: {', '.join(METRICS[task])})"
        )
    columns = infer_columns(frame, target, task, request.sensitive)
    if not any(c["kind"] in ("numeric", "categorical") for c in columns):
        raise MlgateError(f"{request.data} has no usable feature column besides the target")
    name = request.name or slug(request.dest.name)
    if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
        raise MlgateError(
            f"project name {name!r}: lower-case letters, digits and dashes, starting with a "
            "letter (pass --name)"
        )
    package = name.replace("-", "_")
    if package in ("mlgate", "credit_risk") or importlib.util.find_spec(package) is not None:
        raise MlgateError(
            f"project name {name!r}: its package {package!r} would shadow an installed module "
            "(pass another --name)"
        )
    features = [c["name"] for c in columns if c["kind"] in ("numeric", "categorical")]
    answers.update(
        project_name=name,
        package_name=package,
        # a plain file name: it is written unquoted into params.yaml and dvc commands
        data_file=re.sub(r"[^\w.-]", "_", request.data.name),
        target=target,
        sensitive=sensitive_specs(frame, request.sensitive),
        primary_metric=metric,
        columns=columns,
        impute=bool(frame[features].isna().any().any()),
        inferred_on=datetime.now(UTC).strftime("%Y-%m-%d"),
        mlgate_repo=request.mlgate_repo,
        mlgate_ref=request.mlgate_ref,
        mlgate_path=request.mlgate_path if request.mlgate_path is not None else _checkout() or "",
    )
    return answers


def _checkout() -> str | None:
    """This mlgate's own git checkout, when it runs from one (not an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    if (root / "copier.yml").is_file() and (root / ".git").exists():
        return str(root)
    return None


def template_source(given: str | None) -> str:
    """The template: as given; else this checkout (git tags = template versions); else the
    copy in the installed package."""
    return given or _checkout() or str(TEMPLATE_DIR)


# ---------------------------------------------------------------- writing


def _env() -> dict[str, str]:
    # our own venv must not leak into the new project's uv commands
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    return env


def _run(cmd: list[str], cwd: Path, what: str) -> str:
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900, check=False
        )
    except OSError as err:
        raise MlgateError(f"{what}: cannot run {cmd[0]}: {err}") from None
    except subprocess.TimeoutExpired:
        raise MlgateError(f"{what}: {' '.join(cmd)} did not finish within 15 minutes") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise MlgateError(f"{what} failed ({' '.join(cmd)} exited {proc.returncode}):\n{tail}")
    return proc.stdout


def _git_identity(cwd: Path) -> list[str]:
    proc = subprocess.run(
        ["git", "config", "user.email"], cwd=cwd, capture_output=True, text=True, check=False
    )
    return [] if proc.stdout.strip() else ["-c", "user.name=mlgate", "-c", "user.email=mlgate@init"]


def render(src: str, dest: Path, answers: dict[str, Any], vcs_ref: str | None) -> None:
    import copier
    from copier.errors import CopierError

    try:
        copier.run_copy(
            src, dest, data=answers, vcs_ref=vcs_ref, defaults=True, quiet=True, unsafe=False
        )
    except (CopierError, ValueError) as err:
        raise MlgateError(f"rendering the template {src} failed: {err}") from None
    if src == str(TEMPLATE_DIR):
        _point_answers_at_release(dest, answers)


def _point_answers_at_release(dest: Path, answers: dict[str, Any]) -> None:
    """Rendered from the installed package: record the release this copy is, so a later
    `copier update` fetches the template from the mlgate repository at that tag."""
    import yaml

    path = dest / ".copier-answers.yml"
    with path.open(encoding="utf-8") as fh:
        recorded = yaml.safe_load(fh)
    recorded["_src_path"] = f"https://github.com/{answers['mlgate_repo']}.git"
    recorded["_commit"] = answers["mlgate_ref"]
    with path.open("w", encoding="utf-8") as fh:
        fh.write("# Changes here will be overwritten by Copier; NEVER EDIT MANUALLY\n")
        yaml.safe_dump(recorded, fh, sort_keys=True)


def uv_command() -> str:
    """uv, a dependency of mlgate: the one installed beside it, so no uv on PATH is needed."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise MlgateError(
                "uv is needed to lock the new project's environment: pip install uv"
            ) from None
        return found


def create(request: InitRequest) -> Path:
    """Check everything, build the repository in a temporary folder beside DIR, rename it."""
    dest = request.dest.resolve()
    check_dest(dest)
    frame = read_data(request.data)
    answers = answers_for(request, frame)
    uv = uv_command()
    src = template_source(request.template)

    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.init-", dir=dest.parent))
    try:
        render(src, work, answers, request.vcs_ref)
        (work / "data").mkdir()
        shutil.copy2(request.data, work / "data" / answers["data_file"])
        _run(["git", "init", "-q", "-b", "main"], work, "git init")
        dvc = [sys.executable, "-m", "dvc"]
        _run([*dvc, "add", "-q", "data"], work, "dvc add")
        _run([*dvc, "push", "-q"], work, "dvc push (to the repo-local remote)")
        _run([uv, "lock", "--quiet"], work, "uv lock")
        _run(["git", "add", "-A"], work, "git add")
        message = f"Model repository from mlgate init (template {answers['mlgate_ref']})"
        _run(["git", *_git_identity(work), "commit", "-q", "-m", message], work, "git commit")
        if dest.exists():
            dest.rmdir()  # checked empty above
        work.rename(dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _summary(dest, answers)
    return dest


def _summary(dest: Path, answers: dict[str, Any]) -> None:
    cols = answers["columns"]
    kinds = {k: [c["name"] for c in cols if c["kind"] == k] for k in ("numeric", "categorical")}
    print(f"init: {dest} ({answers['task']} of {answers['target']!r}", end="")
    if answers["task"] == "classification":
        print(f", positive label {answers['positive_label']!r}", end="")
    print(f", primary metric {answers['primary_metric']})")
    print(f"  numeric features:     {', '.join(kinds['numeric']) or '-'}")
    print(f"  categorical features: {', '.join(kinds['categorical']) or '-'}")
    if answers["sensitive"]:
        print(f"  sensitive (measured, not features): {', '.join(answers['sensitive'])}")
    for c in cols:
        if c["kind"] == "ignored":
            print(f"  not a feature: {c['name']} ({c['why']})")
    print(f"  REVIEW src/{answers['package_name']}/schema.py: a rough draft inferred from the data")
    print(f"next: cd {dest} && make run && make test")


# ---------------------------------------------------------------- command line


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `mlgate init` to the mlgate command (common options do not apply to it)."""
    del common
    p = sub.add_parser(
        "init",
        help="create a new model repository for a CSV data set",
        description="Create a model repository in DIR from mlgate's copier template: a "
        "pandera schema inferred from the data, params.yaml, dvc.yaml, data.dvc, tests, "
        "the caller workflows and a first commit. Asks for what is missing unless "
        "--no-input. Later template releases come in with `copier update` (docs/INIT.md).",
    )
    p.add_argument("dest", metavar="DIR", type=Path, help="the new repository (new or empty)")
    p.add_argument("--data", type=Path, metavar="CSV", help="the data file (copied into data/)")
    p.add_argument("--target", metavar="COLUMN", help="the column to predict")
    p.add_argument(
        "--task",
        choices=sorted(METRICS),
        help="default: regression for a numeric target with many values, else classification",
    )
    p.add_argument("--positive-label", metavar="LABEL", help="the positive class")
    p.add_argument(
        "--sensitive",
        action="append",
        default=[],
        metavar="COLUMN",
        help="a sensitive attribute (repeat for several); fairness is measured per group",
    )
    p.add_argument("--metric", help="primary metric (default: roc_auc or rmse)")
    p.add_argument("--name", help="project name (default: from DIR)")
    p.add_argument("--template", metavar="SRC", help="copier template (default: this mlgate's)")
    p.add_argument("--vcs-ref", metavar="TAG", help="template version (default: latest tag)")
    p.add_argument(
        "--mlgate-path",
        metavar="DIR",
        help="install mlgate from this checkout (default: this checkout, if mlgate runs from one)",
    )
    p.add_argument("--mlgate-repo", default="OWNER/mlgate", help="GitHub owner/name of mlgate")
    p.add_argument(
        "--mlgate-ref", default=f"v{__version__}", help="release tag to pin (default: %(default)s)"
    )
    p.add_argument("--no-input", action="store_true", help="never ask; fail on missing options")
    p.set_defaults(handler=_init)


def _ask(question: str) -> str:
    with contextlib.suppress(EOFError):
        return input(f"{question}: ").strip()
    return ""


def _init(args: argparse.Namespace) -> int:
    interactive = not args.no_input and sys.stdin.isatty()
    if interactive:
        args.data = args.data or Path(_ask("data file (CSV)"))
        args.target = args.target or _ask("target column")
        if not args.sensitive:
            args.sensitive = _ask("sensitive attributes (comma-separated, or empty)").split(",")
    missing = [f"--{k}" for k in ("data", "target") if not getattr(args, k)]
    if missing:
        raise MlgateError(f"missing {' and '.join(missing)} (required with --no-input)")
    sensitive = tuple(s.strip() for item in args.sensitive for s in item.split(",") if s.strip())
    create(
        InitRequest(
            dest=args.dest,
            data=args.data,
            target=args.target,
            task=args.task,
            positive_label=args.positive_label,
            sensitive=sensitive,
            metric=args.metric,
            name=args.name,
            template=args.template,
            vcs_ref=args.vcs_ref,
            mlgate_path=args.mlgate_path,
            mlgate_repo=args.mlgate_repo,
            mlgate_ref=args.mlgate_ref,
        )
    )
    return 0
