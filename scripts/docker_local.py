"""A Docker daemon and an image registry to build, push, pull and run the serving image here.

Uses the `docker` that answers (a laptop's Docker); else sets up Debian's dockerd, containerd,
runc and docker-registry from their packages (`apt-get download` + `dpkg -x` into a per-machine
cache: nothing is installed system-wide, no system service is started) and starts them on a
private socket and data root. Without Docker Hub, the base image BentoML's Dockerfile names
(python:3.11-slim) is made once from Debian packages with mmdebstrap and kept as a tar in the
cache. Every daemon it starts is stopped by its PID by `down`.

    python scripts/docker_local.py up [--state DIR]   # prints KEY=VALUE lines (DOCKER_HOST, …)
    python scripts/docker_local.py down DIR           # stops what `up` started, removes DIR
    python scripts/docker_local.py run -- CMD ...     # up, CMD with that environment, down

stdlib only: it runs before any environment exists (CI's first step, a fresh clone).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CACHE = Path(
    os.environ.get("MLGATE_DOCKER_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlgate" / "docker"
)
PACKAGES = ("docker.io", "containerd", "runc", "docker-registry", "mmdebstrap")
BASE_IMAGE = "python:3.11-slim"
BASE_SUITE = "bookworm"  # Debian 12: its python3 is 3.11, the bento's python_version
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
# HTTPS may go through a proxy that re-signs TLS: the image's pip and uv must trust what the
# host trusts beyond the public roots, or every build fails with CERTIFICATE_VERIFY_FAILED.
EXTRA_CAS = "/usr/local/share/ca-certificates/*.crt"
START_SECONDS = 60  # a daemon that has not answered by then is reported with its log


class SetupError(Exception):
    """Something this machine lacks, said so that a person can act on it."""


def log(message: str) -> None:
    print(f"docker_local: {message}", file=sys.stderr, flush=True)


def sh(cmd: list[str], env: dict[str, str] | None = None, quiet: bool = False) -> str:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        if quiet:
            return ""
        raise SetupError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.stdout


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """One set-up at a time per machine (two test sessions may start together)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------- the Debian packages


