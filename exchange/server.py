"""Run the exchange: gRPC and HTTP front ends on one event loop (uvloop).

The process is warm before it listens. SIGINT/SIGTERM stop it gracefully:
in-flight calls get a grace period and every queued write is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from pathlib import Path

import orjson
import uvicorn
import uvloop

from exchange.app import Exchange
from exchange.config import Config
from exchange.cpus import pin_process
from exchange.grpc_api import start_grpc
from exchange.http_api import create_app

log = logging.getLogger("attnx")

GRACE_SECONDS = 5.0


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: `serve` owns SIGINT/SIGTERM.

    uvicorn re-raises the signal it caught after shutting down, which would kill
    the process before the gRPC drain and the store's final commit.
    """

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def reuse_port_socket(address: str) -> socket.socket:
    """A TCP socket bound with SO_REUSEPORT: worker processes bind the same port and the
    kernel spreads new connections over those that listen."""
    host, _, port = address.rpartition(":")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host.strip("[]"), int(port)))
    return sock


async def _start_http(
    exchange: Exchange, address: str, reuse_port: bool = False
) -> tuple[_HttpServer, asyncio.Task, int]:
    host, _, port = address.rpartition(":")
    http = _HttpServer(
        uvicorn.Config(
            create_app(exchange),
            host=host,
            port=int(port),
            lifespan="off",
            access_log=False,
            log_level="warning",
            loop="none",
        )
    )
    sockets = [reuse_port_socket(address)] if reuse_port else None
    task = asyncio.create_task(http.serve(sockets=sockets))
    while not http.started:
        if task.done():  # uvicorn could not bind; it has logged why
            raise OSError(f"cannot listen for HTTP on {address}")
        await asyncio.sleep(0.01)
    return http, task, http.servers[0].sockets[0].getsockname()[1]


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def serve(config: Config, ports_file: Path | None = None, reuse_port: bool = False) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    exchange = Exchange(config)  # starts the settlement process on its own CPUs
    if config.server.cpus:  # every thread so far, and every one started later
        pin_process(config.server.cpus)
    await exchange.start()
    log.info(
        "warmed up in %.2f s (%d campaigns, %d creatives, scorer: %s)",
        exchange.warm_up(),
        len(exchange.book),
        len(exchange.book.index),
        exchange.scorer.name,
    )
    if config.server.gc_freeze:
        gc.collect()
        gc.freeze()
    grpc_server = http = http_task = None
    try:
        grpc_server, grpc_port = await start_grpc(exchange, config.server.grpc, reuse_port)
        http, http_task, http_port = await _start_http(exchange, config.server.http, reuse_port)
        grpc_host = config.server.grpc.rpartition(":")[0]
        http_host = config.server.http.rpartition(":")[0]
        if not config.server.public_url:  # notice URLs must name the port actually bound
            exchange.set_notice_url(f"http://{http_host}:{http_port}")
        log.info(
            "gRPC listening on %s:%d (attnx.v1.Exchange, attnx.v1.Admin, health, reflection)",
            grpc_host,
            grpc_port,
        )
        log.info(
            "HTTP listening on http://%s:%d "
            "(POST /openrtb2/auction, GET /notice/*, /healthz, /metrics)",
            http_host,
            http_port,
        )
        log.info(
            "ledger: %s; journal: %s; notice URLs: %s",
            config.store.url,
            config.store.journal,
            exchange.auction.settings.notice_url,
        )
        if ports_file is not None:
            write_atomically(ports_file, orjson.dumps({"grpc": grpc_port, "http": http_port}))
        await stop.wait()
    finally:
        log.info("stopping: draining calls for up to %.0f s", GRACE_SECONDS)
        if http is not None:
            http.should_exit = True
        if grpc_server is not None:
            await grpc_server.stop(GRACE_SECONDS)
        if http_task is not None:
            await http_task
        await exchange.close()
        log.info("stopped; all queued writes committed")


def run(config: Config, ports_file: Path | None = None, reuse_port: bool = False) -> None:
    uvloop.run(serve(config, ports_file, reuse_port))
