"""Bid servers scaled out: RPC/s of 1 vs 2 processes sharing budgets in Redis, and what
the Redis-backed state adds to the round trip.

    python -m bench.scaleout [--seconds 8] [--concurrency 64]

Workload: real `attnx serve` processes (the shipped model on ONNX Runtime, the 400 demo
campaigns, a SQLite ledger and journals in a temporary folder) in three set-ups, one
after another: 1 process with in-memory state, 1 process with its state in Redis
(`[state] url = redis://127.0.0.1:6379/13`: budget leases, the user store read once per
request, the trade stream and its ledger worker), and `--workers 2` on Redis. A load
generator in its own process (grpc.aio, pre-encoded requests, every request a new
id, so every win is a new trade) keeps `--concurrency` calls in flight for
`--seconds` to measure saturation RPS, then 2 in flight for the same time to measure
the round-trip p50/p99 at low load. On this 2-core machine the load generator shares
the cores with the servers, so 2 processes cannot double the rate: the figure says how
much of a second core the second worker gets; the CPU time per request of each part
(bid servers, settlement processes, ledger workers, Redis) says where the cores went.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import orjson

REDIS_URL = "redis://127.0.0.1:6379/13"
START_TIMEOUT_S = 120.0


@contextmanager
def running_server(folder: Path, *args: str):
    """`attnx serve` on ephemeral ports; yields the gRPC target, stops it gracefully."""
    ports = folder / "ports.json"
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "exchange", "serve", "--grpc", "127.0.0.1:0",
         "--http", "127.0.0.1:0", "--db", str(folder / "attnx.db"),
         "--journal", str(folder / "journal"), "--ports-file", str(ports), *args],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ports.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start; see {folder / 'server.log'}")
            time.sleep(0.1)
        yield f"127.0.0.1:{orjson.loads(ports.read_bytes())['grpc']}", process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        log.close()


def _requests(n: int) -> list[bytes]:
    """n example requests with distinct ids, from 50k users, protobuf-encoded once."""
    from google.protobuf import json_format

    from exchange.example import example_request
    from protos.attnx.v1 import openrtb_pb2

    def request(i: int) -> dict:
        body = example_request(f"load-{os.getpid()}-{i}")
        body["user"]["id"] = f"user-{i % 50_000}"  # each read from the user store
        return body

    return [
        json_format.ParseDict(request(i), openrtb_pb2.BidRequest()).SerializeToString()
        for i in range(n)
    ]


async def _drive(target: str, bodies: list[bytes], concurrency: int, seconds: float) -> dict:
    import grpc

    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        bid = channel.unary_unary("/attnx.v1.Exchange/Bid")  # bytes in, bytes out
        await bid(bodies[0], timeout=10)  # connected
        next_body = iter(range(1, len(bodies)))
        stop_at = time.perf_counter() + seconds

        async def caller() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                body = bodies[next(next_body, 0)]
                started = time.perf_counter()
                try:
                    await bid(body, timeout=10)
                    latencies.append(time.perf_counter() - started)
                except grpc.RpcError:
                    errors += 1

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    lat = np.array(latencies) * 1e6
    return {
        "rps": round(len(latencies) / elapsed, 1),
        "p50_us": round(float(np.percentile(lat, 50)), 1),
        "p99_us": round(float(np.percentile(lat, 99)), 1),
        "errors": errors,
        "generator_cpu_us_per_request": round(cpu / max(len(latencies), 1) * 1e6, 1),
    }


def drive(
    target: str,
    concurrency: int,
    seconds: float,
    bodies: Path | None = None,
    cpu: int | None = None,
) -> dict:
    """The load generator (`_drive`) in a fresh process: it needs its own core time.
    `bodies`: a file from `save_requests` (encoding them takes seconds per run);
    `cpu`: pin the generator to that CPU."""
    make = (
        f"load_requests({str(bodies)!r})" if bodies else f"_requests({int(seconds * 8000) + 1000})"
    )
    pin = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\n" if cpu is not None else ""
    script = (
        f"{pin}import asyncio, json\n"
        "from bench.scaleout import _drive, _requests, load_requests\n"
        f"bodies = {make}\n"
        f"print(json.dumps(asyncio.run(_drive({target!r}, bodies, {concurrency}, {seconds}))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def save_requests(path: Path, n: int) -> Path:
    """Encode n requests once for several `drive` runs: length-prefixed protobufs."""
    path.write_bytes(b"".join(len(b).to_bytes(4, "little") + b for b in _requests(n)))
    return path


def load_requests(path: str) -> list[bytes]:
    data, bodies, pos = Path(path).read_bytes(), [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "little")
        bodies.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return bodies


def load(target: str, concurrency: int, seconds: float) -> dict:
    """Saturation, then low load (2 in flight)."""
    return {
        "saturation": drive(target, concurrency, seconds),
        "low": drive(target, 2, seconds),
    }


ROLES = {  # a command-line word -> the role its CPU time is counted under
    b"exchange.settler": "settler",
    b"exchange.ledger_worker": "ledger_worker",
    b"redis-server": "redis",
    b"spawn_main": "server",
    b"exchange\x00serve": "server",
    b"--serve-echo": "echo",  # bench.server's echo servers
}


def cpu_seconds(root: int, redis: bool = True) -> dict[str, float]:
    """CPU time (user + system) so far of the server's process tree, by role, and of
    Redis (unless `redis` is False: a server whose state is in memory)."""
    procs = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                procs[int(entry.name)] = (
                    int(stat[1]),
                    (entry / "cmdline").read_bytes(),
                    int(stat[11]) + int(stat[12]),
                )
            except (OSError, ValueError, IndexError):
                continue
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, (ppid, _, _) in procs.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    totals: dict[str, float] = {}
    for pid, (_, cmdline, ticks) in procs.items():
        role = next((r for word, r in ROLES.items() if word in cmdline), None)
        if role is not None and (pid in tree or (redis and role == "redis")):
            totals[role] = totals.get(role, 0.0) + ticks / os.sysconf("SC_CLK_TCK")
    return totals


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    setups = {
        "memory_1": [],
        "redis_1": ["--config", "{cfg}"],
        "redis_2": ["--config", "{cfg}", "--workers", "2"],
    }
    results = {}
    for name, extra in setups.items():
        flush_redis()
        with tempfile.TemporaryDirectory(prefix="attnx-scaleout-") as tmp:
            folder = Path(tmp)
            cfg = folder / "attnx.toml"
            cfg.write_text(f'[state]\nurl = "{REDIS_URL}"\n')
            with running_server(folder, *(a.format(cfg=cfg) for a in extra)) as (target, pid):
                before = cpu_seconds(pid)
                results[name] = r = load(target, args.concurrency, args.seconds)
                after = cpu_seconds(pid)
            served = (r["saturation"]["rps"] + r["low"]["rps"]) * args.seconds
            r["cpu_us_per_request"] = {
                role: round((after[role] - before.get(role, 0.0)) / served * 1e6, 1)
                for role in sorted(after)
            }
        print(
            f"{name:<9} saturation {r['saturation']['rps']:>7.1f} RPS "
            f"(p99 {r['saturation']['p99_us'] / 1000:.1f} ms); low load p50 "
            f"{r['low']['p50_us']:.0f} µs, p99 {r['low']['p99_us']:.0f} µs, "
            f"errors {r['saturation']['errors'] + r['low']['errors']}; CPU µs per request "
            + ", ".join(f"{role} {us:.0f}" for role, us in r["cpu_us_per_request"].items())
        )
    report = {
        "bench": "scaleout",
        "workload": {
            "seconds": args.seconds,
            "concurrency": args.concurrency,
            "campaigns": 400,
            "cpus": os.cpu_count(),
        },
        "rps_1": results["redis_1"]["saturation"]["rps"],
        "rps_2": results["redis_2"]["saturation"]["rps"],
        "rps_1_memory": results["memory_1"]["saturation"]["rps"],
        "p99_us_memory": results["memory_1"]["low"]["p99_us"],
        "p99_us_redis": results["redis_1"]["low"]["p99_us"],
        "p50_us_memory": results["memory_1"]["low"]["p50_us"],
        "p50_us_redis": results["redis_1"]["low"]["p50_us"],
        "setups": results,
    }
    print(orjson.dumps(report).decode())


if __name__ == "__main__":
    main()
