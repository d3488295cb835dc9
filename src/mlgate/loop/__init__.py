"""After release: monitor, compare, outcomes, data refresh, batch scoring."""
