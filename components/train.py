"""Train one variant from TFRecord shards, log it to MLflow, and survive a crash.

After every epoch the whole model (weights and optimizer state) and the callbacks' counters
are saved; a rerun with the same inputs picks up at the next epoch, in the same MLflow run,
with the learning rate, best checkpoint and early-stopping patience where they were. A run
that already finished is reused, not repeated.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import tensorflow as tf
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from components import accelerator, plots
from components.cli_support import component_main
from components.config import FitConfig, ModelConfig, PipelineConfig, Strict, fingerprint, flatten
from components.model import build_model, count_parameters
from components.records import make_dataset, read_manifest
from components.settings import TrackingUnavailable


class TrainConfig(Strict):
    pipeline: PipelineConfig = PipelineConfig()
    manifest_path: str
    parent_run_id: str | None = None


class TrainResult(Strict):
    run_id: str
    experiment_id: str
    model_path: str
    model_uri: str
    epochs_completed: int
    resumed_at_epoch: int
    reused: bool
    final_metrics: dict[str, float]


def run(cfg: TrainConfig, extra_callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainResult:
    """`extra_callbacks` lets tests inject a crash; production callers pass nothing."""
    fit = cfg.pipeline.variant.fit
    manifest = read_manifest(cfg.manifest_path)
    run_dir = run_directory(cfg, manifest)
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return TrainResult.model_validate({**json.loads(result_path.read_text()), "reused": True})
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(fit.seed)
    state = _load_state(run_dir)
    resumed_at_epoch = state["epoch"]
    placement = accelerator.resolve(fit)
    with _mlflow_run(cfg, manifest, run_dir) as active, _failed_run_on(TrackingUnavailable):
        with accelerator.building(placement):
            model = _model(cfg, manifest, run_dir, placement, resuming=bool(state["history"]))
        # uint8 batches: a quarter of the bytes to the device; the model casts them there.
        train = make_dataset(cfg.manifest_path, "train", placement.global_batch_size, training=True, seed=fit.seed, dtype=tf.uint8)
        val = make_dataset(cfg.manifest_path, "val", placement.global_batch_size, dtype=tf.uint8)
        callbacks = _callbacks(cfg, run_dir, state, placement.global_batch_size)
        model.fit(
            train,
            validation_data=val,
            epochs=fit.epochs,
            initial_epoch=state["epoch"],
            callbacks=[*callbacks, *extra_callbacks],
            verbose=2,
            shuffle=False,  # the reader already shuffles files and records
        )
        state = _load_state(run_dir)
        if fit.best_checkpoint_metric and (run_dir / "best.keras").is_file():
            with accelerator.building(placement):
                model = keras.models.load_model(run_dir / "best.keras")
        model_path = run_dir / "model.keras"
        model.save(model_path)
        model_uri = _log_outputs(model, cfg, manifest, state["history"], run_dir, val)
        result = TrainResult(
            run_id=active.info.run_id,
            experiment_id=active.info.experiment_id,
            model_path=str(model_path),
            model_uri=model_uri,
            epochs_completed=len(state["history"]),
            resumed_at_epoch=resumed_at_epoch,
            reused=False,
            final_metrics={key: value for key, value in state["history"][-1].items() if key != "epoch"},
        )
    result_path.write_text(result.model_dump_json(indent=2))
    return result


def run_directory(cfg: TrainConfig, manifest: dict[str, Any]) -> Path:
    """Same shards, same variant, same tracking store: same folder, so a rerun resumes or reuses."""
    key = fingerprint(manifest["shard_key"], cfg.pipeline.variant.model_dump(), mlflow.get_tracking_uri(), cfg.pipeline.experiment_name)
    return Path(cfg.pipeline.work_dir) / "runs" / f"{cfg.pipeline.variant.name}-{key}"


def _mlflow_run(cfg: TrainConfig, manifest: dict[str, Any], run_dir: Path) -> mlflow.ActiveRun:
    mlflow.set_experiment(cfg.pipeline.experiment_name)
    id_file = run_dir / "mlflow_run_id"
    if id_file.is_file():
        return mlflow.start_run(run_id=id_file.read_text().strip())
    variant = cfg.pipeline.variant
    active = mlflow.start_run(
        run_name=f"{variant.name}-{manifest['dataset_fingerprint'][:8]}",
        parent_run_id=cfg.parent_run_id,
        tags={"variant": variant.name, "dataset_fingerprint": manifest["dataset_fingerprint"], "shard_key": manifest["shard_key"]},
    )
    params = flatten({"data": cfg.pipeline.data.model_dump(), **variant.model_dump(exclude={"name"})})
    mlflow.log_params({**params, "variant": variant.name, "image_size": manifest["image_size"]})
    id_file.write_text(active.info.run_id)
    return active


@contextlib.contextmanager
def _failed_run_on(unreachable: type[Exception]) -> Iterator[None]:
    """Keep the clear error when the server is gone: the run's own exit would replace it with
    MLflow's failure to mark the run FAILED on that same unreachable server."""
    try:
        yield
    except unreachable:
        with contextlib.suppress(MlflowException):
            mlflow.end_run("FAILED")
        raise


