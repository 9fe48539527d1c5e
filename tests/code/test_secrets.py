"""Credentials in a tracking URI never reach output, and the URI still works once they are moved out."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from components import settings
from tests.conftest import free_port


class _Health(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def health_server():
    """A real HTTP server on loopback answering /health, as MLflow's does."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _apply(tmp_path: Path) -> None:
    settings.apply(tmp_path / "absent.env", tmp_path / "absent.local.env")


def test_credentials_in_the_tracking_uri_move_to_mlflows_settings(monkeypatch, tmp_path: Path, health_server: str):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:p%40ss-w0rd@{health_server}")
    _apply(tmp_path)
    assert os.environ["MLFLOW_TRACKING_URI"] == f"http://{health_server}"
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("alice", "p@ss-w0rd")
    settings.check_tracking_server(timeout=5)  # reachable now


def test_the_health_check_reaches_a_uri_with_credentials(monkeypatch, health_server: str):
    """Even when apply() has not run: urllib cannot open a URI with user info, so it is stripped first."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:s3cret@{health_server}")
    settings.check_tracking_server(timeout=5)


def test_an_unreachable_server_is_reported_without_its_password(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:s3cret@127.0.0.1:{free_port()}")
    with pytest.raises(settings.TrackingUnavailable) as raised:
        settings.check_tracking_server(timeout=2)
    assert "s3cret" not in str(raised.value) and "127.0.0.1" in str(raised.value)
    assert "s3cret" not in capsys.readouterr().out


def test_explicit_credentials_win_over_those_in_the_uri(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://alice:from-uri@mlflow.example:5000/prefix")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "exported")
    _apply(tmp_path)
    assert os.environ["MLFLOW_TRACKING_URI"] == "https://mlflow.example:5000/prefix"
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("bob", "exported")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://alice:s3cret@host:5000", "http://alice:***@host:5000"),
        ("postgresql://mlflow:pw@db:5432/mlflow failed", "postgresql://mlflow:***@db:5432/mlflow failed"),
        ("see http://host:5000/api and s3://bucket/key", "see http://host:5000/api and s3://bucket/key"),
    ],
)
def test_redact_hides_passwords_and_leaves_the_rest(text: str, shown: str):
    assert settings.redact(text) == shown


def test_example_passwords_are_refused_at_start_up_by_name_only(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "change-me-mlflow-admin")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "change-me")
    with pytest.raises(ValueError, match="AWS_SECRET_ACCESS_KEY, MLFLOW_TRACKING_PASSWORD still hold") as raised:
        _apply(tmp_path)
    assert "change-me-mlflow-admin" not in str(raised.value)
