"""Typed configuration: the two variants of the origin report, and the profiles that size them.

The baseline's values are the defaults in code; `improved` is declared as the baseline plus the
fields it changes, so the difference between the two reads in one place. Every model forbids
unknown fields, so a misspelt key fails before any work starts, naming the field and the value.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# ResNet50 refuses smaller inputs (keras.applications checks min_size=32).
MIN_IMAGE_SIZE = 32
# The registered model every version goes into unless the config or $DETECTOR_REGISTERED_MODEL names another.
DEFAULT_REGISTERED_MODEL = "ai-image-detector"
# What the promotion gate compares by default: the registered model's AUC on the validation split.
# Test figures are a report, never a criterion: selecting on them would bias the test figure itself.
PRIMARY_METRIC = "val/auc_final"
# Metrics the paired bootstrap can recompute from per-image validation scores (components/registry/gate.py).
BOOTSTRAPPED_METRICS = ("val/auc_final",)
# Per held-out test set (data.test_sets): `generalisation/<set>/auc`, ..., and their mean AUC.
HELD_OUT_PREFIX = "generalisation/"
# A held-out set's split in the validation report and the shards: `heldout-<name>`.
HELD_OUT_SPLIT = "heldout-"
TEST_SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
GENERALISATION_METRIC = "generalisation/mean_auc"


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Nested dict update that returns a new dict; `changes` wins leaf by leaf."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def with_changes(self, **changes: Any) -> Strict:
        """Return a copy with nested fields replaced, validated as a fresh config."""
        return type(self).model_validate(deep_merge(self.model_dump(), changes))


class DataConfig(Strict):
    """Where the images are and how they become shards."""

    root: str = Field("work/demo-data", description="<root>/{train,test}/{REAL,FAKE}: a folder, or s3://bucket/prefix (synced to a cache).")
    class_names: tuple[str, str] = ("FAKE", "REAL")
    generated_class: str = "FAKE"
    train_dir: str = "train"
    test_dir: str = "test"
    image_size: int = 224
    val_fraction: float = 0.2
    seed: int = 42
    encoding: Literal["jpeg", "png"] = "jpeg"
    jpeg_quality: int = Field(95, ge=1, le=100)
    jpeg_quality_range: tuple[int, int] | None = Field(
        None,
        description="Draw each image's JPEG quality from this inclusive range instead of jpeg_quality, the same draw for both "
        "classes, so that neither can be told by its last compression (components/data/shortcuts.py). encoding=jpeg only.",
    )
    images_per_shard: int = Field(512, ge=1)
    # Pillow's own default cap; above it a file is treated as a decompression bomb.
    max_image_pixels: int = Field(89_478_485, ge=1)
    # Budgets for decoding one file (validate, shard, predict). A file over either is quarantined
    # and its worker replaced. A 224 px dataset needs milliseconds and a few MB per file; 1 GiB
    # admits a 60-megapixel RGBA image with its copies, while a 9000x9000 RGBA PNG (1.6 GB) is not.
    decode_timeout_seconds: float = Field(60.0, gt=0)
    decode_memory_mb: int = Field(1024, ge=64)
    # Pre-augmented copies of each training image, for hosts whose CPUs can't augment live.
    premade_copies: int = Field(0, ge=0)
    test_sets: dict[str, str] = Field(
        {},
        description="Held-out test sets beside the test split, name -> a folder or s3:// prefix holding {REAL,FAKE}/ (other "
        "generators, other sources). Each is validated like the test split (its own quarantine, dedupe, leakage against train), "
        "sharded with the same encoding and reported as generalisation/<name>/*. Never used to train or to tune.",
    )
    fit: Literal["resize", "crop", "pad"] = Field(
        "resize",
        description="How an image meets image_size. resize: resample (the report). crop: random crops in training, the centre "
        "crop at test. pad: images at or below image_size are padded, larger ones shrunk to fit. crop and pad never resample "
        "an image that is already at or below image_size (components/data/fit.py).",
    )

    @field_validator("image_size")
    @classmethod
    def _image_size_fits_resnet(cls, value: int) -> int:
        if value < MIN_IMAGE_SIZE:
            raise ValueError(f"must be at least {MIN_IMAGE_SIZE} for ResNet50. Received: image_size={value}")
        return value

    @field_validator("val_fraction")
    @classmethod
    def _val_fraction_in_range(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError(f"must lie strictly between 0 and 1. Received: val_fraction={value}")
        return value

    @field_validator("test_sets")
    @classmethod
    def _test_set_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, location in value.items():
            if not TEST_SET_NAME.fullmatch(name) or not location:
                raise ValueError(
                    "names a set with letters, digits, '.', '_' or '-', and gives its folder or s3:// prefix. "
                    f"Received: test_sets[{name!r}]={location!r}"
                )
        return value

    @model_validator(mode="after")
    def _quality_range_is_for_jpeg(self) -> DataConfig:
        if self.jpeg_quality_range is not None:
            low, high = self.jpeg_quality_range
            if not 1 <= low <= high <= 100 or self.encoding != "jpeg":
                raise ValueError(
                    "jpeg_quality_range is (low, high) with 1 <= low <= high <= 100, for encoding='jpeg'. "
                    f"Received: jpeg_quality_range={self.jpeg_quality_range}, encoding={self.encoding!r}"
                )
        return self

    @model_validator(mode="after")
    def _classes_consistent(self) -> DataConfig:
        if len(set(self.class_names)) != 2:
            raise ValueError(f"class_names must be two distinct names. Received: class_names={self.class_names}")
        if self.generated_class not in self.class_names:
            raise ValueError(
                f"generated_class must be one of class_names={list(self.class_names)}. Received: generated_class={self.generated_class!r}"
            )
        return self

    @property
    def labels(self) -> dict[str, int]:
        """Keras' alphabetical folder order (FAKE=0, REAL=1), as in the origin report."""
        return {name: index for index, name in enumerate(sorted(self.class_names))}

    @property
    def positive_class(self) -> str:
        return sorted(self.class_names)[1]

    @property
    def held_out(self) -> dict[str, str]:
        """Each held-out set's split name (`heldout-<name>`) and where its images are."""
        return {HELD_OUT_SPLIT + name: location for name, location in sorted(self.test_sets.items())}


