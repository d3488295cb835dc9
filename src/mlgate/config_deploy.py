"""params.yaml's `deploy` section: the target, the image, the health and smoke checks, the
Kubernetes settings and the trial stage (docs/WORKFLOWS.md, docs/SERVING.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from mlgate.errors import MlgateError
from mlgate.section import Section as _Section


class Health(_Section):
    live: str = "/livez"
    ready: str = "/readyz"
    metrics: str = "/metrics"


class Smoke(_Section):
    path: str = "/predict"  # the prediction endpoint
    field: str = ""  # the JSON field that carries one request row; "" => serving.request_field
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
    image_pull_secret: str = ""  # a docker-registry Secret in each namespace (private images)


class Trial(_Section):
    """The optional trial stage of ml-cd's production job (docs/WORKFLOWS.md#the-trial-stage):
    the approved candidate serves beside the champion until `mlgate compare` decides."""

    mode: Literal["none", "shadow", "canary"] = "none"  # canary: serving.strategy.share/.key
    min_minutes: float = Field(default=0, ge=0)  # a promote verdict before this => keep collecting
    # still "collect" after this => abort (the champion alone again); GitHub-hosted jobs end at 6 h
    max_minutes: float = Field(default=120, gt=0, le=340)
    poll_seconds: float = Field(default=60, gt=0)  # fetch the traffic and compare this often

    @model_validator(mode="after")
    def _min_below_max(self) -> Trial:
        if self.min_minutes > self.max_minutes:
            raise ValueError(
                f"min_minutes {self.min_minutes:g} > max_minutes {self.max_minutes:g}: "
                "the trial would abort before it may promote"
            )
        return self


class Deploy(_Section):
    target: Literal["local", "kubernetes"] = "local"
    image: str = ""  # "" => ghcr.io/<github repository, lower case>
    port: int = 3000  # the service's port inside the container
    startup_seconds: int = Field(default=120, ge=1)
    health: Health = Health()
    smoke: Smoke = Smoke()
    kubernetes: Kubernetes = Kubernetes()
    trial: Trial = Trial()

    def image_repository(self) -> str:
        if self.image:
            return self.image
        repo = os.environ.get("GITHUB_REPOSITORY", "")
        if not repo:
            raise MlgateError(
                "set deploy.image in params.yaml (or run where GITHUB_REPOSITORY is set)"
            )
        return f"ghcr.io/{repo.lower()}"
