"""How often the example's gates fail on re-splits of unchanged data (issue 28).

    python benchmarks/resplit.py [--seeds 20]

Run it in this repository (the example) or in a project made by `mlgate init`, after
`make run` (it reads params.yaml and the validated data of the working directory).

For each split seed: split the example's data, fit the model, evaluate on the test split and
apply the quality and fairness gates of params.yaml twice: with `gate.uncertain: point` (the
point estimate decides, the rule before intervals) and with the params' own rule (intervals).
Then the same with the training labels shuffled (a model that learned nothing), which must
fail every time. Nothing but the split moves: a gate that fails here judges the noise.
The params' own rule includes the chance check (evaluate.chance: refits on shuffled labels)
when the params switch it on; the point rule is the gate before intervals and chance. Each
seed's line also gives the model's distance from the noise fits' mean in their sds (the
chance check's furthest metric): how far the model stands from what learned nothing.
"""

from __future__ import annotations

import argparse
import random

from mlgate.config import load_params, parse_params
from mlgate.pipeline import data
from mlgate.pipeline.stages import evaluate, gate, split, train


def failures(
    raw: dict, frame, seed: int, shuffle: bool
) -> tuple[list[str], list[str], float | None]:
    """The checks failed with the point rule and with the params' rule on split `seed`, and
    the model's distance from the noise fits in sds (None with the chance check off)."""
    raw = {**raw, "split": {**raw["split"], "seed": seed}}
    params = parse_params(raw)
    tr, te = split.split_frame(frame, params)
    if shuffle:
        labels = tr[params.data.target].tolist()
        random.Random(seed).shuffle(labels)
        tr = tr.assign(**{params.data.target: labels})
    model = train.fit(tr, params)
    result = evaluate.evaluate(model, te, params)
    point = parse_params({**raw, "gate": {**raw["gate"], "uncertain": "point"}})
    out, sds = [], None
    for p in (point, params):
        intervals = result["intervals"]
        beaten = evaluate.chance(model, tr, te, p) if p is params else None
        if beaten is not None:
            intervals = {**intervals, "chance": beaten}
            sds = max(distance(result["metrics"][k], v) for k, v in beaten["metrics"].items())
        checks = gate.threshold_checks(result["metrics"], result["fairness"], p, intervals)
        out.append([c.name for c in checks if not c.passed])
    return out[0], out[1], sds


def distance(value: float, null: dict) -> float:
    """How many of the noise fits' sds `value` stands beyond their mean, on the good side."""
    sign = -1 if null["op"] == "<" else 1
    return sign * (value - null["mean"]) / null["sd"] if null["sd"] else float("inf")


def main() -> None:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    with open("params.yaml", encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    params = load_params("params.yaml")
    frame = data.load(params.data.validated, params)
    for shuffle in (False, True):
        failed, distances = {"point": 0, "intervals": 0}, []
        for seed in range(1, args.seeds + 1):
            by_point, by_interval, sds = failures(raw, frame, seed, shuffle)
            failed["point"] += bool(by_point)
            failed["intervals"] += bool(by_interval)
            shown = f"point fails {by_point or '-'}; intervals fail {by_interval or '-'}"
            if sds is not None:
                distances.append(sds)
                shown += f"; {sds:+.2f} sd from the noise fits"
            print(f"  seed {seed:>2}: {shown}")
        model = "shuffled-label model" if shuffle else "the project's model"
        print(
            f"{model}: the gate fails {failed['point']} of {args.seeds} re-splits with point "
            f"estimates, {failed['intervals']} of {args.seeds} with intervals"
        )
        if distances:
            print(f"  from the noise fits: {min(distances):+.2f} to {max(distances):+.2f} sd")


if __name__ == "__main__":
    main()
