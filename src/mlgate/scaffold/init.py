"""`mlgate init`: a new model repository for another data set, rendered from the copier template."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import keyword
import math
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

from mlgate import __version__
from mlgate.errors import MlgateError

if TYPE_CHECKING:
    import pandas as pd

TEMPLATE_DIR = Path(__file__).parent / "template"
MAX_CATEGORIES = 20  # more distinct text values than this: an identifier or free text
MAX_CODES = 3  # an integer-valued column with at most this many values is a code (1/2, 0/1/9)
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
# Words in a column name that suggest a protected attribute (a feature of that name is flagged)
PROTECTED_WORDS = (
    "gender", "sex", "race", "racial", "ethnic", "ethnicity", "religion", "religious",
    "age", "nationality", "national", "origin", "disability", "disabled", "pregnant",
    "pregnancy", "marital", "orientation", "caste", "color", "colour", "birth", "dob",
)  # fmt: skip
# The first fairness bounds: the first model's gap plus this margin (absolute for the
# classification gaps, a share of the model's MAE for the regression gap, in target units)
FAIRNESS_MARGIN = {"classification": 0.05, "regression": 0.10}


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

RELEASE_TAG = re.compile(r"v\d+\.\d+\.\d+")


@dataclass(frozen=True)
class Release:
    """An mlgate release a project pins: the repository it is published from and its tag."""

    url: str  # the repository's web address, e.g. https://github.com/owner/mlgate
    tag: str  # vX.Y.Z

    @property
    def repo(self) -> str:
        """owner/name, as a caller's `uses:` names it (on the same GitHub instance)."""
        return "/".join(self.url.split("/")[-2:])


def repository_url(given: str) -> str:
    """OWNER/NAME (github.com) or an http(s) address of a repository, as a web address."""
    if re.fullmatch(r"[\w.-]+/[\w.-]+", given):
        return f"https://github.com/{given.removesuffix('.git')}"
    if re.fullmatch(r"https?://[^/\s]+(/[^/\s]+)*/[\w.-]+/[\w.-]+/?", given):
        return given.rstrip("/").removesuffix(".git")
    raise MlgateError(
        f"--mlgate-repo {given!r}: give OWNER/NAME (on github.com) or the repository's "
        "https:// address"
    )


def this_release(repo: str | None = None, ref: str | None = None) -> Release:
    """The release to pin: by default the installed mlgate's own (pyproject's Repository URL
    and version, read from the package metadata), so a project never names a placeholder."""
    meta = importlib.metadata.metadata("mlgate")
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [] if ", " in u)
    if repo is None:
        repo = urls.get("Repository")
        if not repo:
            raise MlgateError(
                "the installed mlgate names no Repository URL in its metadata: "
                "pass --mlgate-repo OWNER/NAME"
            )
    tag = ref or f"v{__version__}"
    if not RELEASE_TAG.fullmatch(tag):
        raise MlgateError(f"--mlgate-ref {tag!r}: a release tag is vX.Y.Z")
    return Release(url=repository_url(repo), tag=tag)


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
    frame: pd.DataFrame,
    target: str,
    task: str,
    sensitive: tuple[str, ...],
    numeric_kept: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """A first draft of the data contract and of each column's role, from the data alone.
    A numeric column of few whole values (1/2, 0/1/9) is a code: a category, unless it is in
    `numeric_kept` (declared monotone: its order means something)."""
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
            elif _is_code(values) and name != target and name not in numeric_kept:
                codes = sorted(_plain(v) for v in values.astype(int).unique())
                col.update(kind="categorical", code=True, isin=codes, ge=None, le=None)
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
        elif col["kind"] == "ignored":
            # not read by the model: the next export's new IDs are no contract failure, and a
            # request need not carry it (served, batch and monitor alike)
            col.update(ge=None, le=None, isin=None, nullable=True, optional=True)
        if name == target:
            col["kind"] = "target"
            if task == "classification" and col["dtype"] != "bool":  # bool: the type suffices
                col.update(isin=sorted(_plain(v) for v in values.unique()), ge=None, le=None)
        columns.append(col)
    return columns


