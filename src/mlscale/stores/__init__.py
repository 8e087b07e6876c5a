"""ML data stores built on the cluster's public API: features (so far)."""
