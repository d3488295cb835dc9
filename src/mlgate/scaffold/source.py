"""Which mlgate release a project is made from and updated to: the tag, the template's source
(this checkout, a git URL), and what a project recorded in .copier-answers.yml."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlgate import __version__
from mlgate.errors import MlgateError

if TYPE_CHECKING:
    pass


TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "template"
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


def _checkout() -> str | None:
    """This mlgate's own git checkout, when it runs from one (not an installed wheel)."""
    root = Path(__file__).resolve().parents[3]  # src/mlgate/scaffold/source.py -> the checkout
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


def template_source(
    release: Release,
    template: str | None = None,
    vcs_ref: str | None = None,
    mlgate_path: str | None = None,
) -> TemplateSource:
    """The template the project is made from, consistent with the release it pins:
    - `--template SRC [--vcs-ref TAG]`: that template, as copier records it;
    - `--mlgate-path DIR` (development): DIR's working tree, whatever its state;
    - else the template of the pinned release: the installed package's own copy, or, when
      mlgate runs from a git checkout, that checkout at the release tag (its working tree
      may hold unreleased changes that the released workflows and package do not match).
    """
    if template:
        return TemplateSource(template, vcs_ref, record_release=False)
    if mlgate_path:
        template = Path(mlgate_path).resolve() / "src" / "mlgate" / "template"
        if not (template / "copier.yml").is_file():
            raise MlgateError(
                f"--mlgate-path {mlgate_path}: not an mlgate checkout "
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
