"""The README's commands, read from README.md and typed as written in a fresh clone with no
uv on PATH; a command the README adds must be run here or named with the test covering it."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, stop_group
from tests.readme.conftest import Clone

pytestmark = pytest.mark.slow

# README commands this module does not type itself, and where they are checked.
ELSEWHERE = {
    "make test": "ci: .ci/run (running it here would run this test inside itself)",
    "mlgate init churn-model --data churn.csv --target churned --sensitive gender "
    "--sensitive age --no-input": "tests/scaffold/test_init_projects.py",
    "cd churn-model && make run && make test": "tests/scaffold/test_init_projects.py",
    "uv add 'dvc[s3]'": "needs the network for the extra: here, `uv` is found once activated",
    "dvc push": "typed here to the repo-local remote; to a bucket it needs credentials",
    "mlgate rollback": "tests/registry/test_registry.py (needs an earlier production model)",
    "mlgate outcomes import labels.csv": "tests/loop/test_compare.py (needs recorded traffic "
    "and its labels)",
    "mlgate compare": "tests/loop/test_compare.py (needs champion and challenger traffic)",
    "mlgate predict --input 'exports/*.parquet' --output scores/": "tests/loop/test_batch.py "
    "(a glob of Parquet parts gives the rows a CSV gives)",
    "uv tool install https://github.com/mlgate-dev/mlgate/releases/download/v0.1.0/"
    "mlgate-0.1.0-py3-none-any.whl": "tests/scaffold/test_release.py (a release served locally: "
    "the real address needs the network)",
    **dict.fromkeys(
        (
            "cp ~/exports/credit-2025-06.csv data/german_credit.csv",
            "mlgate validate",
            "dvc add data",
            "dvc push data.dvc",
            'git add data.dvc .dvc/example-remote && git commit -m "data: June export"',
        ),
        "tests/pipeline/test_new_data.py (validate, dvc add, dvc push, commit, make run)",
    ),
}
# README commands typed here, as written (ports made free, the example version 3 is 1 here).
TYPED = {
    "make run",
    "make ui",
    "source .venv/bin/activate",
    "mlgate register",
    "make build MODEL=candidate",
    "make build",
    "make predict INPUT=artifacts/data/test.parquet OUTPUT=artifacts/batch/test MODEL=candidate",
    "mlgate promote 3 --to staging",
    'mlgate promote 3 --to production --note "Q3 refresh"',
    "mlgate lineage credit-risk@production",
    "make serve",
    "curl",
    "make monitor",
    "dvc repro",
    "dvc metrics show",
    "dvc remote add -d storage s3://my-bucket/credit-risk",
}
typed: set[str] = set()


def readme_commands(text: str) -> list[str]:
    """Each command of each ```bash block: comments cut, continued lines joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        pending = ""
        for line in block.splitlines():
            line = strip_comment(line)  # a comment may hold an apostrophe (project's)
            pending = f"{pending} {line}" if pending else line
            if pending.count("'") % 2 or pending.endswith("\\"):
                continue  # an open quote or a backslash: the command goes on
            if pending:
                commands.append(pending)
            pending = ""
    return commands


def strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] == " "):
            return line[:i].strip()
    return line.strip()


def test_every_readme_command_is_typed_here_or_covered_elsewhere() -> None:
    commands = readme_commands((ROOT / "README.md").read_text())
    assert "make run" in commands and len(commands) > 10  # the parser reads the README
    for command in commands:
        key = "curl" if command.startswith("curl ") else command
        assert key in TYPED or key in ELSEWHERE, (
            f"README command {command!r} is neither typed by tests/readme nor listed in ELSEWHERE"
        )
    for where in ELSEWHERE.values():
        if where.startswith("tests/"):
            assert (ROOT / where.split()[0]).is_file(), where


def test_every_make_target_the_docs_name_exists() -> None:
    """`make bench-batch` in a sentence is a command too: each `make <target>` the README and
    docs/ show (in a code span, or at the start of a line of a code block) is a Makefile target."""
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))
    assert {"run", "test", "bench-batch"} <= targets  # the parser reads the Makefile
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        named = set(re.findall(r"`make ([a-z][a-z0-9-]*)", text))
        for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S):
            named |= set(re.findall(r"^ *(?:\$ )?make ([a-z][a-z0-9-]*)", block, re.M))
        unknown = sorted(named - targets)
        assert not unknown, f"{doc.relative_to(ROOT)} shows make {unknown}: not in the Makefile"


def test_make_run_needs_no_uv_on_path(fresh_clone: Clone) -> None:
    typed.add("make run")
    out = fresh_clone.make_run.stdout
    assert "uv not found: installing it into .tools/ with pip" in out
    assert "make run: done in" in out and "See the runs: make ui" in out
    assert "Failed to resolve installed pip version" not in fresh_clone.make_run.stderr
    assert "Traceback" not in fresh_clone.make_run.stderr


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    pytest.fail(f"{url} never answered:\n{log.read_text()[-4000:]}")


