"""What a user reads in the MLflow UI: run names, descriptions, the few params that matter, the
dataset as an input, and the full config as YAML. TensorFlow-free, so the flows may use it.

MLflow shows a run's description from the `mlflow.note.content` tag, rendered as Markdown.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from PIL import Image

from components.config import BASELINE, IMPROVED, NPR_LAYERS, RESNET50_LAYERS, VARIANTS, PipelineConfig, VariantConfig, flatten
from components.contracts import Manifest

NOTE_TAG = "mlflow.note.content"
MODEL_SUMMARY_TAG = "model_summary"  # model_summary(): what the registry's version description says was trained
SPLITS = ("train", "val", "test")


def _variant_settings(variant: VariantConfig) -> dict[str, Any]:
    return flatten(variant.model_dump(exclude={"name"}))


# The improved variant's declared delta: the settings a reader compares first.
DECLARED_DELTA = tuple(key for key, value in _variant_settings(IMPROVED).items() if _variant_settings(BASELINE)[key] != value)
# Plus what sizes a run whatever the variant; the rest of the config is in config/pipeline.yaml.
RUN_SETTINGS = ("data.image_size", "model.backbone_weights", "model.preprocessing", "fit.batch_size", "fit.precise_bn_batches", "fit.seed")


def key_params(cfg: PipelineConfig) -> dict[str, Any]:
    """The same keys for every variant, so the compare view lines them up row by row."""
    settings = {"data.image_size": cfg.data.image_size, **_variant_settings(cfg.variant)}
    return {"variant": cfg.variant.name, **{key: settings[key] for key in (*DECLARED_DELTA, *RUN_SETTINGS)}}


def config_yaml(cfg: PipelineConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def variant_note(cfg: PipelineConfig, manifest: Manifest, baseline: VariantConfig | None = None) -> str:
    """What this run is and how it differs from the baseline, for the run page's description."""
    variant = cfg.variant
    counts = ", ".join(f"{manifest.splits[split].count} {split}" for split in SPLITS if split in manifest.splits)
    lines = [
        f"**{variant.name}**: {model_summary(cfg)}. Trained on `{cfg.dataset_name}` "
        f"(fingerprint `{manifest.dataset_fingerprint}`; {counts} images; positive class {manifest.positive_class}).",
        "",
    ]
    if variant.name == "baseline":
        lines.append("The origin report's baseline (`BASELINE` in components/config.py) with this run's profile and overrides.")
    else:
        differences = differences_from_baseline(variant, baseline)
        lines.append(f"Where it differs from the baseline under the same profile and overrides ({len(differences)} settings):")
        lines.extend(f"- `{key}` = {value} (baseline: {baseline})" for key, (baseline, value) in differences.items())
    lines += [
        "",
        "Metrics: `train/*` and `val/*` per epoch (step = epoch, from 1); `test/*` at threshold 0.5 and "
        "`test_tuned/*` at the threshold tuned on validation. Full config: `config/pipeline.yaml`.",
    ]
    return "\n".join(lines)


def model_summary(cfg: PipelineConfig) -> str:
    """What was trained, read off the effective config: "fine-tuned" only when pretrained weights
    were loaded and train, "frozen" only when layers were."""
    model, fit = cfg.variant.model, cfg.variant.fit
    head = "→".join(str(units) for units in model.head_units)
    head = f"head {head}{' with BatchNorm' if model.head_batchnorm else ''}" if head else "the logit straight from the pooled features"
    sized = f"{cfg.data.image_size} px ({cfg.data.fit}), {fit.epochs} epochs"
    if model.architecture == "npr":
        trained = model.trainable_backbone_layers
        layers = "every layer trained" if trained >= NPR_LAYERS else f"the top {trained} of its {NPR_LAYERS} layers trained"
        return f"NPR: ResNet50's first two stages on the neighbouring-pixel residual, trained from scratch, {layers}; {head}, {sized}"
    pretrained = model.backbone_weights != "none"
    start = f"{model.backbone_weights} weights" if pretrained else "random weights"
    if fit.stages:
        depths = " → ".join(str(min(stage.trainable_backbone_layers, RESNET50_LAYERS)) for stage in fit.stages)
        training = f"in {len(fit.stages)} stages training the top {depths} of its {RESNET50_LAYERS} backbone layers"
    elif model.trainable_backbone_layers >= RESNET50_LAYERS:
        training = "every backbone layer trained"
    elif model.trainable_backbone_layers == 0:
        training = "the backbone frozen, only the head trained"
    else:
        frozen = RESNET50_LAYERS - model.trainable_backbone_layers
        training = f"the top {model.trainable_backbone_layers} backbone layers trained, the other {frozen} frozen"
    how = "fine-tuned from" if pretrained and (fit.stages or model.trainable_backbone_layers) else "from"
    if not pretrained:
        how = "trained from scratch, from"
    return f"ResNet50 {how} {start}, {training}; {head}, {sized}"


