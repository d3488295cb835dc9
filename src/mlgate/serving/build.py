"""`mlgate build` and `mlgate serve`: a registered model version as a bento, served locally."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mlgate.errors import MlgateError
from mlgate.names import CANDIDATE, CHALLENGER
from mlgate.registry import tracking

if TYPE_CHECKING:
    from mlgate.config import Params

BENTO_MODEL_NAME = "mlgate-model"  # the same names service.py loads: the champion
CHALLENGER_MODEL_NAME = "mlgate-challenger"  # and, when serving.strategy.mode != none, this
# The environment variables `mlgate build` names the saved models in while BentoML imports
# service.py (a built bento then records them in its bento.yaml)
MODEL_ENV = {
    BENTO_MODEL_NAME: "MLGATE_BENTO_MODEL",
    CHALLENGER_MODEL_NAME: "MLGATE_BENTO_CHALLENGER",
}
MODEL_FILE = "model.joblib"
REFERENCE_FILE = "reference.json"
REFERENCE_ROWS = 200
LINEAGE_TAGS = (
    "git_commit",
    "git_dirty",
    "data_hash",
    "params_hash",
    "dvc_lock_hash",
    "code_hash",
)


def use_project_home(params: Params) -> Path:
    """One BentoML home per project (serving.bentoml_home; BENTOML_HOME, when set, wins).

    BentoML's default home (~/bentoml) is shared by every checkout on the machine: `latest`
    would be another project's bento, and each server's start-up empties the home's
    Prometheus multiprocess directory under the others. Set before bentoml is imported, and
    inherited by `bentoml serve` / `bentoml containerize` subprocesses. Also: no usage
    tracking (no network calls from a build or a test)."""
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    home = os.environ.get("BENTOML_HOME") or str(Path(params.serving.bentoml_home).resolve())
    os.environ["BENTOML_HOME"] = home
    return Path(home)


def resolve_version(params: Params, ref: str) -> Any:
    """An alias (`production`) or a version number (`3`) of the project's registered model."""
    from mlgate.registry import aliases

    name = params.model_name
    spec = f"{name}/{ref}" if ref.isdigit() else f"{name}@{ref}"
    parsed = aliases.parse_ref(spec, name)  # before connecting: a bad ref fails fast
    client = tracking.connect(params)
    try:
        return aliases.resolve(client, parsed)
    except MlgateError as err:
        if ref.isdigit() or ref == CANDIDATE:
            raise
        try:  # a new project: `make run` registered a candidate, nothing is promoted yet
            candidate = aliases.resolve(client, (name, CANDIDATE, None))
        except MlgateError:
            raise err from None
        raise MlgateError(
            f"{err}; to package the model `make run` registered (version {candidate.version}): "
            "make build MODEL=candidate (mlgate build --model candidate)"
        ) from None


def lineage_of(mv: Any) -> dict[str, str]:
    tags = mv.tags or {}
    info = {"model_name": mv.name, "version": str(mv.version), "run_id": mv.run_id or ""}
    for key in LINEAGE_TAGS:
        if tags.get(f"mlgate.{key}"):
            info[key] = tags[f"mlgate.{key}"]
    info["gate_passed"] = tags.get("mlgate.gate_passed", "unknown")
    return info


