"""`make run` starts a working exchange (installing the project first if it must)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0  # the first `make run` may create the venv and pip install
STOP_TIMEOUT_S = 20.0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_group(process: subprocess.Popen, log_path: Path) -> None:
    """SIGTERM the whole process group (make, its shell, the server) and wait for all."""
    pgid = process.pid  # start_new_session: the group is led by make
    if _group_alive(pgid):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(STOP_TIMEOUT_S)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _group_alive(pgid) or process.poll() is None:
        os.killpg(pgid, signal.SIGKILL)
        process.wait()
        pytest.fail(
            f"`make run` did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM; killed it.\n"
            f"its output:\n{log_path.read_text(errors='replace')}"
        )


@pytest.mark.skipif(shutil.which("make") is None, reason="`make` is not on PATH")
def test_make_run_serves_grpc_and_http(tmp_path):
    ports_file = tmp_path / "ports.json"
    log_path = tmp_path / "make-run.log"
    args = shlex.join(
        [
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--db",
            str(tmp_path / "x.db"),
            "--ports-file",
            str(ports_file),
        ]
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["make", "run", f"ARGS={args}"],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        ports = None
        while ports is None:
            if process.poll() is not None:
                pytest.fail(
                    f"`make run` exited with status {process.returncode} before listening.\n"
                    f"its output:\n{log_path.read_text(errors='replace')}"
                )
            try:
                ports = json.loads(ports_file.read_bytes())
            except (FileNotFoundError, ValueError):  # not there yet, or half written
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"`make run` wrote no ports file within {START_TIMEOUT_S:.0f} s.\n"
                        f"its output:\n{log_path.read_text(errors='replace')}"
                    )
                time.sleep(0.05)

        with grpc.insecure_channel(f"127.0.0.1:{ports['grpc']}") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=10
            )
        assert health.status == health_pb2.HealthCheckResponse.SERVING

        response = httpx.get(f"http://127.0.0.1:{ports['http']}/healthz", timeout=10)
        assert response.status_code == 200
        body = response.json()
        assert (body["status"], body["campaigns"], body["ledger"]["trades"]) == ("ok", 400, 0)
    finally:
        _stop_group(process, log_path)
