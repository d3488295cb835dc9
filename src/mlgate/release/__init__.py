"""Release: deploy targets, smoke test, trial, promotion with images, GitHub."""
