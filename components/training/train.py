"""Train one variant from TFRecord shards, log it to MLflow, and survive a crash.

After every epoch the whole model (weights and optimizer state) and the callbacks' counters
are saved; a rerun with the same inputs picks up at the next epoch, in the same MLflow run,
with the learning rate, best checkpoint and early-stopping patience where they were. A run
that already finished is reused, not repeated.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from components import record
from components.cli_support import component_main
from components.config import fingerprint
from components.contracts import Manifest, TrainConfig, TrainResult
from components.data.reader import make_dataset
from components.data.schema import geometry, is_identity, read_manifest
from components.settings import TrackingUnavailable
from components.training import accelerator, curves, multihost, staged
from components.training.callbacks import BestCheckpoint, EpochState, PreciseBatchNorm, load_state
from components.training.compiled import compile_at, compile_model
from components.training.model import count_parameters


def run(cfg: TrainConfig, extra_callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainResult:
    """`extra_callbacks` lets tests inject a crash; production callers pass nothing. Of several
    training processes (components/training/multihost.py) every one calls this, and all return
    the chief's result; only the chief writes to the run folder and to MLflow."""
    fit = cfg.pipeline.variant.fit
    manifest = read_manifest(cfg.manifest_path)
    run_dir = run_directory(cfg, manifest)
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return TrainResult.model_validate({**json.loads(result_path.read_text()), "reused": True})
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(fit.seed)
    placement = accelerator.resolve(fit, cfg.pipeline.runtime)
    # Every process reads the state the chief last wrote, never one it is still writing (a rerun in this process).
    multihost.barrier(placement.processes, "train: state written")
    state = load_state(run_dir)
    resumed_at_epoch = state["epoch"]
    tracking = _mlflow_run(cfg, manifest, run_dir) if placement.chief else contextlib.nullcontext()
    with tracking as active, _marked_failed_when_unreachable():
        with accelerator.building(placement):
            model, state = _fitted(cfg, manifest, run_dir, placement, state, extra_callbacks)
        if not placement.chief:
            multihost.barrier(placement.processes, "train: result written")
            return TrainResult.model_validate_json(result_path.read_text())
        model_path = run_dir / "model.keras"
        final = run_dir / ("best.keras" if fit.best_checkpoint_metric and (run_dir / "best.keras").is_file() else "last.keras")
        shutil.copyfile(final, model_path)  # the same model as saved: a copy, not a third save of its weights
        model_uri = _log_outputs(model, cfg, manifest, state["history"], run_dir)
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
    multihost.barrier(placement.processes, "train: result written")
    return result


def _fitted(
    cfg: TrainConfig,
    manifest: Manifest,
    run_dir: Path,
    placement: accelerator.Placement,
    state: dict[str, Any],
    extra_callbacks: Sequence[keras.callbacks.Callback],
) -> tuple[keras.Model, dict[str, Any]]:
    """The model trained to the last epoch (the best checkpoint, when the variant keeps one), and
    the state the chief saved. Call inside accelerator.building(placement)."""
    fit = cfg.pipeline.variant.fit
    model = _model(cfg, manifest, run_dir, placement, resuming=bool(state["history"]))
    # uint8 batches: a quarter of the bytes to the device; the model casts them there.
    train = _dataset(cfg, placement, "train", training=True, seed=fit.seed)
    val = _dataset(cfg, placement, "val")
    for stage, end, fresh in staged.plan(fit, state["epoch"]):
        if stage is not None and fresh:  # the new optimizer's variables land on the replicas
            staged.enter(model, fit, stage, lambda m, rate: compile_at(m, rate, placement.jit_compile), placement.learning_rate)
            # A new stage is a new optimisation: patience and plateau counters start over.
            state["counters"] = {name: value for name, value in state["counters"].items() if name == "checkpoint"}
        model.fit(
            train,
            validation_data=val,
            epochs=end,
            initial_epoch=state["epoch"],
            callbacks=[staged.StageMarker(stage), *_callbacks(cfg, run_dir, state, placement), *extra_callbacks],
            verbose=2,
            shuffle=False,  # the reader already shuffles files and records
        )
        multihost.barrier(placement.processes, "train: epochs saved")  # the chief's state.json and checkpoints
        state = load_state(run_dir)
    if fit.best_checkpoint_metric and (run_dir / "best.keras").is_file():
        model = keras.models.load_model(run_dir / "best.keras")  # every process: placing its variables is collective
    return model, state


