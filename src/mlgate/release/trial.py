"""`mlgate release trial`: the approved candidate beside the champion in production, then
promote or abort on `mlgate compare` (docs/WORKFLOWS.md#the-trial-stage).

ml-cd's production job runs it after the approval, instead of deploying the candidate at once:

1. deploy the trial image (the champion answers; the candidate scores in its shadow or answers
   its canary share), smoke-test it, record the deployment (stage `trial`), alias `challenger`;
2. every deploy.trial.poll_seconds: fetch the recorded traffic (FEEDBACK_URL, as ml-monitor
   does) and run `mlgate compare` on what was served since the trial began;
3. promote (the candidate's own image, alias `production`, stage `promoted`) or abort (the
   champion's image again, stage `aborted`, exit non-zero) — each in the deployment record.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mlgate.errors import MlgateError
from mlgate.names import CHALLENGER, PRODUCTION
from mlgate.serving.feedback import record_time


class TrialAborted(MlgateError):
    """The trial ended in abort: the champion runs again (exit 4, as `mlgate compare`'s abort)."""

    exit_code = 4


FETCHED = ".mlgate-trial"  # marks a folder fetch made, the only kind it replaces


def check_fetch_folder(folder: Path) -> None:
    """Only a folder an earlier fetch made may be replaced: never the project, a user's folder."""
    if (folder.exists() or folder.is_symlink()) and (
        folder.is_symlink() or not (folder / FETCHED).is_file()
    ):
        raise MlgateError(
            f"--feedback-dir {folder} exists and the trial did not make it: choose a new "
            "folder (the trial replaces it with each fetch)"
        )


def fetch(url: str, folder: Path) -> str:
    """Copy the feedback sink at url into a fresh folder (`dvc get-url`: s3://, gs://, a path…);
    returns "" or why nothing could be read yet."""
    check_fetch_folder(folder)
    shutil.rmtree(folder, ignore_errors=True)
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "get-url", "--force", url, str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return lines[-1] if lines else f"dvc get-url exited {proc.returncode}"
    if folder.is_dir():
        (folder / FETCHED).write_text("fetched by mlgate release trial: replaced by the next\n")
    return ""


class Trial:
    """One trial: what runs, where the traffic is, and the deployment records it writes."""

    def __init__(self, params: Any, args: argparse.Namespace) -> None:
        from mlgate.release.config import deploy_config
        from mlgate.release.github import GitHub, repo_from_env

        self.params = params
        self.cfg = deploy_config(params.deploy)
        self.rule = self.cfg.trial
        self.args = args
        self.url = os.environ.get("FEEDBACK_URL", "")
        self.gh = GitHub.from_env()
        self.repo = repo_from_env(None)
        self.ref = os.environ.get("GITHUB_SHA", "")
        self.folder = Path(args.feedback_dir)
        self.report = Path(args.report or params.compare.report)

    def check(self) -> None:
        """Everything a trial needs, before anything is deployed."""
        from mlgate.registry import aliases, tracking

        if self.rule.mode == "none":
            raise MlgateError("deploy.trial.mode is none: there is no trial to run")
        if not self.url:
            raise MlgateError(
                "a trial decides on recorded traffic, and FEEDBACK_URL is empty: set the "
                "repository secret MLGATE_FEEDBACK_URL to where production's feedback sink "
                "writes (docs/WORKFLOWS.md#the-trial-stage), or set deploy.trial.mode: none"
            )
        if not self.ref:
            raise MlgateError("GITHUB_SHA is not set: the commit being delivered is unknown")
        check_fetch_folder(self.folder)
        for name in ("image", "trial_image", "champion_image"):
            if "@sha256:" not in getattr(self.args, name):
                raise MlgateError(f"--{name.replace('_', '-')}: an image by digest is needed")
        client = tracking.connect(self.params)
        now = aliases.alias_version(client, self.params.model_name, PRODUCTION)
        if now != self.args.champion_version:
            raise MlgateError(
                f"production is version {now} now, not {self.args.champion_version} as when "
                "the trial image was built (a rollback or another delivery moved it): nothing "
                "was deployed; re-run the delivery to build a trial against the current champion"
            )

    def deploy(self, image: str, version: str, stage: str, **extra: Any) -> str:
        from mlgate.release.deploy import deploy_image
        from mlgate.release.deployments import record_deployment

        url, _ = deploy_image(self.params, self.cfg, PRODUCTION, image)
        what = {"trial": f"trial ({self.rule.mode})", "promoted": "promoted", "aborted": "aborted"}
        dep = record_deployment(
            self.gh,
            self.repo,
            PRODUCTION,
            self.ref,
            image,
            version,
            url,
            description=f"{what[stage]}: model {version}, {image}",
            extra={"stage": stage, "trial_mode": self.rule.mode, **extra},
        )
        print(f"trial: production deployment {dep} recorded ({stage}: model {version})")
        return url

    def collect(self, started: str) -> tuple[str, list[str]]:
        """Compare until a verdict holds or time is up; returns (promote|abort, reasons)."""
        from mlgate.loop import compare

        began = time.monotonic()
        polls = 0
        while True:
            time.sleep(self.rule.poll_seconds)
            polls += 1
            minutes = (time.monotonic() - began) / 60
            problem = fetch(self.url, self.folder)
            result = None
            if not problem:
                try:
                    result = compare.run(
                        self.params, self.folder, self.report, since=started, quiet=True
                    )
                except MlgateError as err:
                    problem = str(err)
            if result is None:
                print(f"trial: {minutes:.1f} min, poll {polls}: nothing to compare yet ({problem})")
            else:
                cp, ch = result.champion, result.challenger
                print(
                    f"trial: {minutes:.1f} min, poll {polls}: champion {cp.predictions} rows "
                    f"({cp.outcomes} with outcomes), challenger {ch.predictions} rows "
                    f"({ch.outcomes} with outcomes, {ch.errors} errors): {result.verdict}"
                    f" - {'; '.join(result.reasons)}",
                    flush=True,
                )
                if result.verdict == "abort":
                    return "abort", result.reasons
                if result.verdict == "promote":
                    if minutes >= self.rule.min_minutes:
                        return "promote", result.reasons
                    wait = self.rule.min_minutes
                    print(f"trial: promote holds; collecting until min_minutes {wait:g}")
            if minutes >= self.rule.max_minutes:
                why = [f"no verdict after max_minutes {self.rule.max_minutes:g}"]
                if result is not None:
                    why += result.reasons
                elif problem:
                    why.append(f"last fetch: {problem}")
                return "abort", why


def run_trial(params: Any, args: argparse.Namespace) -> int:
    from mlgate.actions import append_summary, write_outputs
    from mlgate.registry import aliases
    from mlgate.release.deploy import promote_with_image

    if hasattr(sys.stdout, "reconfigure"):  # one line per poll reaches the log as it happens
        sys.stdout.reconfigure(line_buffering=True)
    trial = Trial(params, args)
    trial.check()
    a = args
    started = record_time()

    def restore(why: str, **extra: Any) -> str:
        """The champion alone again, recorded as the end of this trial."""
        print(f"trial: {why}: restoring the champion (version {a.champion_version})")
        return trial.deploy(
            a.champion_image, a.champion_version, "aborted", candidate=a.version, **extra
        )

    try:
        trial.deploy(
            a.trial_image,
            a.version,
            "trial",
            champion_version=a.champion_version,
            champion_image=a.champion_image,
            started_at=started,
        )
    except Exception as err:  # a trial image that fails its smoke test must not stay live
        restore(
            "the trial image failed to deploy", trial={"verdict": "abort", "reasons": [str(err)]}
        )
        raise
    aliases.promote(params, a.version, to=CHALLENGER, note=f"trial in cd run {_run_id()}")
    print(
        f"trial: {trial.rule.mode}: champion version {a.champion_version} answers, challenger "
        f"version {a.version} beside it; comparing every {trial.rule.poll_seconds:g} s for "
        f"{trial.rule.min_minutes:g}-{trial.rule.max_minutes:g} min",
        flush=True,
    )
    verdict, reasons = trial.collect(started)
    outcome = {
        "verdict": verdict,
        "reasons": reasons,
        "started_at": started,
        "ended_at": record_time(),
    }
    report = trial.report / "compare.md"
    append_summary(
        f"### Trial ({trial.rule.mode}): {verdict}\n\n"
        + "".join(f"- {r}\n" for r in reasons)
        + (f"\n{report.read_text()}" if report.exists() else "")
    )
    if verdict == "promote":
        try:
            write_outputs(url=trial.deploy(a.image, a.version, "promoted", trial=outcome))
        except Exception as err:
            failed = {**outcome, "verdict": "abort", "reasons": [f"promotion failed: {err}"]}
            restore("the candidate's own image failed to deploy", trial=failed)
            raise
        note = f"trial promoted, cd run {_run_id()}"
        promote_with_image(params, a.version, PRODUCTION, note, a.image)
        print(f"trial: promoted: production runs version {a.version} alone ({a.image})")
        return 0
    write_outputs(url=restore("verdict abort", trial=outcome))
    raise TrialAborted(
        f"trial aborted: {'; '.join(reasons)}. Production runs the champion again (version "
        f"{a.champion_version}, {a.champion_image}); candidate version {a.version} keeps alias "
        "staging and challenger, never production. The comparison: "
        f"{report if report.exists() else 'no records'}"
    )


def _run_id() -> str:
    return os.environ.get("GITHUB_RUN_ID", "?")
