"""The registry commands: register, promote, rollback, lineage."""

from __future__ import annotations

import argparse
from typing import Any

from mlgate import values
from mlgate.names import ENVIRONMENTS, PRODUCTION, PROMOTION_ALIASES


def _register(args: argparse.Namespace) -> int:
    from mlgate.config import load_params
    from mlgate.registry import aliases

    aliases.register(load_params(args.params))
    return 0


def _promote(args: argparse.Namespace) -> int:
    from mlgate.config import load_params
    from mlgate.registry import aliases

    aliases.promote(load_params(args.params), args.version, to=args.to, note=args.note)
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from mlgate.config import load_params
    from mlgate.registry import aliases

    aliases.rollback(load_params(args.params), alias=args.alias, note=args.note)
    return 0


def _lineage(args: argparse.Namespace) -> int:
    from mlgate.config import load_params
    from mlgate.registry import aliases

    print(aliases.lineage_text(load_params(args.params), args.ref, as_json=args.json))
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "register",
        parents=[common],
        help="register the gated model in MLflow (alias `candidate`)",
        description="Register the model of the last pipeline run as a new MLflow model "
        "version with its lineage and gate verdicts, and point alias `candidate` at it. "
        "Refuses a model that did not pass the gate. Registering the same run twice is a no-op.",
    )
    p.set_defaults(handler=_register)

    p = sub.add_parser(
        "promote",
        parents=[common],
        help="move alias staging, production or challenger to a model version",
        description="Point alias `staging`, `production` or `challenger` at VERSION. Refuses "
        "a version whose gates did not pass, and production for a version that was never in "
        "staging. `challenger` is the model a shadow, canary or ab bento tries beside the "
        "champion (serving.strategy, docs/SERVING.md#champion-and-challenger).",
    )
    p.add_argument("version", type=values.version, metavar="VERSION", help="the model version")
    p.add_argument("--to", required=True, choices=PROMOTION_ALIASES, help="the alias")
    p.add_argument("--note", type=values.note, default="", help="why (kept in the alias history)")
    p.set_defaults(handler=_promote)

    p = sub.add_parser(
        "rollback",
        parents=[common],
        help="move production back to the previous version",
        description="Point the alias back at the version it held before the current one; "
        "the rollback is recorded in the alias history.",
    )
    p.add_argument(
        "--alias",
        default=PRODUCTION,
        choices=ENVIRONMENTS,
        help="the alias to roll back (default: %(default)s)",
    )
    p.add_argument("--note", type=values.note, default="", help="why (kept in the alias history)")
    p.set_defaults(handler=_rollback)

    p = sub.add_parser(
        "lineage",
        parents=[common],
        help="where a registered model came from",
        description="Print commit, data hash, params, metrics, gate verdicts and alias "
        "history of a registered model version, and where it was deployed: per environment "
        "the image digest, the time, the workflow run and (production) who approved it, as "
        "`mlgate release promote` kept them with the version.",
    )
    p.add_argument(
        "ref",
        metavar="NAME@ALIAS|NAME/VERSION",
        help="e.g. credit-risk@production or credit-risk/3",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(handler=_lineage)
