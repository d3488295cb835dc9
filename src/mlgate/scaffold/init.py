"""`mlgate init`: a new model repository for another data set, rendered from the copier template."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.errors import MlgateError
from mlgate.scaffold.infer import (
    MAX_CATEGORIES,
    MAX_CLASSES,
    METRICS,
    ROLES,
    _plain,
    _shown,
    choose_positive_label,
    dataset_contract,
    fairness_gate,
    infer_columns,
    infer_task,
    looks_protected,
    quality_gate,
    read_data,
    sensitive_specs,
    slug,
)
from mlgate.scaffold.source import (
    RELEASE_TAG,
    Release,
    _recorded_source,
    _release_tags,
    template_source,
    this_release,
)

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class InitRequest:
    """Everything `mlgate init` needs; every field is checked before anything is written."""

    dest: Path
    data: Path
    target: str
    task: str | None = None
    positive_label: str | None = None
    sensitive: tuple[str, ...] = ()
    monotone: tuple[tuple[str, int], ...] = ()  # (numeric feature, +1 or -1)
    metric: str | None = None
    name: str | None = None
    template: str | None = None
    vcs_ref: str | None = None
    mlgate_path: str | None = None  # development only: install mlgate from this checkout
    mlgate_repo: str | None = None  # default: the installed mlgate's Repository URL
    mlgate_ref: str | None = None  # default: v<the installed mlgate's version>


# ---------------------------------------------------------------- which mlgate release


# ---------------------------------------------------------------- inference (pure)


# ---------------------------------------------------------------- checks, then answers


def check_dest(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise MlgateError(f"{dest} exists and is not an empty directory: choose a new one")
    if not dest.parent.is_dir():
        raise MlgateError(f"{dest.parent} does not exist: create it first")


def answers_for(
    request: InitRequest, frame: pd.DataFrame, release: Release | None = None
) -> dict[str, Any]:
    """Check the request against the data and turn it into the template's answers."""
    release = release or this_release(request.mlgate_repo, request.mlgate_ref)
    target = request.target
    answers = _target_answers(request, frame)
    task = answers["task"]
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
    answers["contract"] = dataset_contract(frame, target, task)
    monotone = dict(request.monotone)
    if monotone and task == "multiclass":
        raise MlgateError(
            "--monotone: a multiclass model has no single score to rise or fall with a "
            "feature; leave --monotone out"
        )
    columns = infer_columns(frame, target, task, request.sensitive, tuple(monotone))
    if not any(c["kind"] in ("numeric", "categorical") for c in columns):
        raise MlgateError(f"{request.data} has no usable feature column besides the target")
    _check_monotone(monotone, columns)
    name, package = _project_name(request)
    features = [c["name"] for c in columns if c["kind"] in ("numeric", "categorical")]
    answers.update(
        project_name=name,
        package_name=package,
        # a plain file name: it is written unquoted into params.yaml and dvc commands
        data_file=re.sub(r"[^\w.-]", "_", request.data.name),
        target=target,
        sensitive=sensitive_specs(frame, request.sensitive),
        monotone=monotone,
        primary_metric=metric,
        columns=columns,
        impute=bool(frame[features].isna().any().any()),
        inferred_on=datetime.now(UTC).strftime("%Y-%m-%d"),
        mlgate_repo=release.repo,
        mlgate_url=release.url,
        mlgate_ref=release.tag,
        mlgate_path=str(Path(request.mlgate_path).resolve()) if request.mlgate_path else "",
    )
    return answers


def _target_answers(request: InitRequest, frame: pd.DataFrame) -> dict[str, Any]:
    """The task (and, for a classifier, the positive label), checked against the target."""
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
        raise MlgateError(f"--task must be classification, multiclass or regression, not {task!r}")
    answers: dict[str, Any] = {"task": task}
    if task != "regression":
        answers.update(_class_answers(request, frame))
    else:
        import pandas as pd

        if not pd.api.types.is_numeric_dtype(frame[target]):
            raise MlgateError(f"regression needs a numeric target; {target!r} is not")
        levels = frame[target].unique()
        if len(levels) <= MAX_CATEGORIES and bool((levels == levels.round()).all()):
            print(
                f"init: WARNING: the regression target {target!r} has only {len(levels)} "
                "distinct whole values: if they are class labels, the model will predict "
                "amounts between them (1.4), not a class: --task multiclass predicts a class",
                file=sys.stderr,
            )
    return answers


