"""Deploy and release: image build, per-environment deploy + smoke test, registry aliases."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from mlgate import values
from mlgate.errors import MlgateError

NO_SERVER = (
    "no MLFLOW_TRACKING_URI secret: there is no shared registry, so {what} is skipped "
    "(the image and the GitHub deployment record still say which commit and model it is)"
)


def _params(args: argparse.Namespace) -> Any:
    from mlgate.config import load_params

    return load_params(args.params)


def _has_server() -> bool:
    return bool(os.environ.get("MLFLOW_TRACKING_URI"))


# ---------------------------------------------------------------- deploy + smoke


def _deploy(args: argparse.Namespace) -> int:
    from mlgate.deploy.config import deploy_config
    from mlgate.github import write_outputs

    params = _params(args)
    cfg = deploy_config(params.deploy)
    url, passed = deploy_image(
        params, cfg, args.env, args.image, smoke=not args.no_smoke, publish=not args.no_publish
    )
    write_outputs(url=url)
    _summary(
        f"### Deployed to {args.env}\n\n- image: `{args.image}`\n- target: {cfg.target}"
        + (f"\n- url: {url}" if url else "")
        + (f"\n- smoke and contract test: {len(passed)} checks passed" if passed else "")
        + "\n"
    )
    return 0


def deploy_image(
    params: Any, cfg: Any, env: str, image: str, smoke: bool = True, publish: bool = True
) -> tuple[str, list[str]]:
    """Deploy REPO@sha256:… to env with the configured target, smoke-test it and (local target)
    publish the :ENV tag once the test passed; returns (public URL, checks passed)."""
    from mlgate.deploy import targets

    if "@sha256:" not in image:
        raise MlgateError(f"--image {image!r}: deploy an image by digest (REPO@sha256:…)")
    with contextlib.ExitStack() as stack:
        if cfg.target == "kubernetes":
            # one authentication for apply, rollout and the port-forward of the smoke test
            stack.enter_context(targets.kube_auth(cfg, env))
        url, passed = _deploy_and_test(env, image, params, cfg, smoke)
    if cfg.target == "local" and publish:
        # only now, with the smoke test passed: the tag operators run never names a broken image
        tag = targets.publish_local(env, image)
        print(f"deploy: published {tag} -> {image}")
    return url, passed


def _deploy_and_test(
    env: str, image: str, params: Any, cfg: Any, smoke_test: bool
) -> tuple[str, list[str]]:
    """Deploy with the configured target and smoke-test it; returns (public URL, checks)."""
    from mlgate.deploy import smoke, targets

    forward = None
    passed: list[str] = []
    if cfg.target == "local":
        # The container runs on this machine only to be tested: there is no public URL.
        feedback = Path(params.serving.feedback.path) / env
        test_url = targets.deploy_local(env, image, cfg, feedback)
        url = ""
    else:
        url = targets.deploy_kubernetes(env, image, cfg, params.project.name)
        test_url = url
    print(f"deploy: {image} is live in {env} ({cfg.target})")
    try:
        if smoke_test:
            if not test_url:
                forward, test_url = targets.port_forward(env, cfg, params.project.name)
            rows = smoke.sample_rows(params, cfg.smoke.rows)
            passed = smoke.smoke_test(
                test_url, rows, cfg, params.serving.request_field, smoke.required_fields(params)
            )
            for line in passed:
                print(f"smoke: pass {line}")
    finally:
        if forward is not None:
            forward.terminate()
            forward.wait(timeout=10)
    return url, passed


def _summary(markdown: str) -> None:
    """Append to the job summary on GitHub Actions (no-op elsewhere)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(markdown + "\n")


def _smoke(args: argparse.Namespace) -> int:
    from mlgate.deploy import smoke
    from mlgate.deploy.config import deploy_config

    params = _params(args)
    cfg = deploy_config(params.deploy)
    rows = smoke.sample_rows(params, cfg.smoke.rows)
    required = smoke.required_fields(params)
    for line in smoke.smoke_test(args.url, rows, cfg, params.serving.request_field, required):
        print(f"smoke: pass {line}")
    return 0


# ---------------------------------------------------------------- release


def _release_register(args: argparse.Namespace) -> int:
    from mlgate import registry
    from mlgate.github import write_outputs

    if not _has_server():
        print(
            "release register: no MLFLOW_TRACKING_URI secret: registering in this job's local "
            "store only, to build the bento; the version is not shared with later jobs, and "
            "aliases staging/production will not be moved"
        )
    version = registry.register(_params(args))
    write_outputs(version=version, shared_registry=str(_has_server()).lower())
    return 0


