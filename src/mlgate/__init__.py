"""mlgate: a CI/CD template framework for machine learning on GitHub Actions."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

# One version, in pyproject.toml: the release tag is v<this>, checked by the release workflow.
try:
    __version__ = version("mlgate")
except PackageNotFoundError:
    # In a bento (and its image) mlgate is source without package metadata: `mlgate build`
    # writes the version it was built with beside it (serving.build.build_context).
    from mlgate._version import VERSION as __version__  # noqa: F401 (re-exported)