def _class_answers(request: InitRequest, frame: pd.DataFrame) -> dict[str, Any]:
    """Two classes: classification, with its positive label; 3 to MAX_CLASSES: multiclass."""
    target = request.target
    classes = sorted(_plain(v) for v in frame[target].unique())
    if len(classes) < 2:
        raise MlgateError(
            f"target column {target!r} has one class only ({classes[0]!r}): "
            "a classifier needs examples of both outcomes"
        )
    if len(classes) > MAX_CLASSES:
        raise MlgateError(
            f"target column {target!r} has {len(classes)} classes, more than the "
            f"{MAX_CLASSES} a multiclass model is gated on here: group the rare classes into "
            "one (e.g. 'other') in the CSV, or choose another target"
        )
    if len(classes) == 2:
        if request.task == "multiclass":
            raise MlgateError(
                f"target column {target!r} has two classes: --task classification (one of them "
                "positive), not multiclass"
            )
        # the template renders it by the target's dtype (see params.yaml.jinja)
        return {
            "task": "classification",
            "positive_label": str(choose_positive_label(classes, request.positive_label)),
        }
    if request.positive_label is not None:
        raise MlgateError(
            f"--positive-label: target column {target!r} has {len(classes)} classes, so "
            "mlgate makes a multiclass model, which has no positive class"
        )
    return {"task": "multiclass"}


def _check_monotone(monotone: dict[str, int], columns: list[dict[str, Any]]) -> None:
    kinds = {c["name"]: c["kind"] for c in columns}
    wrong = {m: kinds.get(m, "not a column") for m in monotone if kinds.get(m) != "numeric"}
    if wrong:
        listed = ", ".join(f"{m} ({k})" for m, k in wrong.items())
        raise MlgateError(
            f"--monotone names columns that are not numeric features: {listed}; a direction "
            f"applies to a numeric feature (these are: "
            f"{', '.join(n for n, k in kinds.items() if k == 'numeric') or 'none'})"
        )


def _project_name(request: InitRequest) -> tuple[str, str]:
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
    return name, package


# ---------------------------------------------------------------- writing


def _env() -> dict[str, str]:
    # our own venv must not leak into the new project's uv commands
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    return env


def _run(cmd: list[str], cwd: Path, what: str, **extra_env: str) -> str:
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env={**_env(), **extra_env},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
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


def render(
    src: str,
    dest: Path,
    answers: dict[str, Any],
    vcs_ref: str | None,
    record_release: bool = False,
    overwrite: bool = False,
) -> None:
    import copier
    from copier.errors import CopierError, DirtyLocalWarning

    with contextlib.ExitStack() as stack:
        if vcs_ref is None and Path(src).is_dir() and not (Path(src) / ".git").exists():
            # A folder inside a git checkout (--mlgate-path) is taken as it is: copied out, so
            # copier renders files, not a git ref (no "No git tags found", no dirty warning).
            # A template repository of its own (--template DIR) keeps copier's latest tag.
            plain = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "template"
            shutil.copytree(src, plain, ignore=shutil.ignore_patterns("__pycache__"))
            src_used = str(plain)
        else:
            src_used = src
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore", DirtyLocalWarning)
        try:
            copier.run_copy(
                src_used,
                dest,
                data=answers,
                vcs_ref=vcs_ref,
                defaults=True,
                quiet=True,
                unsafe=False,
                overwrite=overwrite,
            )
        except (CopierError, ValueError) as err:
            raise MlgateError(f"rendering the template {src} failed: {err}") from None
    if record_release:
        _point_answers_at_release(dest, answers)


def _point_answers_at_release(dest: Path, answers: dict[str, Any]) -> None:
    """Record the release the project was made from as its template source, so a later
    `copier update` fetches the template from the mlgate repository at that tag (and the
    project names no path of the machine that made it)."""
    import yaml

    path = dest / ".copier-answers.yml"
    with path.open(encoding="utf-8") as fh:
        recorded = yaml.safe_load(fh)
    recorded["_src_path"] = f"{answers['mlgate_url']}.git"
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
    release = this_release(request.mlgate_repo, request.mlgate_ref)
    answers = answers_for(request, frame, release)
    uv = uv_command()
    source = template_source(release, request.template, request.vcs_ref, request.mlgate_path)
    if request.template and request.vcs_ref and RELEASE_TAG.fullmatch(request.vcs_ref):
        answers["mlgate_ref"] = request.vcs_ref  # the pins follow the template's release

    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.init-", dir=dest.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        work.chmod(0o777 & ~umask)  # mkdtemp's 0700 is for a secret, not a repository
        render(source.src, work, answers, source.vcs_ref)
        (work / "data").mkdir()
        shutil.copy2(request.data, work / "data" / answers["data_file"])
        measured = first_measurement(work)
        answers.update(quality_gate(answers["task"], measured))
        if answers["sensitive"]:
            answers.update(fairness_gate(answers["task"], measured))
        render(source.src, work, answers, source.vcs_ref, overwrite=True)
        if source.record_release:
            _point_answers_at_release(work, answers)
        _run(["git", "init", "-q", "-b", "main"], work, "git init")
        dvc = [sys.executable, "-m", "dvc"]
        _run([*dvc, "add", "-q", "data"], work, "dvc add")
        _run([*dvc, "push", "-q"], work, "dvc push (to the repo-local remote)")
        if request.mlgate_path:
            seed_lock(Path(request.mlgate_path).resolve(), work)
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


