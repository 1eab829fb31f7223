"""Pinning: the bid server on its CPU, its settlement process on another."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from exchange.cpus import share
from tests.conftest import processes


def allowed_cpus(proc: Path) -> str:
    """What a process's (or a thread's) /proc folder says it may run on: "0", "0-1"."""
    status = (proc / "status").read_text()
    return re.search(r"^Cpus_allowed_list:\s*(\S+)$", status, re.M)[1]


def settler_of(pid: int) -> int | None:
    """The settlement process that server `pid` started (None while there is none)."""
    found = processes(b"exchange.settler", parent=pid)
    return found[0] if found else None


def test_workers_take_the_configured_cpus_in_turn():
    assert [share((2, 3), i) for i in range(3)] == [(2,), (3,), (2,)]
    assert share((), 5) == ()


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin two processes apart"
)
def test_a_pinned_server_and_its_settlement_process_run_on_their_own_cpus(start_server, tmp_path):
    server_cpu, settler_cpu = sorted(os.sched_getaffinity(0))[:2]
    config = tmp_path / "attnx.toml"
    config.write_text(f"[server]\ncpus = [{server_cpu}]\n[settlement]\ncpus = [{settler_cpu}]\n")
    server = start_server("--config", str(config))
    pid = server.process.pid
    threads = list(Path(f"/proc/{pid}/task").iterdir())  # gRPC's and the loop's threads too
    assert len(threads) > 1
    assert {allowed_cpus(thread) for thread in threads} == {str(server_cpu)}
    assert allowed_cpus(Path(f"/proc/{settler_of(pid)}")) == str(settler_cpu)
    server.assert_graceful_exit()


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin the server to one of them"
)
def test_a_settlement_process_with_no_cpus_of_its_own_keeps_all_even_when_restarted(
    start_server, tmp_path
):
    everything = allowed_cpus(Path("/proc/self"))
    server_cpu = min(os.sched_getaffinity(0))
    config = tmp_path / "attnx.toml"
    config.write_text(f"[server]\ncpus = [{server_cpu}]\n")
    server = start_server("--config", str(config))
    pid = server.process.pid
    assert allowed_cpus(Path(f"/proc/{pid}")) == str(server_cpu)
    first = settler_of(pid)
    assert allowed_cpus(Path(f"/proc/{first}")) == everything
    os.kill(first, signal.SIGKILL)  # the server starts another, after it pinned itself
    deadline, seen = time.monotonic() + 60, None
    while time.monotonic() < deadline:  # it pins itself as it starts, before it is ready
        settler = settler_of(pid)
        if settler not in (None, first):
            seen = allowed_cpus(Path(f"/proc/{settler}"))
            if seen == everything:
                break
        time.sleep(0.1)
    assert seen == everything, f"the restarted settlement process runs on {seen}"
    server.assert_graceful_exit()
