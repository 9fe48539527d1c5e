"""Staged fine-tuning (Kroiß & Reschke, arXiv 2503.11389) inside one training run.

Each stage sets how many of the backbone's top layers train and at what share of the learning
rate, then recompiles; the epochs run on, so the curves of all stages share one axis, and every
epoch's row records its stage. A run resumed after a crash reloads the checkpoint of its last
epoch, which already holds the stage's trainable layers and optimizer state, and continues
inside that stage; a fresh optimizer is built only when a stage is entered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import keras

from components.config import FitConfig


def plan(fit: FitConfig, done_epochs: int) -> Iterator[tuple[int | None, int, bool]]:
    """(stage index or None when unstaged, the epoch it ends at, whether it starts fresh) for
    every stage not yet finished."""
    if not fit.stages:
        yield None, fit.epochs, done_epochs == 0
        return
    start = 0
    for index, end in enumerate(fit.stage_ends()):
        if done_epochs < end:
            yield index, end, done_epochs <= start
        start = end


def enter(model: keras.Model, fit: FitConfig, index: int, compile_at: Callable[[keras.Model, float], None], base_rate: float) -> None:
    """Make stage `index` the current one: its trainable layers, then a fresh optimizer at its rate.

    A frozen BatchNorm runs in inference mode in Keras 3, so the first stage's head trains on
    the backbone exactly as it will be served."""
    stage = fit.stages[index]
    backbone = model.get_layer("resnet50")
    layer_count = len(backbone.layers)
    if stage.trainable_backbone_layers > layer_count:
        raise ValueError(
            f"ResNet50 has {layer_count} layers. Received: fit.stages[{index}].trainable_backbone_layers={stage.trainable_backbone_layers}"
        )
    backbone.trainable = stage.trainable_backbone_layers > 0
    for position, layer in enumerate(backbone.layers):
        layer.trainable = backbone.trainable and position >= layer_count - stage.trainable_backbone_layers
    compile_at(model, base_rate * stage.learning_rate_factor)


class StageMarker(keras.callbacks.Callback):
    """Adds `stage` (1-based) to each epoch's logs, ahead of the callback that saves and logs them."""

    def __init__(self, index: int | None) -> None:
        super().__init__()
        self.index = index

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if self.index is not None and logs is not None:
            logs["stage"] = float(self.index + 1)
