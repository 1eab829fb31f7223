"""The bid server against the limit of its own stack: a bare gRPC echo server.

    python -m bench.server [--seconds 8] [--concurrency 64] [--campaigns 10000]

Workload, in one run, one after the other on this machine:
  (a) echo: a server implementing `attnx.v1.Exchange/Bid` by returning one fixed,
      pre-encoded BidResponse, three ways: grpc.aio on uvloop with the server's
      options (attnx's own front end: the `echo_rps` the ratio is taken against),
      grpc.aio on asyncio's loop, and the synchronous grpc server on 16 threads;
  (b) attnx: `attnx serve` on embedded defaults (the shipped model on ONNX Runtime,
      a SQLite ledger, its journal) with `--campaigns` generated demo campaigns.
The same load generator (grpc.aio in its own process: bench.scaleout's, pre-encoded
requests from 50k users, every request a new id) drives each at `--concurrency` calls
in flight (saturation) and then at 1 in flight (the round trip). CPU time per request
at saturation is counted per process (echo; attnx's server and settlement process;
the generator): each server is one event-loop process, so its rate is at most one
core over its CPU per request, and echo µs / attnx server µs is the ratio the
arithmetic allows. For attnx the server's own per-stage p50/p99 at 1 in flight come
from its `GET /metrics`: where the time goes. With two CPUs or more, each server runs
pinned to the first and the generator (and attnx's settlement process) to the second,
so that the generator takes no time from the server it measures (`--no-pin`: the OS
places them). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import orjson

from bench.scaleout import cpu_seconds, drive, running_server, save_requests
from exchange.cpus import pin_process
from exchange.metrics import BidMetrics


def _echo_response() -> bytes:
    from google.protobuf import json_format

    from protos.attnx.v1 import openrtb_pb2

    bid = {"id": "e1d58dcef6efeec320355891", "impid": "1", "price": 1.835, "adm": "<div/>",
           "adomain": ["echo.example"], "cid": "echo", "crid": "echo-b", "w": 300,
           "h": 250}  # fmt: skip
    body = {"id": "echo", "cur": "USD", "seatbid": [{"seat": "seat-1", "bid": [bid]}]}
    return json_format.ParseDict(body, openrtb_pb2.BidResponse()).SerializeToString()


ECHO_KINDS = ("aio-uvloop", "aio-asyncio", "threads")  # the first is attnx's own set-up


def _echo_handler(asynchronous: bool):
    """`attnx.v1.Exchange/Bid` answering one fixed, pre-encoded response."""
    import grpc

    response = _echo_response()

    def bid(request: bytes, context) -> bytes:
        return response

    async def bid_async(request: bytes, context) -> bytes:
        return response

    method = grpc.unary_unary_rpc_method_handler(bid_async if asynchronous else bid)
    return grpc.method_handlers_generic_handler("attnx.v1.Exchange", {"Bid": method})


def _serve_echo(kind: str, ports_file: Path) -> None:
    """One echo server of `kind`: grpc.aio on uvloop (as attnx), on asyncio's own loop,
    or the synchronous server answering from a thread pool."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    import uvloop

    options = [("grpc.max_receive_message_length", 256 * 1024)]
    if kind == "threads":
        server = grpc.server(ThreadPoolExecutor(max_workers=16), options=options)
        server.add_generic_rpc_handlers((_echo_handler(False),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        ports_file.write_text(json.dumps({"grpc": port}))
        server.wait_for_termination()
        return

    async def serve() -> None:
        server = grpc.aio.server(options=options)
        server.add_generic_rpc_handlers((_echo_handler(True),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        ports_file.write_text(json.dumps({"grpc": port}))
        await server.wait_for_termination()

    (uvloop.run if kind == "aio-uvloop" else asyncio.run)(serve())


@contextmanager
def echo_server(folder: Path, kind: str = "aio-uvloop", cpu: int | None = None):
    """An echo server of `kind` in its own process (pinned to `cpu` if given)."""
    ports = folder / f"echo-{kind}.json"
    where = "any" if cpu is None else str(cpu)
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.server", "--serve-echo", kind, str(ports), where]
    )
    try:
        while not ports.exists():
            if process.poll() is not None:
                raise RuntimeError(f"the {kind} echo server did not start")
            time.sleep(0.05)
        yield f"127.0.0.1:{json.loads(ports.read_text())['grpc']}", process.pid
    finally:
        process.terminate()
        process.wait(10)


def server_metrics(http: str) -> BidMetrics:
    return BidMetrics.parse(httpx.get(f"{http}/metrics", timeout=10).text)


def disk_sync_us(folder: Path, writes: int = 1000, gap_s: float = 0.002) -> dict:
    """The journal's floor: p50/p99 of one O_DSYNC append of a trade-sized record on this
    disk, at a low rate (a bid at 1 in flight waits for one such sync)."""
    fd = os.open(folder / "sync-probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_DSYNC)
    took = []
    try:
        for _ in range(writes):
            started = time.perf_counter_ns()
            os.write(fd, bytes(300))
            took.append(time.perf_counter_ns() - started)
            time.sleep(gap_s)
    finally:
        os.close(fd)
    return {f"p{q}_us": round(float(np.percentile(took, q)) / 1000, 1) for q in (50, 99)}


def measure(
    target: str,
    cpu: Callable[[], dict[str, float]],
    bodies: dict[str, Path],
    seconds: float,
    concurrency: int,
    generator_cpu: int | None = None,
    http: str = "",
) -> dict:
    """One server's phases: `concurrency` in flight (saturation), with the CPU µs per
    request of each of its processes (`cpu()`: seconds so far by role) and of the
    generator; then 1 in flight, with (given its `http` base) the server's own stages
    from /metrics over that phase."""
    before = cpu()
    saturation = drive(target, concurrency, seconds, bodies["saturation"], generator_cpu)
    spent = {k: v - before.get(k, 0.0) for k, v in cpu().items()}
    served = saturation["rps"] * seconds
    cpu_us = {k: round(v / served * 1e6, 1) for k, v in spent.items()}
    cpu_us["generator"] = saturation["generator_cpu_us_per_request"]
    metrics = server_metrics(http) if http else None
    low = drive(target, 1, seconds, bodies["low"], generator_cpu)
    r = {"saturation": saturation, "cpu_us_per_request": cpu_us, "low": low}
    if metrics is not None:
        r["stages_low"] = server_metrics(http).since(metrics).stages
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--campaigns", type=int, default=10_000)
    parser.add_argument("--no-pin", action="store_true", help="let the OS place the processes")
    parser.add_argument("--serve-echo", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        kind, ports, cpu = args.serve_echo
        if cpu != "any":
            pin_process([int(cpu)])
        _serve_echo(kind, Path(ports))
        return
    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2 and not args.no_pin  # each server on one CPU, the rest on another
    args.server_cpu, args.generator_cpu = (cpus[0], cpus[1]) if pinned else (None, None)

    results = {}
    with tempfile.TemporaryDirectory(prefix="attnx-bench-server-") as tmp:
        folder = Path(tmp)
        # Request ids must not repeat within a server (a repeat is a retry): a file per phase.
        bodies = {
            "saturation": save_requests(folder / "saturation.bin", int(args.seconds * 4000)),
            "low": save_requests(folder / "low.bin", int(args.seconds * 2000)),
        }
        disk = disk_sync_us(folder)
        phases = (args.seconds, args.concurrency, args.generator_cpu)
        for kind in ECHO_KINDS:
            with echo_server(folder, kind, args.server_cpu) as (target, pid):
                results[f"echo {kind}"] = measure(
                    target, lambda pid=pid: cpu_seconds(pid, redis=False), bodies, *phases
                )
        cfg = folder / "attnx.toml"
        pins = ""
        if args.server_cpu is not None:  # its settlement process beside the generator
            pins = (
                f"[server]\ncpus = [{args.server_cpu}]\n"
                f"[settlement]\ncpus = [{args.generator_cpu}]\n"
            )
        cfg.write_text(f"[campaigns]\ndemo_count = {args.campaigns}\n{pins}")
        with running_server(folder, "--config", str(cfg)) as (target, pid):
            http = f"http://127.0.0.1:{orjson.loads((folder / 'ports.json').read_bytes())['http']}"
            r = results["attnx"] = measure(
                target, lambda: cpu_seconds(pid, redis=False), bodies, *phases, http=http
            )
        r["server_stages_low"] = stages = {
            stage: {
                "p50_us": round(h.quantile(0.5) * 1e6, 1),
                "p99_us": round(h.quantile(0.99) * 1e6, 1),
            }
            for stage, h in r.pop("stages_low").items()
        }
    for name, r in results.items():
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["cpu_us_per_request"].items()))
        print(
            f"{name:<17} saturation {r['saturation']['rps']:>7.1f} RPS at {args.concurrency} in "
            f"flight (CPU µs/request: {cpu}); 1 in flight: round trip p50 "
            f"{r['low']['p50_us'] / 1000:.2f} ms, p99 {r['low']['p99_us'] / 1000:.2f} ms"
        )
    print("attnx, 1 in flight, inside the server (p50/p99 µs): " + ", ".join(
        f"{s} {v['p50_us']:.0f}/{v['p99_us']:.0f}" for s, v in stages.items()))  # fmt: skip
    echo, attnx = results[f"echo {ECHO_KINDS[0]}"], results["attnx"]
    echo_rps, attnx_rps = echo["saturation"]["rps"], attnx["saturation"]["rps"]
    # The bound the arithmetic sets: the echo server's CPU per request over attnx's
    # server process's (each is one event-loop process: its rate is 1 / its cost).
    bound = echo["cpu_us_per_request"]["echo"] / attnx["cpu_us_per_request"]["server"]
    print(f"ratio {attnx_rps / echo_rps:.3f}; CPU bound (echo µs / attnx server µs) {bound:.3f}")
    print(f"this disk's O_DSYNC append (the durable stage's floor): p50 {disk['p50_us']:.0f} µs, "
          f"p99 {disk['p99_us']:.0f} µs")  # fmt: skip
    report = {
        "bench": "server",
        "workload": {
            "seconds": args.seconds,
            "campaigns": args.campaigns,
            "users": 50_000,
            "generator": "grpc.aio, own process, same machine",
            "pinned": {"servers": args.server_cpu, "generator_and_settler": args.generator_cpu},
        },
        "echo_rps": echo_rps,
        "attnx_rps": attnx_rps,
        "ratio": round(attnx_rps / echo_rps, 3),
        "cpu_ratio_bound": round(bound, 3),
        "p50_ms": round(attnx["low"]["p50_us"] / 1000, 3),
        "p99_ms": round(attnx["low"]["p99_us"] / 1000, 3),
        "concurrency": args.concurrency,
        "disk_sync_us": disk,
        "setups": results,
    }
    print(orjson.dumps(report).decode())


if __name__ == "__main__":
    main()
