"""kfp lives in .venv-kfp only: installing it changed nothing in the main environment or the images' locks."""

from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest

from tests.kfp.conftest import REPO, in_kfp_env

LOCKS = ("requirements-cpu.txt", "requirements-gpu.txt")
# kfp 2.17 requires protobuf<7 and pins requests exactly: the two it would move.
GUARDED = ("protobuf", "requests")


def lock_pins(name: str) -> dict[str, str]:
    lines = (REPO / "docker" / name).read_text().splitlines()
    return {line.split("==")[0].lower(): line.split("==")[1] for line in lines if "==" in line and not line.startswith("#")}


@pytest.mark.parametrize("lock", LOCKS)
def test_main_environment_has_the_locked_protobuf_and_requests(lock: str):
    pins = lock_pins(lock)
    assert {name: importlib.metadata.version(name) for name in GUARDED} == {name: pins[name] for name in GUARDED}


@pytest.mark.parametrize("lock", LOCKS)
def test_image_locks_hold_no_kfp(lock: str):
    assert not {name for name in lock_pins(lock) if name.startswith("kfp")}


def test_kfp_is_not_importable_in_the_main_environment():
    assert importlib.util.find_spec("kfp") is None


def test_kfp_environment_holds_kfp_with_the_protobuf_it_needs(kfp_python: str):
    code = "import importlib.metadata as m; print(m.version('kfp'), m.version('protobuf'))"
    kfp_version, protobuf_version = in_kfp_env(kfp_python, code).split()
    assert kfp_version.startswith("2.17.")
    assert int(protobuf_version.split(".")[0]) < 7, "if kfp accepts protobuf 7, the two environments could become one"
