"""`mlgate data refresh`: a new version of the raw data, the unit of retraining.

New rows come from `data.source` (a file or URL, optionally written first by a command). They
are checked row by row against the data contract (failing rows are reported, not added),
appended to or replacing the current data, de-duplicated and kept to a time window. Nothing
changes when no row changed; a refresh that shrinks the data or moves the class balance beyond
the guardrails stops. Otherwise the new version is validated as a whole, written, `dvc add`-ed
and pushed, and a Markdown summary (rows, classes, drift against the previous version) is
written for the pull request.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from mlgate import io
from mlgate.actions import utc_now
from mlgate.errors import DataValidationError, MlgateError

if TYPE_CHECKING:
    import pandas as pd

    from mlgate.config import Params

TRIGGERS = ("manual", "schedule", "drift", "dispatch")


@dataclass
class Refresh:
    before: int
    after: int
    added: int
    removed: int
    duplicates: int
    rejected: int
    out_of_window: int
    classes_before: dict[str, int]
    classes_after: dict[str, int]
    drifted: list[str] = field(default_factory=list)
    rejected_detail: str = ""
    psi: dict[str, float] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.added > 0 or self.removed > 0


# ---------------------------------------------------------------- the pure part


def labelled_traffic(feedback: Path | str, outcomes: Path | str, target: str) -> pd.DataFrame:
    """The service's recorded predictions that have a late label: each prediction record's
    inputs joined on (request_id, row) with the outcomes file's target column."""
    import pandas as pd

    from mlgate.pipeline import data
    from mlgate.serving.feedback import read_records

    if not Path(feedback).is_dir():
        raise MlgateError(f"data.source.feedback {feedback} is not a folder of feedback records")
    records = [r for r in read_records(feedback) if r.get("kind") == "prediction"]
    labels = data.read_csv(outcomes)
    missing = [c for c in ("request_id", "row", target) if c not in labels.columns]
    if missing:
        raise MlgateError(f"data.source.outcomes {outcomes} lacks column(s) {missing}")
    inputs = pd.DataFrame.from_records([r["inputs"] for r in records])
    inputs["request_id"] = pd.Series([str(r.get("request_id")) for r in records], dtype=str)
    inputs["row"] = pd.Series([int(r.get("row", 0)) for r in records], dtype=int)
    labels = labels[["request_id", "row", target]].astype({"request_id": str, "row": int})
    joined = inputs.merge(labels.drop_duplicates(["request_id", "row"]), on=["request_id", "row"])
    print(
        f"data refresh: {len(joined)} of {len(records)} recorded predictions have an outcome "
        f"in {outcomes}"
    )
    return joined.drop(columns=["request_id", "row"])


def fetch(params: Params, cwd: Path = Path(".")) -> pd.DataFrame:
    """The source's rows: recorded traffic with outcomes, or run the command (if any) and
    read the path."""
    from mlgate.pipeline import data

    src = params.data.source
    if src.feedback or src.outcomes:
        if not (src.feedback and src.outcomes):
            raise MlgateError("data.source.feedback and data.source.outcomes go together")
        return labelled_traffic(src.feedback, src.outcomes, params.data.target)
    if not src.path:
        raise MlgateError(
            "params.yaml has no data.source.path: name the file (or URL) new data arrives in, "
            "and data.source.command if a command must write it first (or feedback + outcomes)"
        )
    if src.command:
        code, output = run_command(src.command, cwd, src.command_timeout)
        if code != 0:
            tail = output.strip()[-2000:]
            raise MlgateError(f"data.source.command exited {code}; nothing changed:\n{tail}")
    return data.read_csv(src.path)