def start(clone: Clone, script: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            ["bash", "-c", script],
            cwd=clone.root,
            env=clone.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # make, mlflow/bentoml and their workers: one group
        )


def activated(command: str) -> str:
    """A README command as typed after the README's one `source .venv/bin/activate`."""
    typed.update({"source .venv/bin/activate", command})
    return f"source .venv/bin/activate && {command}"


def make(
    clone: Clone, target: str, *variables: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    typed.add(f"make {target}")
    return clone.sh(" ".join(["make", target, *variables]), check=check)


def test_the_readme_top_to_bottom(fresh_clone: Clone, tmp_path: Path) -> None:
    clone = fresh_clone
    typed.add("make run")  # by the fixture
    readme = (ROOT / "README.md").read_text()

    # make ui: the runs of `make run` in the MLflow UI
    port = free_port()
    typed.add("make ui")
    ui = start(clone, f"make ui UI_PORT={port}", tmp_path / "ui.log")
    try:
        wait_for(f"http://127.0.0.1:{port}/", ui, tmp_path / "ui.log")
    finally:
        stop_group(ui)

    # activated once: mlgate, dvc, mlflow and uv are this project's
    found = clone.sh(activated("command -v mlgate dvc mlflow uv")).stdout.split()
    assert found == [str(clone.root / ".venv/bin" / t) for t in ("mlgate", "dvc", "mlflow", "uv")]
    clone.sh(activated("mlgate register"))  # idempotent: the run `make run` registered

    # before any promotion, `make build` says what to type instead
    out = make(clone, "build", check=False)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "make build MODEL=candidate" in out.stderr
    built = make(clone, "build MODEL=candidate")  # BentoML's build finds uv: none on PATH
    assert "Traceback" not in built.stderr
    # batch scoring of the test split with the model `make run` registered
    make(
        clone,
        "predict",
        "INPUT=artifacts/data/test.parquet OUTPUT=artifacts/batch/test MODEL=candidate",
    )
    typed.add(
        "make predict INPUT=artifacts/data/test.parquet OUTPUT=artifacts/batch/test MODEL=candidate"
    )
    summary = json.loads((clone.root / "artifacts/batch/test/summary.json").read_text())
    assert summary["rows_scored"] > 0, summary

    # the registry road, with version 1 for the README's example version 3
    for command in (
        "mlgate promote 3 --to staging",
        'mlgate promote 3 --to production --note "Q3 refresh"',
        "mlgate lineage credit-risk@production",
    ):
        clone.sh(activated(command).replace(" 3 ", " 1 "))
    make(clone, "build")  # production exists now
    # `mlgate lineage … | head`: a closed pipe is no traceback
    piped = clone.sh(activated("mlgate lineage credit-risk@production | head -1"))
    assert "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr

    # make serve, then the README's curl (on a free port: tests may run side by side)
    port = free_port()
    typed.add("make serve")
    serve = start(clone, f"make serve PORT={port}", tmp_path / "serve.log")
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", serve, tmp_path / "serve.log")
        curl = next(c for c in readme_commands(readme) if c.startswith("curl "))
        typed.add("curl")
        answer = clone.sh(curl.replace("localhost:3000", f"127.0.0.1:{port}")).stdout
        assert '"probability"' in answer and '"model_version":"1"' in answer.replace(" ", "")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/model_info", timeout=30) as r:
            assert r.status == 200  # GET, as the README lists it
    finally:
        stop_group(serve)
    make(clone, "monitor")  # a handful of predictions: "not enough data", exit 0

    # after a params edit, `dvc repro` reruns train onward only
    params = clone.root / "params.yaml"
    text = params.read_text()
    edited = re.sub(r"(?m)^(\s+C:\s*)[\d.]+", r"\g<1>0.5", text, count=1)
    assert edited != text, "the example's hyperparameter C is where the README edit goes"
    params.write_text(edited)
    repro = clone.sh(activated("dvc repro"))
    ran = set(re.findall(r"Running stage '(\w+)'", repro.stdout))
    assert ran == {"train", "evaluate", "gate"}, repro.stdout
    metrics = clone.sh(activated("dvc metrics show")).stdout
    header = metrics.splitlines()[0].split()
    assert header[0] == "Path" and "roc_auc" in header and len(header) <= 12, metrics
    assert "fairness" not in metrics and "groups" not in metrics
    clone.sh(activated("dvc metrics diff HEAD"))

    # the DVC remote lines: to the repo-local remote, then pointing at a bucket
    clone.sh(activated("dvc push"))
    clone.sh(activated("dvc remote add -d storage s3://my-bucket/credit-risk"))
    assert "s3://my-bucket/credit-risk" in (clone.root / ".dvc/config").read_text()
    assert typed >= TYPED, f"README commands not typed: {sorted(TYPED - typed)}"
