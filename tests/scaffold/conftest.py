"""Fixtures for `mlgate init`: data sets the project has never seen, made here, and helpers."""

from __future__ import annotations

import functools
import http.server
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, run

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent


def churn_frame(n: int = 600, seed: int = 7) -> pd.DataFrame:
    """Binary classification with mixed types: an id, a float with a space in its name,
    an int, a categorical with missing values, a sensitive column, a yes/no target."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50_000, 15_000, n).round(2)
    tenure = rng.integers(0, 30, n)
    plan = rng.choice(["basic", "plus", "pro"], n).astype(object)
    gender = rng.choice(["female", "male", "other"], n, p=[0.45, 0.45, 0.1])
    age = rng.integers(18, 80, n)
    logit = (income - 50_000) / 15_000 + 0.08 * (tenure - 15) + np.where(plan == "pro", 1.0, 0)
    churned = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    plan[rng.choice(n, 20, replace=False)] = None
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "monthly income": income,
            "tenure": tenure,
            "plan": plan,
            "gender": gender,
            "age": age,
            "churned": churned,
        }
    )


def houses_frame(n: int = 500, seed: int = 3) -> pd.DataFrame:
    """Regression: a continuous price from area, rooms and town (also the sensitive column)."""
    rng = np.random.default_rng(seed)
    area = rng.uniform(30, 250, n).round(1)
    rooms = rng.integers(1, 7, n)
    town = rng.choice(["north", "south", "east"], n)
    noise = rng.normal(0, 20_000, n)
    price = 2500 * area + 8000 * rooms + np.where(town == "north", 40_000, 0) + noise
    return pd.DataFrame({"area": area, "rooms": rooms, "town": town, "price": price.round(0)})


def churn_export(n: int = 600) -> pd.DataFrame:
    """The churn data as a CRM exports it: besides the ID, a signup date (in no order: the
    file is sorted by ID), a free-text note, and two columns whose names no identifier could
    be (a leading `_` and digit, unicode, a quote, a slash)."""
    frame = churn_frame(n)
    days = pd.Series(range(n)).sample(frac=1, random_state=4).to_numpy()
    signup = pd.Timestamp("2022-01-01") + pd.to_timedelta(days, unit="D")
    rng = np.random.default_rng(12)
    return frame.assign(
        **{
            "signup": signup.strftime("%Y-%m-%d"),
            "notes": [f"called {i % 50} times" for i in range(n)],
            "_visits (n°)": rng.integers(0, 30, n),
            "2nd canal d'achat/vente": rng.choice(["web", "magasin", "téléphone"], n),
        }
    )


def houses_export() -> pd.DataFrame:
    """The houses with a lot size named as a surveyor writes it, and a column pydantic's
    BaseModel has an attribute of (`schema`)."""
    frame = houses_frame()
    rng = np.random.default_rng(13)
    lot = (frame["area"] * rng.uniform(1.5, 4, len(frame))).round(1)
    return frame.assign(**{"lot.size / m²": lot, "schema": rng.choice(["old", "new"], len(frame))})


def accounts_frame(n: int = 800, seed: int = 21) -> pd.DataFrame:
    """An account export as a team's CRM writes it: three account states to predict under a
    target name with spaces, an ID, a signup date, free-text notes, a town of 120 values,
    column names with spaces, slashes, dots, unicode and a leading digit, and a fifth of the
    values missing in seven columns. The notes' words, the spend, the plan, the score and the
    signup month tell the state (with noise)."""
    rng = np.random.default_rng(seed)
    spend = rng.gamma(4, 20, n).round(2)
    height = rng.normal(172, 9, n).round(1)
    score = rng.integers(0, 100, n).astype(float)
    plan = rng.choice(["basic", "plus", "pro"], n).astype(object)
    signup = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D")
    z = 0.03 * (spend - 80) + 0.8 * (plan == "pro") - 0.02 * (score - 50)
    z = z + 0.6 * (signup.month.to_numpy() > 6) + rng.normal(0, 0.7, n)
    state = np.where(z > 0.6, "churned", np.where(z > -0.4, "at risk", "active"))
    words = {"active": ["happy", "renewed"], "at risk": ["complaint", "slow"]}
    words["churned"] = ["cancel", "refund"]
    topics = rng.choice(["billing", "app", "delivery", "price"], n)
    frame = pd.DataFrame(
        {
            "Customer ID": 100_000 + rng.permutation(n),
            "signup date": signup.strftime("%Y-%m-%d"),
            "notes / comments": [
                f"customer {rng.choice(words[s])} call about {t}, ticket #{i}"
                for i, (s, t) in enumerate(zip(state, topics, strict=True))
            ],
            "monthly spend ($)": spend,
            "Größe (cm)": height,
            "2nd.score": score,
            "tenure years": rng.uniform(0, 10, n).round(2),
            "plan/tier": plan,
            "région": rng.choice(["île-de-france", "nord", "sud-ouest", "Zürich"], n),
            "town": rng.choice([f"town-{i:03d}" for i in range(120)], n),
            "Account Status": state,
        }
    )
    gaps = ["notes / comments", "monthly spend ($)", "Größe (cm)", "2nd.score", "plan/tier"]
    for column in [*gaps, "région", "town"]:
        frame.loc[rng.random(n) < 0.2, column] = None
    return frame


def with_params(clone: Path, tmp: Path, change: dict[str, dict[str, Any]]) -> Path:
    """A copy of the project's params.yaml with some sections' keys changed."""
    params = yaml.safe_load((clone / "params.yaml").read_text())
    for section, values in change.items():
        params[section].update(values)
    path = tmp / f"params-{len(list(tmp.glob('params-*')))}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def turn_on_derived_features(params: Path) -> list[str]:
    """What init's summary offers, done as a user does it: params.yaml's commented examples of
    features.from_timestamp / from_text (naming this data's own columns) in place of the empty
    entries. Returns the examples."""
    text = params.read_text()
    examples = re.findall(r"^  #   (from_\w+: .*)$", text, re.M)
    for example in examples:
        key = example.split(":", 1)[0]
        text = re.sub(rf"^  {key}: {{}}$", lambda _, e=example: f"  {e}", text, flags=re.M)
    params.write_text(text)
    return examples


@pytest.fixture
def churn_csv(tmp_path: Path) -> Path:
    path = tmp_path / "input" / "churn.csv"
    path.parent.mkdir()
    churn_frame().to_csv(path, index=False)
    return path


def mlgate_init(dest: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`mlgate init` in development mode (--mlgate-path: this checkout as it is): offline (its
    lock starts from this checkout's, whose packages `make install` put in the uv cache), and
    the code under test. test_release.py covers the default path, a release."""
    cmd = [str(VENV_BIN / "mlgate"), "init", str(dest), "--no-input", "--mlgate-path", str(ROOT)]
    return run([*cmd, *map(str, args)], ROOT, UV_OFFLINE="1")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over a folder: (its base URL, the folder)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        del format, args
