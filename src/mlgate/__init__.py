"""mlgate: a CI/CD template framework for machine learning on GitHub Actions."""

from __future__ import annotations

__version__ = "0.1.0"