class AugmentConfig(Strict):
    """The training split's augmentation policy, recorded in the shard manifest."""

    rotation_degrees: float = Field(15.0, ge=0, le=180)
    shift_fraction: float = Field(0.1, ge=0, lt=1)
    horizontal_flip: bool = True
    # CNNDetection's robustness augmentation (components/data/degrade.py), each applied with its probability.
    jpeg_probability: float = Field(0.0, ge=0, le=1)
    jpeg_quality_range: tuple[int, int] = (30, 100)
    blur_probability: float = Field(0.0, ge=0, le=1)
    blur_sigma_range: tuple[float, float] = (0.0, 3.0)


class ModelConfig(Strict):
    architecture: Literal["resnet50", "npr"] = Field(
        "resnet50",
        description="resnet50: the report's backbone. npr: ResNet50's first two stages on the image's neighbouring-pixel "
        "residual (Tan et al. 2024, components/training/npr.py), from scratch only.",
    )
    backbone_weights: str = Field("imagenet", description="'imagenet', 'none', or a local or s3:// weights file.")
    trainable_backbone_layers: int = Field(0, ge=0)
    head_units: tuple[int, ...] = (512,)
    head_batchnorm: bool = False
    dropout: float = Field(0.5, ge=0, lt=1)
    # 'unit' is the report's 1/255 scaling; 'imagenet' is the caffe-style preprocess_input the
    # ImageNet weights were trained with.
    preprocessing: Literal["unit", "imagenet"] = "unit"
    # 'preserve' drops conv1's stride and the max-pool (components/training/model.py), for small images.
    stem: Literal["standard", "preserve"] = "standard"
    # Zero-init the last BatchNorm gamma of every residual block (Goyal et al. 2017): each block
    # starts as the identity, so a randomly initialised ResNet50 trains like a shallow net at first.
    # Only for random init; pretrained weights already carry trained gammas.
    zero_init_residual: bool = False

    @field_validator("head_units")
    @classmethod
    def _head_units_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if value and min(value) < 1:
            raise ValueError(f"must be positive widths (none: the logit straight from the pooled features). Received: head_units={value}")
        return value

    @model_validator(mode="after")
    def _npr_from_scratch(self) -> ModelConfig:
        if self.architecture == "npr" and (self.backbone_weights != "none" or self.stem != "standard"):
            raise ValueError(
                "model.architecture='npr' has no pretrained weights and its own stem: set backbone_weights='none' and "
                f"stem='standard'. Received: backbone_weights={self.backbone_weights!r}, stem={self.stem!r}"
            )
        return self


