"""mlgate: a CI/CD template framework for machine learning on GitHub Actions."""

from __future__ import annotations

from importlib.metadata import version

# One version, in pyproject.toml: the release tag is v<this>, checked by the release workflow.
__version__ = version("mlgate")