def _is_code(values: pd.Series) -> bool:
    """A few whole values, e.g. 1/2 for two groups: categories that happen to be numbers."""
    distinct = values.unique()
    return 0 < len(distinct) <= MAX_CODES and bool((distinct == distinct.round()).all())


def looks_protected(column: str) -> bool:
    """The column's name has a word that suggests a protected attribute (gender, age, ...)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", column)  # camelCase -> camel Case
    words = re.split(r"[^a-z0-9]+", spaced.lower())
    return any(w in PROTECTED_WORDS for w in words)


def parse_monotone(items: list[str]) -> tuple[tuple[str, int], ...]:
    """`COLUMN:+1` / `COLUMN:-1` (also `+`, `-`, comma-separated) as (column, direction)."""
    found: dict[str, int] = {}
    for item in (s.strip() for given in items for s in given.split(",")):
        if not item:
            continue
        column, _, sign = item.rpartition(":")
        direction = {"+1": 1, "+": 1, "1": 1, "-1": -1, "-": -1}.get(sign.strip())
        if not column.strip() or direction is None:
            raise MlgateError(
                f"--monotone {item!r}: give COLUMN:+1 (the prediction rises with it) or "
                "COLUMN:-1 (it falls)"
            )
        found[column.strip()] = direction
    return tuple(found.items())


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


def dataset_contract(frame: pd.DataFrame, target: str, task: str) -> dict[str, Any]:
    """A first bar for the whole-dataset rules (data.contract): a new data version may shrink
    to half the rows and half the rarest class, and repeat rows twice as often (at least 1%)."""
    rows = len(frame)
    repeated = float(frame.duplicated().mean()) if rows else 0.0
    contract: dict[str, Any] = {
        "rows": rows,
        "min_rows": max(1, rows // 2),
        "max_duplicate_share": min(1.0, max(0.01, math.ceil(repeated * 200) / 100)),
    }
    if task == "classification":
        contract["min_rows_per_class"] = max(2, int(frame[target].value_counts().min()) // 2)
    return contract


def answers_for(
    request: InitRequest, frame: pd.DataFrame, release: Release | None = None
) -> dict[str, Any]:
    """Check the request against the data and turn it into the template's answers."""
    release = release or this_release(request.mlgate_repo, request.mlgate_ref)
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
                f"target column {target!r} has {len(classes)} classes: mlgate classifies two "
                "outcomes only for now. Make the target one class against the rest in the CSV "
                f"(e.g. a yes/no column for {classes[0]!r}); --task regression would treat the "
                "class labels as amounts and predict values between them"
            )
        # the template renders it by the target's dtype (see params.yaml.jinja)
        answers["positive_label"] = str(choose_positive_label(classes, request.positive_label))
    else:
        import pandas as pd

        if not pd.api.types.is_numeric_dtype(frame[target]):
            raise MlgateError(f"regression needs a numeric target; {target!r} is not")
        levels = frame[target].unique()
        if len(levels) <= MAX_CATEGORIES and bool((levels == levels.round()).all()):
            print(
                f"init: WARNING: the regression target {target!r} has only {len(levels)} "
                "distinct whole values: if they are class labels, the model will predict "
                "amounts between them (1.4), not a class",
                file=sys.stderr,
            )
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
    columns = infer_columns(frame, target, task, request.sensitive, tuple(monotone))
    if not any(c["kind"] in ("numeric", "categorical") for c in columns):
        raise MlgateError(f"{request.data} has no usable feature column besides the target")
    kinds = {c["name"]: c["kind"] for c in columns}
    wrong = {m: kinds.get(m, "not a column") for m in monotone if kinds.get(m) != "numeric"}
    if wrong:
        listed = ", ".join(f"{m} ({k})" for m, k in wrong.items())
        raise MlgateError(
            f"--monotone names columns that are not numeric features: {listed}; a direction "
            f"applies to a numeric feature (these are: "
            f"{', '.join(n for n, k in kinds.items() if k == 'numeric') or 'none'})"
        )
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


