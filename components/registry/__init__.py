"""The MLflow model registry: register a version and move its aliases (register), the gate that
decides on validation beyond bootstrap noise (gate), each version's decision history and
description (describe) and tags (tags), catalog operations behind `detector models
list|promote|rollback` (catalog), the promotion lock, and safe model loading (loading: native
.keras only, SHA-256 checked).

May import training (the model's custom layers, to load it), data and the core."""
