"""What a user reads in the MLflow UI: run names, descriptions, the few params that matter, the
dataset as an input, and the full config as YAML. TensorFlow-free, so the flows may use it.

MLflow shows a run's description from the `mlflow.note.content` tag, rendered as Markdown.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import mlflow
import yaml
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset

from components.config import BASELINE, IMPROVED, PipelineConfig, VariantConfig, flatten
from components.contracts import Manifest

NOTE_TAG = "mlflow.note.content"
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


def variant_note(cfg: PipelineConfig, manifest: Manifest) -> str:
    """What this run is and what changed, for the run page's description."""
    variant = cfg.variant
    counts = ", ".join(f"{manifest.splits[split].count} {split}" for split in SPLITS if split in manifest.splits)
    lines = [
        f"**{variant.name}**: a ResNet50 detector of AI-generated images, trained on `{cfg.dataset_name}` "
        f"(fingerprint `{manifest.dataset_fingerprint}`; {counts} images; positive class {manifest.positive_class}).",
        "",
    ]
    if variant.name == "baseline":
        lines.append("The origin report's settings: a frozen backbone and a one-layer head (`BASELINE` in components/config.py).")
    else:
        # The profile may size both variants alike (the demo trains both for the same epochs); the
        # parent run's description shows what differed as they ran.
        settings = _variant_settings(variant)
        lines.append(f"The baseline plus the changes `{variant.name.upper()}` declares in components/config.py, as this run used them:")
        lines.extend(f"- `{key}` = {settings[key]}" for key in DECLARED_DELTA)
    lines += [
        "",
        "Metrics: `train/*` and `val/*` per epoch (step = epoch, from 1); `test/*` at threshold 0.5 and "
        "`test_tuned/*` at the threshold tuned on validation. Full config: `config/pipeline.yaml`.",
    ]
    return "\n".join(lines)


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
    keys = [key for key in flat["baseline"] if key != "variant.name" and flat["baseline"][key] != flat["improved"][key]]
    return [{"setting": key.removeprefix("variant."), **{name: values[key] for name, values in flat.items()}} for key in keys]


# The runs table as a user first wants it: both variants (sorting by a metric lists child runs
# flat instead of folded under their parent) with their test figures as columns. The UI reads a
# shared view from this experiment tag, as plain JSON (MLflow 3.17's "share view" format).
RUNS_VIEW_KEY = "variants"
RUNS_VIEW_COLUMNS = ("test/auc", "test/pr_auc", "test/accuracy", "test/f1", "test_tuned/threshold", "test_tuned/f1")


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
