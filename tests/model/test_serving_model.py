"""The registered serving model, used as MLflow users use it: `mlflow models serve` on @champion,
with image bytes in, P(AI-generated) and a verdict out (README "Serving")."""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from PIL import Image

from components.registry import loading
from components.serving import predict
from tests.conftest import TrainedRun, free_port, start_server, stop_server, wait_for_http


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def _images() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    photo = Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8))
    jpeg = _encoded(photo, "JPEG")
    return {
        "photo.jpg": jpeg,
        "photo.png": _encoded(photo.convert("RGBA"), "PNG"),
        "cmyk.jpg": _encoded(photo.convert("CMYK"), "JPEG"),
        "sixteen.png": _encoded(Image.fromarray(rng.integers(0, 65535, (32, 32), dtype=np.uint16)), "PNG"),
        "corrupt.jpg": jpeg[: len(jpeg) // 3],
    }


@pytest.fixture(scope="module")
def scoring_server(trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory):
    """The real `mlflow models serve` process on the shared run's @champion, as the README runs it."""
    port = free_port()
    log = tmp_path_factory.mktemp("scoring-server") / "server.log"
    command = [Path(sys.executable).with_name("mlflow"), "models", "serve", "-m", f"models:/{trained_run.registered_model}@champion"]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    # MLflow starts `uvicorn` by name: the environment's bin folder is on PATH, as in an activated venv.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    server = start_server([str(part) for part in command], log, env={**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": trained_run.store})
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", server, timeout=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(server)


def _invoke(url: str, body: dict) -> list[dict]:
    request = urllib.request.Request(f"{url}/invocations", json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)["predictions"]


def test_mlflow_models_serve_answers_each_image_and_names_each_unusable_one(scoring_server, trained_run: TrainedRun, trained_store):
    images = _images()
    encoded = [[base64.b64encode(data).decode()] for data in images.values()]
    rows = _invoke(scoring_server, {"dataframe_split": {"columns": ["image"], "data": encoded}})
    answers = dict(zip(images, rows))
    version = MlflowClient().get_model_version_by_alias(trained_run.registered_model, "champion")
    threshold_ai = float(version.tags["threshold_p_ai"])  # six decimals; the served model holds the exact cut
    for name in ("photo.jpg", "photo.png", "cmyk.jpg"):
        answer = answers[name]
        assert answer["error"] is None and 0 <= answer["p_ai_generated"] <= 1, (name, answer)
        assert answer["verdict"] == ("AI-generated" if answer["p_ai_generated"] > answer["threshold"] else "real")
        assert answer["model_version"] == str(version.version) and answer["threshold"] == pytest.approx(threshold_ai, abs=1e-6)
    assert answers["sixteen.png"]["p_ai_generated"] is None and "unsupported mode I;16" in answers["sixteen.png"]["error"]
    assert answers["corrupt.jpg"]["verdict"] is None and answers["corrupt.jpg"]["error"]
    # The `inputs` form passes the base64 text through undecoded: the model decodes it itself.
    (again,) = _invoke(scoring_server, {"inputs": {"image": [encoded[0][0]]}})
    expected = answers["photo.jpg"]
    assert again == {**expected, "p_ai_generated": pytest.approx(expected["p_ai_generated"], abs=1e-5)}  # a batch of one rounds apart


def test_the_served_model_scores_as_detector_predict_does(scoring_server, trained_run: TrainedRun, trained_store, tmp_path: Path):
    """One preparation path: the pyfunc's answer for a file is `detector predict`'s for that file."""
    folder, champion = Path(trained_run.data.root) / "test" / "FAKE", f"models:/{trained_run.registered_model}@champion"
    files = sorted(folder.iterdir())[:3]
    body = {"dataframe_records": [{"image": base64.b64encode(path.read_bytes()).decode()} for path in files]}
    served = [row["p_ai_generated"] for row in _invoke(scoring_server, body)]
    local = {
        Path(item.path).name: item.p_ai_generated
        for item in predict.run(predict.PredictConfig(images=str(folder), model_uri=champion)).predictions
    }
    assert served == pytest.approx([local[path.name] for path in files], abs=1e-5)


def test_the_registered_version_is_the_serving_model_with_signature_and_example(trained_run: TrainedRun, trained_store, tmp_path: Path):
    version = MlflowClient().get_model_version_by_alias(trained_run.registered_model, "champion")
    pinned = f"models:/{trained_run.registered_model}/{version.version}"
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=pinned, dst_path=str(tmp_path)))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert set(mlmodel["flavors"]) == {"python_function"}, "served through pyfunc code, not a bare Keras graph"
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert inputs == [{"type": "binary", "name": "image", "required": True}]
    assert mlmodel["saved_input_example_info"]["type"] == "dataframe"
    assert "pillow" in (local / "requirements.txt").read_text().lower()
    # The copy inside the serving model is the file whose digest the version carries.
    assert loading.file_sha256(local / loading.SERVING_KERAS_FILE) == version.tags[loading.SHA256_TAG]
