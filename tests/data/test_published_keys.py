"""Published shards and registered versions stay valid across refactors: the code today computes the
same dataset fingerprint, manifest bytes, shard keys and registry keys as the code that published
them (tests/data/published_keys.json, written before components/ became packages)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from tests.data.published_keys import compute

PUBLISHED = json.loads((Path(__file__).parent / "published_keys.json").read_text())


def test_manifest_bytes_shard_keys_and_registry_keys_equal_the_published_ones(tmp_path: Path):
    computed = compute(tmp_path)
    assert sorted(computed) == sorted(PUBLISHED)
    for sharding, published in PUBLISHED.items():
        for field, value in published.items():
            if field == "registry_keys":  # variants and profiles added since get keys of their own
                new = {name: key for name, key in computed[sharding][field].items() if name not in value}
                assert not set(new.values()) & set(value.values()), f"{sharding}: a new variant or profile reuses a published key"
                value = {**value, **new}
            assert computed[sharding][field] == value, f"{sharding}: {field} changed"


def _with_module_paths_before_the_move(config: dict | list) -> None:
    """`model.keras` files name each custom layer's module as it was when they were saved."""
    items = config.values() if isinstance(config, dict) else config
    if isinstance(config, dict) and config.get("registered_name") in BEFORE_THE_MOVE:
        config["module"] = BEFORE_THE_MOVE[config["registered_name"]]
    for item in items:
        if isinstance(item, dict | list):
            _with_module_paths_before_the_move(item)


BEFORE_THE_MOVE = {"detector>ImageNetPreprocess": "components.model", "detector>RandomAffine": "components.augment"}


def test_models_saved_before_the_move_load_with_their_custom_layers(tmp_path: Path):
    import keras
    import numpy as np

    from components.registry.loading import load_file
    from components.training.augment import RandomAffine
    from components.training.model import ImageNetPreprocess

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, ImageNetPreprocess()(RandomAffine(rotation_degrees=15.0, horizontal_flip=True)(inputs)))
    saved = tmp_path / "saved.keras"
    model.save(saved)
    published = tmp_path / "published.keras"
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(published, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                _with_module_paths_before_the_move(config)
                assert json.dumps(config).count('"components.') == 2, "the fixture names both layers' old modules"
                data = json.dumps(config).encode()
            target.writestr(item, data)
    loaded = load_file(published)
    assert [type(layer).__name__ for layer in loaded.layers[1:]] == ["RandomAffine", "ImageNetPreprocess"]
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(pixels, verbose=0), model.predict(pixels, verbose=0))
