"""Quality features as pure functions: the staged variant, the scratch profile, stage planning,
calibration error, the error gallery's choice and the robustness degradations."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from components.config import CONV5_LAYERS, IMPROVED, RESNET50_LAYERS, STAGED, FitConfig, build_config
from components.contracts import Manifest, ManifestEncoding
from components.data import degrade
from components.evaluation import calibration, gallery
from components.training import staged


def test_staged_is_improved_plus_three_steps_with_imagenet_preprocessing():
    assert STAGED.model.model_copy(update={"preprocessing": "unit"}) == IMPROVED.model
    assert STAGED.model.preprocessing == "imagenet"
    depth = [stage.trainable_backbone_layers for stage in STAGED.fit.stages]
    rates = [stage.learning_rate_factor for stage in STAGED.fit.stages]
    assert depth == [0, CONV5_LAYERS, RESNET50_LAYERS] and rates == [1.0, 0.1, 0.01]


@pytest.mark.parametrize(("epochs", "ends"), [(30, [10, 20, 30]), (6, [2, 4, 6]), (4, [1, 3, 4]), (3, [1, 2, 3])])
def test_stage_ends_split_any_epoch_count_with_every_stage_getting_one(epochs, ends):
    assert STAGED.fit.model_copy(update={"epochs": epochs}).stage_ends() == ends


def test_fewer_epochs_than_stages_names_the_field():
    with pytest.raises(ValidationError, match=r"fit.epochs=2"):
        FitConfig.model_validate({**STAGED.fit.model_dump(), "epochs": 2})


def test_resume_continues_inside_the_right_stage():
    fit = STAGED.fit.model_copy(update={"epochs": 6})
    assert list(staged.plan(fit, 0)) == [(0, 2, True), (1, 4, True), (2, 6, True)]
    assert list(staged.plan(fit, 3)) == [(1, 4, False), (2, 6, True)]
    assert list(staged.plan(fit, 4)) == [(2, 6, True)]
    assert list(staged.plan(IMPROVED.fit, 5)) == [(None, IMPROVED.fit.epochs, False)]


def test_scratch_profile_trains_every_layer_and_keeps_pixels():
    cfg = build_config("improved", "scratch")
    assert cfg.variant.model.backbone_weights == "none" and cfg.variant.model.trainable_backbone_layers == RESNET50_LAYERS
    assert (cfg.data.fit, cfg.variant.model.stem, cfg.variant.model.zero_init_residual) == ("pad", "standard", True)


def test_zero_init_residual_with_pretrained_weights_names_the_field():
    from components.training.model import build_model

    with pytest.raises(ValueError, match=r"model.zero_init_residual.*backbone_weights='imagenet'"):
        build_model(IMPROVED.model.with_changes(zero_init_residual=True), image_size=32)


def test_unknown_fit_names_the_field():
    with pytest.raises(ValidationError, match="fit"):
        build_config("improved", "demo", {"data": {"fit": "stretch"}})


def test_expected_calibration_error_is_zero_when_confidence_matches_accuracy():
    truth = np.array([1] * 8 + [0] * 2 + [0] * 8 + [1] * 2)
    scores = np.array([0.8] * 10 + [0.2] * 10)  # 80 % right at confidence 0.8 on each side
    assert calibration.reliability(truth, scores)["ece"] == pytest.approx(0.0, abs=1e-9)
    assert calibration.reliability(1 - truth, scores)["ece"] == pytest.approx(0.6)


def test_gallery_picks_the_most_confident_mistakes_first():
    # positive label 0 here, so the scores are P(label 0) per image
    truth = np.array([0, 0, 0, 1, 1, 1])
    p_positive = np.array([0.1, 0.4, 0.9, 0.95, 0.7, 0.2])
    picked = gallery.confident_errors(truth, p_positive, positive_label=0)
    assert picked == {"false positives": [3, 4], "false negatives": [0, 1]}


def test_degradations_change_pixels_and_leave_shape():
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for changed in (degrade.jpeg(image, 50), degrade.blur(image, 1.0), degrade.down_up(image, 0.5)):
        assert changed.shape == image.shape and changed.dtype == np.uint8 and np.abs(changed.astype(int) - image).mean() > 1
    assert np.array_equal(degrade.blur(image, 0.0), image)


def test_robustness_augmentation_follows_its_probabilities_and_seed():
    batch = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    policy = {"jpeg_probability": 0.0, "jpeg_quality_range": (30, 100), "blur_probability": 0.0, "blur_sigma_range": (0.5, 3.0)}
    assert np.array_equal(degrade.degrade_batch(batch, policy, np.array([1, 2])), batch)
    always = {**policy, "jpeg_probability": 1.0, "blur_probability": 1.0}
    first = degrade.degrade_batch(batch, always, np.array([1, 2]))
    assert all(not np.array_equal(a, b) for a, b in zip(first, batch))
    assert np.array_equal(first, degrade.degrade_batch(batch, always, np.array([1, 2])))


def test_multi_crops_are_the_centre_then_the_four_corners():
    from components.data.fit import multi_crops

    pixels = np.arange(6 * 8 * 3).reshape(6, 8, 3)
    crops = multi_crops(pixels, 4, 5)
    assert crops.shape == (5, 4, 4, 3)
    np.testing.assert_array_equal(crops[0], pixels[1:5, 2:6])
    for crop, (top, left) in zip(crops[1:], [(0, 0), (0, 4), (2, 0), (2, 4)]):
        np.testing.assert_array_equal(crop, pixels[top : top + 4, left : left + 4])
    with pytest.raises(ValueError, match="crops=3"):
        multi_crops(pixels, 4, 3)


def test_predict_averages_the_five_crops_of_a_crop_model(tmp_path):
    import keras
    from PIL import Image

    from components.serving.predict import PredictConfig, prepared_batches
    from components.serving.scoring import Detector

    size = 8
    image = np.zeros((2 * size, 2 * size, 3), dtype=np.uint8)
    image[:size, :size] = 200  # only the top-left corner crop is bright
    Image.fromarray(image).save(tmp_path / "a.png")
    # Only the fields predict reads from a model's manifest.
    manifest = Manifest.model_construct(image_size=size, fit="crop", encoding=ManifestEncoding(codec="png"))
    inputs = keras.Input((size, size, 3))
    mean_pixel = keras.layers.Dense(1, kernel_initializer="ones", use_bias=False)(keras.layers.GlobalAveragePooling2D()(inputs) / 3)
    detector = Detector(keras.Model(inputs, mean_pixel), manifest, threshold=0.5, version="1")
    (_, [crops], _), *_ = prepared_batches([tmp_path / "a.png"], detector, PredictConfig(images=str(tmp_path), crops=5, workers=1))
    assert crops.shape == (5, size, size, 3)
    # centre: a quarter bright (50); top-left corner 200; the other corners 0 → mean 50.
    assert detector.positive_scores([crops]) == pytest.approx([50.0])
    (_, [centre], _), *_ = prepared_batches([tmp_path / "a.png"], detector, PredictConfig(images=str(tmp_path), workers=1))
    assert centre.shape == (size, size, 3) and detector.positive_scores([centre]) == pytest.approx([50.0])


def test_quality_summary_reads_each_variants_figures_back_from_its_run(tracking_store):
    """What `make quality` prints: one column per variant, from the runs in a real MLflow store;
    a figure a run did not log shows as `-`."""
    from mlflow import MlflowClient

    from components.evaluation import quality
    from components.evaluation.robustness import CONDITION_NAMES

    client = MlflowClient()
    improved, baseline = (client.create_run("0").info.run_id for _ in range(2))
    for name, value in {"test/auc": 0.912345678, "calibration/ece": 0.05, "robust/jpeg_q50/auc": 0.8}.items():
        client.log_metric(improved, name, value)
    client.log_metric(baseline, "test/auc", 0.7)

    clean, robust = quality.summary(quality.run_metrics({"improved": improved, "baseline": baseline}))

    clean_rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:4]] for line in clean.splitlines()[2:]}
    assert clean_rows["AUC"] == ["0.9123", "0.7"] and clean_rows["ECE"] == ["0.05", "-"]
    robust_rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:6]] for line in robust.splitlines()[2:]}
    assert list(robust_rows) == list(CONDITION_NAMES)
    assert robust_rows["jpeg_q50"] == ["0.8", "-", "-", "-"]


def test_quality_parent_run_is_named_for_the_profile_and_lists_its_variants(tracking_store, tmp_path):
    """`make quality`'s parent run, in a real MLflow store: the variants' runs nest under it."""
    from mlflow import MlflowClient

    from flows.quality import start_parent_run

    overrides = {"data": {"root": str(tmp_path / "cifake")}}
    configs = {variant: build_config(variant, "scratch", overrides) for variant in ("improved", "staged")}

    run = MlflowClient().get_run(start_parent_run(configs, "scratch"))

    assert run.info.run_name == "quality-scratch" and run.data.tags["kind"] == "comparison"
    assert run.data.params == {
        "profile": "scratch",
        "dataset": "cifake",
        "data.root": str(tmp_path / "cifake"),
        "variants": "improved,staged",
    }


def test_npr_is_the_baseline_plus_the_papers_network_and_schedule():
    from components.config import BASELINE, NPR, NPR_LAYERS

    assert NPR.model.architecture == "npr" and NPR.model.backbone_weights == "none" and NPR.model.head_units == ()
    assert NPR.model.trainable_backbone_layers == NPR_LAYERS
    assert (NPR.fit.learning_rate, NPR.fit.decay_every_epochs, NPR.fit.decay_factor) == (2e-4, 10, 0.8)
    assert NPR.augment.horizontal_flip and NPR.augment.rotation_degrees == NPR.augment.shift_fraction == 0
    assert NPR.model_dump(exclude={"name", "model", "fit", "augment"}) == BASELINE.model_dump(exclude={"name", "model", "fit", "augment"})


def test_profiles_size_npr_but_keep_its_network():
    scratch = build_config("npr", "scratch")
    assert scratch.variant.model.trainable_backbone_layers != RESNET50_LAYERS and not scratch.variant.model.zero_init_residual
    assert scratch.data.image_size == 32  # the profile still sizes the data
    general = {variant: build_config(variant, "generalisation") for variant in ("baseline", "improved", "npr")}
    assert {config.data.fit for config in general.values()} == {"crop"} and general["npr"].variant.fit.learning_rate == 2e-4
    assert general["baseline"].variant.model.trainable_backbone_layers == RESNET50_LAYERS
    overridden = build_config("npr", "scratch", {"variant": {"model": {"head_units": (64,)}}})
    assert overridden.variant.model.head_units == (64,), "the user's own overrides still reach it"


def test_a_step_decay_refuses_to_fight_the_other_schedules():
    with pytest.raises(ValidationError, match=r"decay_every_epochs"):
        FitConfig(decay_every_epochs=10, reduce_lr_factor=0.5)


def test_the_held_out_table_lists_each_set_and_the_mean(tracking_store):
    import mlflow

    from components.evaluation import quality

    run_ids = {}
    for variant, auc in (("improved", 0.6), ("npr", 0.8)):
        with mlflow.start_run() as run:
            mlflow.log_metrics({"generalisation/glid3/auc": auc, "generalisation/glid3/fakes_caught": 0.5, "generalisation/mean_auc": auc})
        run_ids[variant] = run.info.run_id
    table = [[cell.strip() for cell in line.split("|")[1:-1]] for line in quality.held_out(quality.run_metrics(run_ids)).splitlines()]
    assert table[0] == ["set", "improved auc", "improved fakes_caught", "npr auc", "npr fakes_caught"]
    assert table[2] == ["glid3", "0.6", "0.5", "0.8", "0.5"] and table[3] == ["mean", "0.6", "-", "0.8", "-"]
    with mlflow.start_run() as plain:
        mlflow.log_metric("test/auc", 0.9)
    assert quality.held_out(quality.run_metrics({"baseline": plain.info.run_id})) is None
