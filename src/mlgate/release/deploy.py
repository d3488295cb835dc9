"""Deploy and release: image build, per-environment deploy + smoke test, registry aliases."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from mlgate.errors import MlgateError
from mlgate.names import PRODUCTION

NO_SERVER = (
    "no MLFLOW_TRACKING_URI secret: there is no shared registry, so {what} is skipped "
    "(the image and the GitHub deployment record still say which commit and model it is)"
)


def _has_server() -> bool:
    return bool(os.environ.get("MLFLOW_TRACKING_URI"))


# ---------------------------------------------------------------- deploy + smoke


def deploy_image(
    params: Any, cfg: Any, env: str, image: str, smoke: bool = True, publish: bool = True
) -> tuple[str, list[str]]:
    """Deploy REPO@sha256:… to env with the configured target (release.targets), smoke-test it
    and, once the test passed, publish it (local: the :ENV tag); returns (public URL, checks
    passed)."""
    from mlgate.release import smoke as smoke_check
    from mlgate.release import targets

    if "@sha256:" not in image:
        raise MlgateError(f"--image {image!r}: deploy an image by digest (REPO@sha256:…)")
    where = targets.target(cfg, params.project.name, Path(params.serving.feedback.path))
    passed: list[str] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(where.session(env))
        url, test_url = where.deploy(env, image)
        print(f"deploy: {image} is live in {env} ({cfg.target})")
        if smoke:
            test_url = test_url or stack.enter_context(where.reach(env))
            rows = smoke_check.sample_rows(params, cfg.smoke.rows)
            passed = smoke_check.smoke_test(
                test_url,
                rows,
                cfg,
                params.serving.request_field,
                smoke_check.required_fields(params),
            )
            for line in passed:
                print(f"smoke: pass {line}")
    # only now, with the smoke test passed: the tag operators run never names a broken image
    if publish and (tag := where.publish(env, image)):
        print(f"deploy: published {tag} -> {image}")
    return url, passed


# ---------------------------------------------------------------- release


def promote_with_image(params: Any, version: str, to: str, note: str, image: str = "") -> None:
    """Move alias `to` and keep the image that runs the version as tag mlgate.image, and the
    deployment (image, environment, time, run URL, approvers) as tag mlgate.deployment.<to>:
    `mlgate lineage NAME@production` answers from the registry alone."""
    from mlgate.registry import aliases, tracking

    aliases.promote(params, version, to=to, note=note)
    if image:
        # the registry answers "which image runs this version" without asking GitHub
        client = tracking.connect(params)
        client.set_model_version_tag(params.model_name, version, "mlgate.image", image)
        record = json.dumps(deployment_record(to, image), sort_keys=True)
        client.set_model_version_tag(params.model_name, version, f"{aliases.DEPLOYED}{to}", record)


def deployment_record(env: str, image: str) -> dict[str, Any]:
    """What `mlgate lineage` shows of a deployment: in a workflow run also its URL and, for
    production, who approved it (the run's approvals of the environment, as the deployment
    record on GitHub says; a lookup GitHub refuses is said and left out, never fatal: the
    image is live already)."""
    from mlgate.actions import utc_now

    record: dict[str, Any] = {"environment": env, "image": image, "deployed_at": utc_now()}
    run_id, repo = os.environ.get("GITHUB_RUN_ID", ""), os.environ.get("GITHUB_REPOSITORY", "")
    if not (run_id and repo):
        return record  # a laptop: no workflow run to name
    server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
    record["run_url"] = f"{server}/{repo}/actions/runs/{run_id}"
    if env == PRODUCTION and os.environ.get("GITHUB_TOKEN"):
        from mlgate.release import deployments, github

        try:
            record["approved_by"] = deployments.approvers(
                github.GitHub.from_env(), repo, run_id, env
            )
        except MlgateError as e:
            print(f"::warning title=mlgate lineage::approvers not recorded: {e}")
    return record


def build_bento(
    params: Any, model: str, strategy: str | None = None, challenger: str | None = None
) -> str:
    """The bento of model version (or alias) MODEL, as `mlgate build` makes it; with a strategy,
    the trial bento (MODEL answers, CHALLENGER beside it). Returns the bento tag."""
    from mlgate.serving.build import build, with_strategy

    if strategy:
        params = with_strategy(params, strategy, challenger)
    return build(params, model)


def _containerize(bento: str, tag: str) -> str:
    """`bentoml containerize` BENTO as TAG, push it; returns REPO@sha256:…"""
    from mlgate.release.targets import sh

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
    from mlgate.registry import aliases, tracking

    skip = "release image: no trial, the approval moves all traffic at once: "
    if not _has_server():
        print(f"::warning title=mlgate trial::{skip}{NO_SERVER.format(what='the trial')}")
        return None
    client = tracking.connect(params)
    version = aliases.alias_version(client, params.model_name, PRODUCTION)
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