def project_code(model: Any, package: str) -> list[str]:
    """The project's own classes and functions the pickled model needs (`module.name`, each
    once, in pickling order): found by pickling it, so nothing nested escapes: a
    FunctionTransformer of a project function inside `train.pipeline`'s ColumnTransformer, an
    estimator class of the package, a function kept as a parameter."""
    import io as _io
    import pickle

    found: dict[str, None] = {}

    class Finder(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            named = obj if isinstance(obj, type) or callable(obj) else type(obj)
            module = getattr(named, "__module__", None) or ""
            if module.partition(".")[0] == package:
                found[f"{module}.{getattr(named, '__qualname__', type(named).__name__)}"] = None
            return NotImplemented

    Finder(_io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL).dump(model)
    return list(found)


def refuse_other_code(params: Params, model: Any, lineage: dict[str, str]) -> None:
    """A model that runs the project's own code (features.transform, an estimator class of its
    package, anything of it inside train.pipeline) is never packaged beside other code than it
    was trained with: the bento carries src/<package> as it is now, and the pickled model
    calls into it."""
    from mlgate.registry.lineage import code_hash, project_package

    package = project_package(params)
    trained, now = lineage.get("code_hash"), code_hash(package)
    if not trained or now == trained:
        return
    uses = project_code(model, package)
    if uses:
        shown = ", ".join(uses[:3]) + (f" and {len(uses) - 3} more" if len(uses) > 3 else "")
        raise MlgateError(
            f"{lineage['model_name']} version {lineage['version']} runs the project's own "
            f"code ({shown}), which changed since it was trained "
            f"(src/{package}: {str(now)[:12]} now, {trained[:12]} then): retrain it "
            "(`dvc repro`, `mlgate register`) or build from the commit it was trained at "
            f"({lineage.get('git_commit', 'unknown')[:12]})"
        )


def split_rows(params: Params, path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of a split as the service receives them (plain Python values, contract columns)."""
    from mlgate.pipeline import data

    schema = data.input_schema(params)
    frame = data.load(path, params)[list(schema.columns)]
    if limit is not None:
        frame = frame.sample(min(limit, len(frame)), random_state=params.split.seed)
    return [
        {k: v.item() if hasattr(v, "item") else v for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def reference_rows(params: Params) -> list[dict[str, Any]]:
    """Training rows the service scores at start-up to check its scorer against the Pipeline."""
    return split_rows(params, params.split.train, REFERENCE_ROWS)


def scored_classes(params: Params) -> Any:
    """What a scorer answers for the project's model (serving.scorer's `positive_label`): the
    positive class's probability, every class's (multiclass), or the prediction (None)."""
    from mlgate.serving.features import EVERY_CLASS

    task = params.data.task
    return {"classification": params.data.positive_label, "multiclass": EVERY_CLASS}.get(task)


def gated_version(params: Params, ref: str, role: str = "") -> Any:
    """The registered version `ref` resolves to, refused unless it passed its gates."""
    mv = resolve_version(params, ref)
    if (mv.tags or {}).get("mlgate.gate_passed") != "true":
        raise MlgateError(
            f"{role}{mv.name} version {mv.version} did not pass its gates; not building"
        )
    return mv


def save_model(params: Params, mv: Any, name: str = BENTO_MODEL_NAME) -> tuple[str, dict[str, str]]:
    """Save registered version `mv` (gated_version) from MLflow into BentoML's model store.

    Next to the pickled Pipeline go: the request contract derived from the pandera schema,
    the fast scorer serving.scorer chose (NumPy numbers, tree arrays or an ONNX graph, checked here
    against the Pipeline on the test split), and reference rows with the Pipeline's scores,
    which the service re-scores at start-up before it is ready."""
    import json

    import bentoml
    import joblib
    import mlflow.sklearn
    import numpy as np

    from mlgate.pipeline import data
    from mlgate.serving.contract import contract_spec
    from mlgate.serving.features import final_estimator
    from mlgate.serving.scorer import PARITY_TOLERANCE, PipelineScorer, fast_scorer, load_stored

    model = mlflow.sklearn.load_model(f"models:/{mv.name}/{mv.version}")
    lineage = lineage_of(mv)
    final = type(final_estimator(model) if hasattr(model, "steps") else model)
    lineage["estimator"] = f"{final.__module__}.{final.__qualname__}"  # what it trained with
    refuse_other_code(params, model, lineage)
    labels = {k: v for k, v in lineage.items() if k in ("model_name", "version", "git_commit")}
    contract = contract_spec(data.input_schema(params))
    if contract["residual_checks"] and name == BENTO_MODEL_NAME:
        checks = ", ".join(contract["residual_checks"])
        print(
            f"build: contract: {len(contract['residual_checks'])} check(s) pydantic cannot "
            f"express ({checks}): the service validates each request with pandera as well"
        )
    # BentoML metadata takes no nulls: params and contract travel as JSON strings.
    metadata = {
        "params_json": json.dumps(params.model_dump(mode="json", by_alias=True)),
        "contract_json": json.dumps(contract),
        "lineage": lineage,
    }
    rows = reference_rows(params)
    positive = scored_classes(params)
    pipeline = PipelineScorer(model, positive, params.features.inputs)
    expected = pipeline.scores(rows).tolist()
    # The fast path must give the Pipeline's scores on the whole test split, from what the
    # service will load (the exported numbers, the tree arrays, the serialized graph), or it
    # is not used.
    test_rows = split_rows(params, params.split.test)
    test_scores = pipeline.scores(test_rows)
    scorer, why = fast_scorer(model, positive, test_rows, test_scores, params.serving.scorer)
    files: dict[str, bytes] = {}
    if scorer is not None:
        files = scorer.files()
        scorer = load_stored(files.get)
        if not np.allclose(scorer.scores(test_rows), test_scores, rtol=0, atol=PARITY_TOLERANCE):
            raise MlgateError("the stored scorer disagrees with the Pipeline; not building")
    kind = "pipeline" if scorer is None else scorer.kind
    metadata["scorer"] = kind
    role = "" if name == BENTO_MODEL_NAME else "challenger "
    print(
        f"build: {role}scorer {kind}: {why}", file=sys.stderr if kind == "pipeline" else sys.stdout
    )
    explained, metadata["explain"], why = explainer_files(
        params, model, scorer, test_rows, test_scores
    )
    files.update(explained)
    print(f"build: {role}explain {metadata['explain']}: {why}")
    with bentoml.models.create(name, labels=labels, metadata=metadata) as stored:
        joblib.dump(model, stored.path_of(MODEL_FILE))
        with open(stored.path_of(REFERENCE_FILE), "w", encoding="utf-8") as fh:
            json.dump({"rows": rows, "scores": expected}, fh)
        for file, data in files.items():
            Path(stored.path_of(file)).write_bytes(data)
    return str(stored.tag), lineage


def explainer_files(
    params: Params, model: Any, scorer: Any, rows: list[dict[str, Any]], scores: Any
) -> tuple[dict[str, bytes], str, str]:
    """What /explain answers with (serving.explainers), checked on the test split `rows`
    against the Pipeline's `scores`: the files to store, the method (or none) and a line
    saying how exact it is, or why there is none (then /explain answers 501 with it)."""
    from mlgate.serving.explainers import Unexplained, check, make_explainer, refusal_files

    try:
        explainer = make_explainer(
            model,
            scored_classes(params),
            lambda: split_rows(params, params.split.train),
            params.features.inputs,
            scorer,
        )
        why = check(explainer, rows, scores)
    except Unexplained as err:
        return refusal_files(str(err)), "none", f"{err} (/explain answers 501)"
    return explainer.files(), explainer.method, why


def check_strategy_key(params: Params) -> None:
    """serving.strategy.key, when it names a field, must be one of the request contract's."""
    from mlgate.pipeline import data

    field = params.serving.strategy.field
    columns = list(data.input_schema(params).columns)
    if field is not None and field not in columns:
        raise MlgateError(
            f"serving.strategy.key {field!r} is not a field of the request contract "
            f"({', '.join(columns)}); name one, or a header as `header:<name>`"
        )


def pinned_packages(names: list[str]) -> list[str]:
    """The bento gets the exact versions this environment (and its tests) ran with."""
    from importlib.metadata import PackageNotFoundError, version

    pinned = []
    for name in names:
        if any(op in name for op in "=<>~!"):
            pinned.append(name)
            continue
        try:
            pinned.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            raise MlgateError(
                f"bentofile.yaml lists {name!r}, which is not installed here: "
                "`uv sync --group serve`"
            ) from None
    return pinned


# System libraries a model library's wheel links against but does not carry, as Debian
# packages for the image (`readelf -d lightgbm/lib/lib_lightgbm.so`: NEEDED libgomp.so.1;
# scikit-learn carries its own copy in scikit_learn.libs, and so does xgboost-cpu, the CPU-only
# XGBoost, in xgboost_cpu.libs: nothing to install for it)
SYSTEM_NEEDS = {"lightgbm": ["libgomp1"], "xgboost": ["libgomp1"]}


def model_packages(estimator: str, context: Path) -> tuple[list[str], list[str]]:
    """(distributions, system packages) the serving image needs for train.estimator beyond
    bentofile.yaml's list: the library that provides it (`uv add lightgbm` ->
    lightgbm==<the locked version>), none for a class of the project's own package (src/,
    carried in the bento)."""
    from importlib.metadata import packages_distributions

    top = estimator.partition(".")[0]
    if (context / top).is_dir():
        return [], []
    dists = sorted(set(packages_distributions().get(top, [])))
    return dists, sorted({n for d in dists for n in SYSTEM_NEEDS.get(d.lower(), [])})


def with_model_packages(config: dict[str, Any], estimator: str, context: Path) -> None:
    """Add what the model needs to bentofile's packages and the image's system packages."""
    from packaging.requirements import Requirement  # BentoML's own dependency
    from packaging.utils import canonicalize_name

    dists, system = model_packages(estimator, context)
    python = config.setdefault("python", {})
    listed = {canonicalize_name(Requirement(p).name) for p in python.get("packages", [])}
    python["packages"] = [
        *python.get("packages", []),
        *(d for d in dists if canonicalize_name(d) not in listed),
    ]
    if system:
        docker = config.setdefault("docker", {})
        have = docker.get("system_packages") or []
        docker["system_packages"] = [*have, *(n for n in system if n not in have)]


def build_context(dest: Path) -> Path:
    """src/ plus the installed mlgate package (in a repository made by `mlgate init`, mlgate
    is a dependency, not a folder of src/, and the bento must carry it all the same) and the
    version of mlgate it was built with."""
    import shutil

    import mlgate

    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "template")
    src = Path("src")
    if src.is_dir():
        shutil.copytree(src, dest, ignore=skip)
    dest.mkdir(parents=True, exist_ok=True)
    if not (dest / "mlgate").exists():
        shutil.copytree(Path(mlgate.__file__).parent, dest / "mlgate", ignore=skip)
    # the bento carries mlgate's source, not its package metadata: mlgate/__init__.py reads
    # the version from here when importlib.metadata has none (in the image)
    (dest / "mlgate" / "_version.py").write_text(
        f'"""Written by `mlgate build`."""\n\nVERSION = "{mlgate.__version__}"\n',
        encoding="utf-8",
    )
    return dest


