"""A short headless locust run, as `make loadtest` does, against a server the test starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from tests.conftest import REPO_ROOT


def test_a_short_locust_run_has_no_unexpected_failure_and_refuses_the_invalid(
    start_server, tmp_path: Path
):
    server = start_server()
    run = subprocess.run(
        [sys.executable, "-m", "loadtest.run", "--seconds", "5", "--users", "4",
         "--grpc", server.grpc_target, "--http", server.http_base, "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = orjson.loads(run.stdout.strip().splitlines()[-1])
    assert summary["failures"] == 0
    assert summary["requests"] > 100, summary
    assert summary["invalid_refused"] > 0  # sent at 2%, each refused with its field named
    assert summary["server_invalid"] >= summary["invalid_refused"]  # (+ those cut at the stop)
    notices = summary["notices"]  # each kind sent, none failed
    assert all(notices[kind] > 0 for kind in ("win", "bill", "loss", "attention")), notices
    assert (
        notices["win"] > notices["bill"] > notices["attention"] and notices["win"] > notices["loss"]
    )
    assert summary["server_bids"] > 0 and 0 < summary["server_p50_ms"] <= summary["server_p99_ms"]
    assert (tmp_path / "locust.html").exists() and (tmp_path / "locust_stats.csv").exists()
