"""The registry aliases, the GitHub environments and the column-role markers, spelled once.

An alias names a model version in the MLflow registry; an environment is where an image runs
(and a GitHub environment with its own protection rules). `staging` and `production` are both.
"""

from __future__ import annotations

CANDIDATE = "candidate"  # set by `mlgate register`: the gated model of the last pipeline run
STAGING = "staging"
PRODUCTION = "production"
CHALLENGER = "challenger"  # the model a shadow, canary or ab bento tries beside the champion

ENVIRONMENTS = (STAGING, PRODUCTION)
PROMOTION_ALIASES = (STAGING, PRODUCTION, CHALLENGER)  # what `mlgate promote --to` moves

# A column's role (data.roles) travels in its pandera column's metadata under this name, and
# a timestamp column's check has this name: the pipeline sets both, serving reads them.
ROLE_METADATA = "mlgate_role"
TIMESTAMP_CHECK = "iso8601_datetime"