def _model(cfg: TrainConfig, manifest: dict[str, Any], run_dir: Path, placement: accelerator.Placement, resuming: bool) -> keras.Model:
    """Call inside accelerator.building(placement), so variables land on the replicas."""
    last = run_dir / "last.keras"
    if resuming and last.is_file():
        return keras.models.load_model(last)  # compiled, with the optimizer's moments and rate
    model = compile_model(cfg.pipeline.variant.model, cfg.pipeline.variant.fit, manifest["image_size"], placement)
    total, trainable = count_parameters(model)
    mlflow.log_params(
        {
            "parameters_total": total,
            "parameters_trainable": trainable,
            "replicas": placement.replicas,
            "global_batch_size": placement.global_batch_size,
            "effective_learning_rate": placement.learning_rate,
            "mixed_precision_on": placement.mixed_precision,
        }
    )
    return model


def compile_model(model_cfg: ModelConfig, fit: FitConfig, image_size: int, placement: accelerator.Placement | None = None) -> keras.Model:
    """The variant's model with the report's optimizer, loss and metrics, at the placement's
    learning rate and XLA setting (the config's own values without one)."""
    model = build_model(model_cfg, image_size)
    model.compile(
        optimizer=keras.optimizers.Adam(placement.learning_rate if placement else fit.learning_rate),
        loss="binary_crossentropy",
        jit_compile=placement.jit_compile if placement else "auto",
        metrics=[
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc"),
            keras.metrics.Precision(name="precision"),
            keras.metrics.Recall(name="recall"),
        ],
    )
    return model


def _callbacks(cfg: TrainConfig, run_dir: Path, state: dict[str, Any], batch_size: int) -> list[keras.callbacks.Callback]:
    fit = cfg.pipeline.variant.fit
    tracked: dict[str, keras.callbacks.Callback] = {}
    if fit.best_checkpoint_metric:
        tracked["checkpoint"] = keras.callbacks.ModelCheckpoint(
            run_dir / "best.keras", monitor=fit.best_checkpoint_metric, save_best_only=True
        )
    if fit.reduce_lr_factor:
        tracked["reduce_lr"] = keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=fit.reduce_lr_factor, patience=fit.reduce_lr_patience, verbose=1
        )
    stateless = []
    if fit.precise_bn_batches:
        batches = make_dataset(cfg.manifest_path, "train", batch_size, training=True, seed=fit.seed + 1, dtype=tf.uint8)
        stateless.append(PreciseBatchNorm(batches, fit.precise_bn_batches))
    if fit.early_stopping_patience:
        tracked["early_stopping"] = keras.callbacks.EarlyStopping(monitor="val_loss", patience=fit.early_stopping_patience, verbose=1)
    # EpochState goes last: its on_train_begin runs after the others have reset their counters.
    return [*stateless, *tracked.values(), EpochState(run_dir, tracked, state)]


