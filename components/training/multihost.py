"""Training across processes (one per host or per GPU group) under Keras on JAX.

Kubeflow Trainer's `jax-distributed` runtime starts one process per pod and sets
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID; with those, every process joins
one JAX cluster and keras.distribution.DataParallel spans the devices of all of them. Each
process reads its own share of every global batch (components/data/reader.py), and only the
chief (process 0) writes checkpoints, state.json and result.json and talks to MLflow.

TensorFlow stays single-node: Keras 3's multi-worker model.fit is broken upstream
(keras-team/keras#20585), so the variables under TensorFlow are refused by name.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import keras

ENVIRONMENT = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes; one process, index 0, without the variables."""

    count: int = 1
    index: int = 0
    coordinator: str | None = None

    @property
    def chief(self) -> bool:
        return self.index == 0


def from_environment(environment: Mapping[str, str] = os.environ) -> Processes:
    present = {name: environment[name] for name in ENVIRONMENT if environment.get(name)}
    if not present:
        return Processes()
    if len(present) < len(ENVIRONMENT):
        raise ValueError(f"Set all of {', '.join(ENVIRONMENT)} to train across processes, or none. Received: {present}")
    count, index = int(present["JAX_NUM_PROCESSES"]), int(present["JAX_PROCESS_ID"])
    if not 0 <= index < count:
        raise ValueError(f"JAX_PROCESS_ID must be in [0, JAX_NUM_PROCESSES). Received: JAX_PROCESS_ID={index}, JAX_NUM_PROCESSES={count}")
    return Processes(count=count, index=index, coordinator=present["JAX_COORDINATOR_ADDRESS"])


def joined() -> Processes:
    """The processes from the environment, this one joined to the others (once per process).
    Call it before anything touches a JAX device: jax.distributed refuses to start after that."""
    processes = from_environment()
    if processes.count == 1:
        return processes
    if keras.backend.backend() != "jax":
        raise RuntimeError(
            f"{', '.join(ENVIRONMENT)} ask for training across {processes.count} processes, which this project runs only "
            f"under Keras on JAX: Keras 3's multi-worker fit on TensorFlow is broken upstream (keras-team/keras#20585). "
            f"Set KERAS_BACKEND=jax (the gpu-jax image), or unset them to train in one process. Received: "
            f"KERAS_BACKEND={keras.backend.backend()!r}"
        )
    _initialize(processes)
    return processes


@functools.cache
def _initialize(processes: Processes) -> None:
    import jax

    # CPU collectives across processes: gloo is JAX 0.10's default, set for the older JAX the extra allows.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if not jax.distributed.is_initialized():  # e.g. by a launcher, or a second variant trained in this process
        # Before any device is touched; Keras also agrees one random seed over the processes when none is set.
        keras.distribution.initialize(processes.coordinator, processes.count, processes.index)


def barrier(processes: int, name: str) -> None:
    """Every process waits here until all have arrived (`name` must match across them); a no-op in one process."""
    if processes > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


@contextmanager
def undistributed() -> Iterator[None]:
    """Run a save on one process without the cross-process distribution: saving under it builds
    throwaway variables (a fresh optimizer's, to know which attributes to skip), and placing a
    variable across processes is a collective the other processes never join, so the save hangs."""
    current = keras.distribution.distribution()
    if current is None or current.num_processes == 1:
        yield
        return
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)
