"""Run the exchange: gRPC and HTTP front ends on one event loop (uvloop).

The process is warm before it listens. SIGINT/SIGTERM stop it gracefully:
in-flight calls get a grace period and every queued write is committed.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson
import uvicorn
import uvloop

from exchange.app import Exchange
from exchange.config import Config
from exchange.grpc_api import start_grpc
from exchange.http_api import create_app

log = logging.getLogger("attnx")

GRACE_SECONDS = 5.0


async def serve(config: Config, ports_file: Path | None = None) -> None:
    exchange = Exchange(config)
    exchange.attach(asyncio.get_running_loop())
    log.info(
        "warmed up in %.2f s (%d campaigns, %d creatives, scorer: %s)",
        exchange.warm_up(),
        len(exchange.book),
        len(exchange.book.index),
        exchange.scorer.name,
    )
    grpc_server, grpc_port = await start_grpc(exchange, config.server.grpc)
    host, _, port = config.server.http.rpartition(":")
    http = uvicorn.Server(
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
    http_task = asyncio.create_task(http.serve())
    while not http.started:
        if http_task.done():  # uvicorn could not bind; it has logged why
            await grpc_server.stop(0)
            exchange.close()
            raise SystemExit(f"cannot listen for HTTP on {config.server.http}")
        await asyncio.sleep(0.01)
    http_port = http.servers[0].sockets[0].getsockname()[1]
    grpc_host = config.server.grpc.rpartition(":")[0]
    log.info(
        "gRPC listening on %s:%d (attnx.v1.Exchange, attnx.v1.Admin, health, reflection)",
        grpc_host,
        grpc_port,
    )
    log.info(
        "HTTP listening on http://%s:%d (POST /openrtb2/auction, GET /notice/*, /healthz)",
        host,
        http_port,
    )
    log.info("ledger file: %s", config.store.sqlite)
    if ports_file is not None:
        ports_file.write_bytes(orjson.dumps({"grpc": grpc_port, "http": http_port}))
    try:
        await http_task  # returns when uvicorn has handled SIGINT/SIGTERM
    finally:
        log.info("stopping: draining calls for up to %.0f s", GRACE_SECONDS)
        await grpc_server.stop(GRACE_SECONDS)
        exchange.close()
        log.info("stopped; all queued writes committed")


def run(config: Config, ports_file: Path | None = None) -> None:
    uvloop.run(serve(config, ports_file))