# ResNet50 without its top has 175 layers (the input included); the last 34 are stage conv5.
RESNET50_LAYERS = 175
CONV5_LAYERS = 34
# NPR's truncated backbone (components/training/npr.py), the input included.
NPR_LAYERS = 88


class StageConfig(Strict):
    """One step of staged fine-tuning: its share of fit.epochs, how deep it trains, and its rate
    relative to fit.learning_rate. Shares, not epochs, so `fit.epochs=6` still gives three steps."""

    share: float = Field(1.0, gt=0)
    trainable_backbone_layers: int = Field(ge=0)
    learning_rate_factor: float = Field(1.0, gt=0)


class FitConfig(Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    reduce_lr_factor: float | None = Field(None, gt=0, lt=1)
    # The report gives only the factor; 4 epochs lets a plateau show before the rate halves.
    reduce_lr_patience: int = Field(4, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1)
    # None keeps the last epoch's weights, as the baseline did.
    best_checkpoint_metric: Literal["val_accuracy", "val_auc", "val_loss"] | None = None
    # Re-estimate trainable BatchNorm statistics over this many training batches before each
    # validation (pycls' "precise BN"). 0 keeps Keras' moving averages, as the report did.
    precise_bn_batches: int = Field(0, ge=0)
    seed: int = 42
    learning_rate_scaling: Literal["sqrt", "linear", "none"] = Field(
        "sqrt",
        description="learning_rate is tuned for batch_size. The global batch is the per-device batch × devices, and it "
        "trains at learning_rate × sqrt(global / batch_size) (sqrt, the rule for Adam), × global / batch_size (linear, "
        "Goyal et al. 2017, for SGD), or unchanged (none). On one CPU device the factor is 1.",
    )
    stages: tuple[StageConfig, ...] = Field((), description="Staged fine-tuning (components/training/staged.py); empty trains in one step.")
    decay_every_epochs: int | None = Field(
        None, ge=1, description="Multiply the learning rate by decay_factor every this many epochs (NPR's schedule); None: no decay."
    )
    decay_factor: float = Field(0.8, gt=0, lt=1)

    @model_validator(mode="after")
    def _one_epoch_per_stage(self) -> FitConfig:
        if len(self.stages) > self.epochs:
            raise ValueError(
                f"fit.epochs must give every one of the {len(self.stages)} stages an epoch. Received: fit.epochs={self.epochs}"
            )
        if self.decay_every_epochs and (self.reduce_lr_factor or self.stages):
            raise ValueError(
                "fit.decay_every_epochs sets the rate every epoch, which would undo reduce_lr_factor and the stages' rates; "
                f"use one. Received: reduce_lr_factor={self.reduce_lr_factor}, stages={len(self.stages)}"
            )
        return self

    def stage_ends(self) -> list[int]:
        """The epoch at which each stage ends, its share of `epochs` rounded, each at least one."""
        total, ends, shares = sum(stage.share for stage in self.stages), [], 0.0
        for index, stage in enumerate(self.stages):
            shares += stage.share
            remaining = len(self.stages) - index - 1
            end = max(round(self.epochs * shares / total), (ends[-1] if ends else 0) + 1)
            ends.append(min(end, self.epochs - remaining))
        return ends


class RuntimeConfig(Strict):
    """Where and how training runs (components/training/accelerator.py): never part of a variant, a cache key
    or a registry key, so changing a card, a backend or a number format reuses the trained model.
    "auto" is on with a GPU and off on a CPU-only host, so the CPU path is what it always was."""

    # Keras fixes its backend when first imported, so KERAS_BACKEND chooses it; this field records it
    # and, when set, makes a run in a process of the other backend fail early instead of silently.
    backend: Literal["auto", "tensorflow", "jax"] = Field("auto", description="auto: the process's KERAS_BACKEND (default tensorflow).")
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = Field(
        "auto",
        description="auto: mixed_bfloat16 on a GPU that has bfloat16 (compute capability 8.0+), mixed_float16 with "
        "loss scaling on an older GPU, float32 on CPU.",
    )
    distribution: Literal["auto", "data_parallel", "none"] = Field(
        "auto",
        description="data_parallel: one model replica per local device (MirroredStrategy under TensorFlow, "
        "keras.distribution.DataParallel under JAX; over the CPU devices when there is no GPU, as the tests do). "
        "auto: data_parallel over several GPUs, one device otherwise.",
    )
    batch_per_device: int | None = Field(
        256, ge=1, description="Batch per device when a GPU is visible (fills an 80 GB card at 224 px); None keeps fit.batch_size."
    )
    xla: Literal["auto", "on", "off"] = Field("auto", description="XLA-compiled train step; auto: Keras' rule (always under JAX).")
    augmentation: Literal["auto", "model", "input"] = Field(
        "auto",
        description="Where live augmentation runs: in the model's train step (model) or in the tf.data reader (input). "
        "auto: input on a CPU-only TensorFlow host (bench/RESULTS.md), model elsewhere.",
    )
    reader: Literal["auto", "tf.data", "python"] = Field(
        "auto",
        description="Shard reader: tf.data, or the TensorFlow-free one (components/data/shard_reader.py). auto: tf.data when installed.",
    )


# Fields added after versions were registered, at the value every earlier config had. The cache
# and registry keys leave them out at that value, so a version registered before a field existed
# still matches its unchanged config (tests/data/test_published_keys.py).
KEY_NEUTRAL: dict[tuple[str, str], Any] = {
    ("model", "architecture"): "resnet50",
    ("fit", "decay_every_epochs"): None,
    ("fit", "decay_factor"): 0.8,
}


class VariantConfig(Strict):
    name: str = "baseline"
    model: ModelConfig = ModelConfig()
    fit: FitConfig = FitConfig()
    augment: AugmentConfig = AugmentConfig()

    def key_dump(self) -> dict[str, Any]:
        """The variant as the training run's and the registry's keys hash it (KEY_NEUTRAL)."""
        dumped = self.model_dump()
        for (section, field), neutral in KEY_NEUTRAL.items():
            if dumped[section].get(field, neutral) == neutral:
                dumped[section].pop(field, None)
        return dumped


BASELINE = VariantConfig()
IMPROVED = BASELINE.with_changes(
    name="improved",
    model={"trainable_backbone_layers": 15, "head_units": (512, 256), "head_batchnorm": True, "dropout": 0.6},
    fit={
        "epochs": 30,
        "learning_rate": 3e-4,
        "reduce_lr_factor": 0.5,
        "early_stopping_patience": 12,
        "best_checkpoint_metric": "val_accuracy",
    },
    augment={"rotation_degrees": 20.0, "shift_fraction": 0.2},
)
# Kroiß & Reschke (arXiv 2503.11389): head alone on the frozen backbone, then the top blocks at
# a tenth of the rate, then everything at a hundredth; ImageNet preprocessing as their weights expect.
STAGED = IMPROVED.with_changes(
    name="staged",
    model={"preprocessing": "imagenet"},
    fit={
        "stages": (
            {"trainable_backbone_layers": 0, "learning_rate_factor": 1.0},
            {"trainable_backbone_layers": CONV5_LAYERS, "learning_rate_factor": 0.1},
            {"trainable_backbone_layers": RESNET50_LAYERS, "learning_rate_factor": 0.01},
        )
    },
)
# NPR (Tan et al., CVPR 2024), as its code trains it: from scratch, no hidden head, Adam at 2e-4
# times 0.8 every 10 epochs, flips only (a rotation or shift would resample the pixels whose
# neighbours it reads). Its images should reach it cropped, never resized (data.fit=crop, as the
# generalisation profile sets): the data section is shared by every variant of a comparison.
NPR = BASELINE.with_changes(
    name="npr",
    model={
        "architecture": "npr",
        "backbone_weights": "none",
        "trainable_backbone_layers": NPR_LAYERS,
        "head_units": (),
        "dropout": 0.0,
    },
    fit={"epochs": 50, "learning_rate": 2e-4, "decay_every_epochs": 10},
    augment={"rotation_degrees": 0.0, "shift_fraction": 0.0},
)
VARIANTS: dict[str, VariantConfig] = {"baseline": BASELINE, "improved": IMPROVED, "staged": STAGED, "npr": NPR}


class GateConfig(Strict):
    """How a new version must beat @champion (docs/registry.md, components/registry/gate.py)."""

    rule: Literal["paired_bootstrap", "point_estimate"] = Field(
        "paired_bootstrap",
        description="paired_bootstrap: promote only when the lower end of the confidence interval of the metric's "
        "difference, resampled over the same validation images, is above zero. point_estimate: any higher value wins "
        "(the gate before bootstrapping; with primary_metric=test/auc it selects on the test split).",
    )
    resamples: int = Field(2000, ge=100, description="Bootstrap resamples (stratified by class).")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="Two-sided confidence level of the interval.")
    seed: int = 0

    def describe(self) -> str:
        if self.rule == "point_estimate":
            return "point estimate: any higher value wins"
        return f"paired bootstrap, {self.resamples} resamples, {self.confidence:.0%} interval above zero"


