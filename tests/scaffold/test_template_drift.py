"""The template's rendering for the credit example tracks this repository's own files, so
a generated project and the example cannot drift apart unnoticed."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from mlgate.config import load_params
from mlgate.scaffold.init import InitRequest, answers_for, render
from mlgate.scaffold.source import TEMPLATE_DIR, this_release
from tests.conftest import ROOT


def credit_like_frame() -> pd.DataFrame:
    """Rows that honour the example's schema (the example's data is DVC-tracked)."""
    from credit_risk.schema import LabelledCreditApplication

    columns = LabelledCreditApplication.to_schema().columns
    rows = 60
    data: dict[str, Any] = {}
    for name, col in columns.items():
        checks = {c.name: c.statistics for c in col.checks}
        if "isin" in checks:
            allowed = checks["isin"]["allowed_values"]
            data[name] = list(itertools.islice(itertools.cycle(sorted(allowed)), rows))
        else:
            low = checks["greater_than_or_equal_to"]["min_value"]
            data[name] = [low + i for i in range(rows)]
    return pd.DataFrame(data)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("drift")
    csv = work / "german_credit.csv"
    credit_like_frame().to_csv(csv, index=False)
    request = InitRequest(
        dest=work / "credit-example", data=csv, target="risk", sensitive=("sex", "age")
    )
    answers = answers_for(request, pd.read_csv(csv))
    # the example's own names (init refuses them for a new project: they are installed)
    answers.update(project_name="credit-risk", package_name="credit_risk")
    out = work / "credit-risk"
    render(str(TEMPLATE_DIR), out, answers, None)
    return out


def read_yaml(path: Path) -> Any:
    with path.open() as fh:
        return yaml.safe_load(fh)


def framework_dep(dep: str) -> bool:
    """Deps that differ by design: the framework's sources here, its locked version there."""
    return dep.startswith("src/mlgate/") or dep == "uv.lock"


def test_dvc_stages_match(rendered: Path) -> None:
    ours = read_yaml(ROOT / "dvc.yaml")["stages"]
    theirs = read_yaml(rendered / "dvc.yaml")["stages"]
    assert list(theirs) == list(ours)
    for name, stage in ours.items():
        other = theirs[name]
        assert other["cmd"] == stage["cmd"], name
        assert other["params"] == stage["params"], name
        for key in ("outs", "metrics", "plots"):
            assert other.get(key) == stage.get(key), f"{name}.{key}"
        deps = [d for d in stage["deps"] if not framework_dep(d)]
        assert [d for d in other["deps"] if not framework_dep(d)] == deps, name


def test_params_have_the_same_keys_and_paths(rendered: Path) -> None:
    ours = read_yaml(ROOT / "params.yaml")
    theirs = read_yaml(rendered / "params.yaml")
    extra_by_design = {"data.task", "features.impute", "features.monotone", "gate.max_metrics"}
    for section, body in ours.items():
        assert section in theirs, section
        if not isinstance(body, dict):
            continue
        mine, other = set(body), set(theirs[section])
        assert mine <= other, f"{section}: the template lacks {sorted(mine - other)}"
        extra = {f"{section}.{k}" for k in other - mine}
        assert extra <= extra_by_design, f"{section}: unexpected {sorted(extra)}"
        for key, value in body.items():
            if isinstance(value, str) and "/" in value:  # paths must agree exactly
                assert theirs[section][key] == value, f"{section}.{key}"
    load_params(rendered / "params.yaml")  # and it is a valid configuration


def make_rules(path: Path) -> dict[str, list[str]]:
    rules: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z][\w-]*):", line)
        if match:
            current = match.group(1)
            rules[current] = [line]
        elif line.startswith("\t") and current:
            rules[current].append(line)
        else:
            current = None
    return rules


def test_makefile_targets_and_recipes_match(rendered: Path) -> None:
    ours, theirs = make_rules(ROOT / "Makefile"), make_rules(rendered / "Makefile")
    # mlgate's own developer targets: benchmarks, linting, driving mlgate's workflows, and the
    # example's image on a Docker that scripts/docker_local.py sets up (not in a project)
    own = {"bench", "bench-serve", "bench-batch", "bench-scale", "lint-workflows", "test-workflows"}
    own |= {"image", "image-test"}
    assert set(ours) - own == set(theirs)
    for target in set(theirs) - {"lint", "format", "test", "test-fast"}:  # paths, help text
        assert theirs[target] == ours[target], target


def test_gitignore_and_dvc_remote_match(rendered: Path) -> None:
    for ignore in (".gitignore", "artifacts/data/.gitignore", "artifacts/model/.gitignore"):
        assert (rendered / ignore).read_text() == (ROOT / ignore).read_text(), ignore
    for root in (ROOT, rendered):
        text = (root / ".dvc" / "config").read_text()
        remote = re.search(r"^\s*remote = (\S+)", text, re.M).group(1)  # type: ignore[union-attr]
        url = re.search(rf"remote \"{remote}\"'\]\s*url = (\S+)", text).group(1)  # type: ignore[union-attr]
        assert "://" not in url and not url.startswith("/"), f"{root}: {url} not repo-local"


def test_plot_templates_match(rendered: Path) -> None:
    """dvc.yaml names the confusion plot's template by name: both repositories carry it."""
    name = ".dvc/plots/confusion_counts.json"
    assert (rendered / name).read_text() == (ROOT / name).read_text()


def anchors(markdown: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings."""
    heads = re.findall(r"^#+ (.+)$", markdown.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_every_link_resolves_in_the_project_or_the_pinned_release(rendered: Path) -> None:
    """A generated project names no file it does not have: a relative link is a file of
    the project; mlgate's own docs are linked at the pinned release (this checkout)."""
    pinned = this_release()
    release = f"{re.escape(pinned.url)}/(?:blob|tree)/{pinned.tag}/"
    checked = 0
    for path in rendered.rglob("*"):
        if not path.is_file() or path.suffix not in {".md", ".yaml", ".yml", ".py", ""}:
            continue
        text = path.read_text()
        for target in re.findall(rf"{release}([\w./-]+(?:#[\w-]+)?)", text):
            file, _, anchor = target.partition("#")
            assert (ROOT / file).exists(), f"{path.name} links {file}, absent from mlgate"
            if anchor:
                assert anchor in anchors(ROOT / file), f"{path.name}: no #{anchor} in {file}"
            checked += 1
        for target in re.findall(r"\]\((?!https?://|#)([^)#]+)", text):  # Markdown links
            assert (path.parent / target).exists(), f"{path.name} links {target}: absent"
        # a bare mention of mlgate's docs or manifests reads as a file of this project
        assert not re.search(r"(?<![/\w])(docs/[A-Z]+\.md|deploy/k8s)", text), path.name
    assert checked >= 8
