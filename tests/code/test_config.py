from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from components import settings
from components.config import BASELINE, IMPROVED, DataConfig, build_config, flatten, parse_overrides


def test_improved_differs_from_baseline_only_in_declared_fields():
    baseline, improved = flatten(BASELINE.model_dump()), flatten(IMPROVED.model_dump())
    changed = {key for key in baseline if baseline[key] != improved[key]}
    assert changed == {
        "name",
        "model.trainable_backbone_layers",
        "model.head_units",
        "model.head_batchnorm",
        "model.dropout",
        "fit.epochs",
        "fit.learning_rate",
        "fit.reduce_lr_factor",
        "fit.early_stopping_patience",
        "fit.best_checkpoint_metric",
        "augment.rotation_degrees",
        "augment.shift_fraction",
    }


def test_variants_carry_the_reports_settings():
    assert (BASELINE.fit.epochs, BASELINE.fit.learning_rate, BASELINE.model.dropout) == (10, 1e-4, 0.5)
    assert (IMPROVED.fit.epochs, IMPROVED.fit.learning_rate, IMPROVED.model.dropout) == (30, 3e-4, 0.6)
    assert IMPROVED.model.head_units == (512, 256) and IMPROVED.fit.early_stopping_patience == 12
    assert build_config("improved").data.image_size == 224


def test_demo_profile_shrinks_and_skips_the_download():
    cfg = build_config("baseline", "demo")
    assert cfg.data.image_size < 224 and cfg.variant.model.backbone_weights == "none"
    assert cfg.variant.fit.epochs < BASELINE.fit.epochs


def test_bad_field_value_is_named_in_the_error():
    with pytest.raises(ValidationError, match=r"image_size=16"):
        DataConfig(image_size=16)
    with pytest.raises(ValidationError, match=r"generated_class='AI'"):
        DataConfig(generated_class="AI")
    with pytest.raises(ValidationError, match=r"val_fraction=1.5"):
        build_config("improved", overrides={"data": {"val_fraction": 1.5}})


def test_unknown_field_is_rejected():
    with pytest.raises(ValidationError, match="learning_rte"):
        build_config("baseline", overrides={"variant": {"fit": {"learning_rte": 0.1}}})


def test_unknown_variant_names_the_choices():
    with pytest.raises(ValueError, match=r"\['baseline', 'improved', 'npr', 'staged'\]. Received: variant='fancy'"):
        build_config("fancy")


def test_overrides_parse_nested_and_typed():
    assert parse_overrides(["variant.fit.epochs=3", "data.root=s3://b/p", 'data.class_names=["A","B"]']) == {
        "variant": {"fit": {"epochs": 3}},
        "data": {"root": "s3://b/p", "class_names": ["A", "B"]},
    }
    with pytest.raises(ValueError, match="epochs"):
        parse_overrides(["epochs"])


def test_labels_follow_alphabetical_folder_order():
    data = DataConfig(class_names=("REAL", "FAKE"))
    assert data.labels == {"FAKE": 0, "REAL": 1} and data.positive_class == "REAL"


def test_environment_wins_over_settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    env_file = tmp_path / "mlflow.env"
    env_file.write_text("MLFLOW_TRACKING_URI=http://from-file:5000\nDETECTOR_REGISTERED_MODEL=from-file\nEMPTY=\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://exported:5000")
    monkeypatch.delenv("DETECTOR_REGISTERED_MODEL", raising=False)
    applied = settings.apply(env_file, tmp_path / "absent.env")
    assert applied["MLFLOW_TRACKING_URI"] == "http://exported:5000"
    assert os.environ["DETECTOR_REGISTERED_MODEL"] == "from-file"
    assert "EMPTY" not in applied


def test_embedded_default_when_nothing_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert settings.apply(tmp_path / "none.env", tmp_path / "none.local.env")["MLFLOW_TRACKING_URI"] == "sqlite:///mlflow.db"


def test_settings_file_line_without_equals_names_the_line(tmp_path: Path):
    env_file = tmp_path / "mlflow.env"
    env_file.write_text("# comment\nNOT A SETTING\n")
    with pytest.raises(ValueError, match=r"mlflow.env:2"):
        settings.read_env_file(env_file)


def test_stage_execution_follows_the_environment_and_names_a_bad_value(monkeypatch):
    assert build_config("improved", "demo").execution.stages == "in-process"
    monkeypatch.setenv("DETECTOR_STAGES", "deployments")
    assert build_config("improved", "demo").execution.stages == "deployments"
    monkeypatch.setenv("DETECTOR_STAGES", "cluster")
    with pytest.raises(ValueError, match="DETECTOR_STAGES='cluster'"):
        build_config("improved", "demo")


def test_test_sets_parse_from_the_command_line_and_refuse_bad_names():
    overrides = parse_overrides(['data.test_sets={"glid3": "/data/glid3", "dalle-2": "s3://bucket/dalle-2"}'])
    cfg = build_config("npr", overrides=overrides)
    assert cfg.data.held_out == {"heldout-dalle-2": "s3://bucket/dalle-2", "heldout-glid3": "/data/glid3"}
    with pytest.raises(ValidationError, match=r"test_sets\['../up'\]"):
        build_config("npr", overrides={"data": {"test_sets": {"../up": "/data"}}})


def test_a_gate_on_the_generalisation_mean_needs_test_sets():
    gate = {"tracking": {"primary_metric": "generalisation/mean_auc", "gate": {"rule": "point_estimate"}}}
    with pytest.raises(ValidationError, match=r"name at least one. Received: data.test_sets=\{\}"):
        build_config("improved", overrides=gate)
    assert (
        build_config("improved", overrides={**gate, "data": {"test_sets": {"x": "/x"}}}).tracking.primary_metric
        == "generalisation/mean_auc"
    )


def test_a_jpeg_quality_range_is_ordered_and_for_jpeg_only():
    assert DataConfig(jpeg_quality_range=(70, 95)).jpeg_quality_range == (70, 95)
    for bad in ({"jpeg_quality_range": (95, 70)}, {"jpeg_quality_range": (70, 95), "encoding": "png"}):
        with pytest.raises(ValidationError, match=r"jpeg_quality_range"):
            DataConfig(**bad)