DEFAULT_GATE = GateConfig()


class TrackingConfig(Strict):
    """MLflow names; unset ones come from the environment or mlflow.env (see settings)."""

    experiment: str | None = Field(None, description="Default: $MLFLOW_EXPERIMENT_NAME, else detector-<dataset>.")
    registered_model: str | None = Field(None, description=f"Default: $DETECTOR_REGISTERED_MODEL, else {DEFAULT_REGISTERED_MODEL}.")
    primary_metric: Literal["val/auc_final", "generalisation/mean_auc", "test/auc", "test/accuracy", "test/f1", "test/pr_auc"] = Field(
        PRIMARY_METRIC,
        description="What the promotion gate compares. generalisation/mean_auc: the mean AUC over data.test_sets, to promote "
        "on generators the model never saw. Any but val/auc_final only with gate.rule=point_estimate.",
    )
    gate: GateConfig = DEFAULT_GATE

    @model_validator(mode="after")
    def _bootstrap_has_scores(self) -> TrackingConfig:
        if self.gate.rule == "paired_bootstrap" and self.primary_metric not in BOOTSTRAPPED_METRICS:
            raise ValueError(
                f"gate.rule='paired_bootstrap' resamples per-image validation scores, so primary_metric must be one of "
                f"{list(BOOTSTRAPPED_METRICS)}; to compare test figures, set gate.rule='point_estimate'. "
                f"Received: primary_metric={self.primary_metric!r}"
            )
        return self