def without_build_tools(bento_yaml: Path) -> None:
    """Drop the `apt-get install … build-essential git` that BentoML puts first in every
    Debian image (539 MB of the example's 1.36 GB), whatever the bentofile says: the serving
    packages install from wheels. `bentoml containerize` writes the Dockerfile from this
    bento.yaml's `image` section."""
    from bentoml._internal.container.frontend.dockerfile import CONTAINER_METADATA

    info = yaml.safe_load(bento_yaml.read_text(encoding="utf-8"))
    image = info.get("image") or {}
    defaults = {d["default_install_command"] for d in CONTAINER_METADATA.values()}
    commands = image.get("commands", [])
    kept = [c for c in commands if c not in defaults]
    if len(kept) == len(commands):
        print(
            "build: warning: BentoML's compiler layer was not found in the bento's image "
            "(a BentoML change?): the image is built as BentoML wrote it"
        )
        return
    # BentoML's install of docker.system_packages (libgomp1 for LightGBM) counts on the
    # dropped layer's `apt-get update`: without package lists it exits 100
    image["commands"] = [
        f"apt-get update && {c} && rm -rf /var/lib/apt/lists/*"
        if c.startswith("apt-get install")
        else c
        for c in kept
    ]
    with bento_yaml.open("w", encoding="utf-8") as fh:
        yaml.safe_dump(info, fh, sort_keys=False)  # as BentoML writes it