def seed_lock(checkout: Path, project: Path) -> None:
    """Start a development project's lock from the checkout's own uv.lock: `uv lock` keeps
    every version there that still fits, so the project runs with the versions mlgate's
    tests ran with (not whatever PyPI published since), and with UV_OFFLINE=1 it locks from
    the uv cache the checkout's install filled."""
    lock = checkout / "uv.lock"
    if lock.is_file():
        shutil.copyfile(lock, project / "uv.lock")


def first_measurement(project: Path) -> dict[str, Any]:
    """Train the project's first model as its pipeline will (validate, split, fit, evaluate
    on the test split), in a child process that imports the project's own schema module;
    its test metrics and fairness gaps."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "measured.json"
        code = "import sys; from mlgate.scaffold.init import _measure; _measure(sys.argv[1])"
        path = os.pathsep.join(filter(None, [str(project / "src"), os.environ.get("PYTHONPATH")]))
        _run(
            [sys.executable, "-c", code, str(out)],
            project,
            "training a first model (to set the gate's bounds from it)",
            PYTHONPATH=path,
        )
        import json

        return dict(json.loads(out.read_text()))


def _measure(out: str) -> None:
    """The child of first_measurement: in the new project's folder, measure, write JSON."""
    from mlgate import io
    from mlgate.config import load_params
    from mlgate.pipeline import data, fairness
    from mlgate.pipeline.stages import evaluate, split, train

    try:
        params = load_params("params.yaml")
        raw = data.read_csv(params.data.raw)
        frame = data.validate(
            raw, data.contract_schema(params), str(params.data.raw), data.dataset_rules(params)
        )
        train_split, test_split = split.split_frame(frame, params)
        result = evaluate.evaluate(train.fit(train_split, params), test_split, params)
    except MlgateError as err:
        sys.exit(f"the data does not pass its inferred schema or cannot be fitted: {err}")
    gaps = {attr: fairness.gaps(measured) for attr, measured in result["fairness"].items()}
    intervals = result["intervals"]
    io.write_json(
        out,
        {
            "metrics": result["metrics"],
            "fairness": gaps,
            "intervals": intervals["fairness"],
            "metric_intervals": intervals["metrics"],
            "confidence": intervals["confidence"],
        },
    )


