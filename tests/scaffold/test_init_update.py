"""An older generated project takes the current template with `copier update`: the update
applies, the user's own schema edits survive, the project's tests still pass."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run
from tests.scaffold.conftest import VENV_BIN, mlgate_init

pytestmark = pytest.mark.slow

GIT_ID = ["-c", "user.name=t", "-c", "user.email=t@t"]
SCHEMA = Path("src/churn_model/schema.py")


def commit_and_tag(repo: Path, message: str, tag: str | None = None) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", *GIT_ID, "commit", "-qm", message], repo)
    if tag:
        run(["git", "tag", tag], repo)


def template_repo(dest: Path) -> Path:
    """The template as released at v0.1.0: a git repo laid out as mlgate's own."""
    shutil.copy2(ROOT / "copier.yml", dest / "copier.yml")
    shutil.copytree(ROOT / "src/mlgate/template", dest / "src/mlgate/template")
    run(["git", "init", "-q", "-b", "main"], dest)
    commit_and_tag(dest, "template v0.1.0", "v0.1.0")
    return dest


def test_update_applies_and_keeps_the_users_schema_edits(churn_csv: Path, tmp_path: Path) -> None:
    (tmp_path / "template").mkdir()
    template = template_repo((tmp_path / "template").resolve())
    project = tmp_path / "churn-model"
    mlgate_init(
        project,
        "--data",
        churn_csv,
        "--target",
        "churned",
        "--template",
        template,
        "--vcs-ref",
        "v0.1.0",
    )
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "v0.1.0"

    # The team reviews the inferred draft: a real bound and a description for tenure.
    schema = project / SCHEMA
    drafted = "tenure: Series[int] = pa.Field(ge=0, le=32)"
    assert drafted in schema.read_text()
    reviewed = 'tenure: Series[int] = pa.Field(ge=0, le=600, description="months as a customer")'
    schema.write_text(schema.read_text().replace(drafted, reviewed))
    commit_and_tag(project, "schema: reviewed tenure")

    # mlgate v0.2.0 changes the template, including the very file the team edited.
    tpl = template / "src/mlgate/template/project"
    schema_tpl = tpl / "src/{{ package_name }}" / "schema.py.jinja"
    schema_tpl.write_text(
        schema_tpl.read_text().replace("review it.", "review it before the first release.")
    )
    makefile = tpl / "Makefile.jinja"
    makefile.write_text(
        makefile.read_text() + "\nversion: ## the mlgate this project runs\n\tmlgate --version\n"
    )
    commit_and_tag(template, "template v0.2.0", "v0.2.0")

    run([str(VENV_BIN / "mlgate"), "update", "--to", "v0.2.0"], project)

    status = run(["git", "status", "--porcelain"], project).stdout
    assert ".rej" not in status
    for path in project.rglob("*"):
        if path.is_file() and ".git" not in path.parts and path.suffix in {".py", ".yml", ""}:
            assert "<<<<<<<" not in path.read_text(errors="replace"), path
    text = schema.read_text()
    assert reviewed in text  # the team's edit survived
    assert "review it before the first release." in text  # and the template's change came in
    assert "mlgate --version" in (project / "Makefile").read_text()
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == "v0.2.0"
    assert "ml-ci.yml@v0.2.0" in (project / ".github/workflows/ci.yml").read_text()  # pins moved
    assert "/releases/download/v0.2.0/" in (project / "pyproject.toml").read_text()

    # the project's own tests still pass after the update, as on a laptop before `make repro`
    # (tool_env unsets CI: in CI the model tests fail without a model, see test_contract.py)
    run(["make", "test"], project)