def _checkout() -> str | None:
    """This mlgate's own git checkout, when it runs from one (not an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    if (root / "copier.yml").is_file() and (root / ".git").exists():
        return str(root)
    return None


@dataclass(frozen=True)
class TemplateSource:
    """The copier template to render, at which version, and whether the project should
    record the release as its template source (for `copier update`) once rendered."""

    src: str
    vcs_ref: str | None
    record_release: bool


def _git(checkout: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", checkout, *args], capture_output=True, text=True, check=False
    )


def template_source(request: InitRequest, release: Release) -> TemplateSource:
    """The template the project is made from, consistent with the release it pins:
    - `--template SRC [--vcs-ref TAG]`: that template, as copier records it;
    - `--mlgate-path DIR` (development): DIR's working tree, whatever its state;
    - else the template of the pinned release: the installed package's own copy, or, when
      mlgate runs from a git checkout, that checkout at the release tag (its working tree
      may hold unreleased changes that the released workflows and package do not match).
    """
    if request.template:
        return TemplateSource(request.template, request.vcs_ref, record_release=False)
    if request.mlgate_path:
        template = Path(request.mlgate_path).resolve() / "src" / "mlgate" / "template"
        if not (template / "copier.yml").is_file():
            raise MlgateError(
                f"--mlgate-path {request.mlgate_path}: not an mlgate checkout "
                "(no src/mlgate/template/copier.yml)"
            )
        return TemplateSource(str(template), None, record_release=False)
    checkout = _checkout()
    if checkout is None:  # an installed release: its packaged template is the release's
        if release.tag != f"v{__version__}":
            raise MlgateError(
                f"--mlgate-ref {release.tag}: this installed mlgate is v{__version__} and "
                f"carries that release's template only; install mlgate {release.tag} to make "
                "a project of it"
            )
        return TemplateSource(str(TEMPLATE_DIR), None, record_release=True)
    if _git(checkout, "rev-parse", "-q", "--verify", f"refs/tags/{release.tag}").returncode:
        raise MlgateError(
            f"mlgate runs from the checkout {checkout}, which has no tag {release.tag}: the new "
            f"project would pin release {release.tag} of {release.url} but could not be made "
            "from that release's template. Either `git fetch --tags` (or check out a release), "
            "or install a released mlgate (docs/INIT.md), or, to develop mlgate itself, pass "
            f"--mlgate-path {checkout} (the project then installs this checkout as it is)"
        )
    if _git(
        checkout, "diff", "--quiet", release.tag, "--", "copier.yml", "src/mlgate/template"
    ).returncode:
        print(
            f"init: rendering the template of release {release.tag}; this checkout's own "
            "template has changes since (--mlgate-path to use them in development)"
        )
    return TemplateSource(checkout, release.tag, record_release=True)


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
    source = template_source(request, release)
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
        if answers["sensitive"]:
            measured = first_measurement(work)
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
            "training a first model (to set the fairness bounds from it)",
            PYTHONPATH=path,
        )
        import json

        return dict(json.loads(out.read_text()))


def _measure(out: str) -> None:
    """The child of first_measurement: in the new project's folder, measure, write JSON."""
    from mlgate import io
    from mlgate.config import load_params
    from mlgate.pipeline import data
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
    gaps = {
        attr: {k: v for k, v in measured.items() if k != "groups"}
        for attr, measured in result["fairness"].items()
    }
    io.write_json(out, {"metrics": result["metrics"], "fairness": gaps})


