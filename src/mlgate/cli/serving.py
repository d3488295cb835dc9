"""The serving commands: `mlgate build` (the bento) and `mlgate serve`."""

from __future__ import annotations

import argparse
from typing import Any

from mlgate import values


def _build(args: argparse.Namespace) -> int:
    from mlgate.actions import write_outputs
    from mlgate.config import load_params
    from mlgate.serving.build import build, with_strategy

    params = load_params(args.params)
    if args.strategy or args.challenger:
        params = with_strategy(params, args.strategy, args.challenger)
    write_outputs(bento_tag=build(params, args.model, args.bentofile))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from mlgate.config import load_params
    from mlgate.serving.build import serve

    return serve(load_params(args.params), args.bento, args.port, args.host)


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "build",
        parents=[common],
        help="package a registered model version as a BentoML bento",
        description="Resolve MODEL (an alias or a version number; default serving.model) in "
        "the MLflow registry, save it with its lineage into BentoML's model store and build "
        "the bento from bentofile.yaml. Prints the bento tag (and writes bento_tag to "
        "$GITHUB_OUTPUT in GitHub Actions); `bentoml containerize TAG` makes the image. "
        "With serving.strategy.mode shadow, canary or ab, the challenger "
        "(serving.strategy.challenger) is packaged beside it; it must have passed its gates "
        "and be another version.",
    )
    p.add_argument("--model", default=None, metavar="ALIAS|VERSION", help="what to package")
    p.add_argument("--bentofile", default="bentofile.yaml", help="default: %(default)s")
    p.add_argument(
        "--strategy",
        choices=["none", "shadow", "canary", "ab"],
        default=None,
        help="override serving.strategy.mode for this build",
    )
    p.add_argument(
        "--challenger",
        default=None,
        metavar="ALIAS|VERSION",
        help="override serving.strategy.challenger for this build",
    )
    p.set_defaults(handler=_build)

    p = sub.add_parser(
        "serve",
        parents=[common],
        help="run a built bento locally (bentoml serve)",
        description="Serve BENTO (default: the latest bento of this project) with "
        "`bentoml serve`; predictions are recorded under serving.feedback.path.",
    )
    p.add_argument("--bento", default=None, metavar="TAG", help="default: NAME:latest")
    p.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    p.add_argument("--port", type=values.port, default=3000, help="1-65535 (default: %(default)s)")
    p.set_defaults(handler=_serve)
