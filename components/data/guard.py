"""Per-file work in worker processes that no single file can take down.

pebble's ProcessPool gives every file its own deadline, and replaces a worker that dies (a
decoder crash, the kernel's OOM killer, a missed deadline) while failing only the file that
worker held; a concurrent.futures pool breaks as a whole instead. Each worker also caps its own
address space, so a file whose decode needs more than the budget fails with MemoryError inside
its worker rather than taking the machine's memory. Validate, shard and predict all decode here.
"""

from __future__ import annotations

import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from multiprocessing import get_context
from typing import Any

from pebble import ProcessExpired, ProcessPool

from components.data.images import UnusableImage


@dataclass(frozen=True)
class Outcome:
    """What one job gave: its value, or the reason it failed (then value is None)."""

    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class Guard:
    """A pool of guarded workers and the per-file deadline they run under."""

    pool: ProcessPool
    workers: int
    timeout_seconds: float

    def map(self, function: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Outcome]:
        """One Outcome per job, in job order. Only a few jobs are in flight at once, so a caller
        can record each result as it arrives, and memory stays flat however many jobs there are."""
        jobs = iter(jobs)
        pending = deque(self._schedule(function, job) for job in islice(jobs, 4 * self.workers))
        while pending:
            outcome = _outcome(pending.popleft(), self.timeout_seconds)
            pending.extend(self._schedule(function, job) for job in islice(jobs, 1))
            yield outcome

    def _schedule(self, function: Callable[[Any], Any], job: Any) -> Any:
        return self.pool.schedule(function, args=(job,), timeout=self.timeout_seconds)


@contextmanager
def guarded(workers: int, timeout_seconds: float, memory_mb: int) -> Iterator[Guard]:
    workers = max(1, workers)
    # forkserver, not fork: the caller may already hold TensorFlow's threads, which fork would
    # corrupt. Workers fork from a clean server process that imported the decoders once, where
    # spawn started a fresh interpreter per worker, and per replaced worker, importing them again.
    context = get_context("forkserver")
    context.set_forkserver_preload(["components.data.images"])
    pool = ProcessPool(max_workers=workers, initializer=_cap_memory, initargs=(memory_mb,), context=context)
    try:
        yield Guard(pool, workers, timeout_seconds)
    finally:
        pool.stop()
        pool.join()


def _outcome(future: Any, timeout_seconds: float) -> Outcome:
    try:
        return Outcome(value=future.result())
    except UnusableImage as error:
        return Outcome(error=str(error))
    except TimeoutError:
        return Outcome(error=f"timed out: over the per-file budget of {timeout_seconds:g} s (data.decode_timeout_seconds)")
    except ProcessExpired as error:
        return Outcome(error=f"worker died ({_exit_status(error.exitcode)}); the worker was replaced")
    except MemoryError:
        return Outcome(error="out of memory: over the per-file budget (data.decode_memory_mb)")
    except BrokenProcessPool:
        raise  # workers that cannot even start are the machine's problem, not this file's
    except Exception as error:  # any other failure of one job is that job's reason, never the run's
        return Outcome(error=f"{type(error).__name__}: {error}")


def _exit_status(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        return f"killed by {name}" + (", e.g. by the kernel's OOM killer" if name == "SIGKILL" else "")
    return f"exit code {code}"


def _cap_memory(memory_mb: int) -> None:
    """The budget comes on top of what the worker holds once started (interpreter, Pillow, numpy),
    so it bounds what decoding one file may add."""
    try:
        import resource

        with open("/proc/self/statm") as statm:
            current = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = current + memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    except (ImportError, OSError, ValueError):
        pass  # not Linux: the deadline and the death handling still apply, the memory cap does not
