"""The stand-ins cover exactly the pinned actions: a bumped pin stops the harness loudly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.workflows.act.road import STANDIN_FOR, HarnessError, Repo, Road, local_repository_args


def test_every_pinned_action_has_a_stand_in() -> None:
    args = local_repository_args(ROOT)
    mapped = {a.split("=", 1)[0] for a in args[1::2]}
    assert mapped == set(STANDIN_FOR), "a stand-in no workflow uses anymore: remove it"


def test_a_bumped_pin_without_its_stand_in_fails_before_act_runs(tmp_path: Path) -> None:
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    ci = tmp_path / ".github/workflows/ml-ci.yml"
    old = next(pin for pin in STANDIN_FOR if pin.startswith("actions/checkout@"))
    assert old in ci.read_text()
    ci.write_text(ci.read_text().replace(old, "actions/checkout@" + "0" * 40))
    with pytest.raises(HarnessError, match=r"actions/checkout@0{40} is pinned .* no stand-in"):
        local_repository_args(tmp_path)


def kubectl_standin(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(__file__).parent / "standins/kubectl.py"
    return subprocess.run(
        [sys.executable, str(script), *args],
        env={**os.environ, "MLGATE_ACT_KUBECTL": str(tmp_path)},
        capture_output=True,
        text=True,
    )


def test_kubectl_standin_answers_the_namespace_check_as_kubectl_does(tmp_path: Path) -> None:
    # `mlgate deploy` (target kubernetes) asks for the namespace before applying anything
    found = kubectl_standin(tmp_path, "get", "namespace", "ml-production", "-o", "name")
    assert (found.returncode, found.stdout) == (0, "namespace/ml-production\n")
    missing = kubectl_standin(tmp_path, "get", "namespace", "ml-nowhere", "-o", "name")
    assert missing.returncode == 1
    assert 'namespaces "ml-nowhere" not found' in missing.stderr


HANDS_ON_AN_IMAGE = """name: m
on: push
permissions: {}
jobs:
  build:
    runs-on: ubuntu-latest
    outputs:
      image: ${{ steps.push.outputs.image }}
    steps:
      - id: push
        run: echo "image=ghcr.io/acme/model@sha256:abc" >> "$GITHUB_OUTPUT"
  deploy:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: test -n "$IMAGE"
        env:
          IMAGE: ${{ needs.build.outputs.image }}
"""


def test_a_job_output_holding_a_secret_stops_the_harness_as_github_drops_it(
    tmp_path: Path,
) -> None:
    """GitHub's runner sends a job output that contains a secret's value empty (act hands it
    on): the harness refuses such a run instead of passing where GitHub would fail (m7)."""
    (tmp_path / "repo/.github/workflows").mkdir(parents=True)
    (tmp_path / "repo/.github/workflows/m.yml").write_text(HANDS_ON_AN_IMAGE)
    repo = Repo.create(tmp_path / "repo", tmp_path / "remotes")
    road = Road(home=tmp_path / "road", mlflow_url="http://127.0.0.1:9")
    event = {"ref": "refs/heads/main", "after": repo.sha}
    secret = "MLFLOW_TRACKING_USERNAME={}"

    fine = road.act(repo, "push", ".github/workflows/m.yml", event,
                    extra=["-s", secret.format("someone")])  # fmt: skip
    assert fine.jobs == {"build": "success", "deploy": "success"}, fine.explain()
    # the owner as a secret: part of the image name is masked, the output is dropped
    with pytest.raises(HarnessError, match=r"arrive empty.*build\.image"):
        road.act(repo, "push", ".github/workflows/m.yml", event,
                 extra=["-s", secret.format("acme")])  # fmt: skip


USES_THE_CACHE = """name: c
on: push
permissions: {}
jobs:
  work:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1
      - id: cache
        uses: actions/cache@27d5ce7f107fe9357f9df03efb73ab90386fccae
        with:
          path: out
          key: k-${{ hashFiles('input.txt') }}
          restore-keys: k-
      - run: |
          echo "hit=${{ steps.cache.outputs.cache-hit }} found=$(cat out/made 2>/dev/null)"
          mkdir -p out && cat input.txt > out/made
"""


def test_the_cache_stand_in_hits_on_its_key_and_restores_by_prefix_as_actions_cache(
    tmp_path: Path,
) -> None:
    (tmp_path / "repo/.github/workflows").mkdir(parents=True)
    (tmp_path / "repo/.github/workflows/c.yml").write_text(USES_THE_CACHE)
    (tmp_path / "repo/input.txt").write_text("one")
    road = Road(home=tmp_path / "road", mlflow_url="http://127.0.0.1:9")
    repo = Repo.create(tmp_path / "repo", road.home / "remotes")

    def work() -> str:
        event = {"ref": "refs/heads/main", "after": repo.sha}
        run = road.act(repo, "push", ".github/workflows/c.yml", event)
        assert run.jobs == {"work": "success"}, run.explain()
        return next(line for line in run.log().splitlines() if line.startswith("hit="))

    assert work() == "hit=false found=", "a new cache starts empty"
    assert work() == "hit=true found=one", "the same key: what the first run saved"
    repo.edit("new input", {"input.txt": "two"})
    repo.push("main")
    assert work() == "hit=false found=one", "another key: the newest entry by restore-key"
    assert work() == "hit=true found=two", "saved under the new key by the run before"