def _summary(dest: Path, answers: dict[str, Any]) -> None:
    cols = answers["columns"]
    kinds = {k: [c["name"] for c in cols if c["kind"] == k] for k in ("numeric", "categorical")}
    print(f"init: {dest} ({answers['task']} of {answers['target']!r}", end="")
    if answers["task"] == "classification":
        print(f", positive label {answers['positive_label']!r}", end="")
    if answers["task"] == "multiclass":
        labels = next(c["isin"] for c in cols if c["kind"] == "target")
        print(f", {len(labels)} classes: the most probable one is the decision", end="")
    print(f", primary metric {answers['primary_metric']})")
    print(f"  numeric features:     {', '.join(kinds['numeric']) or '-'}")
    print(f"  categorical features: {', '.join(kinds['categorical']) or '-'}")
    codes = [c for c in cols if c.get("code")]
    for c in codes:
        shown = ", ".join(map(str, c["isin"]))
        print(f"  {c['name']}: numbers taken as category codes ({shown}), not a range")
    for c in cols:
        if c.get("levels"):
            print(
                f"  {c['name']}: a category of {c['levels']} values, unbounded (a value training "
                "never saw scores as none of them)"
            )
    for name, direction in answers.get("monotone", {}).items():
        way = "rises" if direction > 0 else "falls"
        print(f"  monotone (directional test): the prediction {way} with {name}")
    for metric, (bound, value, low, high) in answers.get("quality_gate", {}).items():
        first = f" (a first model: {value} [{low}, {high}])" if value is not None else ""
        print(f"  quality gated (params.yaml gate.min_metrics): {metric} >= {bound}{first}")
        print(f"    {answers['quality_why']}; raise it to what the use needs")
    if answers["sensitive"]:
        print(f"  sensitive (measured, not features): {', '.join(answers['sensitive'])}")
        print("  fairness gated (params.yaml gate.max_fairness_gap):")
        for gap, by_attr in answers["fairness_gate"].items():
            for attr, (bound, value) in by_attr.items():
                print(f"    {gap}:{attr} <= {_shown(bound)} (a first model: {_shown(value)})")
        print(
            f"    each bound is the gap of a first model trained here {answers['fairness_margin']}"
            ": room for\n    retraining noise, not a verdict that the gap is fair; lower it "
            "to what the use accepts"
        )
    else:
        print(
            "  fairness: NOT measured (no --sensitive): name the attributes to measure in "
            "params.yaml evaluate.sensitive and bound them in gate.max_fairness_gap"
        )
    if answers["task"] == "regression" and answers["primary_metric"] in ("rmse", "mae"):
        print(
            f"  champion: a candidate's {answers['primary_metric']} may exceed the production "
            "model's by at most 1% of it (gate.champion.tolerance, relative)"
        )
    can_derive = {
        "timestamp": "params.yaml features.from_timestamp can derive its days_since, month, "
        "weekday, hour",
        "text": "left out by default; params.yaml features.from_text makes it TF-IDF features",
    }
    for c in cols:
        if c["kind"] in ROLES:
            also = f"; {can_derive[c['kind']]}" if c["kind"] in can_derive else ""
            print(f"  not a feature: {c['name']} ({c['kind']}: {c['why']}{also})")
    stamps = [c["name"] for c in cols if c["kind"] == "timestamp"]
    if stamps:
        print(
            f"  split: random; `split.by: time` in params.yaml tests on the latest rows by "
            f"{stamps[0]} (the honest split when the data drifts)"
        )
    for c in cols:
        if c["kind"] in ("numeric", "categorical") and looks_protected(c["name"]):
            print(
                f"init: WARNING: {c['name']!r} is a feature and its name suggests a protected "
                f"attribute; if it is one, make it sensitive (`--sensitive {c['name']}`, or "
                "move it from features to evaluate.sensitive in params.yaml): then it is "
                "measured per group and not learned from",
                file=sys.stderr,
            )
    print(f"  REVIEW src/{answers['package_name']}/schema.py: a rough draft inferred from the data")
    print(f"next: cd {dest} && make run && make test")


# ---------------------------------------------------------------- update to a later release


def update(project: Path, to: str | None) -> str:
    """Take a later mlgate release: copier re-renders the template at the recorded release
    and at `to`, and applies the difference to the project (your edits stay); then the lock
    follows the new pin. Returns the release taken."""
    import copier
    from copier.errors import CopierError

    project = project.resolve()
    src, current = _recorded_source(project)
    if to is not None and not RELEASE_TAG.fullmatch(to):
        raise MlgateError(f"--to {to!r}: a release tag is vX.Y.Z")
    releases = _release_tags(src)
    if current not in releases:
        raise MlgateError(
            f"{src} has no release {current}, which .copier-answers.yml records as this "
            f"project's template (releases there: {', '.join(releases) or 'none'})"
        )
    to = to or releases[-1]
    if to not in releases:
        raise MlgateError(f"{src} has no release {to} (releases: {', '.join(releases)})")
    if to == current:
        print(f"update: already at {to}")
        return to
    if _run(["git", "status", "--porcelain"], project, "git status").strip():
        raise MlgateError(f"{project} has uncommitted changes: commit or stash them first")
    try:
        copier.run_update(
            project, vcs_ref=to, defaults=True, overwrite=True, quiet=True, unsafe=False
        )
    except (CopierError, ValueError) as err:
        raise MlgateError(f"copier update to {to} failed: {err}") from None
    _run([uv_command(), "lock", "--quiet"], project, f"updated to {to}; `uv lock`")
    print(f"update: {current} -> {to}. Review `git diff` (resolve any <<<<<<< markers), then")
    print(f'        make run && make test && git commit -am "Take mlgate {to}"')
    return to


# ---------------------------------------------------------------- command line


def _ask(question: str) -> str:
    with contextlib.suppress(EOFError):
        return input(f"{question}: ").strip()
    return ""