def packages_root() -> Path:
    """The packages extracted under the cache (downloaded the first time)."""
    root = CACHE / "root"
    if (root / ".complete").exists():
        return root
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise SetupError(
            "no `docker` answers and this is not a Debian/Ubuntu machine (no apt-get): "
            "install Docker (docker.com) and start it"
        )
    debs = Path(tempfile.mkdtemp(prefix="debs-", dir=CACHE))
    try:
        log(f"downloading {', '.join(PACKAGES)} (Debian packages) into {CACHE}")
        cmd = ["apt-get", "download", *PACKAGES]
        if subprocess.run(cmd, cwd=debs, capture_output=True).returncode != 0:
            sh(["apt-get", "update", "-qq"])  # a fresh machine has no package lists yet
            proc = subprocess.run(cmd, cwd=debs, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SetupError(f"apt-get download {' '.join(PACKAGES)}:\n{proc.stderr}")
        shutil.rmtree(root, ignore_errors=True)
        for deb in sorted(debs.glob("*.deb")):
            sh(["dpkg", "-x", str(deb), str(root)])
        (root / ".complete").write_text("\n".join(p.name for p in sorted(debs.glob("*.deb"))))
    finally:
        shutil.rmtree(debs, ignore_errors=True)
    missing = sh(["ldd", str(root / "usr/sbin/dockerd")], quiet=True)
    if "not found" in missing:
        raise SetupError(f"dockerd needs libraries this machine lacks:\n{missing}")
    return root


def tool_path(root: Path) -> str:
    return os.pathsep.join(
        [str(root / "usr/sbin"), str(root / "usr/bin"), os.environ.get("PATH", "")]
    )


# ---------------------------------------------------------------- processes


def start(cmd: list[str], logfile: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with logfile.open("wb") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def wait_until(ready: object, proc: subprocess.Popen[bytes], name: str, logfile: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while not ready():  # type: ignore[operator]
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SetupError(f"{name} did not start:\n{logfile.read_text()[-3000:]}")
        time.sleep(0.2)


def alive(pid: int) -> bool:
    """Running: not gone, and not a zombie its new parent has yet to reap (`up` ran in
    another process, which has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return not Path("/proc").is_dir()  # /proc gone between the two looks: exited


def stop_pid(pid: int, seconds: float = 30) -> None:
    """SIGTERM, then SIGKILL after `seconds`; the process and the group it leads."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):  # reaped here when it is our child
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        if not alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def docker_answers(env: dict[str, str]) -> bool:
    docker = shutil.which("docker", path=env.get("PATH"))
    if not docker:
        return False
    return subprocess.run([docker, "info"], env=env, capture_output=True).returncode == 0


# ---------------------------------------------------------------- the base image


def base_tar() -> Path:
    """python:3.11-slim's stand-in from Debian packages, made once per set of extra CAs."""
    cas = sorted(glob.glob(EXTRA_CAS))
    key = hashlib.sha256(
        "\n".join([BASE_SUITE, *BASE_PACKAGES, *(Path(c).read_text() for c in cas)]).encode()
    ).hexdigest()[:16]
    tar = CACHE / f"base-{BASE_SUITE}-{key}.tar"
    if tar.exists():
        return tar
    root = packages_root()
    log(f"making the base image {BASE_IMAGE} with mmdebstrap (once; kept as {tar})")
    hooks = [
        'rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',  # pip/uv may install, as in the image
        'ln -sf /usr/bin/python3 "$1"/usr/local/bin/python',
        'ln -sf /usr/bin/pip3 "$1"/usr/local/bin/pip',
    ]
    if cas:
        hooks.append(f'cp {" ".join(cas)} "$1"/usr/local/share/ca-certificates/')
        hooks.append('chroot "$1" update-ca-certificates')
    partial = tar.with_name(f"{tar.stem}.partial.tar")  # mmdebstrap: the format by suffix
    cmd = [
        str(root / "usr/bin/mmdebstrap"),
        "--variant=minbase",
        f"--mode={'root' if os.geteuid() == 0 else 'unshare'}",
        f"--include={','.join(BASE_PACKAGES)}",
        *(f"--customize-hook={h}" for h in hooks),
        BASE_SUITE,
        str(partial),
        "http://deb.debian.org/debian",
    ]
    sh(cmd, env={**os.environ, "PATH": tool_path(root)})
    partial.rename(tar)
    return tar


def import_base(docker_env: dict[str, str]) -> None:
    if sh(["docker", "images", "-q", BASE_IMAGE], env=docker_env).strip():
        return
    tar = base_tar()
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        # uv reads its CA bundle from here (else its own roots, without the host's extra CAs)
        "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        'CMD ["python3"]',
    ]
    sh(
        ["docker", "import", *(f"--change={c}" for c in changes), str(tar), BASE_IMAGE],
        env=docker_env,
    )


# ---------------------------------------------------------------- up / down


def up(state: Path) -> dict[str, str]:
    """Start what is missing; returns the environment a client needs. Records PIDs in state."""
    state.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    out: dict[str, str] = {"MLGATE_DOCKER_STATE": str(state)}
    pids: list[int] = []
    try:
        with cache_lock():
            own = not docker_answers(env)
            if own:
                if os.geteuid() != 0:
                    raise SetupError(
                        "no `docker` answers, and starting Debian's dockerd needs root "
                        "(run as root, or start Docker)"
                    )
                root = packages_root()
            else:
                registry = shutil.which("docker-registry") or shutil.which("registry")
                root = packages_root() if registry is None else Path("/")
        env["PATH"] = tool_path(root)
        if own:
            containerd_sock = state / "containerd.sock"
            for stale in state.glob("*.sock"):  # a kept state whose daemons were killed
                stale.unlink()
            (state / "containerd.toml").write_text(
                "version = 2\n"
                f'root = "{state}/containerd/root"\n'
                f'state = "{state}/containerd/state"\n'
                f'[grpc]\n  address = "{containerd_sock}"\n'
                '[plugins."io.containerd.grpc.v1.cri"]\n  disable = true\n'
            )
            proc = start(
                ["containerd", "--config", str(state / "containerd.toml")],
                state / "containerd.log",
                env,
            )
            pids.append(proc.pid)
            wait_until(containerd_sock.exists, proc, "containerd", state / "containerd.log")
            docker_sock = state / "docker.sock"
            # No bridge and no iptables: nothing of the host's network is changed; builds and
            # containers use the host's network (`--network host`), services bind 127.0.0.1.
            proc = start(
                [
                    "dockerd",
                    f"--host=unix://{docker_sock}",
                    f"--data-root={state}/docker",
                    f"--exec-root={state}/exec",
                    f"--pidfile={state}/dockerd.pidfile",
                    f"--containerd={containerd_sock}",
                    "--iptables=false",
                    "--ip-masq=false",
                    "--bridge=none",
                ],
                state / "dockerd.log",
                env,
            )
            pids.append(proc.pid)
            env["DOCKER_HOST"] = out["DOCKER_HOST"] = f"unix://{docker_sock}"
            wait_until(lambda: docker_answers(env), proc, "dockerd", state / "dockerd.log")
            out["MLGATE_DOCKER_NETWORK"] = "host"
            out["PATH"] = env["PATH"]  # its docker client, the daemon's version
            with cache_lock():
                import_base(env)
        port = free_port()
        (state / "registry.yml").write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem:\n    rootdirectory: {state}/registry\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
        registry_cmd = shutil.which("docker-registry", path=env["PATH"]) or "registry"
        proc = start(
            [registry_cmd, "serve", str(state / "registry.yml")], state / "registry.log", env
        )
        pids.append(proc.pid)

        def registry_answers() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=5) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(registry_answers, proc, "docker-registry", state / "registry.log")
        out["MLGATE_REGISTRY"] = f"127.0.0.1:{port}"
    except BaseException:
        stop(pids)
        raise
    finally:
        (state / "pids").write_text("".join(f"{p}\n" for p in pids))
    return out


def stop(pids: list[int]) -> None:
    for pid in reversed(pids):  # the registry, dockerd (it stops its containers), containerd
        stop_pid(pid)


def down(state: Path, keep: bool = False) -> None:
    """Stop what `up` started; remove its folder unless `keep` (its images stay for next time)."""
    pids_file = state / "pids"
    if pids_file.exists():
        stop([int(p) for p in pids_file.read_text().split()])
        pids_file.unlink()
    # dockerd unmounts its layers when it stops but leaves its network namespace's bind
    # mount (exec/netns/default): unmounted here, deepest first, before anything is deleted
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        mounted = [line.split()[1] for line in fh if line.split()[1].startswith(f"{state}/")]
    for mount in sorted(mounted, key=len, reverse=True):
        sh(["umount", mount])
    if not keep:
        shutil.rmtree(state, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("up", help="start what is missing; prints KEY=VALUE lines")
    p.add_argument("--state", type=Path, help="folder for sockets, data and logs (default: new)")
    p = sub.add_parser("down", help="stop what `up` started (by PID) and remove its folder")
    p.add_argument("state", type=Path)
    p = sub.add_parser("run", help="up, run a command with that environment, down")
    p.add_argument("--state", type=Path, help="default: a new folder, or with --keep the cache's")
    p.add_argument("--keep", action="store_true", help="keep the daemon's images for next time")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        if args.command == "down":
            down(args.state)
            return 0
        keep = getattr(args, "keep", False)
        state = args.state or (
            CACHE / "daemon" if keep else Path(tempfile.mkdtemp(prefix="mlgate-docker-"))
        )
        started = up(state)
        if args.command == "up":
            print("".join(f"{k}={v}\n" for k, v in started.items()), end="")
            return 0
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        try:
            return subprocess.call(cmd, env={**os.environ, **started})
        finally:
            down(state, keep)
    except SetupError as err:
        log(f"error: {err}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
