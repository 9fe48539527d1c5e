"""The training callbacks that make a run resumable and its validation honest.

EpochState is the crash-safety contract: per epoch, the whole model and the callbacks'
counters are saved before anything is sent to MLflow, so neither a crash nor a tracking server
that goes away loses a trained epoch.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
from mlflow.exceptions import MlflowException

from components import record
from components.settings import TrackingUnavailable, redact
from components.training.accelerator import compiled_forward
from components.training.multihost import undistributed


class PreciseBatchNorm(keras.callbacks.Callback):
    """Before validation, set each trainable BatchNorm's statistics to the mean over `batches`
    training batches. In a short run, Keras' moving averages (momentum 0.99) still remember
    their initial values, and validation accuracy sits at 0.5 while the training AUC climbs."""

    def __init__(self, dataset: Iterable, batches: int) -> None:
        super().__init__()
        self.dataset, self.batches = dataset, batches
        self.forward = None

    def on_test_begin(self, logs=None) -> None:
        layers = [layer for layer in _all_layers(self.model) if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
        if not layers:  # e.g. the baseline: its BatchNorms are all frozen
            return
        momenta = [layer.momentum for layer in layers]
        for layer in layers:
            layer.momentum = 0.0  # each forward pass leaves exactly that batch's statistics
        totals = [np.zeros((2, *layer.moving_mean.shape)) for layer in layers]
        count = 0
        for batch in itertools.islice(iter(self.dataset), self.batches):
            self._forward(batch[0])
            count += 1
            for total, layer in zip(totals, layers):
                total += [keras.ops.convert_to_numpy(layer.moving_mean), keras.ops.convert_to_numpy(layer.moving_variance)]
        for total, layer, momentum in zip(totals, layers, momenta):
            if count:
                layer.moving_mean.assign(total[0] / count)
                layer.moving_variance.assign(total[1] / count)
            layer.momentum = momentum

    def _forward(self, images: Any) -> None:
        if self.forward is None:
            # Traced once (momentum 0 is baked in): eager, these passes took ~15 % of a demo epoch.
            self.forward = compiled_forward(self.model)
        self.forward(images)


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    layers = []
    for layer in model.layers:
        layers.extend(_all_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return layers


class EpochState(keras.callbacks.Callback):
    """Per epoch: save model and callback counters first, then log the metrics to MLflow.

    Saving first means a tracking server that is down costs no training: the run stops with
    its checkpoint intact, and the rerun logs the epochs the server missed before going on.
    Of several training processes only the chief (`chief=True`) saves and logs; every process
    restores the counters, so all stop or lower the rate at the same epoch.
    """

    COUNTERS = ("best", "wait", "cooldown_counter", "stopped_epoch")

    def __init__(self, run_dir: Path, tracked: dict[str, keras.callbacks.Callback], state: dict[str, Any], chief: bool = True) -> None:
        super().__init__()
        self.run_dir, self.tracked, self.state, self.chief = run_dir, tracked, state, chief

    def on_train_begin(self, logs=None) -> None:
        for name, counters in self.state["counters"].items():
            for attribute, value in counters.items():
                if name in self.tracked:  # the best checkpoint is the chief's alone
                    setattr(self.tracked[name], attribute, value)
        if self.chief:
            self._log_pending()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if not self.chief:
            return
        row = {"epoch": epoch, **{key: float(value) for key, value in (logs or {}).items()}}
        row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        _atomic_save_model(self.model, self.run_dir / "last.keras")
        self.state["history"].append(row)
        # One timestamp per epoch, kept: re-sending an epoch after a crash between the send and the
        # `logged` write repeats the exact same points, which MLflow's SQL store stores once.
        self.state.setdefault("logged_at_ms", {})[str(epoch)] = int(time.time() * 1000)
        self.state["epoch"] = epoch + 1
        self.state["counters"] = {
            name: {attribute: _plain(getattr(callback, attribute)) for attribute in self.COUNTERS if hasattr(callback, attribute)}
            for name, callback in self.tracked.items()
        }
        _write_json(self.run_dir / "state.json", self.state)
        self._log_pending()

    def _log_pending(self) -> None:
        for row in self.state["history"][self.state.get("logged", 0) :]:
            try:
                # Steps count epochs from 1, as the learning-curve PNG does.
                # Rounded for the UI; state.json keeps the history whole.
                mlflow.log_metrics(
                    record.rounded_metrics({mlflow_metric_name(key): value for key, value in row.items() if key != "epoch"}),
                    step=row["epoch"] + 1,
                    timestamp=self.state.get("logged_at_ms", {}).get(str(row["epoch"])),
                )
            except MlflowException as error:
                raise TrackingUnavailable(
                    f"MLflow tracking server {redact(mlflow.get_tracking_uri())} stopped answering at epoch {row['epoch'] + 1} "
                    f"({redact(str(error))[:200]}). Training is checkpointed in {self.run_dir}; rerun the same command once the "
                    "server is back to resume there and log the missed epochs."
                ) from None
            self.state["logged"] = row["epoch"] + 1
            _write_json(self.run_dir / "state.json", self.state)


def mlflow_metric_name(keras_name: str) -> str:
    """`val_auc` → `val/auc`, `loss` → `train/loss`: the "/" groups each split's charts in the MLflow UI.
    The Keras names stay in state.json and in the callbacks' `monitor`."""
    if keras_name.startswith("val_"):
        return f"val/{keras_name.removeprefix('val_')}"
    return f"train/{keras_name}"


class BestCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that the chief of several training processes can run alone (multihost.undistributed)."""

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        with undistributed():
            super().on_epoch_end(epoch, logs)


def load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "state.json"
    if path.is_file():
        return json.loads(path.read_text())
    return {"epoch": 0, "history": [], "counters": {}}


def _atomic_save_model(model: keras.Model, path: Path) -> None:
    partial = path.with_name(f"partial-{path.name}")  # .keras suffix kept: Keras insists on it
    with undistributed():
        model.save(partial)
    os.replace(partial, path)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(payload, indent=2))
    os.replace(partial, path)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
