"""A project made by `mlgate init` pins an mlgate release, never a placeholder or a path of
the machine that made it, and `mlgate update` takes it from one release to the next.

The releases are real ones, made here: a copy of this repository tagged v0.1.0 and v0.2.0,
each tag's wheel built with uv and served, with the repository itself (git over dumb HTTP),
by a local HTTP server laid out as GitHub lays out a repository and its release assets. Only
the host differs from a real user's run (`--mlgate-repo http://127.0.0.1:PORT/acme/mlgate`)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlgate.scaffold.init import InitRequest, answers_for, render
from mlgate.scaffold.source import TEMPLATE_DIR, this_release
from tests.conftest import ROOT, copy_repo, run
from tests.scaffold.conftest import VENV_BIN, churn_frame

GIT_ID = ["-c", "user.name=t", "-c", "user.email=t@t"]
CALLERS = ("ci", "cd", "rollback", "monitor")


def callers(project: Path) -> dict[str, str]:
    """Each caller's `uses:` line, by workflow."""
    found = {}
    for name in CALLERS:
        text = (project / ".github" / "workflows" / f"{name}.yml").read_text()
        found[name] = re.search(r"^\s+uses: (\S+)$", text, re.M).group(1)  # type: ignore[union-attr]
    return found


def mlgate_dependency(project: Path) -> str:
    with (project / "pyproject.toml").open("rb") as fh:
        deps = tomllib.load(fh)["project"]["dependencies"]
    return next(d for d in deps if d.startswith("mlgate"))


def no_machine_paths(project: Path, *paths: Path) -> None:
    for path in project.rglob("*"):
        if path.is_file() and ".git" not in path.parts and ".venv" not in path.parts:
            text = path.read_text(errors="replace")
            for local in paths:
                assert str(local) not in text, f"{path} names {local}"
            assert "OWNER/" not in text, f"{path} names a placeholder"


# ---------------------------------------------------------------- the default, offline


def test_default_project_pins_the_installed_release(tmp_path: Path) -> None:
    """No option: the repository and version come from the installed package's metadata,
    which come from pyproject.toml; the project names that release everywhere."""
    with (ROOT / "pyproject.toml").open("rb") as fh:
        project_meta = tomllib.load(fh)["project"]
    version, url = project_meta["version"], project_meta["urls"]["Repository"]
    assert importlib.metadata.version("mlgate") == version
    assert not url.startswith("https://github.com/OWNER/")
    owner_name = url.removeprefix("https://github.com/")

    csv = tmp_path / "churn.csv"
    churn_frame().to_csv(csv, index=False)
    request = InitRequest(dest=tmp_path / "churn-model", data=csv, target="churned")
    release = this_release()
    assert (release.url, release.repo, release.tag) == (url, owner_name, f"v{version}")
    project = tmp_path / "churn-model"
    # what an installed wheel renders (from a checkout: the same files at the release tag)
    render(str(TEMPLATE_DIR), project, answers_for(request, pd.read_csv(csv)), None, True)

    wheel = f"{url}/releases/download/v{version}/mlgate-{version}-py3-none-any.whl"
    assert mlgate_dependency(project) == f"mlgate @ {wheel}"
    assert "[tool.uv.sources]" not in (project / "pyproject.toml").read_text()
    for name, uses in callers(project).items():
        assert uses == f"{owner_name}/.github/workflows/ml-{name}.yml@v{version}"
        text = (project / ".github" / "workflows" / f"{name}.yml").read_text()
        assert f"mlgate-repository: {owner_name}\n" in text
        assert f"mlgate-ref: v{version}\n" in text
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert (answers["_src_path"], answers["_commit"]) == (f"{url}.git", f"v{version}")
    no_machine_paths(project, ROOT, tmp_path)


def test_update_explains_a_project_made_from_a_development_checkout(tmp_path: Path) -> None:
    csv = tmp_path / "churn.csv"
    churn_frame().to_csv(csv, index=False)
    project = tmp_path / "churn-model"
    request = InitRequest(dest=project, data=csv, target="churned", mlgate_path=str(ROOT))
    answers = answers_for(request, pd.read_csv(csv))
    render(str(ROOT / "src/mlgate/template"), project, answers, None, False)  # what it renders
    text = (project / "pyproject.toml").read_text()
    assert "[tool.uv.sources]" in text and "DEVELOPMENT ONLY" in text  # said where it is
    run(["git", "init", "-q", "-b", "main"], project)
    run(["git", "add", "-A"], project)
    run(["git", *GIT_ID, "commit", "-qm", "dev"], project)

    out = run([str(VENV_BIN / "mlgate"), "update", "--to", "v0.2.0"], project, check=False)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "not from an mlgate release" in out.stderr
    assert "_commit: vX.Y.Z" in out.stderr  # and what to do about it
    assert run(["git", "status", "--porcelain"], project).stdout == ""  # nothing touched


# ---------------------------------------------------------------- release to release