def _shown(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def _ceil(value: float, digits: int) -> float:
    scale = 10.0**digits
    return math.ceil(round(value * scale, 6)) / scale


def fairness_gate(task: str, measured: dict[str, Any]) -> dict[str, Any]:
    """gate.max_fairness_gap from the first model's gaps plus a margin (FAIRNESS_MARGIN): a
    bar the first model passes with room for retraining noise, that a clearly less fair
    model fails. The answers `fairness_gate` ({gap: {attr: [bound, measured]}}) and
    `fairness_margin` (what was added, in words)."""
    if task == "classification":
        margin = FAIRNESS_MARGIN[task]
        why = f"+ {margin}"
    else:
        mae = float(measured["metrics"]["mae"])
        margin = FAIRNESS_MARGIN[task] * mae
        why = f"+ {FAIRNESS_MARGIN[task]:.0%} of its MAE ({_shown(mae)})"
    gate: dict[str, dict[str, list[float]]] = {}
    for attr, gaps in measured["fairness"].items():
        for gap, value in gaps.items():
            if not math.isfinite(value):  # e.g. a group with no positives: nothing to bound
                continue
            bound = value + margin
            if task == "classification":
                bound = min(1.0, _ceil(bound, 2))
            elif bound > 0:
                bound = _ceil(bound, 2 - math.floor(math.log10(bound)))  # 3 significant
            gate.setdefault(gap, {})[attr] = [bound, value]
    return {"fairness_gate": gate, "fairness_margin": why}


def _summary(dest: Path, answers: dict[str, Any]) -> None:
    cols = answers["columns"]
    kinds = {k: [c["name"] for c in cols if c["kind"] == k] for k in ("numeric", "categorical")}
    print(f"init: {dest} ({answers['task']} of {answers['target']!r}", end="")
    if answers["task"] == "classification":
        print(f", positive label {answers['positive_label']!r}", end="")
    print(f", primary metric {answers['primary_metric']})")
    print(f"  numeric features:     {', '.join(kinds['numeric']) or '-'}")
    print(f"  categorical features: {', '.join(kinds['categorical']) or '-'}")
    codes = [c for c in cols if c.get("code")]
    for c in codes:
        shown = ", ".join(map(str, c["isin"]))
        print(f"  {c['name']}: numbers taken as category codes ({shown}), not a range")
    for name, direction in answers.get("monotone", {}).items():
        way = "rises" if direction > 0 else "falls"
        print(f"  monotone (directional test): the prediction {way} with {name}")
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
    for c in cols:
        if c["kind"] == "ignored":
            print(f"  not a feature: {c['name']} ({c['why']})")
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


def _recorded_source(project: Path) -> tuple[str, str]:
    """The template source and release a project records, or why it cannot be updated."""
    import yaml

    path = project / ".copier-answers.yml"
    if not path.is_file():
        raise MlgateError(
            f"{project} has no .copier-answers.yml: not a project made by mlgate init"
        )
    with path.open(encoding="utf-8") as fh:
        recorded = yaml.safe_load(fh) or {}
    src, commit = str(recorded.get("_src_path") or ""), str(recorded.get("_commit") or "")
    if not RELEASE_TAG.fullmatch(commit):
        made_from = f"{src or 'an unknown template'} at {commit or 'no version'}"
        raise MlgateError(
            f"{path}: this project was made from {made_from}, not from an mlgate release "
            "(an untagged or modified checkout, e.g. `mlgate init --mlgate-path`), so there "
            "is no released template to take the difference from. Name the release it is "
            "closest to: in .copier-answers.yml set `_src_path: https://github.com/OWNER/"
            "mlgate.git` (mlgate's repository) and `_commit: vX.Y.Z` (that release), commit, "
            "and run `mlgate update` again; review the diff it makes with care"
        )
    return src, commit


def _release_tags(src: str) -> list[str]:
    """The release tags of a template source (a local path or a git URL), oldest first."""
    proc = subprocess.run(
        ["git", "ls-remote", "--tags", "--refs", src],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},  # a missing repository: fail, not ask
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        raise MlgateError(f"cannot read the releases of {src}: {' '.join(tail)}")
    tags = [line.rsplit("refs/tags/", 1)[-1] for line in proc.stdout.splitlines()]
    releases = [t for t in tags if RELEASE_TAG.fullmatch(t)]
    return sorted(releases, key=lambda t: tuple(int(n) for n in t[1:].split(".")))


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
