"""Pipeline stages for the AI-generated image detector. Each module exposes run(cfg) and a CLI."""


class DetectorWarning(UserWarning):
    """Warnings this project raises itself; the test suite turns them into errors."""
