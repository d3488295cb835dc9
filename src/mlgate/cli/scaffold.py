"""The scaffold commands: `mlgate init` and `mlgate update`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mlgate import __version__
from mlgate.errors import MlgateError
from mlgate.scaffold.infer import METRICS, parse_monotone
from mlgate.scaffold.init import InitRequest, _ask, create, update


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `mlgate init` to the mlgate command (common options do not apply to it)."""
    del common
    p = sub.add_parser(
        "init",
        help="create a new model repository for a CSV data set",
        description="Create a model repository in DIR from mlgate's copier template: a "
        "pandera schema inferred from the data, params.yaml, dvc.yaml, data.dvc, tests, "
        "the caller workflows and a first commit. Asks for what is missing unless "
        "--no-input. Later template releases come in with `copier update` (docs/INIT.md).",
    )
    p.add_argument("dest", metavar="DIR", type=Path, help="the new repository (new or empty)")
    p.add_argument("--data", type=Path, metavar="CSV", help="the data file (copied into data/)")
    p.add_argument("--target", metavar="COLUMN", help="the column to predict")
    p.add_argument(
        "--task",
        choices=sorted(METRICS),
        help="default: regression for a numeric target with many values, else classification",
    )
    p.add_argument("--positive-label", metavar="LABEL", help="the positive class")
    p.add_argument(
        "--sensitive",
        action="append",
        default=[],
        metavar="COLUMN",
        help="a sensitive attribute (repeat for several); fairness is measured per group",
    )
    p.add_argument(
        "--monotone",
        action="append",
        default=[],
        metavar="COLUMN:+1|-1",
        help="a numeric feature the prediction must rise (+1) or fall (-1) with; repeat for "
        "several. Becomes features.monotone and a directional model test",
    )
    p.add_argument("--metric", help="primary metric (default: roc_auc or rmse)")
    p.add_argument("--name", help="project name (default: from DIR)")
    p.add_argument(
        "--mlgate-repo",
        metavar="OWNER/NAME|URL",
        help="the repository mlgate is released from: the project's package, workflows and "
        "template updates come from it (default: the installed mlgate's, from its metadata)",
    )
    p.add_argument(
        "--mlgate-ref",
        metavar="TAG",
        help=f"the mlgate release to pin (default: this mlgate's, v{__version__})",
    )
    p.add_argument(
        "--mlgate-path",
        metavar="DIR",
        help="DEVELOPMENT ONLY: make the project from the mlgate checkout DIR as it is (its "
        "template, and mlgate installed from DIR), for offline work and mlgate's own tests",
    )
    p.add_argument(
        "--template", metavar="SRC", help="another copier template (default: the release's)"
    )
    p.add_argument(
        "--vcs-ref", metavar="TAG", help="the --template version (default: its latest tag)"
    )
    p.add_argument("--no-input", action="store_true", help="never ask; fail on missing options")
    p.set_defaults(handler=_init)

    u = sub.add_parser(
        "update",
        help="take a later mlgate release into a project made by `mlgate init`",
        description="Re-render the project's template at a later mlgate release with "
        "`copier update` (a three-way merge that keeps your edits; the package and workflow "
        "pins move with it), then `uv lock`. Needs a clean git tree. See docs/INIT.md.",
    )
    u.add_argument("--to", metavar="TAG", help="the release to take (default: the latest)")
    u.add_argument("--project", type=Path, default=Path("."), metavar="DIR", help="default: here")
    u.set_defaults(handler=_update)


def _update(args: argparse.Namespace) -> int:
    update(args.project, args.to)
    return 0


def _init(args: argparse.Namespace) -> int:
    interactive = not args.no_input and sys.stdin.isatty()
    if interactive:
        args.data = args.data or Path(_ask("data file (CSV)"))
        args.target = args.target or _ask("target column")
        if not args.sensitive:
            args.sensitive = _ask("sensitive attributes (comma-separated, or empty)").split(",")
    missing = [f"--{k}" for k in ("data", "target") if not getattr(args, k)]
    if missing:
        raise MlgateError(f"missing {' and '.join(missing)} (required with --no-input)")
    sensitive = tuple(s.strip() for item in args.sensitive for s in item.split(",") if s.strip())
    create(
        InitRequest(
            dest=args.dest,
            data=args.data,
            target=args.target,
            task=args.task,
            positive_label=args.positive_label,
            sensitive=sensitive,
            monotone=parse_monotone(args.monotone),
            metric=args.metric,
            name=args.name,
            template=args.template,
            vcs_ref=args.vcs_ref,
            mlgate_path=args.mlgate_path,
            mlgate_repo=args.mlgate_repo,
            mlgate_ref=args.mlgate_ref,
        )
    )
    return 0
