"""The release commands: deploy, smoke, `mlgate release …` (image, promote, rollback, trial)."""

from __future__ import annotations

import argparse
from typing import Any

from mlgate import values
from mlgate.actions import append_summary
from mlgate.errors import MlgateError
from mlgate.names import ENVIRONMENTS, PRODUCTION
from mlgate.release.deploy import (
    NO_SERVER,
    _containerize,
    _has_server,
    _trial_champion,
    build_bento,
    deploy_image,
    promote_with_image,
)
from mlgate.release.trial import run_trial


def _params(args: argparse.Namespace) -> Any:
    from mlgate.config import load_params

    return load_params(args.params)


def _deploy(args: argparse.Namespace) -> int:
    from mlgate.actions import write_outputs
    from mlgate.release.config import deploy_config

    params = _params(args)
    cfg = deploy_config(params.deploy)
    url, passed = deploy_image(
        params, cfg, args.env, args.image, smoke=not args.no_smoke, publish=not args.no_publish
    )
    write_outputs(url=url)
    append_summary(
        f"### Deployed to {args.env}\n\n- image: `{args.image}`\n- target: {cfg.target}"
        + (f"\n- url: {url}" if url else "")
        + (f"\n- smoke and contract test: {len(passed)} checks passed" if passed else "")
        + "\n"
    )
    return 0


def _smoke(args: argparse.Namespace) -> int:
    from mlgate.release import smoke
    from mlgate.release.config import deploy_config

    params = _params(args)
    cfg = deploy_config(params.deploy)
    rows = smoke.sample_rows(params, cfg.smoke.rows)
    required = smoke.required_fields(params)
    for line in smoke.smoke_test(args.url, rows, cfg, params.serving.request_field, required):
        print(f"smoke: pass {line}")
    return 0


def _release_register(args: argparse.Namespace) -> int:
    from mlgate.actions import write_outputs
    from mlgate.registry import aliases

    if not _has_server():
        print(
            "release register: no MLFLOW_TRACKING_URI secret: registering in this job's local "
            "store only, to build the bento; the version is not shared with later jobs, and "
            "aliases staging/production will not be moved"
        )
    version = aliases.register(_params(args))
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


def _release_rollback(args: argparse.Namespace) -> int:
    from mlgate.registry import aliases

    params = _params(args)
    if not _has_server():
        print(f"release rollback: {NO_SERVER.format(what='moving alias production back')}")
        return 0
    aliases.rollback(params, alias=PRODUCTION, note=args.note)
    return 0


def _release_image(args: argparse.Namespace) -> int:
    """`mlgate build` (the bento), `bentoml containerize`, push; outputs the digest."""
    from mlgate.actions import write_outputs
    from mlgate.release.config import deploy_config
    from mlgate.serving.build import use_project_home

    params = _params(args)
    cfg = deploy_config(params.deploy)
    use_project_home(params)  # containerize finds the bento where `mlgate build` put it
    repo = args.image or cfg.image_repository()
    bento = build_bento(params, str(args.version))
    digest = _containerize(bento, f"{repo}:{args.tag}")
    print(f"release image: bento {bento} -> {digest}")
    write_outputs(bento=bento, image=digest)
    trial = {"trial_image": "", "champion_version": "", "champion_image": ""}
    champion = _trial_champion(params, str(args.version))
    if champion is not None:
        # the trial bento: production's model answers, the candidate beside it
        mode = cfg.trial.mode
        trial_bento = build_bento(params, champion[0], mode, str(args.version))
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


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "deploy",
        parents=[common],
        help="deploy an image digest to staging/production and smoke-test it",
        description="Deploy REPO@sha256:… with the target in params.yaml deploy.target "
        "(local: run it on this machine and publish the :ENV tag; kubernetes: kubectl apply "
        "deploy/k8s with KUBECONFIG), then smoke- and contract-test the live endpoint.",
    )
    p.add_argument("--env", required=True, choices=ENVIRONMENTS)
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
    p.add_argument("--to", required=True, choices=ENVIRONMENTS)
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
    _trial_parser(rsub, common)


def _trial(args: argparse.Namespace) -> int:
    from mlgate.config import load_params

    return run_trial(load_params(args.params), args)


def _trial_parser(rsub: Any, common: argparse.ArgumentParser) -> None:
    p = rsub.add_parser(
        "trial",
        parents=[common],
        help="the candidate beside the champion in production, then promote or abort",
        description="Deploy the trial image (champion answers, candidate in its shadow or on "
        "its canary share: deploy.trial.mode), record it, then every deploy.trial.poll_seconds "
        "fetch the recorded traffic from $FEEDBACK_URL (dvc get-url) and run `mlgate compare` "
        "on what was served since the trial began. Promote: deploy the candidate's image, "
        "move alias production. Abort (verdict abort, or no verdict after max_minutes): deploy "
        "the champion's image again and exit 4. Every step is a GitHub deployment record "
        "(GITHUB_TOKEN, GITHUB_REPOSITORY, GITHUB_SHA as on a runner).",
        epilog="exit codes: 0 promoted; 4 aborted (the champion runs again); 2 refused before "
        "deploying anything (no FEEDBACK_URL, production moved since the build, bad arguments) "
        "or a deploy failed.",
    )
    p.add_argument("--version", required=True, help="the candidate's model version")
    p.add_argument("--image", required=True, help="the candidate's own image by digest")
    p.add_argument("--trial-image", required=True, help="the trial image by digest")
    p.add_argument("--champion-version", required=True, help="production's model version")
    p.add_argument("--champion-image", required=True, help="production's image by digest")
    p.add_argument("--feedback-dir", default="trial-feedback", help="where fetched traffic goes")
    p.add_argument(
        "--report", default=None, metavar="DIR", help="compare.md/json (default: compare.report)"
    )
    p.set_defaults(handler=_trial)