def release(repo: Path, version: str, served: Path) -> Path:
    """Tag v<version> and publish its wheel where GitHub would: releases/download/<tag>/."""
    run(["git", *GIT_ID, "tag", "-a", f"v{version}", "-m", f"mlgate {version}"], repo)
    assets = served / "releases" / "download" / f"v{version}"
    run(["uv", "build", "--wheel", "--quiet", "--out-dir", str(assets)], repo)
    wheel = assets / f"mlgate-{version}-py3-none-any.whl"
    assert wheel.is_file()
    return wheel


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def locked_mlgate(project: Path) -> dict[str, object]:
    with (project / "uv.lock").open("rb") as fh:
        return next(p for p in tomllib.load(fh)["package"] if p["name"] == "mlgate")


@pytest.mark.slow
def test_init_from_a_release_then_update_to_the_next(
    tmp_path: Path, churn_csv: Path, server: tuple[str, Path]
) -> None:
    base, root = server
    url = f"{base}/acme/mlgate"
    served = root / "acme" / "mlgate"
    served.mkdir(parents=True)
    (tmp_path / "mlgate").mkdir()
    mlgate = copy_repo(tmp_path / "mlgate", data=False)  # untagged
    # mlgate run from that checkout: its sources, this venv's dependencies (and metadata:
    # the installed version, 0.1.0)
    cli = [sys.executable, "-c", "import sys; from mlgate.cli import main; sys.exit(main())"]
    env = {"PYTHONPATH": str(mlgate / "src"), "COPIER_CACHE_DIR": str(tmp_path / "copier")}
    init = [*cli, "init", "--no-input", "--data", str(churn_csv), "--target", "churned"]
    project = tmp_path / "churn-model"

    # An untagged checkout is not a release: refused, with what to do, nothing written.
    out = run([*init, str(project), "--mlgate-repo", url], tmp_path, check=False, **env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "has no tag v0.1.0" in out.stderr and "--mlgate-path" in out.stderr
    assert not project.exists()

    wheel1 = release(mlgate, "0.1.0", served)
    # v0.2.0 changes the template; the checkout (HEAD) is now ahead of the release v0.1.0
    pyproject = mlgate / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    makefile = mlgate / "src/mlgate/template/project/Makefile.jinja"
    makefile.write_text(
        makefile.read_text() + "\nversion: ## the mlgate here\n\tmlgate --version\n"
    )
    run(["git", *GIT_ID, "commit", "-qam", "mlgate 0.2.0"], mlgate)
    wheel2 = release(mlgate, "0.2.0", served)
    # the repository itself, where a git client (copier) finds it: <url>.git, over HTTP
    run(["git", "clone", "-q", "--bare", str(mlgate), str(served) + ".git"], tmp_path)
    run(["git", "update-server-info"], Path(str(served) + ".git"))

    # Installed mlgate is 0.1.0: the project is v0.1.0's, although HEAD is v0.2.0.
    made = run([*init, str(project), "--mlgate-repo", url], tmp_path, **env)
    assert "rendering the template of release v0.1.0" in made.stdout
    assert mlgate_dependency(project) == f"mlgate @ {url}/releases/download/v0.1.0/{wheel1.name}"
    assert set(callers(project).values()) == {
        f"acme/mlgate/.github/workflows/ml-{name}.yml@v0.1.0" for name in CALLERS
    }
    assert "mlgate --version" not in (project / "Makefile").read_text()
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert (answers["_src_path"], answers["_commit"]) == (f"{url}.git", "v0.1.0")
    locked = locked_mlgate(project)
    assert locked["source"] == {"url": f"{url}/releases/download/v0.1.0/{wheel1.name}"}
    assert locked["wheels"][0]["hash"] == f"sha256:{sha256(wheel1)}"  # type: ignore[index]
    no_machine_paths(project, mlgate, ROOT, tmp_path / "input")
    assert run(["git", "status", "--porcelain"], project).stdout == ""

    # The environment CI builds: `uv sync --locked` installs the released wheel.
    run(["uv", "sync", "--locked", "--quiet", "--no-default-groups"], project)
    assert "mlgate 0.1.0" in run([".venv/bin/mlgate", "--version"], project).stdout

    # Update, release to release, as the docs say (from the project, clean tree).
    run([*cli, "update", "--to", "v0.2.0"], project, **env)
    assert mlgate_dependency(project) == f"mlgate @ {url}/releases/download/v0.2.0/{wheel2.name}"
    assert set(callers(project).values()) == {
        f"acme/mlgate/.github/workflows/ml-{name}.yml@v0.2.0" for name in CALLERS
    }
    assert "mlgate --version" in (project / "Makefile").read_text()  # the template's change
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == "v0.2.0"
    assert locked_mlgate(project)["wheels"][0]["hash"] == f"sha256:{sha256(wheel2)}"  # type: ignore[index]
    status = run(["git", "status", "--porcelain"], project).stdout
    assert ".rej" not in status and "uv.lock" in status
    no_machine_paths(project, mlgate, ROOT, tmp_path / "input")

    # A release that does not exist: a clear error, not copier's "Unknown revision".
    run(["git", *GIT_ID, "commit", "-qam", "Take mlgate v0.2.0"], project)
    out = run([*cli, "update", "--to", "v0.9.0"], project, check=False, **env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "has no release v0.9.0 (releases: v0.1.0, v0.2.0)" in out.stderr
