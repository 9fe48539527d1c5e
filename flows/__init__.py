"""Prefect flows that only wire the stages: each task runs a component's `run(cfg)` through the
stage table and passes small JSON results on. An entry point: may import the stage packages and the
core, never components.cli, and no TensorFlow (tests/flows/test_pipeline.py checks it)."""
