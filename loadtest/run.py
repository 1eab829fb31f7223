"""`make loadtest`: locust, headless, against an exchange it starts (or one you name).

    python -m loadtest.run [--seconds 30] [--users 16] [--grpc H:P --http URL] [--out DIR]

Writes locust's CSV files and HTML report to `--out` (var/loadtest) and prints a
summary: requests per second, failure rate and p50/p95/p99 as locust saw them (whole
milliseconds, client queueing included), and the server's own p50/p99 of the same
period from `GET /metrics` (sub-millisecond, what the server adds). The last line is
one JSON object. Exit status 1 if any request failed unexpectedly.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
from tqdm import tqdm

from bench.server import server_metrics
from exchange.metrics import BidMetrics

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def exchange_running():
    """A fresh exchange (embedded defaults, a temporary ledger) on free ports."""
    from bench.scaleout import running_server

    with (
        tempfile.TemporaryDirectory(prefix="attnx-loadtest-") as tmp,
        running_server(Path(tmp)) as (grpc_target, _pid),
    ):
        ports = orjson.loads((Path(tmp) / "ports.json").read_bytes())
        yield grpc_target, f"http://127.0.0.1:{ports['http']}"


def _watch(locust: subprocess.Popen, http: str, before: BidMetrics, seconds: int) -> None:
    """A progress bar while locust runs (on a terminal): seconds done, the bids the server
    answered in the last second, and its p99 so far, from its /metrics."""
    started, last = time.monotonic(), before
    shape = "{l_bar}{bar}| {n}/{total} s{postfix}"
    with tqdm(total=seconds, desc="load test", bar_format=shape, disable=None) as bar:
        while locust.poll() is None:
            time.sleep(1)
            try:
                now = server_metrics(http)
            except httpx.HTTPError:  # the server is stopping or busy: the bar waits
                continue
            p99 = now.since(before).stages["total"].quantile(0.99) * 1e3
            bar.set_postfix(bids_per_s=now.since(last).stages["total"].count, p99_ms=f"{p99:.2f}")
            bar.update(min(seconds, round(time.monotonic() - started)) - bar.n)
            last = now


def run_locust(grpc_target: str, http: str, args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    before = server_metrics(http)
    env = {**os.environ, "ATTNX_GRPC": grpc_target, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable, "-m", "locust", "-f", str(REPO / "loadtest" / "locustfile.py"),
        "--headless", "--users", str(args.users), "--spawn-rate", str(args.users),
        "--run-time", f"{args.seconds}s", "--host", http, "--csv", str(out / "locust"),
        "--html", str(out / "locust.html"), "--only-summary", "--exit-code-on-error", "0",
    ]  # fmt: skip
    locust = subprocess.Popen(command, env=env, cwd=REPO)
    _watch(locust, http, before, args.seconds)
    if locust.wait() != 0:
        raise SystemExit(f"loadtest: locust exited with status {locust.returncode}")
    during = server_metrics(http).since(before)
    server = during.stages["total"]
    with (out / "locust_stats.csv").open() as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    total = rows["Aggregated"]
    refused = sum(int(r["Request Count"]) for n, r in rows.items() if "invalid: refused" in n)
    requests, failures = int(total["Request Count"]), int(total["Failure Count"])
    notices = {  # per kind, over both protocols ("Notify win", "GET /notice/win")
        kind: sum(
            int(r["Request Count"])
            for n, r in rows.items()
            if n in (f"Notify {kind}", f"GET /notice/{kind}")
        )
        for kind in ("win", "bill", "loss", "attention")
    }
    return {
        "loadtest": "attnx",
        "seconds": args.seconds,
        "users": args.users,
        "requests": requests,
        "failures": failures,
        "failure_rate": round(failures / max(requests, 1), 5),
        "invalid_refused": refused,
        "notices": notices,
        "rps": round(float(total["Requests/s"]), 1),
        "locust_p50_ms": float(total["50%"]),
        "locust_p95_ms": float(total["95%"]),
        "locust_p99_ms": float(total["99%"]),
        "server_bids": server.count,
        "server_p50_ms": round(server.quantile(0.5) * 1e3, 3),
        "server_p99_ms": round(server.quantile(0.99) * 1e3, 3),
        "server_invalid": during.outcomes["invalid"],
        "report": str(out / "locust.html"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--grpc", help="host:port of a running exchange (else one is started)")
    parser.add_argument("--http", help="its HTTP base, http://host:port")
    parser.add_argument("--out", default="var/loadtest", help="where locust's files go")
    args = parser.parse_args()
    if bool(args.grpc) != bool(args.http):
        sys.exit("loadtest: give both --grpc and --http, or neither (one is started)")
    if args.grpc:
        summary = run_locust(args.grpc, args.http, args)
    else:
        with exchange_running() as (grpc_target, http):
            summary = run_locust(grpc_target, http, args)
    print(
        f"{summary['requests']} requests in {args.seconds} s ({summary['rps']}/s), "
        f"{summary['failures']} failed, {summary['invalid_refused']} invalid ones refused as "
        f"they must be; notices {summary['notices']}; locust p50/p95/p99 "
        f"{summary['locust_p50_ms']:.0f}/"
        f"{summary['locust_p95_ms']:.0f}/{summary['locust_p99_ms']:.0f} ms; the server's own "
        f"p50/p99 {summary['server_p50_ms']:.3f}/{summary['server_p99_ms']:.3f} ms; "
        f"report: {summary['report']}"
    )
    print(orjson.dumps(summary).decode())
    sys.exit(1 if summary["failures"] else 0)


if __name__ == "__main__":
    main()