def run_directory(cfg: TrainConfig, manifest: Manifest) -> Path:
    """Same shards, same variant, same tracking store: same folder, so a rerun resumes or reuses."""
    key = fingerprint(manifest.shard_key, cfg.pipeline.variant.key_dump(), mlflow.get_tracking_uri(), cfg.pipeline.experiment_name)
    return Path(cfg.pipeline.work_dir) / "runs" / f"{cfg.pipeline.variant.name}-{key}"


def _mlflow_run(cfg: TrainConfig, manifest: Manifest, run_dir: Path) -> mlflow.ActiveRun:
    mlflow.set_experiment(cfg.pipeline.experiment_name)
    id_file, described = run_dir / "mlflow_run_id", run_dir / "mlflow_run_described"
    pipeline = cfg.pipeline
    if id_file.is_file():
        active = mlflow.start_run(run_id=id_file.read_text().strip())
    else:
        active = mlflow.start_run(
            # The data hash is a tag: names stay short enough for the runs table.
            run_name=pipeline.variant.name,
            parent_run_id=cfg.parent_run_id,
            tags={
                "variant": pipeline.variant.name,
                "dataset": pipeline.dataset_name,
                "dataset_fingerprint": manifest.dataset_fingerprint,
                "shard_key": manifest.shard_key,
                record.NOTE_TAG: record.variant_note(pipeline, manifest, cfg.baseline),
                record.MODEL_SUMMARY_TAG: record.model_summary(pipeline),
                "backend": accelerator.backend(),
            },
        )
        id_file.write_text(active.info.run_id)  # at once: a crash from here on resumes this run, never starts a second
    if not described.is_file():  # params, config and dataset once, even when a crash cut them short
        mlflow.log_params(record.key_params(pipeline))
        mlflow.log_text(record.config_yaml(pipeline), "config/pipeline.yaml")
        record.log_dataset(pipeline, manifest)
        described.touch()
    return active


@contextlib.contextmanager
def _marked_failed_when_unreachable() -> Iterator[None]:
    """Keep the clear error when the server is gone: the run's own exit would replace it with
    MLflow's failure to mark the run FAILED on that same unreachable server."""
    try:
        yield
    except TrackingUnavailable:
        with contextlib.suppress(MlflowException):
            mlflow.end_run("FAILED")
        raise


def _model(cfg: TrainConfig, manifest: Manifest, run_dir: Path, placement: accelerator.Placement, resuming: bool) -> keras.Model:
    """Call inside accelerator.building(placement), so variables land on the replicas."""
    last = run_dir / "last.keras"
    if resuming and last.is_file():
        return keras.models.load_model(last)  # compiled, with the optimizer's moments and rate
    augmentation = manifest.augmentation
    live = augmentation.applied == "live" and not is_identity(augmentation.policy)
    policy = geometry(augmentation.policy) if placement.augment_in_model and live else None
    model = compile_model(cfg.pipeline.variant.model, cfg.pipeline.variant.fit, manifest.image_size, placement, policy)
    if not placement.chief:
        return model
    total, trainable = count_parameters(model)
    mlflow.log_params(
        {
            "parameters_total": total,
            "parameters_trainable": trainable,
            "replicas": placement.replicas,
            "processes": placement.processes,
            "global_batch_size": placement.global_batch_size,
            "effective_learning_rate": placement.learning_rate,
            "mixed_precision_on": placement.mixed_precision,
            "backend": placement.backend,
            "precision": placement.precision,
            "reader": placement.reader,
            "augmentation_in": "model" if policy else "input" if live else "none",
        }
    )
    return model


