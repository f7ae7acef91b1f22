"""Storage layer: engine, typed models, queries. Knows nothing of activelearn."""