StageExecution = Literal["in-process", "deployments"]


def _stages_from_environment() -> str:
    """A cluster's settings (infra/kubernetes/settings.env) switch every run to per-stage jobs
    through DETECTOR_STAGES, without each run's parameters having to say so."""
    value = os.environ.get("DETECTOR_STAGES", "in-process")
    if value not in get_args(StageExecution):
        raise ValueError(f"DETECTOR_STAGES must be one of {get_args(StageExecution)}. Received: DETECTOR_STAGES={value!r}")
    return value


GpuImage = Literal["gpu", "gpu-jax"]
DataEngine = Literal["local", "ray"]  # components/data/engine.py


def _gpu_image_from_environment() -> str:
    value = os.environ.get("DETECTOR_GPU_IMAGE", "gpu")
    if value not in get_args(GpuImage):
        raise ValueError(f"DETECTOR_GPU_IMAGE must be one of {get_args(GpuImage)}. Received: DETECTOR_GPU_IMAGE={value!r}")
    return value


class ExecutionConfig(Strict):
    """Where each stage runs. `in-process` (the embedded and local modes): inside the pipeline's
    flow run. `deployments` (docker or kubernetes work pools): each stage as a run of its image's
    deployment, e.g. `detector-stage/gpu` for training; `work_dir` must then be storage that all
    stage containers share, and Prefect's result storage too."""

    stages: StageExecution = Field(default_factory=_stages_from_environment)
    deployment: str = Field("detector-stage/{image}", description="Deployment per stage; {image} is cpu, or gpu_image for training.")
    # A cluster picks the training backend by image (settings.env), as DETECTOR_STAGES picks per-stage jobs.
    gpu_image: GpuImage = Field(
        default_factory=_gpu_image_from_environment,
        description="Training's image: gpu (Keras on TensorFlow) or gpu-jax (Keras on JAX); default $DETECTOR_GPU_IMAGE, else gpu.",
    )
    timeout_seconds: float | None = Field(None, gt=0, description="Give up waiting for a stage run after this long; None waits.")
    engine: DataEngine = Field(
        "local",
        description="Validate's and shard's per-file work: local (a process pool on this host's cores) or ray "
        "(Ray tasks on the cluster RAY_ADDRESS names, else on a local Ray cluster); the same output either way.",
    )

    @field_validator("deployment")
    @classmethod
    def _names_flow_and_deployment(cls, value: str) -> str:
        if "/" not in value:
            raise ValueError(f"must be '<flow name>/<deployment name>'. Received: deployment={value!r}")
        return value


