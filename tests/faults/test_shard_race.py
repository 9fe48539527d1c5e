"""Two shard runs of one key at once (baseline and improved share shards): both succeed, and
both end with the same complete set, identical to one run alone."""

from __future__ import annotations

import json
from pathlib import Path

from components.data import publish, shard
from tests.faults.racing import race
from tests.faults.sharding import config_file, published_state, shard_config


def test_two_runs_of_one_key_both_end_with_one_complete_set(tiny_data_config, tmp_path):
    cfg = shard_config(tiny_data_config, tmp_path / "work")
    arguments = ["--config", str(config_file(cfg, tmp_path))]
    outcomes = race("components.data.shard", [arguments, arguments], tmp_path)
    assert [code for code, _, _ in outcomes] == [0, 0], [err[-2000:] for _, _, err in outcomes]
    results = [json.loads(out[out.index("{\n") :]) for _, out, _ in outcomes]
    assert results[0]["manifest_path"] == results[1]["manifest_path"]
    assert sorted(result["reused"] for result in results) == [False, True], "one wrote, the other waited and reused"
    published = Path(results[0]["manifest_path"]).parent
    publish.verify(published)
    assert not list(published.parent.glob("*.partial"))
    alone = shard.run(cfg.model_copy(update={"work_dir": str(tmp_path / "alone")}))
    assert published_state(results[0]["manifest_path"]) == published_state(alone.manifest_path)
