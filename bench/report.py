"""The table `make bench` prints and the JSON it writes."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# (key, target, direction): the ratios the issue asks for, with the targets it sets.
TARGETS = [
    ("input_vs_imagedatagenerator", 5.0, ">="),
    ("input_vs_decode_ceiling", 0.9, ">="),
    ("train_input_stall", 0.9, ">="),
    ("orchestration_overhead", 1.05, "<="),
    ("serving_service_vs_forward", 0.7, ">="),
    ("serving_pyfunc_vs_forward", 0.7, ">="),
]


def machine() -> dict[str, Any]:
    import tensorflow as tf

    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), platform.processor())
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        # Other processes on a shared host lower every rate; the 1-minute load says how much.
        "load_average_1min": os.getloadavg()[0],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _cpuinfo() -> list[str]:
    path = Path("/proc/cpuinfo")
    return path.read_text().splitlines() if path.is_file() else []


def ratios(results: dict[str, Any]) -> dict[str, float]:
    rates = results["input"]
    return {
        "input_vs_imagedatagenerator": rates["fused_live"] / rates["imagedatagenerator"],
        "input_vs_decode_ceiling": rates["premade"] / rates["decode_ceiling"],
        "train_input_stall": results["training"]["train_input_stall"],
        "orchestration_overhead": results["orchestration"]["orchestration_overhead"],
        "sharding_scaling": results["sharding"]["scaling"],
        "ray_vs_local_validate": results["engines"]["validate_ray"] / results["engines"]["validate_local"],
        "ray_vs_local_shard": results["engines"]["shard_ray"] / results["engines"]["shard_local"],
        "augment_layer_vs_tf_data_warp": rates["warp_in_model_layer"] / rates["warp_tf_data"],
        "serving_service_vs_forward": results["serving"]["service"] / results["serving"]["forward_in_process"],
        "serving_pyfunc_vs_forward": results["serving"]["pyfunc"] / results["serving"]["forward_in_process"],
    }


def table(results: dict[str, Any]) -> str:
    rates, training, sharding = results["input"], results["training"], results["sharding"]
    orchestration, serving, engines = results["orchestration"], results["serving"], results["engines"]
    lines = [
        f"{'figure':<52}{'value':>14}",
        f"{'input: ImageDataGenerator, augmented (img/s)':<52}{rates['imagedatagenerator']:>14.0f}",
        f"{'input: tf.data + Keras Random* layers (img/s)':<52}{rates['keras_random_layers']:>14.0f}",
        f"{'input: reader, fused live augmentation (img/s)':<52}{rates['fused_live']:>14.0f}",
        f"{'input: reader, premade copies (img/s)':<52}{rates['premade']:>14.0f}",
        f"{'input: decode ceiling, decode_jpeg only (img/s)':<52}{rates['decode_ceiling']:>14.0f}",
        f"{'warp alone: tf.data fused warp (img/s)':<52}{rates['warp_tf_data']:>14.0f}",
        f"{'warp alone: in-model RandomAffine, XLA (img/s)':<52}{rates['warp_in_model_layer']:>14.0f}",
        f"{'training: from in-memory tensors (img/s)':<52}{training['in_memory']:>14.1f}",
        f"{'training: from shards, live augmentation (img/s)':<52}{training['from_shards']:>14.1f}",
        f"{'sharding: 1 core (img/s)':<52}{sharding['images_per_second_1_core']:>14.0f}",
        f"{'sharding: all ' + str(sharding['cores']) + ' cores (img/s)':<52}{sharding['images_per_second_all_cores']:>14.0f}",
        f"{'validate: local pool, all cores (img/s)':<52}{engines['validate_local']:>14.0f}",
        f"{'validate: Ray engine, all cores (img/s)':<52}{engines['validate_ray']:>14.0f}",
        f"{'shard: local pool, all cores (img/s)':<52}{engines['shard_local']:>14.0f}",
        f"{'shard: Ray engine, all cores (img/s)':<52}{engines['shard_ray']:>14.0f}",
        f"{'Ray: local cluster start, once (s)':<52}{engines['ray_cluster_start_seconds']:>14.1f}",
        f"{'orchestration: direct (s)':<52}{orchestration['direct_seconds']:>14.1f}",
        f"{'orchestration: Prefect flow + MLflow (s)':<52}{orchestration['flow_seconds']:>14.1f}",
        f"{'orchestration: Prefect API start, once (s)':<52}{orchestration['prefect_startup_seconds']:>14.1f}",
        f"{'serving: Keras forward in-process, prepared (img/s)':<52}{serving['forward_in_process']:>14.1f}",
        f"{'serving: decode + forward in-process (img/s)':<52}{serving['score_in_process']:>14.1f}",
        f"{'serving: detector serve, batches of 32 (img/s)':<52}{serving['service']:>14.1f}",
        f"{'serving: mlflow models serve, batches of 32 (img/s)':<52}{serving['pyfunc']:>14.1f}",
        f"{'serving: 1 image, ' + str(serving['latency_clients']) + ' clients: p50 / p99 (ms)':<52}"
        f"{serving['latency_p50_ms']:>7.0f}{serving['latency_p99_ms']:>7.0f}",
    ]
    for row in results["growth"]:
        label = f"growth {row['scale']:>2}x ({row['images']} images): s, peak MB, marginal ms/img"
        marginal = f"{row['marginal_ms_per_image']:>7.2f}" if "marginal_ms_per_image" in row else ""
        lines.append(f"{label:<60}{row['seconds']:>7.1f}{row['peak_rss_mb']:>7.0f}{marginal}")
    lines.append("")
    lines.append(f"{'ratio':<36}{'value':>9}  target")
    for key, target, direction in TARGETS:
        value = results[key]
        met = value >= target if direction == ">=" else value <= target
        lines.append(f"{key:<36}{value:>9.2f}  {direction} {target}  {'met' if met else 'NOT MET'}")
    lines.append(f"{'sharding_scaling':<36}{results['sharding_scaling']:>9.2f}  (1 -> {sharding['cores']} cores)")
    for key in ("ray_vs_local_validate", "ray_vs_local_shard"):  # no target: on one host, parity at best
        lines.append(f"{key:<36}{results[key]:>9.2f}  (Ray engine / local pool)")
    # Where the warp should run: > 1 means the in-model layer is faster on this host's CPU (runtime.augmentation).
    lines.append(f"{'augment_layer_vs_tf_data_warp':<36}{results['augment_layer_vs_tf_data_warp']:>9.2f}  (in-model layer / tf.data warp)")
    return "\n".join(lines)


def write(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2) + "\n")
