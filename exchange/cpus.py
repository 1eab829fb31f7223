"""Pinning processes to CPUs: a bid server alone on its core should keep its caches and
is never moved between cores mid-request; its settlement process and whatever else runs
on the machine use the others (bench.tuning: `pinned`, +16% RPS and -13% server CPU
per request at the median here)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable


def available() -> set[int] | None:
    """The CPUs this process may run on; None where the OS cannot pin (not Linux)."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None


def pin_process(cpus: Iterable[int]) -> None:
    """Run every thread of this process, and every thread or process it starts later,
    on `cpus` only."""
    wanted = set(cpus)
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task), wanted)


def share(cpus: tuple[int, ...], index: int) -> tuple[int, ...]:
    """Worker `index`'s CPU out of `cpus` (round robin); () when none are set."""
    return (cpus[index % len(cpus)],) if cpus else ()
