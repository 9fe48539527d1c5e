"""Create (or re-key) the pipeline's MLflow user: a plain user, never an admin.

Run with the admin's credentials in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD and the
pipeline's in MLFLOW_PIPELINE_USERNAME / MLFLOW_PIPELINE_PASSWORD. With workspaces off (the
default), any user may create experiments and registered models and MLflow makes the creator
their manager; every other resource stays at the server's default permission (READ). So the
pipeline can log, register and move aliases on what it created, and cannot manage users or
touch what others own. Idempotent: a rerun only sets the password again.
"""

from __future__ import annotations

import os
import sys

from mlflow.exceptions import MlflowException
from mlflow.server.auth.client import AuthServiceClient


def main() -> None:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    username, password = os.environ["MLFLOW_PIPELINE_USERNAME"], os.environ["MLFLOW_PIPELINE_PASSWORD"]
    if username == os.environ.get("MLFLOW_TRACKING_USERNAME"):
        sys.exit(f"The pipeline user must not be the admin account. Received: MLFLOW_PIPELINE_USERNAME={username!r}")
    client = AuthServiceClient(uri)
    try:
        client.create_user(username, password)
        print(f"created MLflow user {username}")
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        client.update_user_password(username, password)
        print(f"MLflow user {username} exists; password set")
    if client.get_user(username).is_admin:
        client.update_user_admin(username, False)
        print(f"MLflow user {username} is no longer an admin")


if __name__ == "__main__":
    main()
