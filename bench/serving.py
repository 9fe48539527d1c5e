"""Serving throughput and latency, on the model the orchestration section registered
(`bench-direct@champion` in its store) and the demo test images it trained on.

Batch scoring through `detector serve` (multipart) and through `mlflow models serve` (the
registry's pyfunc, base64 in `dataframe_split`) are given as ratios of the Keras forward pass
in-process (`predict_on_batch` on the already-prepared pixels of the same images, the same batch
size). The servers also decode and fit each image, so the ratio is what HTTP, parsing and
preparation cost on top of the model. Then single-image latency through `detector serve`, p50
and p99, under a fixed load of concurrent clients.

Runs in its own process (`python -m bench.serving DIR [MODEL_URI]`, one JSON line out; DIR holds
`mlflow.db` and `demo-data/`), with the servers as its child processes on loopback.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

MODEL = "models:/bench-direct@champion"
BATCH, REPEAT = 32, 4  # the demo test split's 40 images, four times: 160 per measured pass
CLIENTS, LATENCY_REQUESTS = 4, 120


def measure(orchestration_dir: Path) -> dict[str, float]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{orchestration_dir / 'mlflow.db'}", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # MLflow starts `uvicorn` by name
    command = [sys.executable, "-m", "bench.serving", str(orchestration_dir)]
    output = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def _batches(items: list, size: int = BATCH) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _rate(count: int, call, batches: list) -> float:
    call(batches[0])  # warm: the first call builds what later ones reuse
    start = time.perf_counter()
    for batch in batches:
        call(batch)
    return count / (time.perf_counter() - start)


def _server(command: list[str], ready: str, log: Path) -> subprocess.Popen:
    from tests.conftest import wait_for_http

    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for_http(ready, process, timeout=240)
    return process


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, 15)
    process.wait(timeout=30)


def _compare(work_dir: Path, model: str = MODEL) -> dict[str, float]:
    import requests

    from components.data.images import prepare_bytes
    from components.serving import scoring
    from tests.conftest import free_port

    images = [path.read_bytes() for path in sorted((work_dir / "demo-data" / "test").rglob("*.png"))] * REPEAT
    detector = scoring.load_registered(model)
    pixels = [detector.pixels(prepare_bytes(data, detector.job())) for data in images]
    forward = _rate(len(images), detector.positive_scores, _batches(pixels))
    in_process = _rate(len(images), detector.score, _batches(images))

    port = free_port()
    service = _server(
        [sys.executable, "-m", "components.serving.service", "--set", f"model_uri={model}", "--set", f"port={port}"],
        f"http://127.0.0.1:{port}/healthz",
        work_dir / "bench-serve.log",
    )
    url = f"http://127.0.0.1:{port}/predict"
    try:
        with requests.Session() as session:

            def through_service(batch: list[bytes]) -> None:
                files = [("images", (f"{index}.png", data)) for index, data in enumerate(batch)]
                session.post(url, files=files, timeout=120).raise_for_status()

            service_rate = _rate(len(images), through_service, _batches(images))
        p50, p99 = _latency(url, images)
    finally:
        _stop(service)

    port = free_port()
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    pyfunc = _server(
        [mlflow_bin, "models", "serve", "-m", model, "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        f"http://127.0.0.1:{port}/ping",
        work_dir / "bench-mlflow-serve.log",
    )
    try:
        with requests.Session() as session:

            def through_pyfunc(batch: list[bytes]) -> None:
                data = [[base64.b64encode(item).decode()] for item in batch]
                body = {"dataframe_split": {"columns": ["image"], "data": data}}
                session.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=120).raise_for_status()

            pyfunc_rate = _rate(len(images), through_pyfunc, _batches(images))
    finally:
        _stop(pyfunc)
    return {
        "images": len(images),
        "batch": BATCH,
        "forward_in_process": forward,
        "score_in_process": in_process,
        "service": service_rate,
        "pyfunc": pyfunc_rate,
        "latency_clients": CLIENTS,
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
    }


def _latency(url: str, images: list[bytes]) -> tuple[float, float]:
    """One image per request from CLIENTS threads at once, LATENCY_REQUESTS in all."""
    import numpy as np
    import requests

    timings: list[float] = []
    lock = threading.Lock()
    per_client = LATENCY_REQUESTS // CLIENTS

    def client(offset: int) -> None:
        with requests.Session() as session:
            for index in range(per_client):
                data = images[(offset * per_client + index) % len(images)]
                start = time.perf_counter()
                session.post(url, files=[("images", ("one.png", data))], timeout=120).raise_for_status()
                with lock:
                    timings.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client, args=(offset,)) for offset in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    p50, p99 = np.percentile(np.asarray(timings) * 1000, [50, 99])
    return float(p50), float(p99)


if __name__ == "__main__":
    print(json.dumps(_compare(Path(sys.argv[1]), *sys.argv[2:3])))
