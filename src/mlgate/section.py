"""The base of every params.yaml section: frozen (a loaded configuration never changes) and
strict (an unknown key is an error naming it, not a silently ignored typo)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
