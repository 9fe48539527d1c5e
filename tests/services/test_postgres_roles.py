"""The compose stack's database init script on a real PostgreSQL: one role per service, owning
only its databases, and neither a superuser nor able to reach the other's database."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.services, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]) if glob.glob("/usr/lib/postgresql/*/bin") else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []  # PostgreSQL refuses to run as root


@pytest.fixture
def cluster():
    assert PG_BIN, "PostgreSQL's binaries are needed under /usr/lib/postgresql/*/bin (apt-get install postgresql)"
    data = Path(tempfile.mkdtemp(prefix="detector-roles-", dir="/var/tmp"))
    if os.getuid() == 0:
        shutil.chown(data, "postgres")
    port = free_port()
    subprocess.run(
        [*_as_postgres(), str(PG_BIN / "initdb"), "-D", str(data), "-U", "superuser", "--auth=trust"], check=True, capture_output=True
    )
    server = subprocess.Popen(
        [
            *_as_postgres(),
            str(PG_BIN / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={data}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(300):
            if subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode == 0:
                break
            assert server.poll() is None, "postgres exited"
            time.sleep(0.2)
        yield port
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def _connect(port: int, user: str, dbname: str):
    import psycopg2

    return psycopg2.connect(host="127.0.0.1", port=port, user=user, dbname=dbname, connect_timeout=10)


def test_each_service_gets_its_own_role_owning_only_its_databases(cluster: int):
    import psycopg2

    compose = yaml.safe_load((REPO / "infra" / "compose.yaml").read_text())
    script = compose["configs"]["create-databases"]["content"].replace("$$", "$")  # compose's escape, as `up` resolves it
    env = {**os.environ, "POSTGRES_USER": "superuser", "MLFLOW_DB_PASSWORD": "mlflow-db-pw", "PREFECT_DB_PASSWORD": "prefect-db-pw"}
    env.update(PGHOST="127.0.0.1", PGPORT=str(cluster), PATH=f"{PG_BIN}:{os.environ['PATH']}")
    subprocess.run(["/bin/sh", "-c", script], env=env, check=True, capture_output=True, text=True)

    with _connect(cluster, "superuser", "postgres") as connection, connection.cursor() as cursor:
        cursor.execute("SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname IN ('mlflow', 'mlflow_auth', 'prefect')")
        assert dict(cursor.fetchall()) == {"mlflow": "mlflow", "mlflow_auth": "mlflow", "prefect": "prefect"}
        cursor.execute("SELECT rolname FROM pg_roles WHERE rolname IN ('mlflow', 'prefect') AND (rolsuper OR rolcreaterole OR rolcreatedb)")
        assert cursor.fetchall() == []
    with _connect(cluster, "mlflow", "mlflow") as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE runs (id int)")  # the owner can migrate its schema
    for user, foreign in (("prefect", "mlflow"), ("prefect", "mlflow_auth"), ("mlflow", "prefect")):
        with pytest.raises(psycopg2.OperationalError, match="permission denied"):
            _connect(cluster, user, foreign)
