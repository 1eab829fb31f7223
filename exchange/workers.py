"""`attnx serve --workers N`: N bid-server processes behind one gRPC and one HTTP port.

One Python process answers a few thousand requests a second; more need more
processes. The parent migrates the database once, picks the ports, and starts N
workers as fresh interpreters (spawned before any gRPC server, ONNX session or
Numba kernel exists, so none is shared across a fork). Each worker is a whole
exchange with its own journal and settlement process; it warms up, then listens
with SO_REUSEPORT, and the kernel spreads new connections over the workers.
Budgets are shared through the budget bank, so N > 1 needs `[state] url =
"redis://..."`. The parent writes the ports file once every worker listens,
forwards SIGINT/SIGTERM, restarts a worker that dies (its successor recovers the
journal first), and exits when all have drained their calls and committed their
trades.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import orjson

from exchange.config import Config, ConfigError
from exchange.cpus import share
from exchange.db import Database
from exchange.lifeline import stop_with_parent
from exchange.server import reuse_port_socket, write_atomically

log = logging.getLogger("attnx.workers")

POLL_S = 0.05


def check_workers(config: Config, workers: int) -> None:
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    if workers > 1 and config.state.url == "memory":
        raise ConfigError(
            f"--workers {workers} needs shared budgets: set [state] url = "
            '"redis://host:6379/0" (with in-memory budgets every worker would spend '
            "every budget in full)"
        )


def _pick_ports(config: Config) -> tuple[Config, list[socket.socket]]:
    """Concrete ports for addresses that ask for port 0. The parent holds each one bound
    (with SO_REUSEPORT, not listening) until the workers listen on it."""
    held, server = [], config.server
    for name in ("grpc", "http"):
        address = getattr(server, name)
        host, _, port = address.rpartition(":")
        if int(port) == 0:
            sock = reuse_port_socket(address)
            held.append(sock)
            server = replace(server, **{name: f"{host}:{sock.getsockname()[1]}"})
    return replace(config, server=server), held


def worker_journal(journal: str, index: int) -> str:
    """Each worker journals into its own folder beside the configured one."""
    return f"{journal}-w{index}"


def _worker(config: Config, index: int, ready: Path) -> None:
    from exchange.server import run

    stop_with_parent(multiprocessing.parent_process().pid)  # a killed supervisor leaves none

    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s worker{index} %(name)s: %(message)s",
    )
    run(config, ready, reuse_port=True)


def run_workers(config: Config, workers: int, ports_file: Path | None = None) -> int:
    """Start the workers and wait for them; returns the exit status for the command."""
    check_workers(config, workers)
    Database(config.store.url).migrate()  # once, before N processes would race to it
    config, held = _pick_ports(config)
    stopping = False

    def forward(signum: int, _frame) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: the worker drains and commits

    context = multiprocessing.get_context("spawn")
    processes: list[multiprocessing.Process] = []
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    with tempfile.TemporaryDirectory(prefix="attnx-workers-") as tmp:
        ready = [Path(tmp) / f"w{i}.json" for i in range(workers)]

        def spawn(i: int) -> multiprocessing.Process:
            own = replace(  # its journal, and its CPUs out of those configured
                config,
                store=replace(config.store, journal=worker_journal(config.store.journal, i)),
                server=replace(config.server, cpus=share(config.server.cpus, i)),
                settlement=replace(config.settlement, cpus=share(config.settlement.cpus, i)),
            )
            process = context.Process(target=_worker, args=(own, i, ready[i]), name=f"w{i}")
            process.start()
            return process

        processes += [spawn(i) for i in range(workers)]
        while not all(r.exists() for r in ready):
            dead = [p for p in processes if p.exitcode is not None]
            if dead or stopping:
                forward(signal.SIGTERM, None)
                for p in processes:
                    p.join()
                log.error("a worker exited before it listened (%s); stopped the others", dead)
                return 1
            time.sleep(POLL_S)
        for sock in held:
            sock.close()
        ports = orjson.loads(ready[0].read_bytes())
        log.info("%d workers listening: gRPC %d, HTTP %d", workers, ports["grpc"], ports["http"])
        if ports_file is not None:
            write_atomically(ports_file, orjson.dumps(ports))
        while not stopping or any(p.is_alive() for p in processes):
            for i, p in enumerate(processes):
                if p.exitcode is not None and not stopping:  # the others go on serving
                    log.error("worker %s exited with status %s: starting another (it books "
                              "its journal's trades first)", p.name, p.exitcode)  # fmt: skip
                    ready[i].unlink(missing_ok=True)
                    processes[i] = spawn(i)
            time.sleep(POLL_S * 4)
    return max((p.exitcode or 0) for p in processes)
