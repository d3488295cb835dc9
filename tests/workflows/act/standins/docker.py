"""Stand-in for `docker` (and `kubectl`): records every call, keeps images by digest, and runs a
"container" as a real `bentoml serve` of the bento the image was built from.

mlgate asks docker for: login, build (through `bentoml containerize`), push, inspect, pull,
tag, rm, run. State of one harness run lives in $MLGATE_ACT_DOCKER (state.json, calls.jsonl).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

HOME = Path(os.environ["MLGATE_ACT_DOCKER"])


@contextmanager
def state() -> Iterator[dict[str, Any]]:
    HOME.mkdir(parents=True, exist_ok=True)
    with (HOME / "state.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = HOME / "state.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        for key in ("images", "registry", "containers"):
            data.setdefault(key, {})
        yield data
        path.write_text(json.dumps(data, indent=1))


def fail(message: str) -> None:
    print(f"Error response from daemon: {message}", file=sys.stderr)
    sys.exit(1)


def repository(ref: str) -> str:
    name = ref.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def resolve(data: dict[str, Any], ref: str) -> dict[str, Any] | None:
    """An image by `repo@sha256:…` (pushed) or by a local tag."""
    return data["registry"].get(ref) if "@" in ref else data["images"].get(ref)


def build(args: list[str]) -> None:
    context = Path(args[-1])
    tag = next(args[i + 1] for i, a in enumerate(args) if a in ("-t", "--tag"))
    manifest = (context / "bento.yaml").read_bytes()
    import yaml

    bento = yaml.safe_load(manifest)
    image = {
        "bento": f"{bento['name']}:{bento['version']}",
        "digest": "sha256:" + hashlib.sha256(manifest).hexdigest(),
    }
    with state() as data:
        data["images"][tag] = image
    print(f"naming to {tag} done")


def push(ref: str) -> None:
    with state() as data:
        image = resolve(data, ref)
        if image is None:
            fail(f"An image does not exist locally with the tag: {ref}")
        data["registry"][f"{repository(ref)}@{image['digest']}"] = image
        data["registry"][ref] = image  # the tag now names this digest in the registry
    print(f"{ref.rsplit(':', 1)[-1]}: digest: {image['digest']} size: 1234")


def inspect(args: list[str]) -> None:
    ref = args[-1]
    with state() as data:
        image = resolve(data, ref)
        if image is None:
            fail(f"No such image: {ref}")
    print(f"{repository(ref)}@{image['digest']}")


def pull(ref: str) -> None:
    with state() as data:
        image = data["registry"].get(ref)
        if image is None:
            fail(f"manifest unknown: {ref}")
        data["images"][ref] = image
    print(ref)


def tag(source: str, target: str) -> None:
    with state() as data:
        image = resolve(data, source)
        if image is None:
            fail(f"No such image: {source}")
        data["images"][target] = image


def stop(data: dict[str, Any], name: str) -> bool:
    container = data["containers"].pop(name, None)
    if container is None:
        return False
    with suppress(ProcessLookupError):
        os.killpg(container["pid"], signal.SIGTERM)
    return True


def rm(args: list[str]) -> None:
    with state() as data:
        if not stop(data, args[-1]):
            fail(f"No such container: {args[-1]}")


def run(args: list[str]) -> None:
    name = args[args.index("--name") + 1]
    host_ip, host_port, _port = args[args.index("-p") + 1].split(":")
    ref = args[-1]
    with state() as data:
        image = resolve(data, ref)
        if image is None:
            fail(f"Unable to find image '{ref}' locally")
        stop(data, name)
        folder = HOME / "containers" / name
        folder.mkdir(parents=True, exist_ok=True)
        log = (folder / "serve.log").open("ab")
        proc = subprocess.Popen(
            [os.environ["MLGATE_ACT_BENTOML"], "serve", image["bento"],
             "--host", host_ip, "--port", host_port],
            cwd=folder, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "MLGATE_FEEDBACK_DIR": str(folder / "feedback")},
        )  # fmt: skip
        data["containers"][name] = {
            "image": ref,
            "bento": image["bento"],
            "pid": proc.pid,
            "url": f"http://{host_ip}:{host_port}",
            "feedback": str(folder / "feedback"),
        }
    print(hashlib.sha256(f"{name}{proc.pid}".encode()).hexdigest())


def docker(args: list[str]) -> None:
    if args[:1] == ["buildx"]:
        args = args[1:]
    command, rest = args[0], args[1:]
    if command == "version":
        print('"27.3.1"')
    elif command == "login":
        sys.stdin.read()
        print("Login Succeeded")
    elif command == "build":
        build(rest)
    elif command == "push":
        push(rest[-1])
    elif command == "inspect":
        inspect(rest)
    elif command == "pull":
        pull(rest[-1])
    elif command == "tag":
        tag(rest[-2], rest[-1])
    elif command == "rm":
        rm(rest)
    elif command == "run":
        run(rest)
    else:
        fail(f"docker stand-in: `docker {command}` is not played here (add it to {__file__})")


# The namespaces a team creates once (mlgate never creates one): params' defaults, or the
# harness's MLGATE_ACT_K8S_NAMESPACES (space-separated)
NAMESPACES = os.environ.get("MLGATE_ACT_K8S_NAMESPACES", "ml-staging ml-production").split()


def kubectl(args: list[str]) -> None:
    if args[:2] == ["get", "namespace"] and len(args) >= 3:
        # as kubectl: the namespace by name, or NotFound (exit 1)
        if args[2] not in NAMESPACES:
            print(
                f'Error from server (NotFound): namespaces "{args[2]}" not found', file=sys.stderr
            )
            sys.exit(1)
        print(f"namespace/{args[2]}" if args[3:5] == ["-o", "name"] else args[2])
    elif args[:2] == ["apply", "-f"]:
        manifests = sys.stdin.read()
        (HOME / "kubectl-applied.yaml").open("a").write(manifests + "\n---\n")
        print("deployment.apps/model configured")
    elif args[:2] == ["rollout", "status"]:
        print(f"{args[2]} successfully rolled out")
    else:
        print(f"kubectl stand-in: `kubectl {' '.join(args)}` is not played here", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    tool, argv = sys.argv[1], sys.argv[2:]
    HOME.mkdir(parents=True, exist_ok=True)
    with (HOME / "calls.jsonl").open("a") as fh:
        fh.write(json.dumps([tool, *argv]) + "\n")
    (docker if tool == "docker" else kubectl)(argv)
