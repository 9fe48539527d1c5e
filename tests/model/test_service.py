"""`detector serve` as a client meets it: the real uvicorn process on loopback, over the shared
tiny run's registered model, copied into a registered model of its own so that moving its
@champion here cannot change what the other model tests read."""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from mlflow import MlflowClient
from PIL import Image

from components.serving import predict
from tests.conftest import TrainedRun, free_port, start_server, stop_server, tracking_at, wait_for_http

NAME = "served-detector"
LIMIT_MB = 1
PIXEL_CAP = 1_000_000


def _jpeg(seed: int = 0, size: tuple[int, int] = (40, 48), mode: str = "RGB") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG")
    return buffer.getvalue()


def _copy_champion(store: str, name: str) -> None:
    """A new registered model whose version 1 is the shared run's champion, tags and all."""
    with tracking_at(store):
        client = MlflowClient()
        source = client.get_model_version_by_alias(TrainedRun.registered_model, "champion")
        client.create_registered_model(name)
        _add_version(client, name, source)


def _add_version(client: MlflowClient, name: str, source) -> str:
    created = client.create_model_version(name, source.source, source.run_id, tags=source.tags)
    client.set_registered_model_alias(name, "champion", created.version)
    return str(created.version)


@pytest.fixture(scope="module")
def service(trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> str:
    _copy_champion(trained_run.store, NAME)
    port = free_port()
    log = tmp_path_factory.mktemp("detector-serve") / "serve.log"
    settings = [f"model_uri=models:/{NAME}@champion", f"port={port}", "poll_seconds=0.5", f"max_request_mb={LIMIT_MB}"]
    settings.append(f"max_pixels={PIXEL_CAP}")
    command = [sys.executable, "-m", "components.serving.service", *(part for item in settings for part in ("--set", item))]
    env = {key: value for key, value in os.environ.items() if key != "DETECTOR_API_TOKEN"}
    server = start_server(command, log, env={**env, "MLFLOW_TRACKING_URI": trained_run.store})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/healthz", server, timeout=180)  # 503 until the model is loaded and warm
        yield url
    finally:
        stop_server(server)


def _post(url: str, files: dict[str, bytes], **kwargs) -> requests.Response:
    return requests.post(f"{url}/predict", files=[("images", (name, data)) for name, data in files.items()], timeout=60, **kwargs)


def test_predict_answers_each_upload_as_detector_predict_does(service: str, trained_run: TrainedRun, trained_store):
    sample = sorted((Path(trained_run.data.root) / "test" / "REAL").iterdir())[0]
    reply = _post(service, {"../../etc/passwd": sample.read_bytes(), "cmyk.jpg": _jpeg(mode="CMYK"), "broken.jpg": b"\xff\xd8 not really"})
    assert reply.status_code == 200, reply.text
    first, cmyk, broken = reply.json()["predictions"]
    assert first["name"] == "../../etc/passwd", "the client's name is echoed back, never opened"
    expected = predict.run(predict.PredictConfig(images=str(sample), model_uri=f"models:/{trained_run.registered_model}@champion"))
    assert first["p_ai_generated"] == pytest.approx(expected.predictions[0].p_ai_generated, abs=1e-5)
    assert first["verdict"] in ("AI-generated", "real") and first["model_version"] == "1" and first["error"] is None
    assert cmyk["error"] is None and 0 <= cmyk["p_ai_generated"] <= 1
    assert broken["p_ai_generated"] is None and broken["error"]


def test_a_request_with_nothing_usable_gets_400_with_each_reason(service: str):
    wide = io.BytesIO()
    Image.new("RGB", (1200, 1000)).save(wide, "PNG")  # tiny on the wire, over the pixel cap decoded
    reply = _post(service, {"wide.png": wide.getvalue(), "icon.icns": b"icns\x00\x00\x00\x08"})
    assert reply.status_code == 400
    wide_row, icon_row = reply.json()["predictions"]
    assert "decompression bomb" in wide_row["error"] and icon_row["error"].startswith("not an image in an accepted format")
    assert requests.post(f"{service}/predict", data={"images": "text"}, timeout=10).status_code == 400


def test_a_body_over_the_cap_gets_413_declared_or_streamed(service: str):
    oversized = b"\xff" * (LIMIT_MB * 1024 * 1024 + 1)
    assert _post(service, {"big.jpg": oversized}).status_code == 413
    # No Content-Length: the cap holds while the chunks arrive.
    boundary = "detector-test"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="big.jpg"\r\n\r\n'.encode()

    def chunks():
        yield head
        for start in range(0, len(oversized), 64 * 1024):
            yield oversized[start : start + 64 * 1024]
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    reply = requests.post(f"{service}/predict", data=chunks(), headers=headers, timeout=60)
    assert reply.status_code == 413 and "max_request_mb" in reply.json()["detail"]


def test_healthz_and_version_name_the_version_that_answers(service: str):
    assert requests.get(f"{service}/healthz", timeout=10).json()["status"] == "ready"
    info = requests.get(f"{service}/version", timeout=10).json()
    assert info["model_uri"] == f"models:/{NAME}@champion" and not info["token_required"] and 0 < info["threshold"] < 1
    assert '<input id="files"' in requests.get(service, timeout=10).text


def test_a_moved_champion_is_swapped_in_while_requests_keep_succeeding(service: str, trained_store):
    client = MlflowClient()
    before = requests.get(f"{service}/version", timeout=10).json()["model_version"]
    statuses: list[int] = []
    versions: dict[int, list[str]] = {}
    swapped, stop = threading.Event(), threading.Event()

    def client_loop(worker: int) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                reply = session.post(f"{service}/predict", files=[("images", ("a.jpg", _jpeg(worker)))], timeout=60)
                statuses.append(reply.status_code)
                if reply.status_code == 200:
                    versions.setdefault(worker, []).append(reply.json()["predictions"][0]["model_version"])
                    if versions[worker][-1] != before and len(versions[worker]) > 3:
                        swapped.set()

    workers = [threading.Thread(target=client_loop, args=(index,)) for index in range(3)]
    for worker in workers:
        worker.start()
    try:
        after = _add_version(client, NAME, client.get_model_version(NAME, before))
        swapped.wait(timeout=90)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    assert swapped.is_set(), f"still serving version {before} after @champion moved to {after}"
    assert statuses and set(statuses) == {200}, "a request failed while the version was swapped"
    for seen in versions.values():  # each client saw the old version, then only the new one
        assert seen == sorted(seen, key=lambda version: version != before) and set(seen) <= {before, after}


def test_a_token_when_set_is_required_on_predict(trained_run: TrainedRun, trained_store, monkeypatch):
    from fastapi.testclient import TestClient

    from components.serving.service import ServeConfig, create_app

    monkeypatch.setenv("DETECTOR_API_TOKEN", "s3cret-for-this-test")
    app = create_app(ServeConfig(model_uri=f"models:/{trained_run.registered_model}@champion"))
    with TestClient(app) as served:
        deadline = time.monotonic() + 120
        while served.get("/healthz").status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.2)  # the model loads in the background: poll readiness, as a probe does
        files = [("images", ("a.jpg", _jpeg()))]
        refused = served.post("/predict", files=files)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert served.post("/predict", files=files, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert served.post("/predict", files=files, headers={"Authorization": "Bearer s3cret-for-this-test"}).status_code == 200
        assert served.get("/version").json()["token_required"] and served.get("/healthz").status_code == 200


def test_before_any_champion_exists_the_service_is_unready_then_serves_the_first(trained_run: TrainedRun, trained_store):
    from fastapi.testclient import TestClient

    from components.serving.service import ServeConfig, create_app

    name = "champion-arrives-later"
    app = create_app(ServeConfig(model_uri=f"models:/{name}@champion", poll_seconds=0.2))
    with TestClient(app) as served:
        assert served.get("/healthz").status_code == 503
        assert served.post("/predict", files=[("images", ("a.jpg", _jpeg()))]).status_code == 503
        _copy_champion(trained_run.store, name)
        deadline = time.monotonic() + 120
        while served.get("/healthz").status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert served.get("/healthz").json() == {"status": "ready", "model_version": "1"}
