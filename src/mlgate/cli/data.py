"""The data commands: `mlgate data pull` and `mlgate data refresh`."""

from __future__ import annotations

import argparse
from typing import Any

from mlgate.loop.refresh import TRIGGERS, refresh
from mlgate.pipeline.dataversion import pull


def _pull(args: argparse.Namespace) -> int:
    from mlgate.config import load_params

    return pull(load_params(args.params))


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "data",
        help="the data version: fetch what data.dvc pins, or refresh it from data.source",
        description="Data commands. `mlgate data pull` fetches the data the .dvc file pins "
        "(`dvc pull`); when data/ holds local changes it keeps them, lists them and says how "
        "to record them (dvc add, dvc push, commit the .dvc file) or drop them.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = actions.add_parser(
        "pull",
        parents=[common],
        help="fetch the pinned data, or keep (and list) local changes to it",
    )
    q.set_defaults(handler=_pull)
    _refresh_parser(actions, common)


def _refresh(args: Any) -> int:
    from mlgate.config import load_params

    refresh(load_params(args.params), args.trigger, args.proposed, push=not args.no_push)
    return 0


def _refresh_parser(actions: Any, common: Any) -> None:
    q = actions.add_parser(
        "refresh",
        parents=[common],
        help="a new data version from data.source (append/replace, de-duplicated, guarded)",
        description="Bring new rows from data.source into the DVC-tracked data: rows failing "
        "the contract are reported and left out; append or replace (data.source.mode), "
        "de-duplicate, keep a time window; stop when the data would shrink or its class "
        "balance move beyond data.source.max_shrink / max_class_shift. With a change: validate "
        "the whole, `dvc add`, `dvc push`, record the trigger in the .dvc file's meta and write "
        "the summary (data.source.report). Without one: nothing changes. Step outputs "
        "`changed` and `data_version` when run in GitHub Actions.",
    )
    q.add_argument(
        "--trigger",
        choices=TRIGGERS,
        default="manual",
        help="what started this refresh, kept in data.dvc and the training run's tags",
    )
    q.add_argument(
        "--proposed",
        default="",
        metavar="REF",
        help="a git ref (an open retraining branch): when it already pins this data version, "
        "report no change",
    )
    q.add_argument("--no-push", action="store_true", help="skip `dvc push` (a local try)")
    q.set_defaults(handler=_refresh)