def _release_promote(args: argparse.Namespace) -> int:
    params = _params(args)  # a broken configuration fails here too, not only where it is used
    if not _has_server():
        print(f"release promote: {NO_SERVER.format(what=f'moving alias {args.to!r}')}")
        return 0
    if not args.version:
        raise MlgateError("--version is empty: the register step did not report a version")
    promote_with_image(params, args.version, args.to, args.note, args.image)
    return 0


def promote_with_image(params: Any, version: str, to: str, note: str, image: str = "") -> None:
    """Move alias `to` and keep the image that runs the version as tag mlgate.image."""
    from mlgate import registry, tracking

    registry.promote(params, version, to=to, note=note)
    if image:
        # the registry answers "which image runs this version" without asking GitHub
        client = tracking.connect(params)
        client.set_model_version_tag(params.model_name, version, "mlgate.image", image)


def _release_rollback(args: argparse.Namespace) -> int:
    from mlgate import registry

    params = _params(args)
    if not _has_server():
        print(f"release rollback: {NO_SERVER.format(what='moving alias production back')}")
        return 0
    registry.rollback(params, alias="production", note=args.note)
    return 0


def _build_bento(params_file: Any, model: str, *extra: str) -> str:
    """`mlgate build --model MODEL` (the serving commands); returns the bento tag it reports.

    The interface: build writes `bento_tag=…` to $GITHUB_OUTPUT, and its last printed word is
    the tag; we give it a private output file so its outputs do not leak into this step's.
    """
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "output"
        out.touch()
        build = subprocess.run(
            [sys.executable, "-m", "mlgate.cli", "build", "--params", str(params_file),
             "--model", model, *extra],
            capture_output=True, text=True, check=False,
            env={**os.environ, "GITHUB_OUTPUT": str(out)},
        )  # fmt: skip
        reported = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    sys.stderr.write(build.stderr)
    if build.returncode != 0:
        raise MlgateError(f"mlgate build --model {model} {' '.join(extra)} failed:\n{build.stdout}")
    words = build.stdout.split()
    tag = reported.get("bento_tag") or (words[-1] if words else "")
    if not tag:
        raise MlgateError("mlgate build reported no bento tag")
    return tag


def _release_image(args: argparse.Namespace) -> int:
    """`mlgate build` (the bento), `bentoml containerize`, push; outputs the digest."""
    from mlgate.deploy.config import deploy_config
    from mlgate.github import write_outputs
    from mlgate.serving.build import use_project_home

    params = _params(args)
    cfg = deploy_config(params.deploy)
    use_project_home(params)  # containerize finds the bento where `mlgate build` put it
    repo = args.image or cfg.image_repository()
    bento = _build_bento(args.params, args.version)
    digest = _containerize(bento, f"{repo}:{args.tag}")
    print(f"release image: bento {bento} -> {digest}")
    write_outputs(bento=bento, image=digest)
    trial = {"trial_image": "", "champion_version": "", "champion_image": ""}
    champion = _trial_champion(params, str(args.version))
    if champion is not None:
        # the trial bento: production's model answers, the candidate beside it
        mode = cfg.trial.mode
        trial_bento = _build_bento(
            args.params, champion[0], "--strategy", mode, "--challenger", str(args.version)
        )
        trial_image = _containerize(trial_bento, f"{repo}:{args.tag}-trial")
        print(
            f"release image: trial ({mode}) bento {trial_bento}: champion version "
            f"{champion[0]}, challenger version {args.version} -> {trial_image}"
        )
        trial = {
            "trial_image": trial_image,
            "champion_version": champion[0],
            "champion_image": champion[1],
        }
    write_outputs(**trial)
    return 0


def _containerize(bento: str, tag: str) -> str:
    """`bentoml containerize` BENTO as TAG, push it; returns REPO@sha256:…"""
    from mlgate.deploy.targets import sh

    # a daemon without a bridge network (MLGATE_DOCKER_NETWORK=host): the build's RUN steps
    # reach the package index through the host's network
    network = os.environ.get("MLGATE_DOCKER_NETWORK", "")
    opts = ["--opt", f"network={network}"] if network else []
    sh(["bentoml", "containerize", bento, "--image-tag", tag, *opts], capture=False)
    sh(["docker", "push", "--quiet", tag])
    return sh(["docker", "inspect", "--format", "{{index .RepoDigests 0}}", tag])


