"""The work of the stand-in actions (checkout, upload/download-artifact, cache), run on the host
by act.

Each reads its inputs from the environment its action.yml sets; paths are under
$GITHUB_WORKSPACE. Remotes live in $MLGATE_ACT_REMOTES/OWNER/REPO.git, artifacts of one act run
in $MLGATE_ACT_ARTIFACTS/<name>/, the road's cache in $MLGATE_ACT_CACHE/OWNER/REPO/<scope>/<key>/.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def checkout() -> None:
    env = os.environ
    remote = Path(env["MLGATE_ACT_REMOTES"]) / f"{env['REPOSITORY']}.git"
    if not remote.is_dir():
        sys.exit(f"checkout stand-in: no repository {env['REPOSITORY']} (no {remote})")
    dest = Path(env["GITHUB_WORKSPACE"], env.get("DEST") or "")
    ref = env.get("REF") or env["GITHUB_SHA"]
    dest.mkdir(parents=True, exist_ok=True)
    if not (dest / ".git").exists():
        git("init", "-q", cwd=dest)
        git("remote", "add", "origin", f"file://{remote}", cwd=dest)
    if env.get("DEPTH", "1") == "0":
        git("fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*", cwd=dest)
        git("fetch", "-q", "origin", ref, cwd=dest)
    else:
        git("fetch", "-q", "--depth", env.get("DEPTH", "1"), "origin", ref, cwd=dest)
    git("checkout", "-q", "--force", "--detach", "FETCH_HEAD", cwd=dest)
    git("clean", "-q", "-ffdx", "-e", ".mlgate", cwd=dest)
    print(
        f"checkout stand-in: {env['REPOSITORY']}@{ref} -> {dest}",
        git("rev-parse", "HEAD", cwd=dest),
    )


def _matches(workspace: Path, patterns: list[str], hidden: bool) -> list[Path]:
    chosen: dict[Path, None] = {}
    for pattern in patterns:
        exclude = pattern.startswith("!")
        spec = pattern[1:] if exclude else pattern
        found: list[Path] = []
        for hit in glob.glob(spec, root_dir=workspace, recursive=True, include_hidden=hidden):
            p = workspace / hit
            found += [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else [p]
        for f in found:
            rel = f.relative_to(workspace)
            if not hidden and any(part.startswith(".") for part in rel.parts):
                continue
            if exclude:
                chosen.pop(rel, None)
            else:
                chosen[rel] = None
    return list(chosen)


def _root(workspace: Path, patterns: list[str]) -> Path:
    """Like actions/upload-artifact: the least common ancestor of the search paths."""
    bases = []
    for pattern in patterns:
        parts = Path(pattern).parts
        fixed = next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))
        bases.append(str(workspace.joinpath(*parts[:fixed])))
    common = Path(os.path.commonpath(bases))
    return (common.parent if common.is_file() else common).relative_to(workspace)


def upload() -> None:
    env = os.environ
    workspace = Path(env["GITHUB_WORKSPACE"])
    patterns = [line.strip() for line in env["PATHS"].splitlines() if line.strip()]
    files = _matches(workspace, patterns, env.get("HIDDEN") == "true")
    if not files:
        message = f"upload-artifact stand-in: no files match {patterns}"
        if env.get("IF_NO_FILES") == "error":
            sys.exit(message)
        print(f"::warning::{message}")
        return
    root = _root(workspace, [p for p in patterns if not p.startswith("!")])
    target = Path(env["MLGATE_ACT_ARTIFACTS"]) / env["NAME"]
    if target.exists():
        sys.exit(f"upload-artifact stand-in: an artifact named {env['NAME']} already exists")
    for f in files:
        out = target / f.relative_to(root)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(workspace / f, out)
    print(f"upload-artifact stand-in: {len(files)} files -> {target}")


def download() -> None:
    env = os.environ
    source = Path(env["MLGATE_ACT_ARTIFACTS"]) / env["NAME"]
    if not source.is_dir():
        sys.exit(f"download-artifact stand-in: no artifact named {env['NAME']} in this run")
    dest = Path(env["GITHUB_WORKSPACE"], env.get("DEST") or "")
    shutil.copytree(source, dest, dirs_exist_ok=True)
    print(f"download-artifact stand-in: {source} -> {dest}")


def _cache_scopes() -> list[str]:
    """The refs whose caches this job may restore, its own first (GitHub: the ref, then a pull
    request's base branch, then the default branch)."""
    env = os.environ
    scopes = [env["GITHUB_REF"]]
    if env.get("GITHUB_BASE_REF"):
        scopes.append(f"refs/heads/{env['GITHUB_BASE_REF']}")
    scopes.append("refs/heads/main")
    return list(dict.fromkeys(scopes))


def _cache_store() -> Path:
    return Path(os.environ["MLGATE_ACT_CACHE"]) / os.environ["GITHUB_REPOSITORY"]


def _cache_entry(scope: str, key: str) -> Path:
    return _cache_store() / quote(scope, safe="") / quote(key, safe="")


def _set(file_var: str, name: str, value: str) -> None:
    with open(os.environ[file_var], "a") as fh:
        fh.write(f"{name}={value}\n")


def cache_restore() -> None:
    env = os.environ
    key = env["INPUT_KEY"]
    prefixes = [k.strip() for k in env.get("INPUT_RESTORE-KEYS", "").splitlines() if k.strip()]
    found, exact = None, False
    for scope in _cache_scopes():
        if (_cache_entry(scope, key) / "saved").exists():
            found, exact = _cache_entry(scope, key), True
            break
    for prefix in prefixes if found is None else []:
        for scope in _cache_scopes():
            folder = _cache_store() / quote(scope, safe="")
            entries = [e for e in folder.glob("*") if (e / "saved").exists()]
            matching = [e for e in entries if e.name.startswith(quote(prefix, safe=""))]
            if matching:  # the newest entry of the first scope that has one
                found = max(matching, key=lambda e: float((e / "saved").read_text()))
                break
        if found is not None:
            break
    _set("GITHUB_OUTPUT", "cache-hit", "true" if exact else "false")
    _set("GITHUB_STATE", "hit", "true" if exact else "false")
    if found is None:
        print(f"cache stand-in: no cache for key {key}")
        return
    shutil.copytree(found / "files", env["GITHUB_WORKSPACE"], dirs_exist_ok=True)
    print(f"cache stand-in: restored {found.name} ({'exact' if exact else 'restore-key'} match)")


def cache_save() -> None:
    env = os.environ
    key = env["INPUT_KEY"]
    entry = _cache_entry(env["GITHUB_REF"], key)
    if env.get("STATE_hit") == "true" or entry.exists():
        print(f"cache stand-in: {key} exists, not saved again")
        return
    workspace = Path(env["GITHUB_WORKSPACE"])
    patterns = [line.strip() for line in env["INPUT_PATH"].splitlines() if line.strip()]
    hits = [workspace / h for p in patterns for h in glob.glob(p, root_dir=workspace)]
    if not hits:
        print(f"::warning::cache stand-in: nothing to save for {patterns}")
        return
    for hit in hits:
        target = entry / "files" / hit.relative_to(workspace)
        if hit.is_dir():
            shutil.copytree(hit, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(hit, target)
    (entry / "saved").write_text(str(time.time()))
    print(f"cache stand-in: saved {key}")


if __name__ == "__main__":
    {
        "checkout": checkout,
        "upload": upload,
        "download": download,
        "cache-restore": cache_restore,
        "cache-save": cache_save,
    }[sys.argv[1]]()
