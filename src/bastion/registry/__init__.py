"""The registry: datasets, models, versions, artifacts, lineage (being written)."""
