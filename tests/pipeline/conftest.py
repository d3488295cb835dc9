"""Helpers the pipeline, registry and loop tests share: the registry's state, a JSON file."""

from __future__ import annotations

import json
from pathlib import Path


def registry_state(repo: Path) -> dict:
    """Every model version with its aliases and tags, straight from the MLflow store."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{repo / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    found = client.search_model_versions("name = 'credit-risk'")
    # search results carry no aliases: read each version on its own
    versions = [client.get_model_version("credit-risk", v.version) for v in found]
    return {
        str(v.version): {"aliases": sorted(v.aliases), "tags": dict(v.tags)}
        for v in sorted(versions, key=lambda v: int(v.version))
    }


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
