"""Connection settings: the environment wins, then mlflow.env, then the embedded default.

Entrypoints call `apply()` once; nothing here runs at import, so tests and libraries that set
their own tracking URI are never overridden behind their back.
"""

from __future__ import annotations

import os
import re
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SETTINGS_FILE = PROJECT_ROOT / "mlflow.env"
# Git-ignored; where a user keeps credentials next to the committed, secret-free mlflow.env.
LOCAL_SETTINGS_FILE = PROJECT_ROOT / "mlflow.local.env"
EMBEDDED_DEFAULTS = {
    "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db",
    # Prefect's ephemeral API migrates a fresh sqlite database on first start; on 2 cores that
    # can outlast the 20 s default and fail the very first `make demo`.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    # The embedded default must work offline; telemetry would only log failed lookups.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # TensorFlow's C++ start-up chatter (no CUDA found, CPU flags) buries the pipeline's output.
    "TF_CPP_MIN_LOG_LEVEL": "2",
}

# Pickle-based MLflow flavours run the pickler's code on load; no process of this project needs them.
ENFORCED = {"MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
PLACEHOLDER = "change-me"  # what infra/*.example files put where a secret belongs
SECRET_SUFFIXES = ("PASSWORD", "SECRET", "SECRET_KEY", "SECRET_ACCESS_KEY", "AUTH_STRING", "TOKEN", "_URI", "_URL")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank values and comments are skipped so they never mask a default."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{path}:{number}: expected KEY=VALUE. Received: {line!r}")
        value = value.strip().strip("'\"")
        if value:
            values[key.strip()] = value
    return values


def apply(path: Path = SETTINGS_FILE, local_path: Path = LOCAL_SETTINGS_FILE) -> dict[str, str]:
    """Fill os.environ from the settings files without overriding what the user exported.

    Call it before Prefect is imported: Prefect reads its settings once, at import.
    """
    values = {**EMBEDDED_DEFAULTS, **read_env_file(path), **read_env_file(local_path)}
    for key, value in values.items():
        os.environ.setdefault(key, value)
    for key, value in ENFORCED.items():  # not the user's to loosen
        os.environ[key] = value
    move_tracking_credentials()
    refuse_placeholder_secrets()
    return {key: os.environ[key] for key in [*values, *ENFORCED]}


def refuse_placeholder_secrets() -> None:
    """Start-up refuses the example files' `change-me…` values: they are public, so not secrets."""
    found = sorted(key for key, value in os.environ.items() if PLACEHOLDER in value and key.endswith(SECRET_SUFFIXES))
    if found:
        # Names only: even a placeholder is not echoed, in case it was only partly replaced.
        raise ValueError(f"{', '.join(found)} still hold(s) an example value ({PLACEHOLDER}…); set real secrets before starting")


# scheme://user:password@ anywhere in a text (a URI, or an error message quoting one).
_USERINFO = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s/:@]*):[^\s/@]*@")


def redact(text: str) -> str:
    """The text with every password embedded in a URI replaced by ***; use it wherever a URI is shown."""
    return _USERINFO.sub(r"\1:***@", text)


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(uri without user info, user, password); user and password are None when the URI has none."""
    parts = urlsplit(uri)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return uri, None, None
    user, colon, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), unquote(user) or None, unquote(password) if colon else None


def move_tracking_credentials() -> None:
    """http://user:password@host becomes http://host plus MLflow's username/password settings.

    MLflow sends those as basic auth; left in the URI, the password would show wherever the URI
    is printed, logged or recorded, and urllib (the health check) cannot open such a URI at all.
    Credentials exported explicitly win over those in the URI.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        return
    clean, user, password = split_credentials(uri)
    if clean == uri:
        return
    os.environ["MLFLOW_TRACKING_URI"] = clean
    if user:
        os.environ.setdefault("MLFLOW_TRACKING_USERNAME", user)
    if password is not None:
        os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", password)


class TrackingUnavailable(RuntimeError):
    """The configured MLflow tracking server does not answer; the message says what to do."""


def check_tracking_server(timeout: float = 10.0) -> None:
    """Fail fast, before any work, when an http(s) tracking URI does not answer its health check."""
    uri, _, _ = split_credentials(os.environ.get("MLFLOW_TRACKING_URI", ""))
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout)
    except (OSError, ValueError) as error:  # ValueError: http.client.InvalidURL, a malformed host or port
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is unreachable ({redact(str(error))}). Start it (infra/local/services.sh start) "
            "or unset MLFLOW_TRACKING_URI to use the local sqlite store."
        ) from None