class PipelineConfig(Strict):
    """Everything one pipeline execution needs: data, one variant, where to work, where to log."""

    data: DataConfig = DataConfig()
    variant: VariantConfig = BASELINE
    tracking: TrackingConfig = TrackingConfig()
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    work_dir: str = "work"

    @model_validator(mode="after")
    def _generalisation_needs_test_sets(self) -> PipelineConfig:
        if self.tracking.primary_metric == GENERALISATION_METRIC and not self.data.test_sets:
            raise ValueError(
                f"tracking.primary_metric={GENERALISATION_METRIC!r} is the mean AUC over data.test_sets; name at least one. "
                "Received: data.test_sets={}"
            )
        return self

    @property
    def dataset_name(self) -> str:
        return Path(self.data.root.rstrip("/")).name or "dataset"

    @property
    def experiment_name(self) -> str:
        """One experiment per dataset unless the config or the environment names one."""
        return self.tracking.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or f"detector-{self.dataset_name}"

    @property
    def registered_model_name(self) -> str:
        return self.tracking.registered_model or os.environ.get("DETECTOR_REGISTERED_MODEL") or DEFAULT_REGISTERED_MODEL


# The demo profile trades the report's scale for minutes on 2 CPU cores with no internet
# (docs/running.md explains each change): small images keep ResNet50 cheap; no ImageNet weights means no
# download, and caffe-style input scaling gives the random backbone usable activations; geometric
# augmentation is off because flips and odd-pixel shifts move the generator's period-2 grid off
# its phase, which a frozen random backbone can't learn to ignore in a few epochs; precise BN
# keeps validation honest when an epoch is only ~40 steps.
PROFILES: dict[str, dict[str, Any]] = {
    "full": {},
    "demo": {
        "data": {"image_size": 64, "encoding": "png", "images_per_shard": 256},
        "variant": {
            "model": {"backbone_weights": "none", "preprocessing": "imagenet"},
            "augment": {"rotation_degrees": 0.0, "shift_fraction": 0.0, "horizontal_flip": False},
            "fit": {"precise_bn_batches": 8},
        },
    },
    # Training without pretrained weights (components/training/model.py warns when random layers stay frozen):
    # every layer trains, each residual block starting as the identity (zero_init_residual), which
    # is what lets a random ResNet50 learn within a few dozen steps; 32 px kept as stored (pad never
    # resamples) and PNG, so no second JPEG pass. The standard stem, because `preserve` costs 3.5×
    # per image on CPU and 30 minutes on 2 cores then buys one epoch (docs/quality.md). Batch 32: twice the
    # steps of 64 for the same compute. Flips keep the content; rotations and shifts resample, so off.
    "scratch": {
        "data": {"image_size": 32, "fit": "pad", "encoding": "png", "images_per_shard": 1024},
        "variant": {
            "model": {
                "backbone_weights": "none",
                "trainable_backbone_layers": RESNET50_LAYERS,
                "preprocessing": "imagenet",
                "stem": "standard",
                "zero_init_residual": True,
            },
            "augment": {"rotation_degrees": 0.0, "shift_fraction": 0.0, "horizontal_flip": True},
            "fit": {"epochs": 5, "batch_size": 32, "learning_rate": 1e-3, "precise_bn_batches": 8},
        },
    },
    # Train on some generators, score others (data.test_sets; docs/generalisation.md), e.g.
    # ../shared/data/xgen-dev. Crops at native resolution, never resized, because a generator's
    # traces are in neighbouring pixels; PNG, so no second JPEG pass over either class. 128 px is the
    # largest crop at which the three variants fit in 30 minutes on 2 cores (NPR's paper: 224). The
    # ResNet50 variants train from scratch as under `scratch`; epochs and rates per variant below.
    "generalisation": {
        "data": {"image_size": 128, "fit": "crop", "encoding": "png", "images_per_shard": 256},
        "variant": {
            "model": {
                "backbone_weights": "none",
                "trainable_backbone_layers": RESNET50_LAYERS,
                "preprocessing": "imagenet",
                "zero_init_residual": True,
            },
            "augment": {"rotation_degrees": 0.0, "shift_fraction": 0.0, "horizontal_flip": True},
            "fit": {"batch_size": 32, "precise_bn_batches": 8},
        },
    },
}
# Demo epochs per variant: six is where the improved variant levels off here, and two variants
# at six epochs fit in the 15 minutes the demo may take on 2 cores.
DEMO_EPOCHS = {"baseline": 6, "improved": 6, "staged": 6, "npr": 6}
# What a profile sets for one variant only, after its shared settings. NPR keeps its own rate
# (2e-4) and gets the epochs the ResNet50s' time buys it, since it costs a fifth per image.
PROFILE_VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "demo": {name: {"fit": {"epochs": epochs}} for name, epochs in DEMO_EPOCHS.items()},
    "scratch": {"npr": {"fit": {"epochs": 20, "learning_rate": 2e-4}}},
    "generalisation": {
        "baseline": {"fit": {"epochs": 4, "learning_rate": 1e-3}},
        "improved": {"fit": {"epochs": 4, "learning_rate": 1e-3}},
        "staged": {"fit": {"epochs": 4}},
        "npr": {"fit": {"epochs": 20}},
    },
}