def _trial_champion(params: Any, candidate: str) -> tuple[str, str] | None:
    """(version, image) the trial runs the candidate beside: production's model in the shared
    registry and the image it was promoted with; None (said why) when there is no trial."""
    if params.deploy.trial.mode == "none":
        return None
    from mlgate import registry, tracking

    skip = "release image: no trial, the approval moves all traffic at once: "
    if not _has_server():
        print(f"::warning title=mlgate trial::{skip}{NO_SERVER.format(what='the trial')}")
        return None
    client = tracking.connect(params)
    version = registry.alias_version(client, params.model_name, "production")
    if version is None:
        print(f"{skip}no model holds alias production yet (the first delivery has no champion)")
        return None
    if version == candidate:
        print(f"{skip}version {candidate} is production already")
        return None
    tags = client.get_model_version(params.model_name, version).tags or {}
    image = tags.get("mlgate.image", "")
    if "@sha256:" not in image:
        print(
            f"::warning title=mlgate trial::{skip}production version {version} has no image "
            "digest on record (tag mlgate.image, set when ml-cd promotes), so an abort could "
            "not restore it"
        )
        return None
    return version, image


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "deploy",
        parents=[common],
        help="deploy an image digest to staging/production and smoke-test it",
        description="Deploy REPO@sha256:… with the target in params.yaml deploy.target "
        "(local: run it on this machine and publish the :ENV tag; kubernetes: kubectl apply "
        "deploy/k8s with KUBECONFIG), then smoke- and contract-test the live endpoint.",
    )
    p.add_argument("--env", required=True, choices=["staging", "production"])
    p.add_argument("--image", required=True, help="image by digest")
    p.add_argument("--no-smoke", action="store_true", help="skip the smoke test")
    p.add_argument("--no-publish", action="store_true", help="local: do not push the :ENV tag")
    p.set_defaults(handler=_deploy)

    p = sub.add_parser(
        "smoke",
        parents=[common],
        help="smoke- and contract-test a live service URL",
        description="Health, readiness and metrics endpoints answer 200; rows of the test "
        "split are scored; a request missing a field is refused with 4xx.",
    )
    p.add_argument("--url", required=True, help="base URL of the service")
    p.set_defaults(handler=_smoke)

    rel = sub.add_parser("release", help="CD steps around the registry and the image")
    rsub = rel.add_subparsers(dest="release_command", metavar="COMMAND", required=True)
    p = rsub.add_parser(
        "register", parents=[common], help="register the gated model; outputs its version"
    )
    p.set_defaults(handler=_release_register)
    p = rsub.add_parser(
        "promote", parents=[common], help="move an alias (skipped without a tracking server)"
    )
    p.add_argument("--version", type=values.optional_version, default="", help="model version")
    p.add_argument("--to", required=True, choices=["staging", "production"])
    p.add_argument("--note", type=values.note, default="", help="why")
    p.add_argument(
        "--image",
        type=values.optional_image_by_digest,
        default="",
        help="image by digest (REGISTRY/REPO@sha256:…), kept as tag mlgate.image",
    )
    p.set_defaults(handler=_release_promote)
    p = rsub.add_parser(
        "rollback", parents=[common], help="move production back (skipped without a server)"
    )
    p.add_argument("--note", type=values.note, default="", help="why")
    p.set_defaults(handler=_release_rollback)
    p = rsub.add_parser(
        "image",
        parents=[common],
        help="build the bento and its image once; outputs the digest",
        description="`mlgate build` the model version, `bentoml containerize`, push; outputs "
        "bento and image (the digest). With deploy.trial.mode shadow or canary and a champion "
        "in production (shared registry), also the trial image (production's model answers, "
        "this version beside it): outputs trial_image, champion_version, champion_image "
        "(empty when there is no trial, said why).",
    )
    p.add_argument("--version", required=True, help="model version or alias for `mlgate build`")
    p.add_argument("--image", default="", help="image repository (default: deploy.image)")
    p.add_argument("--tag", required=True, help="image tag, e.g. the commit SHA")
    p.set_defaults(handler=_release_image)
    from mlgate.deploy.trial import add_command

    add_command(rsub, common)
