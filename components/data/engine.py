"""Where validate and shard do their per-file work: `local`, the guarded process pool on this
host's cores (components/data/guard.py), or `ray`, Ray tasks over partitions of the work.

A Ray task runs the same function the local engine runs, over its partition, in a one-worker
guarded pool of its own: a file that crashes or hangs its decoder still costs that file only.
A task whose Ray worker dies is retried by Ray: validate's goes on from its partition's
progress file, shard's writes its shards again whole.
The partitions' results come back in order and are merged on the driver, so a run's report,
quarantine, manifest and shard bytes do not depend on the engine (tests/data/test_engine.py).

The cluster: the one RAY_ADDRESS names (a KubeRay cluster, infra/kubernetes/scale/), else a local
one started for the stage and stopped after it. Tasks read and write the stage's own folders,
so on a cluster those must be storage that every Ray worker mounts at the same path (the shared
work volume). Ray keeps its own session files and logs where it always does (/tmp/ray).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

Item = TypeVar("Item")
# Per CPU: enough partitions that a slow one does not leave the other CPUs idle at the end,
# few enough that each one's start (a worker and its decoder pool, ~0.5 s) stays small.
PARTITIONS_PER_CPU = 4
# Retries of a task whose worker died (a node lost, the OOM killer): each continues from the
# partition's progress, so a retry repeats little.
TASK_RETRIES = 3


# The stages of one process that use the cluster this module started: the last to leave stops it,
# so two stages running at once (e.g. on a thread task runner) never pull it from under each other.
_lock = threading.Lock()
_users = 0


class EngineError(RuntimeError):
    """A Ray task failed: its worker died more often than it is retried, or it raised."""


@contextmanager
def ray_cluster(cpus: int) -> Iterator[int]:
    """Connected to a Ray cluster for the block; yields its CPU count. `cpus` sizes a local
    cluster (0: this host's cores) and is ignored where RAY_ADDRESS names one."""
    import ray

    global _users
    with _lock:
        borrowed = ray.is_initialized() and _users == 0  # a caller's own (a test's, a Prefect RayTaskRunner's)
        if not borrowed:
            if _users == 0:
                given = os.environ.get("RAY_ADDRESS")
                ray.init(
                    address=given or None,
                    num_cpus=None if given else (cpus or os.cpu_count() or 1),
                    include_dashboard=False,
                    logging_level="WARNING",
                    log_to_driver=True,  # a task's traceback reaches the stage's own log
                )
            _users += 1
    try:
        yield _cluster_cpus(ray)
    finally:
        if not borrowed:
            with _lock:
                _users -= 1
                if _users == 0:
                    ray.shutdown()


def _cluster_cpus(ray: Any) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def partitions(items: Sequence[Item], cpus: int) -> list[list[Item]]:
    """Consecutive runs of `items`, at most PARTITIONS_PER_CPU per CPU, none empty."""
    if not items:
        return []
    size = math.ceil(len(items) / min(len(items), PARTITIONS_PER_CPU * cpus))
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def map_partitions(function: Callable[..., Any], arguments: Sequence[tuple]) -> list[Any]:
    """`function(*args)` for each entry of `arguments`, as Ray tasks of one CPU each; results in
    order. Call inside ray_cluster. `function` must live at a module's top level, so that the
    workers import it instead of unpickling its code."""
    import ray

    remote = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(function)
    pending = [remote.remote(*args) for args in arguments]
    try:
        return ray.get(pending)
    except ray.exceptions.RayError as error:
        for task in pending:
            ray.cancel(task)
        # A task that raised is not retried (a bug or a full disk would raise again); a lost worker is, TASK_RETRIES times.
        why = "raised" if isinstance(error, ray.exceptions.RayTaskError) else f"lost its worker more than {TASK_RETRIES} times"
        raise EngineError(
            f"A Ray task of {function.__module__}.{function.__name__} {why}: {error}. Rerun the same command: validate "
            "keeps every file its partitions finished; shard writes its shards again."
        ) from error
