#!/bin/sh
# `mlflow server` with basic auth, its user store on the database MLFLOW_AUTH_DATABASE_URI names.
# The auth app reads that URI only from an ini file (MLFLOW_AUTH_CONFIG_PATH), so the file is
# written here from the environment, outside the image, and never holds the admin password:
# MLflow reads MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD and
# MLFLOW_FLASK_SERVER_SECRET_KEY itself. The remaining
# server options come from MLflow's own variables (MLFLOW_BACKEND_STORE_URI,
# MLFLOW_ARTIFACTS_DESTINATION), which keeps credentials off the command line, or from the
# arguments (--host, --port, --workers, --allowed-hosts).
set -eu
: "${MLFLOW_AUTH_DATABASE_URI:?set it to the auth user store, e.g. postgresql://user:password@host:5432/mlflow_auth}"
: "${MLFLOW_AUTH_ADMIN_PASSWORD:?set the admin password MLflow creates its first admin user with}"
# The auth app's CSRF protection signs with this key; every replica and worker must share it.
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set a long random string shared by every MLflow server replica}"
MLFLOW_AUTH_CONFIG_PATH=$(mktemp -d)/basic_auth.ini
export MLFLOW_AUTH_CONFIG_PATH
cat >"$MLFLOW_AUTH_CONFIG_PATH" <<INI
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = ${MLFLOW_AUTH_DATABASE_URI}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
# MLflow's server-side job runners (GenAI judges, trace roll-ups) serve nothing the detector
# does, and would start seven more Python processes in the container.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
exec mlflow server --app-name basic-auth --serve-artifacts "$@"