def build(params: Params, ref: str | None = None, bentofile: Path | str = "bentofile.yaml") -> str:
    """Package model version `ref` (default serving.model) as a bento; returns the bento tag."""
    use_project_home(params)
    import bentoml

    ref = ref or params.serving.model
    bentofile = Path(bentofile)
    try:
        with bentofile.open(encoding="utf-8") as fh:
            config = yaml.safe_load(fh)
    except FileNotFoundError:
        raise MlgateError(f"{bentofile} not found: run mlgate from the repository root") from None
    strategy = params.serving.strategy
    # Both versions are resolved and checked before anything is saved: a refused challenger
    # leaves no half-made bento behind.
    champion = gated_version(params, ref)
    challenger = None
    if strategy.mode != "none":
        challenger = gated_version(params, strategy.challenger, "challenger: ")
        if str(challenger.version) == str(champion.version):
            raise MlgateError(
                f"challenger {strategy.challenger!r} is {champion.name} version "
                f"{champion.version}, the champion itself ({ref!r}); not building a "
                f"{strategy.mode} of a model against itself"
            )
        check_strategy_key(params)
    model_tag, lineage = save_model(params, champion)
    models = {BENTO_MODEL_NAME: model_tag}
    challenger_lineage: dict[str, str] = {}
    if challenger is not None:
        models[CHALLENGER_MODEL_NAME], challenger_lineage = save_model(
            params, challenger, CHALLENGER_MODEL_NAME
        )
    # what each model was trained with (the version's own estimator, not today's params)
    for estimator in {lineage["estimator"], challenger_lineage.get("estimator", "")} - {""}:
        with_model_packages(config, estimator, Path("src"))
    config.setdefault("python", {})["packages"] = pinned_packages(
        list(config.get("python", {}).get("packages", []))
    )
    config["name"] = params.model_name
    labels = {f"model_{k}" if k == "version" else k: v for k, v in lineage.items()}
    config["labels"] = {**config.get("labels", {}), **labels}
    if challenger is not None:
        config["labels"].update(strategy=strategy.mode, challenger_version=str(challenger.version))
    # The service module reads MODEL_ENV while BentoML imports it during the build, so the
    # bento records exactly this model (not whatever is `latest` in a shared store); set for
    # the build only: a process that builds and then starts others (release image, a test
    # worker) must not hand its children this build's model names.
    given = {env: os.environ.pop(env, None) for env in MODEL_ENV.values()}
    os.environ.update({MODEL_ENV[name]: tag for name, tag in models.items()})
    # BentoML imports the service module without reloading it: a copy an earlier build in this
    # process imported (`mlgate release image` builds the trial bento after the candidate's)
    # would still name that build's models.
    sys.modules.pop(str(config.get("service", "")).partition(":")[0], None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            pinned_file = Path(tmp) / "bentofile.yaml"
            pinned_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
            bento = bentoml.bentos.build_bentofile(
                str(pinned_file), build_ctx=str(build_context(Path(tmp) / "context"))
            )
    finally:
        for env, value in given.items():
            os.environ.pop(env, None)
            if value is not None:
                os.environ[env] = value
    tag = str(bento.tag)
    if not params.serving.build_tools:
        without_build_tools(Path(bento.path_of("bento.yaml")))
    if challenger is not None:
        print(
            f"build: {strategy.mode}: challenger {lineage['model_name']} version "
            f"{challenger_lineage['version']} -> model {models[CHALLENGER_MODEL_NAME]}"
        )
    print(
        f"build: {lineage['model_name']} version {lineage['version']} "
        f"-> model {model_tag}, bento {tag}"
    )
    return tag


def with_strategy(params: Any, mode: str | None, challenger: str | None) -> Any:
    """params with serving.strategy's mode and/or challenger replaced (`mlgate build
    --strategy/--challenger`, and the trial bento of ml-cd), validated as params.yaml is."""
    from pydantic import ValidationError

    from mlgate.config import Serving

    raw = params.serving.model_dump()
    raw["strategy"].update(
        {k: v for k, v in (("mode", mode), (CHALLENGER, challenger)) if v is not None}
    )
    try:
        serving = Serving.model_validate(raw)
    except ValidationError as err:
        lines = [
            f"  - {'.'.join(['serving', *map(str, e['loc'])])}: {e['msg']}" for e in err.errors()
        ]
        raise MlgateError("--strategy/--challenger:\n" + "\n".join(lines)) from None
    return params.model_copy(update={"serving": serving})


def latest_bento(params: Params) -> str:
    """The project's newest bento: the store's `latest` pointer, read from disk (importing
    bentoml to ask its store costs `make serve` ~0.7 s); bentoml's store when the pointer is
    missing or stale (it rewrites it). use_project_home has set BENTOML_HOME."""
    name = params.model_name
    pointer = Path(os.environ["BENTOML_HOME"]) / "bentos" / name / "latest"
    try:
        version = pointer.read_text().strip()
    except OSError:
        version = ""
    if version and (pointer.parent / version / "bento.yaml").is_file():
        return f"{name}:{version}"
    import bentoml

    try:
        return str(bentoml.bentos.get(f"{name}:latest").tag)
    except bentoml.exceptions.NotFound:
        raise MlgateError(f"no bento of {name} yet: run `mlgate build` first") from None


def serve_command(bento: str, port: int, host: str = "127.0.0.1") -> list[str]:
    return [sys.executable, "-m", "bentoml", "serve", bento, "--host", host, "--port", str(port)]


def serve(params: Params, bento: str | None, port: int, host: str) -> int:
    """Serve a built bento in the foreground, as `bentoml serve`; feedback goes under the repo."""
    home = use_project_home(params)
    tag = bento or latest_bento(params)
    env = dict(os.environ)
    env.setdefault("MLGATE_FEEDBACK_DIR", str(Path(params.serving.feedback.path).resolve()))
    print(
        f"serve: {tag} on http://{host}:{port} "
        f"(BentoML home: {home}, feedback: {env['MLGATE_FEEDBACK_DIR']})",
        flush=True,
    )
    return subprocess.call(serve_command(tag, port, host), env=env)