def differences_from_baseline(variant: VariantConfig, baseline: VariantConfig | None = None) -> dict[str, tuple[Any, Any]]:
    """{setting: (the baseline's value, this variant's)} as both ran, or would run, under this
    run's profile and overrides. `baseline` is that baseline when the caller built it (the flows
    and the KFP runner do). Without it, it is inferred: profile and overrides apply to both
    variants alike, so a setting that no longer holds the variant's declared value was set by
    them and the baseline has it too; that misreads only a setting they give exactly the
    variant's declared value."""
    ran = _variant_settings(variant)
    if baseline is not None:
        in_baseline = _variant_settings(baseline)
    else:
        declared, default = _variant_settings(VARIANTS.get(variant.name, variant)), _variant_settings(BASELINE)
        in_baseline = {key: default[key] if value == declared[key] else value for key, value in ran.items()}
    return {key: (in_baseline[key], value) for key, value in ran.items() if in_baseline[key] != value}


def log_dataset(cfg: PipelineConfig, manifest: Manifest) -> None:
    """One input per split: MLflow keeps one context per (dataset, run), so each split is its own name."""
    with warnings.catch_warnings():
        # MLflow registers its local-file source under two schemes and warns that a path matches both.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        source = resolve_dataset_source(manifest.source.root)
    for split in SPLITS:
        if split not in manifest.splits:
            continue
        dataset = MetaDataset(source=source, name=f"{cfg.dataset_name}/{split}", digest=manifest.dataset_fingerprint)
        mlflow.log_input(dataset, context=split, tags={"images": str(manifest.splits[split].count)})


def parent_params(cfg: PipelineConfig, profile: str) -> dict[str, Any]:
    """What a parent run (a comparison, a quality run) is filtered by in the runs table."""
    return {"profile": profile, "dataset": cfg.dataset_name, "data.root": cfg.data.root}


def parent_run_name(cfg: PipelineConfig, profile: str) -> str:
    return f"compare · {cfg.dataset_name} · {profile}"


def changed_settings(configs: dict[str, PipelineConfig]) -> list[dict[str, Any]]:
    """Settings whose values differ between the variants as they ran (profile and overrides applied)."""
    flat = {name: flatten(config.model_dump(mode="json")) for name, config in configs.items()}
    first, *others = flat.values()
    keys = [key for key in first if key != "variant.name" and any(values.get(key) != first[key] for values in others)]
    return [{"setting": key.removeprefix("variant."), **{name: values[key] for name, values in flat.items()}} for key in keys]


# The runs table as a user first wants it: both variants (sorting by a metric lists child runs
# flat instead of folded under their parent) with their test figures as columns. The UI reads a
# shared view from this experiment tag, as plain JSON (MLflow 3.17's "share view" format).
RUNS_VIEW_KEY = "variants"
RUNS_VIEW_COLUMNS = (
    "test/auc",
    "test/pr_auc",
    "test/accuracy",
    "test/f1",
    "test_tuned/threshold_p_ai",
    "test_tuned/f1",
    "calibration/ece",
    "robust/worst_auc",
)


def runs_view() -> tuple[str, str]:
    """(experiment tag, value) of the shared runs-table view; open it as `…/runs?viewStateShareKey=variants`."""
    state = {
        "searchFilter": "",
        "orderByKey": "metrics.`test/auc`",
        "orderByAsc": False,
        "selectedColumns": ["attributes.`Dataset`", *(f"metrics.`{name}`" for name in RUNS_VIEW_COLUMNS)],
    }
    return f"mlflow.sharedViewState.{RUNS_VIEW_KEY}", json.dumps(state)


def runs_view_url(ui_root: str, experiment_id: str) -> str:
    return f"{ui_root.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={RUNS_VIEW_KEY}"


# Metrics reach MLflow with at least four decimals and four significant digits: the UI prints a
# float in full (0.9407430000000001), and the digits keep a learning rate of 2e-6 from rounding to 0.
METRIC_DIGITS = 4


def rounded_metric(value: float, digits: int = METRIC_DIGITS) -> float:
    """`value` as a Python float with at least `digits` decimals and `digits` significant digits.
    The float comes first: a NumPy float32 rounds as float32 and reaches MLflow as 0.8744999766."""
    number = float(value)
    if number == 0 or not math.isfinite(number):
        return number
    return round(number, max(digits, digits - 1 - math.floor(math.log10(abs(number)))))


def rounded_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    return {name: rounded_metric(value) for name, value in metrics.items()}


def log_picture(path: Path, folder: str = "plots") -> None:
    """A PNG as the artifact `<folder>/<name>.png`, and as an image under the key `<folder>/<name>`.
    The experiment's chart view shows an image key run beside run; the compare-runs page lists only
    files at a run's artifact root, so it shows neither (docs/mlflow.md)."""
    mlflow.log_artifact(str(path), artifact_path=folder)
    with Image.open(path) as image:
        # Synchronous: mlflow.log_image queues the upload by default, after the file is closed.
        mlflow.log_image(image, key=f"{folder}/{path.stem}", synchronous=True)
