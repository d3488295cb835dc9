"""The registry: the MLflow tracking store, model aliases and their history, lineage."""