def run_command(command: str, cwd: Path, timeout: float) -> tuple[int, str]:
    """A shell command's exit code and output (stderr, else stdout), ended with every process
    it started when it runs past `timeout` s: a session of its own, killed as a group (killing
    the shell alone leaves a child holding the pipes, and the wait never ends)."""
    proc = subprocess.Popen(
        command,
        shell=True,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise MlgateError(
            f"data.source.command ran past {timeout:g} s (data.source.command_timeout) and was "
            "ended; nothing changed"
        ) from None
    return proc.returncode, err or out


def accepted_rows(new: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, int, str]:
    """New rows that pass the row-level contract, how many did not, and why (pandera's words).
    A problem with the whole source (a missing column) rejects all of it."""
    import pandas as pd
    import pandera.errors as pae

    from mlgate.pipeline import data

    schema = data.load_schema(params)
    cases = data.lossy_coercions(new, schema)
    try:
        schema.validate(new, lazy=True)
    except pae.SchemaErrors as err:
        cases = pd.concat([cases, err.failure_cases], ignore_index=True)
    if cases.empty:
        return new, 0, ""
    detail = data.format_failures(cases, _where(params), len(new))
    index = pd.to_numeric(cases["index"], errors="coerce") if "index" in cases else None
    if index is None or index.isna().any():  # a column-level failure: no row can be trusted
        raise DataValidationError(
            f"data.source fails the data contract; nothing changed:\n{detail}"
        )
    bad = set(index.astype(int))
    return new.drop(index=sorted(bad)), len(bad), detail


def _where(params: Params) -> str:
    src = params.data.source
    return src.path or f"{src.feedback} + {src.outcomes}"


def combine(
    current: pd.DataFrame, new: pd.DataFrame, params: Params
) -> tuple[pd.DataFrame, int, int]:
    """The next version: appended or replaced, de-duplicated, kept to the window."""
    import pandas as pd

    src = params.data.source
    duplicates = 0
    if src.dedupe:  # new rows repeating a row already there (or an earlier new row)
        kept = current if src.mode == "append" else current.iloc[0:0]
        both = pd.concat([kept, new], ignore_index=True).astype(str).duplicated()
        fresh = ~both.iloc[len(kept) :].to_numpy()
        duplicates = int((~fresh).sum())
        new = new[fresh]
    # append keeps the rows already there as they are: repeats in them were accepted by the
    # contract (data.contract.max_duplicate_share), and a refresh does not rewrite history
    frame = pd.concat([current, new], ignore_index=True) if src.mode == "append" else new
    frame = frame.reset_index(drop=True)
    outside = 0
    if src.window_column and src.window_days:
        if src.window_column not in frame.columns:
            raise MlgateError(f"data.source.window_column {src.window_column!r} is not a column")
        when = pd.to_datetime(frame[src.window_column], errors="coerce", utc=True)
        inside = when >= when.max() - pd.Timedelta(days=src.window_days)
        outside = int((~inside).sum())
        frame = frame[inside].reset_index(drop=True)
    return frame, duplicates, outside


def class_counts(frame: pd.DataFrame, params: Params) -> dict[str, int]:
    if params.data.task != "classification":
        return {}
    counts = frame[params.data.target].astype(str).value_counts().sort_index()
    return {str(k): int(v) for k, v in counts.items()}


def guardrails(current: pd.DataFrame, nxt: pd.DataFrame, params: Params) -> None:
    """Stop a refresh that loses too many rows or moves the class balance too far."""
    src = params.data.source
    if len(current) and (len(current) - len(nxt)) / len(current) > src.max_shrink:
        raise MlgateError(
            f"the refresh would shrink the data from {len(current)} to {len(nxt)} rows "
            f"(more than data.source.max_shrink {src.max_shrink:.0%}); nothing changed. "
            "Check the source; if the shrink is intended, raise max_shrink for this refresh."
        )
    before, after = class_counts(current, params), class_counts(nxt, params)
    for cls in sorted(set(before) | set(after)):
        share_before = before.get(cls, 0) / max(len(current), 1)
        share_after = after.get(cls, 0) / max(len(nxt), 1)
        if abs(share_after - share_before) > src.max_class_shift:
            raise MlgateError(
                f"the refresh would move class {cls!r} of {params.data.target} from "
                f"{share_before:.1%} to {share_after:.1%} of the rows (more than "
                f"data.source.max_class_shift {src.max_class_shift:.0%}); nothing changed"
            )


def drift(
    current: pd.DataFrame, nxt: pd.DataFrame, params: Params
) -> tuple[dict[str, float], list[str]]:
    """PSI (and the monitor's rule) of each feature, previous version against the new one."""
    from mlgate.loop.monitor import feature_drift

    psi, drifted = {}, []
    for name in params.features.all:
        f = feature_drift(name, current[name], nxt[name], params, params.monitor.max_psi)
        psi[name] = f.psi
        if f.drifted:
            drifted.append(name)
    return psi, drifted


def summary_markdown(r: Refresh, params: Params, trigger: str, version: str) -> str:
    src = params.data.source
    lines = [
        "# New data version",
        "",
        f"- trigger: **{trigger}**; source: `{_where(params)}` ({src.mode}"
        f"{', de-duplicated' if src.dedupe else ''})",
        f"- data version (data.dvc md5): `{version}`",
        f"- rows: {r.before} → {r.after} (+{r.added} added, −{r.removed} removed; "
        f"{r.duplicates} duplicates and {r.out_of_window} outside the window dropped, "
        f"{r.rejected} failing the contract rejected)",
    ]
    if r.classes_after:
        lines += ["", f"| {params.data.target} | before | after |", "|---|---:|---:|"]
        for cls in sorted(set(r.classes_before) | set(r.classes_after)):
            lines.append(
                f"| {cls} | {r.classes_before.get(cls, 0)} | {r.classes_after.get(cls, 0)} |"
            )
    lines += [
        "",
        "Drift against the previous version (PSI; the monitor's rule: PSI > "
        f"{params.monitor.max_psi} and p < {params.monitor.alpha}): "
        + (", ".join(f"**{n}**" for n in r.drifted) or "none"),
        "",
        "| feature | PSI |",
        "|---|---:|",
        *(f"| {n} | {v:.3f} |" for n, v in r.psi.items()),
    ]
    if r.rejected:
        lines += ["", "<details><summary>Rejected rows</summary>", "", "```",
                  r.rejected_detail.strip()[:20_000], "```", "</details>"]  # fmt: skip
    lines += ["", "The pipeline retrains on this version in this pull request's CI; "
              "the gate and the champion rule decide."]  # fmt: skip
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- files, DVC, git


def _dvc(*args: str) -> None:
    from mlgate.pipeline.dataversion import _dvc as run

    done = run(*args)
    if done.returncode != 0:
        raise MlgateError(f"`dvc {' '.join(args)}` failed:\n{(done.stderr or done.stdout).strip()}")


@contextlib.contextmanager
def _restored_on_failure(raw: Path, dvcfile: Path) -> Iterator[None]:
    """The data file and its pin as they were when the block fails (a failed `dvc add` had
    left data/ rewritten and unpinned, and the rerun then saw "no new rows")."""
    # beside the .dvc file, not in the folder it tracks (`dvc add` would pin the copy too)
    kept = dvcfile.with_name(f".{raw.name}.before-refresh")
    shutil.copy2(raw, kept)
    pin = dvcfile.read_bytes()
    try:
        yield
    except BaseException:
        os.replace(kept, raw)
        dvcfile.write_bytes(pin)
        raise
    finally:
        kept.unlink(missing_ok=True)


def proposed_version(ref: str, dvcfile: Path) -> str | None:
    """The md5 the .dvc file pins at git REF (None when REF or the file is not there)."""
    shown = subprocess.run(
        ["git", "show", f"{ref}:./{dvcfile}"], capture_output=True, text=True, timeout=60
    )
    if shown.returncode != 0:
        return None
    outs = (yaml.safe_load(shown.stdout) or {}).get("outs") or [{}]
    return outs[0].get("md5")


def record_meta(dvcfile: Path, trigger: str, r: Refresh, source: str) -> str:
    """Write what made this version into the .dvc file's `meta` (DVC keeps it; train tags it)."""
    pinned = yaml.safe_load(dvcfile.read_text()) or {}
    pinned["meta"] = {
        **(pinned.get("meta") or {}),
        "refresh": {
            "trigger": trigger,
            "at": utc_now(),
            "source": source,
            "rows": r.after,
            "added": r.added,
            "removed": r.removed,
        },
    }
    io.write_text(dvcfile, yaml.safe_dump(pinned, sort_keys=False))
    return str((pinned.get("outs") or [{}])[0].get("md5", ""))


def refresh(params: Params, trigger: str, proposed: str = "", push: bool = True) -> Refresh:
    from mlgate.actions import write_outputs
    from mlgate.pipeline import data
    from mlgate.pipeline.dataversion import pin_of

    pin = pin_of(params.data.raw)
    if pin is None:
        raise MlgateError(f"{params.data.raw} is not tracked by DVC: run `dvc add` on it first")
    dvcfile, out = pin
    current = data.read_csv(params.data.raw)
    new = fetch(params)
    if new.empty:  # no rows (or no labelled traffic) yet: nothing to add, whatever the columns
        new = current.iloc[0:0]
    missing = sorted(set(current.columns) - set(new.columns))
    if missing:
        raise DataValidationError(
            f"data.source {_where(params)} lacks column(s) {missing}; nothing changed"
        )
    new, rejected, detail = accepted_rows(new[list(current.columns)], params)
    nxt, duplicates, outside = combine(current, new, params)
    # rows counted as a multiset: a repeat of an existing row that was appended is added
    kept = Counter(current.astype(str).itertuples(index=False, name=None))
    now = Counter(nxt.astype(str).itertuples(index=False, name=None))
    r = Refresh(
        before=len(current),
        after=len(nxt),
        added=(now - kept).total(),
        removed=(kept - now).total(),
        duplicates=duplicates,
        rejected=rejected,
        out_of_window=outside,
        classes_before=class_counts(current, params),
        classes_after=class_counts(nxt, params),
        rejected_detail=detail,
    )
    if rejected:
        print(
            f"data refresh: {rejected} row(s) of the source fail the contract, not added:\n{detail}"
        )
    if not r.changed:
        print(f"data refresh: no new rows in {_where(params)}; {out}/ is unchanged")
        write_outputs(changed="false")
        return r
    guardrails(current, nxt, params)
    data.validate(
        nxt, data.contract_schema(params), "the refreshed data", data.dataset_rules(params)
    )
    r.psi, r.drifted = drift(current, nxt, params)
    with _restored_on_failure(params.data.raw, dvcfile):
        io.write_with(params.data.raw, lambda p: nxt.to_csv(p, index=False))
        _dvc("add", "--quiet", out)
        version = record_meta(dvcfile, trigger, r, _where(params))
    if proposed and proposed_version(proposed, dvcfile) == version:
        print(f"data refresh: {proposed} already proposes data version {version}; nothing to do")
        write_outputs(changed="false", data_version=version)
        return r
    if push:
        _dvc("push", "--quiet", str(dvcfile))
    io.write_text(params.data.source.report, summary_markdown(r, params, trigger, version))
    print(
        f"data refresh: {out}/ is data version {version}: {r.before} -> {r.after} rows "
        f"(+{r.added}, -{r.removed}); summary in {params.data.source.report}"
    )
    write_outputs(changed="true", data_version=version, summary=str(params.data.source.report))
    return r
