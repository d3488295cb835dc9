"""The `deploy:` section of params.yaml (typed in mlgate.config, validated with the rest)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from mlgate.config_deploy import Deploy, Health, Kubernetes, PerEnv, Smoke
from mlgate.errors import MlgateError

__all__ = ["Deploy", "Health", "Kubernetes", "PerEnv", "Smoke", "deploy_config"]


def deploy_config(raw: Deploy | dict[str, Any]) -> Deploy:
    """params.deploy as loaded, or a raw mapping (tests, callers without a params file)."""
    if isinstance(raw, Deploy):
        return raw
    try:
        return Deploy.model_validate(raw or {})
    except ValidationError as err:
        lines = [
            f"  - deploy.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        ]
        raise MlgateError("params.yaml deploy section is invalid:\n" + "\n".join(lines)) from None