def _dataset(cfg: TrainConfig, placement: accelerator.Placement, split: str, training: bool = False, seed: int = 42) -> Any:
    return make_dataset(
        cfg.manifest_path,
        split,
        placement.global_batch_size,
        training=training,
        seed=seed,
        dtype="uint8",
        reader=placement.reader,
        augment=not placement.augment_in_model,
        replicas=placement.replicas,
        processes=placement.processes,
        process_index=placement.process_index,
    )


def _callbacks(cfg: TrainConfig, run_dir: Path, state: dict[str, Any], placement: accelerator.Placement) -> list[keras.callbacks.Callback]:
    fit = cfg.pipeline.variant.fit
    tracked: dict[str, keras.callbacks.Callback] = {}
    if fit.best_checkpoint_metric and placement.chief:
        tracked["checkpoint"] = BestCheckpoint(run_dir / "best.keras", monitor=fit.best_checkpoint_metric, save_best_only=True)
    if fit.reduce_lr_factor:
        tracked["reduce_lr"] = keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=fit.reduce_lr_factor, patience=fit.reduce_lr_patience, verbose=1
        )
    stateless: list[keras.callbacks.Callback] = []
    if fit.decay_every_epochs:
        # From the epoch index, not the current rate, so a resumed run continues on the same schedule.
        base, every, factor = placement.learning_rate, fit.decay_every_epochs, fit.decay_factor
        stateless.append(keras.callbacks.LearningRateScheduler(lambda epoch, _: base * factor ** (epoch // every)))
    if fit.precise_bn_batches:
        batches = _dataset(cfg, placement, "train", training=True, seed=fit.seed + 1)
        stateless.append(PreciseBatchNorm(batches, fit.precise_bn_batches))
    if fit.early_stopping_patience:
        tracked["early_stopping"] = keras.callbacks.EarlyStopping(monitor="val_loss", patience=fit.early_stopping_patience, verbose=1)
    # EpochState goes last: its on_train_begin runs after the others have reset their counters.
    return [*stateless, *tracked.values(), EpochState(run_dir, tracked, state, chief=placement.chief)]


def _signature(model: keras.Model) -> ModelSignature:
    """Read off the model's own tensors, not inferred from a prediction, which would trace a
    predict step of the whole network just to learn two shapes. Served models take float pixels
    in [0, 255] and give one probability per image, float32 under any precision policy."""

    def spec(tensor: Any) -> Schema:
        return Schema([TensorSpec(np.dtype("float32"), tuple(-1 if size is None else size for size in tensor.shape))])

    return ModelSignature(inputs=spec(model.inputs[0]), outputs=spec(model.outputs[0]))


def _log_outputs(model: keras.Model, cfg: TrainConfig, manifest: Manifest, history: list[dict], run_dir: Path) -> str:
    variant = cfg.pipeline.variant.name
    picture = curves.learning_curves(history, run_dir / "plots" / "learning_curves.png", f"{variant}: learning curves")
    record.log_picture(picture)
    mlflow.log_dict(manifest.model_dump(mode="json"), "data/manifest.json")
    signature = _signature(model)
    info = mlflow.keras.log_model(
        model,
        name="model",
        signature=signature,
        # Explicit requirements: inferring them re-loads the model in a subprocess, for minutes.
        # It names the backend package it was trained on; the .keras file itself loads on either.
        pip_requirements=[*accelerator.requirements(), f"mlflow=={mlflow.__version__}"],
        tags={"variant": variant, "dataset_fingerprint": manifest.dataset_fingerprint, "backend": accelerator.backend()},
    )
    return info.model_uri


def main(argv: list[str] | None = None) -> None:
    component_main("detector train", __doc__, TrainConfig, run, argv)


if __name__ == "__main__":
    main()
