"""Kill what a process started once that process dies, however it dies (SIGKILL included).

    python infra/local/reaper.py OWNER_PID [--descendants] [--pid-dir DIR]

--descendants: every process descended from OWNER_PID, remembered from the moment it is seen
    (twice a second), so a server whose launcher exited, or that put itself in its own session,
    is still known. The test suite starts one for itself (tests/conftest.py).
--pid-dir: the process groups led by the pids in DIR/*.pid (infra/local/services.sh with
    STACK_OWNER_PID set). With only this, the reaper also exits once every group is gone
    (`services.sh stop` ran).

On the owner's death: SIGTERM to everything, up to GRACE_SECONDS to exit, then SIGKILL.
Standard library only, Linux (/proc, pidfd). A pidfd never confuses the owner with a later
process that reuses its pid, and each remembered process is checked against its start time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import time
from pathlib import Path

GRACE_SECONDS = 10.0
TICK_SECONDS = 0.5


def processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time in clock ticks) of every live process; zombies are dead."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            if fields[0] != "Z":
                table[int(entry)] = (int(fields[1]), int(fields[19]))  # fields 4 and 22 of proc(5)
    return table


def remember_descendants(owner: int, known: dict[int, int]) -> None:
    """Add every live descendant of `owner` or of an already known process; drop the dead."""
    table = processes()
    for pid, start in list(known.items()):
        if table.get(pid, (0, -1))[1] != start:
            del known[pid]
    grew = True
    while grew:
        grew = False
        for pid, (parent, start) in table.items():
            if pid not in known and pid != os.getpid() and (parent == owner or parent in known):
                known[pid] = start
                grew = True


def group_leaders(pid_dir: Path) -> list[int]:
    leaders = []
    for pid_file in pid_dir.glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            leaders.append(int(pid_file.read_text().strip()))
    return leaders


def signal_all(sig: int, known: dict[int, int], leaders: list[int]) -> bool:
    """Send `sig`; True while anything is left alive."""
    alive = False
    for leader in leaders:
        if _group_alive(leader):
            alive = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(leader, sig)
    table = processes()
    for pid, start in known.items():
        if table.get(pid, (0, -1))[1] == start:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
                alive = True
    return alive


def wait_for_owner(owner: int, tick) -> None:
    """Return when `owner` has exited, calling tick() about twice a second meanwhile; tick
    returning True stops the wait too."""
    try:
        handle = os.pidfd_open(owner)
    except ProcessLookupError:
        return
    with contextlib.closing(_Fd(handle)):
        while not select.select([handle], [], [], TICK_SECONDS)[0]:
            if tick():
                raise SystemExit(0)


class _Fd:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        os.close(self.fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("owner", type=int)
    parser.add_argument("--descendants", action="store_true")
    parser.add_argument("--pid-dir", type=Path)
    args = parser.parse_args()
    known: dict[int, int] = {}
    seen_groups = False

    def tick() -> bool:
        nonlocal seen_groups
        if args.descendants:
            remember_descendants(args.owner, known)
            return False
        alive = any(_group_alive(leader) for leader in group_leaders(args.pid_dir))
        seen_groups = seen_groups or alive
        return seen_groups and not alive

    wait_for_owner(args.owner, tick)
    if args.descendants:
        remember_descendants(args.owner, known)
    leaders = group_leaders(args.pid_dir) if args.pid_dir else []
    deadline = time.monotonic() + GRACE_SECONDS
    alive = signal_all(signal.SIGTERM, known, leaders)
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = signal_all(0, known, leaders)
    signal_all(signal.SIGKILL, known, leaders)


def _group_alive(leader: int) -> bool:
    return any(_same_group(pid, leader) for pid in processes())


def _same_group(pid: int, leader: int) -> bool:
    try:
        return os.getpgid(pid) == leader
    except OSError:
        return False


if __name__ == "__main__":
    main()
