"""Check a release of mlgate before anything is published, and print its tag.

Generated projects pin a release by two names: the wheel
`<Repository>/releases/download/vX.Y.Z/mlgate-X.Y.Z-py3-none-any.whl` and the workflows
`<owner>/<name>/.github/workflows/ml-*.yml@vX.Y.Z`, both derived from pyproject.toml (the
version, and [project.urls] Repository) by `mlgate init`. So a release must have: the tag
v<version>; a Repository URL that is the repository releasing it; and, once built, exactly
that wheel (with that metadata) and the sdist. Run by .github/workflows/release.yml; stdlib
only (the runner's python3).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path


def release_tag(event: str, ref: str, ref_name: str, version: str) -> tuple[str, list[str]]:
    """The tag being released: the pushed tag, or v<version> for a manual run on main."""
    if event == "workflow_dispatch":
        problems = [] if ref == "refs/heads/main" else [f"a release is made from main, not {ref}"]
        return f"v{version.removeprefix('v')}", problems
    if not ref.startswith("refs/tags/"):
        return ref_name, [f"{ref} is not a tag"]
    return ref_name, []


def check(root: Path, tag: str, repository_url: str, dist: Path | None) -> list[str]:
    with (root / "pyproject.toml").open("rb") as fh:
        project = tomllib.load(fh)["project"]
    version = project["version"]
    problems = []
    if tag != f"v{version}":
        problems.append(
            f"tag {tag} is not v{version}, pyproject.toml's version: release the version "
            "pyproject.toml names (bump it in a pull request first)"
        )
    url = str(project.get("urls", {}).get("Repository", "")).rstrip("/")
    if url != repository_url:
        problems.append(
            f"pyproject.toml [project.urls] Repository is {url or 'missing'}, but this "
            f"release is made in {repository_url}: projects made by `mlgate init` would pin "
            "the wrong repository"
        )
    if dist is not None:
        wheel = f"mlgate-{version}-py3-none-any.whl"
        expected = {wheel, f"mlgate-{version}.tar.gz"}
        # (not the .gitignore uv writes there: hidden files are neither uploaded nor released)
        found = (
            {p.name for p in dist.iterdir() if not p.name.startswith(".")}
            if dist.is_dir()
            else set()
        )
        if found != expected:
            problems.append(f"{dist} holds {sorted(found)}, not {sorted(expected)}")
        else:
            with zipfile.ZipFile(dist / wheel) as zf:
                meta = Parser().parsestr(
                    zf.read(f"mlgate-{version}.dist-info/METADATA").decode("utf-8")
                )
                if not any(n.startswith("mlgate/template/") for n in zf.namelist()):
                    problems.append(f"{wheel} does not ship the template (mlgate/template/)")
            if meta["Version"] != version:
                problems.append(f"{wheel} says version {meta['Version']}")
            if f"Repository, {repository_url}" not in (meta.get_all("Project-URL") or []):
                problems.append(f"{wheel} does not name {repository_url} as its Repository")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--event", required=True, help="github.event_name")
    parser.add_argument("--ref", required=True, help="github.ref")
    parser.add_argument("--ref-name", required=True, help="github.ref_name")
    parser.add_argument("--version", default="", help="the manual run's version input")
    parser.add_argument("--repository-url", required=True, help="server URL / owner / name")
    parser.add_argument("--dist", type=Path, help="also check the built wheel and sdist here")
    parser.add_argument("--root", type=Path, default=Path("."), help="mlgate's checkout")
    args = parser.parse_args(argv)
    tag, problems = release_tag(args.event, args.ref, args.ref_name, args.version)
    problems += check(args.root, tag, args.repository_url.rstrip("/"), args.dist)
    for problem in problems:
        print(f"release {tag}: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
