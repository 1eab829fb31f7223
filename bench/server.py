"""The bid server against the limit of its own stack: a bare gRPC echo server.

    python -m bench.server [--seconds 8] [--concurrency 64] [--campaigns 10000]

Workload, in one run, one after the other on this machine:
  (a) echo: a grpc.aio server on uvloop with the server's options, implementing
      `attnx.v1.Exchange/Bid` by returning one fixed, pre-encoded BidResponse;
  (b) attnx: `attnx serve` on embedded defaults (the shipped model on ONNX Runtime,
      a SQLite ledger, its journal) with `--campaigns` generated demo campaigns.
The same load generator (grpc.aio in its own process: bench.scaleout's, every request
a new id from 50k users) drives each at `--concurrency` calls in flight (saturation)
and then at 1 in flight (the round trip). For attnx the server's own per-stage
p50/p99 at 1 in flight come from its `GET /metrics`: where the time goes. On 2 cores
the generator shares the machine with the server, so the echo figure is partly the
generator's limit: the ratio is a lower bound of how close attnx comes to its stack.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson

from bench.scaleout import drive, running_server
from exchange.metrics import BidMetrics


def _echo_response() -> bytes:
    from google.protobuf import json_format

    from protos.attnx.v1 import openrtb_pb2

    bid = {"id": "e1d58dcef6efeec320355891", "impid": "1", "price": 1.835, "adm": "<div/>",
           "adomain": ["echo.example"], "cid": "echo", "crid": "echo-b", "w": 300,
           "h": 250}  # fmt: skip
    body = {"id": "echo", "cur": "USD", "seatbid": [{"seat": "seat-1", "bid": [bid]}]}
    return json_format.ParseDict(body, openrtb_pb2.BidResponse()).SerializeToString()


async def _serve_echo(ports_file: Path) -> None:
    import grpc

    response = _echo_response()

    async def bid(request: bytes, context) -> bytes:
        return response

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 256 * 1024)])
    handler = grpc.method_handlers_generic_handler(
        "attnx.v1.Exchange", {"Bid": grpc.unary_unary_rpc_method_handler(bid)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ports_file.write_text(json.dumps({"grpc": port}))
    await server.wait_for_termination()


@contextmanager
def echo_server(folder: Path):
    ports = folder / "echo.json"
    process = subprocess.Popen([sys.executable, "-m", "bench.server", "--serve-echo", str(ports)])
    try:
        while not ports.exists():
            if process.poll() is not None:
                raise RuntimeError("the echo server did not start")
            time.sleep(0.05)
        yield f"127.0.0.1:{json.loads(ports.read_text())['grpc']}"
    finally:
        process.terminate()
        process.wait(10)


def server_metrics(http: str) -> BidMetrics:
    return BidMetrics.parse(httpx.get(f"{http}/metrics", timeout=10).text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--campaigns", type=int, default=10_000)
    parser.add_argument("--serve-echo", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        import uvloop

        uvloop.run(_serve_echo(args.serve_echo))
        return

    results = {}
    with tempfile.TemporaryDirectory(prefix="attnx-bench-server-") as tmp:
        folder = Path(tmp)
        with echo_server(folder) as target:
            results["echo"] = {
                "saturation": drive(target, args.concurrency, args.seconds),
                "low": drive(target, 1, args.seconds),
            }
        cfg = folder / "attnx.toml"
        cfg.write_text(f"[campaigns]\ndemo_count = {args.campaigns}\n")
        with running_server(folder, "--config", str(cfg)) as (target, _pid):
            http = f"http://127.0.0.1:{orjson.loads((folder / 'ports.json').read_bytes())['http']}"
            saturation = drive(target, args.concurrency, args.seconds)
            before = server_metrics(http)
            low = drive(target, 1, args.seconds)
            at_low = server_metrics(http).since(before)
        stages = {}
        for stage, h in at_low.stages.items():
            stages[stage] = {
                "p50_us": round(h.quantile(0.5) * 1e6, 1),
                "p99_us": round(h.quantile(0.99) * 1e6, 1),
            }
        results["attnx"] = {"saturation": saturation, "low": low, "server_stages_low": stages}
    for name, r in results.items():
        print(
            f"{name:<6} saturation {r['saturation']['rps']:>7.1f} RPS at {args.concurrency} in "
            f"flight; 1 in flight: {r['low']['rps']:.0f} RPS, round trip p50 "
            f"{r['low']['p50_us'] / 1000:.2f} ms, p99 {r['low']['p99_us'] / 1000:.2f} ms"
        )
    print("attnx, 1 in flight, inside the server (p50/p99 µs): " + ", ".join(
        f"{s} {v['p50_us']:.0f}/{v['p99_us']:.0f}" for s, v in stages.items()))  # fmt: skip
    echo_rps, attnx_rps = results["echo"]["saturation"]["rps"], saturation["rps"]
    report = {
        "bench": "server",
        "workload": {
            "seconds": args.seconds,
            "campaigns": args.campaigns,
            "users": 50_000,
            "generator": "grpc.aio, own process, same machine",
        },
        "echo_rps": echo_rps,
        "attnx_rps": attnx_rps,
        "ratio": round(attnx_rps / echo_rps, 3),
        "p50_ms": round(low["p50_us"] / 1000, 3),
        "p99_ms": round(low["p99_us"] / 1000, 3),
        "concurrency": args.concurrency,
        "setups": results,
    }
    print(orjson.dumps(report).decode())


if __name__ == "__main__":
    main()