def build_config(variant: str = "improved", profile: str = "full", overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Compose variant, profile and user overrides, in that order, into one validated config.
    A profile's model settings size the report's ResNet50; NPR keeps the paper's network unless
    the overrides change it."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant. Expected one of {sorted(VARIANTS)}. Received: variant={variant!r}")
    if profile not in PROFILES:
        raise ValueError(f"Unknown profile. Expected one of {sorted(PROFILES)}. Received: profile={profile!r}")
    declared = VARIANTS[variant]
    shared = PROFILES[profile]
    if declared.model.architecture == "npr" and "model" in shared.get("variant", {}):
        shared = {**shared, "variant": {key: value for key, value in shared["variant"].items() if key != "model"}}
    merged = deep_merge({"variant": declared.model_dump()}, shared)
    merged = deep_merge(merged, {"variant": PROFILE_VARIANTS.get(profile, {}).get(variant, {})})
    merged = deep_merge(merged, overrides or {})
    return PipelineConfig.model_validate(merged)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys, so MLflow params of both variants line up column by column in the UI."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts: the cache key of every stage."""
    payload = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def parse_overrides(assignments: list[str]) -> dict[str, Any]:
    """Turn ['fit.epochs=3', 'data.root=s3://b/p'] into a nested dict; values parse as JSON when they can."""
    nested: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key:
            raise ValueError(f"Overrides look like section.field=value. Received: {assignment!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested
