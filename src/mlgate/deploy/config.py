"""The `deploy:` section of params.yaml, typed: target, image, health paths, smoke test, k8s."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlgate.errors import MlgateError

ENVIRONMENTS = ("staging", "production")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Health(_Section):
    live: str = "/livez"
    ready: str = "/readyz"
    metrics: str = "/metrics"


class Smoke(_Section):
    path: str = "/predict"  # the prediction endpoint
    field: str = "applicant"  # the JSON field that carries one request row
    rows: int = Field(default=5, ge=1)  # rows of the test split sent, one request each


class PerEnv(_Section):
    staging: str = ""
    production: str = ""

    def of(self, env: str) -> str:
        return str(getattr(self, env))


class Kubernetes(_Section):
    manifests: Path = Path("deploy/k8s")
    name: str = ""  # the Deployment/Service name; "" => project.name
    namespace: PerEnv = PerEnv(staging="ml-staging", production="ml-production")
    url: PerEnv = PerEnv()  # public URL per environment; "" => smoke-test via port-forward
    replicas: dict[str, int] = Field(default_factory=lambda: {"min": 2, "max": 10})
    cpu_target: int = Field(default=70, ge=1, le=100)  # HPA average CPU utilisation, percent
    resources: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        }
    )
    rollout_timeout: str = "300s"
    oidc_audience: str = ""  # set: authenticate kubectl with the job's GitHub OIDC token


class Deploy(_Section):
    target: Literal["local", "kubernetes"] = "local"
    image: str = ""  # "" => ghcr.io/<github repository, lower case>
    port: int = 3000  # the service's port inside the container
    startup_seconds: int = Field(default=120, ge=1)
    health: Health = Health()
    smoke: Smoke = Smoke()
    kubernetes: Kubernetes = Kubernetes()

    def image_repository(self) -> str:
        if self.image:
            return self.image
        repo = os.environ.get("GITHUB_REPOSITORY", "")
        if not repo:
            raise MlgateError(
                "set deploy.image in params.yaml (or run where GITHUB_REPOSITORY is set)"
            )
        return f"ghcr.io/{repo.lower()}"


def deploy_config(raw: dict[str, Any]) -> Deploy:
    try:
        return Deploy.model_validate(raw or {})
    except ValidationError as err:
        lines = [
            f"  - deploy.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        ]
        raise MlgateError("params.yaml deploy section is invalid:\n" + "\n".join(lines)) from None
