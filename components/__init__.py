"""The detector's work, as stage packages above a small core (docs/architecture.md).

- data, training, evaluation, registry, serving: one package per pipeline stage, each stage
  module exposing `run(cfg) -> Result` and a CLI (`python -m components.<package>.<module>`).
- The core every package may use: config, settings, contracts, wiring, record, cli_support.
- Entry points above them all: cli (the `detector` command) and kfp_stage (the Kubeflow runner).
`lint-imports` (pyproject.toml) checks that imports only ever run downwards.
"""


class DetectorWarning(UserWarning):
    """Warnings this project raises itself; the test suite turns them into errors."""
