"""The pipeline: data contract and version, model, fairness, DVC stages, repro, PR report."""