class PreciseBatchNorm(keras.callbacks.Callback):
    """Before validation, set each trainable BatchNorm's statistics to the mean over `batches`
    training batches. In a short run, Keras' moving averages (momentum 0.99) still remember
    their initial values, and validation accuracy sits at 0.5 while the training AUC climbs."""

    def __init__(self, dataset: tf.data.Dataset, batches: int) -> None:
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
        for images, _ in self.dataset.take(self.batches):
            self._forward(images)
            count += 1
            for total, layer in zip(totals, layers):
                total += [keras.ops.convert_to_numpy(layer.moving_mean), keras.ops.convert_to_numpy(layer.moving_variance)]
        for total, layer, momentum in zip(totals, layers, momenta):
            if count:
                layer.moving_mean.assign(total[0] / count)
                layer.moving_variance.assign(total[1] / count)
            layer.momentum = momentum

    def _forward(self, images: tf.Tensor) -> None:
        if self.model.distribute_strategy.num_replicas_in_sync > 1:
            self.model(images, training=True)  # cross-replica updates stay on the eager path the tests cover
            return
        if self.forward is None:
            # Traced once (momentum 0 is baked in): eager, these passes took ~15 % of a demo epoch.
            self.forward = tf.function(lambda batch: self.model(batch, training=True))
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
    """

    COUNTERS = ("best", "wait", "cooldown_counter", "stopped_epoch")

    def __init__(self, run_dir: Path, tracked: dict[str, keras.callbacks.Callback], state: dict[str, Any]) -> None:
        super().__init__()
        self.run_dir, self.tracked, self.state = run_dir, tracked, state

    def on_train_begin(self, logs=None) -> None:
        for name, counters in self.state["counters"].items():
            for attribute, value in counters.items():
                setattr(self.tracked[name], attribute, value)
        self._log_pending()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        row = {"epoch": epoch, **{key: float(value) for key, value in (logs or {}).items()}}
        row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        _atomic_save_model(self.model, self.run_dir / "last.keras")
        self.state["history"].append(row)
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
                mlflow.log_metrics({key: value for key, value in row.items() if key != "epoch"}, step=row["epoch"])
            except MlflowException as error:
                raise TrackingUnavailable(
                    f"MLflow tracking server {mlflow.get_tracking_uri()} stopped answering at epoch {row['epoch'] + 1} "
                    f"({str(error)[:200]}). Training is checkpointed in {self.run_dir}; rerun the same command once the "
                    "server is back to resume there and log the missed epochs."
                ) from None
            self.state["logged"] = row["epoch"] + 1
            _write_json(self.run_dir / "state.json", self.state)


def _load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "state.json"
    if path.is_file():
        return json.loads(path.read_text())
    return {"epoch": 0, "history": [], "counters": {}}


def _log_outputs(
    model: keras.Model, cfg: TrainConfig, manifest: dict[str, Any], history: list[dict], run_dir: Path, val: tf.data.Dataset
) -> str:
    variant = cfg.pipeline.variant.name
    curves = plots.learning_curves(history, run_dir / "plots" / "learning_curves.png", f"{variant}: learning curves")
    mlflow.log_artifact(str(curves), artifact_path="plots")
    mlflow.log_dict(manifest, "data/manifest.json")
    images, _ = next(iter(val.take(1)))
    example = images.numpy()[:2].astype("float32")  # served models take float pixels in [0, 255]
    signature = infer_signature(example, model.predict(example, verbose=0))
    info = mlflow.keras.log_model(
        model,
        name="model",
        signature=signature,
        # Explicit requirements: inferring them re-loads the model in a subprocess, for minutes.
        pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}", f"mlflow=={mlflow.__version__}"],
        tags={"variant": variant, "dataset_fingerprint": manifest["dataset_fingerprint"]},
    )
    return info.model_uri


def _atomic_save_model(model: keras.Model, path: Path) -> None:
    partial = path.with_name(f"partial-{path.name}")  # .keras suffix kept: Keras insists on it
    model.save(partial)
    os.replace(partial, path)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(payload, indent=2))
    os.replace(partial, path)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def main(argv: list[str] | None = None) -> None:
    component_main("detector train", __doc__, TrainConfig, run, argv)


if __name__ == "__main__":
    main()
