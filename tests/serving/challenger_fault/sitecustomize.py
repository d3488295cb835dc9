"""Test-only: a served challenger that fails or is slow on demand, from outside mlgate.

Python imports `sitecustomize` at start-up in every process with this folder on its
PYTHONPATH: `bentoml serve` and each worker it spawns (tests/serving/fault.py sets both
variables). While the file named by MLGATE_TEST_CHALLENGER_FAULT_FILE exists and says `raise`
or `sleep:<seconds>`, the challenger's scorer raises or sleeps (after its self-check), so a
test can show that the champion's answers never depend on it; while it says `unexplained`,
the challenger has no explainer, as a model without exact attributions has none (its
`explainer` None, its `unexplained` reason INJECTED_REASON). While it says
`raise-champion:<version>`, the champion's scorer raises when it serves that model version
(a candidate promoted to run alone whose own image then fails; the trial image, where that
version is the challenger, answers). Without the variable, nothing is changed; with it, only
mlgate.serving.strategy.Variant.load, once that module is imported.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
import time
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

FAULT_ENV = "MLGATE_TEST_CHALLENGER_FAULT_FILE"
STRATEGY = "mlgate.serving.strategy"
INJECTED_REASON = "no exact attributions for KNeighborsClassifier (injected: the fault switch)"


def fault_of(switch: str) -> str:
    """What the switch file says now ("" without it)."""
    try:
        with open(switch, encoding="utf-8") as fh:
            return fh.read().strip()
    except FileNotFoundError:
        return ""


class FaultyScorer:
    """The challenger's scorer, failing or slow while the switch file says so; or, with
    `champion` (its model version), the champion's, failing while the switch names it."""

    def __init__(self, scorer: Any, switch: str, champion: str | None = None) -> None:
        self.scorer = scorer
        self.switch = switch
        self.champion = champion

    def __getattr__(self, name: str) -> Any:  # spec, model, files: the wrapped scorer's
        return getattr(self.scorer, name)

    def scores(self, records: list[dict[str, Any]]) -> Any:
        fault = fault_of(self.switch)
        if self.champion is not None:
            if fault == f"raise-champion:{self.champion}":
                raise RuntimeError(f"injected champion failure ({FAULT_ENV})")
            return self.scorer.scores(records)
        if fault == "raise":
            raise RuntimeError(f"injected challenger failure ({FAULT_ENV})")
        if fault.startswith("sleep:"):
            time.sleep(float(fault.removeprefix("sleep:")))
        return self.scorer.scores(records)


def make_challenger_faulty(strategy: ModuleType, switch: str) -> None:
    """Wrap the challenger's scorer once it has loaded and passed its self-check, and make
    its explainer none while the switch says `unexplained`."""
    load = strategy.Variant.load

    class Switched(strategy.Variant):  # type: ignore[name-defined,misc]
        @property
        def explainer(self) -> Any:
            return None if fault_of(switch) == "unexplained" else self.__dict__["explainer"]

        @property
        def unexplained(self) -> str:
            on = fault_of(switch) == "unexplained"
            return INJECTED_REASON if on else str(self.__dict__["unexplained"])

    def load_then_wrap(self: Any) -> str | None:
        reason = load(self)
        if reason is None and self.name == "challenger":
            self.scorer = FaultyScorer(self.scorer, switch)
            self.__class__ = Switched
        elif reason is None:
            self.scorer = FaultyScorer(self.scorer, switch, champion=self.version)
        return reason

    strategy.Variant.load = load_then_wrap


class AfterStrategyImport(importlib.abc.MetaPathFinder):
    """Finds mlgate.serving.strategy as the other finders do, and patches it once run."""

    def __init__(self, switch: str) -> None:
        self.switch = switch

    def find_spec(self, name: str, path: Any, target: Any = None) -> ModuleSpec | None:
        if name != STRATEGY:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if finder is not self and find else None
            if spec is not None and spec.loader is not None:
                break
        else:
            return None
        run = spec.loader.exec_module

        def run_then_patch(module: ModuleType) -> None:
            run(module)
            make_challenger_faulty(module, self.switch)

        spec.loader.exec_module = run_then_patch  # type: ignore[method-assign]
        return spec


if os.environ.get(FAULT_ENV):
    sys.meta_path.insert(0, AfterStrategyImport(os.environ[FAULT_ENV]))
