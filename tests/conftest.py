"""Fixtures that run the real exchange (`python -m exchange serve`) as a subprocess.

    server        one exchange per test module (demo campaigns, its own SQLite file)
    start_server  a factory for tests that need their own: extra CLI args, a shared db
    grpc_channel  a sync gRPC channel to the module's server, ready before it is handed out

Servers listen on ephemeral ports (port 0) and report them through `--ports-file`.
Their stdout and stderr go to a log file (never a pipe that could fill up and
block the server); a server that fails to start or stop shows that log in the
failure message. Teardown stops each server with SIGTERM and checks that it
shut down gracefully (exit status 0).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import redis

from exchange.db import Database

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0  # the server drains in-flight calls for up to 5 s
POLL_S = 0.02

_launch_numbers = itertools.count(1)


@dataclass
class RunningServer:
    """One exchange subprocess and where to reach it."""

    process: subprocess.Popen
    grpc_port: int
    http_port: int
    db_path: Path
    log_path: Path
    args: list[str] = field(default_factory=list)
    signalled: bool = False

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log(self) -> str:
        """Everything the server has written to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log file)"

    def channel(self, timeout: float = 10.0) -> grpc.Channel:
        """A new sync gRPC channel to this server, connected; close it (or use `with`)."""
        return open_channel(self.grpc_target, timeout)

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        """Send `sig` once (a second SIGTERM could cut a graceful shutdown short)."""
        if not self.signalled and self.process.poll() is None:
            self.process.send_signal(sig)
            self.signalled = True

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig` (once) and wait for the exit; returns the exit status. Idempotent."""
        self.send_signal(sig)
        if self.process.returncode is None:
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                pytest.fail(
                    f"the exchange did not stop within {STOP_TIMEOUT_S:.0f} s of signal "
                    f"{signal.Signals(sig).name}; killed it. Its log:\n{self.log()}"
                )
        return self.process.returncode

    def assert_graceful_exit(self) -> None:
        """Stop the server with SIGTERM (if still running) and require exit status 0."""
        code = self.stop()
        assert code == 0, (
            f"the exchange exited with status {code} after SIGTERM, not 0 (graceful). "
            f"Its log:\n{self.log()}"
        )


def processes(*words: bytes, parent: int | None = None) -> list[int]:
    """The pids of processes whose command line has every word (and this parent)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if all(w in cmdline for w in words) and parent in (None, ppid):
                pids.append(int(entry.name))
    return pids


def journal_dir(db: Path) -> Path:
    """A server's trade journal lives beside its database: a restart on the db finds it."""
    return db.with_name(f"{db.stem}-journal")


def launch_server(workdir: Path, *extra_args: str, db_path: Path | None = None) -> RunningServer:
    """Start `python -m exchange serve` on ephemeral ports and wait until both listen."""
    workdir.mkdir(parents=True, exist_ok=True)
    n = next(_launch_numbers)
    db = db_path if db_path is not None else workdir / "attnx.db"
    ports_file = workdir / f"ports-{n}.json"
    log_path = workdir / f"server-{n}.log"
    ports_file.unlink(missing_ok=True)
    args = [
        sys.executable,
        "-m",
        "exchange",
        "serve",
        "--grpc",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--db",
        str(db),
        "--journal",
        str(journal_dir(db)),
        "--ports-file",
        str(ports_file),
        *extra_args,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ports = _wait_for_ports(process, ports_file, log_path, START_TIMEOUT_S)
    return RunningServer(process, ports["grpc"], ports["http"], db, log_path, args)


def _wait_for_ports(
    process: subprocess.Popen, ports_file: Path, log_path: Path, timeout: float
) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            pytest.fail(
                f"the exchange exited with status {code} before listening.\n"
                f"command: {' '.join(process.args)}\nits log:\n{_read(log_path)}"
            )
        try:
            ports = json.loads(ports_file.read_bytes())
            if isinstance(ports.get("grpc"), int) and isinstance(ports.get("http"), int):
                return ports
        except (FileNotFoundError, ValueError):  # not there yet, or half written
            pass
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(
                f"the exchange did not write {ports_file} within {timeout:.0f} s; killed it.\n"
                f"command: {' '.join(process.args)}\nits log:\n{_read(log_path)}"
            )
        time.sleep(POLL_S)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log file)"


def _stop_all(servers: list[RunningServer]) -> None:
    """Stop every server first, then check each: one bad exit must not leak the others."""
    for s in servers:
        s.send_signal()
    for s in servers:
        s.stop()
    for s in servers:
        s.assert_graceful_exit()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One exchange for the whole test module, on the generated demo campaigns."""
    running = launch_server(tmp_path_factory.mktemp("server"))
    yield running
    _stop_all([running])


StartServer = Callable[..., RunningServer]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """A factory: `start_server(*extra_args, db_path=None)` starts a server for this test.

    Every server it started is stopped (and checked for a graceful exit) after the
    test; a test may stop one earlier with `.stop()`, e.g. to restart on the same db.
    """
    started: list[RunningServer] = []

    def start(*extra_args: str, db_path: Path | None = None) -> RunningServer:
        running = launch_server(tmp_path, *extra_args, db_path=db_path)
        started.append(running)
        return running

    yield start
    _stop_all(started)


def open_channel(target: str, timeout: float = 10.0) -> grpc.Channel:
    """A sync insecure channel, connected (so a first call never races the connect)."""
    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        channel.close()
        pytest.fail(f"no gRPC connection to {target} within {timeout:.0f} s")
    return channel


@pytest.fixture(scope="module")
def grpc_channel(server: RunningServer) -> Iterator[grpc.Channel]:
    """A sync gRPC channel to the module's `server`."""
    channel = open_channel(server.grpc_target)
    yield channel
    channel.close()


PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema in the real PostgreSQL on 127.0.0.1:5432, dropped afterwards.

    Skipped (with the reason) where no server answers, except under CI, which starts
    one: there a missing PostgreSQL is a failure, not a skip.
    """
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_BASE, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("ATTNX_CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_BASE}: {exc}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_BASE}")
    schema = f"attnx_test_{os.getpid()}_{next(_launch_numbers)}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """A ledger database of the test's own: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        return Database(f"sqlite:///{tmp_path / 'ledger.db'}")
    return Database(request.getfixturevalue("postgres_url"))


REDIS_URL = os.environ.get("ATTNX_TEST_REDIS", "redis://127.0.0.1:6379/15")


@dataclass(frozen=True)
class RedisTarget:
    url: str
    prefix: str  # every key this test writes starts with it


@pytest.fixture
def redis_target() -> Iterator[RedisTarget]:
    """The real Redis on 127.0.0.1:6379 (database 15) and a key prefix of this test's own,
    whose keys are deleted after.

    Skipped where no server answers, except under CI, which starts one.
    """
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        if os.environ.get("ATTNX_CI"):
            pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    prefix = f"attnx-test-{os.getpid()}-{next(_launch_numbers)}"
    try:
        yield RedisTarget(REDIS_URL, prefix)
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()


NOON = 20_000 * 86_400 + 12 * 3600.0  # a fixed UTC noon, for tests that set the time


class Clock:
    """A settable clock (unix seconds) for the state and the pacing loop."""

    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class PrivateRedis:
    """A redis-server of this test's own, that it may stop and start again (keeping its
    data in a folder, as a restarted production Redis would)."""

    def __init__(self, folder: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.folder = folder
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.folder), "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        pytest.fail("the private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: Redis flushes its append-only file
            self.process.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path):
    if shutil.which("redis-server") is None:
        if os.environ.get("ATTNX_CI"):
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis Cluster of three primaries of this test run's own; yields its
    `redis+cluster://` URL (tests keep apart by key prefix)."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        if os.environ.get("ATTNX_CI"):
            pytest.fail("redis-server and redis-cli are needed for the Redis Cluster tests")
        pytest.skip("redis-server or redis-cli is not installed")
    folder = tmp_path_factory.mktemp("cluster")
    ports = _cluster_ports(3)
    nodes = [_cluster_node(p, folder) for p in ports]
    try:
        for p in ports:
            _wait_for_redis(p)
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        for p in ports:  # every node must agree that all slots are served
            info = ["redis-cli", "-p", str(p), "cluster", "info"]
            while b"cluster_state:ok" not in subprocess.run(info, capture_output=True).stdout:
                assert time.monotonic() < deadline, "the test Redis Cluster never became ready"
                time.sleep(0.1)
        yield f"redis+cluster://127.0.0.1:{ports[0]}"
    finally:
        for node in nodes:
            node.terminate()
            node.wait(10)


def _cluster_ports(n: int) -> list[int]:
    """Free ports whose cluster bus port (+10000) is free too, so both under 65536."""
    ports: list[int] = []
    candidate = 20_000 + os.getpid() % 20_000
    while len(ports) < n:
        candidate += 1
        try:
            for port in (candidate, candidate + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        ports.append(candidate)
    return ports


def _cluster_node(port: int, folder: Path) -> subprocess.Popen:
    return subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
         "--cluster-config-file", f"nodes-{port}.conf", "--dir", str(folder), "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_for_redis(port: int) -> None:
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            client.close()
            return
        except redis.ConnectionError:
            time.sleep(0.05)
    pytest.fail(f"redis-server on port {port} did not start")
