"""The settlement process: the journal and the ledger writer, out of the bid server.

    python -m exchange.settler --fd N --db URL --journal DIR --queue Q --sweep S
                               --sync-window-ms W --commit-interval-ms C

The bid server starts it with one end of a socket pair (see exchange.frames).
Running here rather than as threads of the server keeps every fsync, every SQL
statement and every Python line of settlement off the server's GIL, so the
auction's latency does not move when trades flow. Trades arrive in order and are
journaled in groups; each synced group is acknowledged (DURABLE) and then booked.
When the server goes away (EOF), everything journaled is booked and the process
exits; a lock on the journal folder keeps a restarted server's settler from
running beside one that is still finishing.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict
from pathlib import Path

import orjson

from exchange import frames
from exchange.cpus import pin_process
from exchange.db import Database
from exchange.errors import NotFound
from exchange.journal import Journal
from exchange.settlement import Notice, Step
from exchange.store import Busy, Store
from exchange.trade_stream import Shipper

log = logging.getLogger("attnx.settler")
LOCK_WAIT_S = 60.0  # how long a new settler waits for a finishing one


class Settler:
    def __init__(
        self,
        sock: socket.socket,
        db: Database,
        journal_dir: Path,
        sync_window_s: float = 0.0,
        stream: tuple[str, str] | None = None,  # (Redis URL, prefix): ship to the trade stream
        **store_kw,
    ) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._lock = _lock_folder(journal_dir)
        self.journal = Journal(journal_dir, sink=self._durable, sync_window_s=sync_window_s)
        self.store = Store(
            db, self.journal, on_release=self._release, stream=stream is not None, **store_kw
        )
        self.store.recover()
        self.shipper = None
        if stream is not None:
            self.shipper = Shipper(*stream, self.journal, booked_mark=lambda: self.store.mark)
            self.shipper.start()
        self._base = self.journal.last_seq  # this connection's trades follow it
        self.journal.start()
        self.store.start()

    def run(self) -> None:
        """Serve the connection until the server closes it; then book everything."""
        self._send(frames.READY, orjson.dumps({"journal": self.journal.journal_id}))
        buffer = bytearray()
        while chunk := self.sock.recv(1 << 16):
            buffer += chunk
            for kind, payload in frames.split(buffer):
                if kind == frames.TRADE:
                    self.journal.append(payload)
                else:
                    self._request(*orjson.loads(payload))
        self.journal.close()
        if self.shipper is not None:
            self.shipper.close()
        self.store.close()

    def _durable(self, records: list[tuple[int, bytes]]) -> None:
        """The journal's sink: queue the synced group for the ledger (or the trade stream),
        then acknowledge it (a notice sent after the acknowledgement is queued behind its
        trade; with the stream, the trade may still be on its way)."""
        if self.shipper is not None:
            self.shipper.take(records)
        else:
            self.store.take_trades(records)
        self._send(frames.DURABLE, frames.COUNT.pack(records[-1][0] - self._base))

    def _request(self, request_id: int, kind: str, payload) -> None:
        try:
            if kind == "metrics":
                self._reply(request_id, "", asdict(self.store.metrics))
                return
            future = self.store.submit(kind, Notice(**payload) if kind == "notice" else payload)
        except Busy as exc:
            self._reply(request_id, "busy", str(exc))
            return
        future.add_done_callback(lambda f: self._answer(request_id, f))

    def _answer(self, request_id: int, future: Future) -> None:
        exc = future.exception()
        if exc is None:
            result = future.result()
            if isinstance(result, Step):
                t = result.trade
                result = {"outcome": result.outcome, "state": t.state, "message": result.message}
            self._reply(request_id, "", result)
        elif isinstance(exc, NotFound):
            self._reply(request_id, "not_found", str(exc))
        else:
            log.error("request %s failed: %r", request_id, exc)
            self._reply(request_id, "error", f"the ledger failed: {exc}")

    def _reply(self, request_id: int, error: str, result) -> None:
        self._send(frames.REPLY, orjson.dumps([request_id, error, result]))

    def _release(self, campaign_id: str, day: int, micros: int) -> None:
        self._send(frames.RELEASE, orjson.dumps([campaign_id, day, micros]))

    def _send(self, kind: bytes, payload: bytes) -> None:
        try:
            with self._send_lock:
                self.sock.sendall(frames.frame(kind, payload))
        except OSError:  # the server is gone: its trades are journaled, booking goes on
            pass


def _lock_folder(folder: Path) -> int:
    """An exclusive lock on the journal folder for this process's life."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                sys.exit(f"attnx settler: {folder} is locked by another settler for over "
                         f"{LOCK_WAIT_S:.0f} s; is another exchange using it?")  # fmt: skip
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="AttnX settlement process (started by serve)")
    parser.add_argument("--fd", type=int, required=True, help="the socket from the server")
    parser.add_argument("--db", required=True, help="ledger database URL")
    parser.add_argument("--journal", type=Path, required=True, help="trade journal folder")
    # the [settlement] settings, passed by the server (exchange.settlement_client)
    parser.add_argument("--queue", type=int, required=True, help="ledger writer queue")
    parser.add_argument("--sweep", type=float, required=True, help="expiry sweep interval, s")
    parser.add_argument("--sync-window-ms", type=float, required=True, help="journal sync window")
    parser.add_argument("--commit-interval-ms", type=float, required=True, help="ledger commits")
    parser.add_argument("--stream", help="Redis URL: ship trades to the trade stream")
    parser.add_argument("--prefix", default="attnx", help="Redis key prefix")
    parser.add_argument("--cpus", default="", help="pin this process to these CPUs: 1,2")
    args = parser.parse_args(argv)
    if args.cpus:  # checked by the server's configuration
        pin_process(int(cpu) for cpu in args.cpus.split(","))
    # The server owns this process's life: closing the socket means "book everything and
    # exit". A Ctrl-C or a stop signal sent to the whole process group must not cut a
    # ledger write short; the server stops it properly once its own calls have drained.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sock = socket.socket(fileno=args.fd)
    settler = Settler(
        sock,
        Database(args.db),
        args.journal,
        sync_window_s=args.sync_window_ms / 1e3,
        max_queue=args.queue,
        sweep_interval_s=args.sweep,
        commit_interval_s=args.commit_interval_ms / 1e3,
        stream=(args.stream, args.prefix) if args.stream else None,
    )
    settler.run()


if __name__ == "__main__":
    main()
