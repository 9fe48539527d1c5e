"""The MLflow model registry: register a version and the gate that promotes it (register), catalog
operations behind `detector models list|promote|rollback` (catalog), the promotion lock, and safe model
loading (loading: native .keras only, SHA-256 checked).

May import training (the model's custom layers, to load it), data and the core."""
