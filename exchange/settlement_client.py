"""The bid server's side of the settlement process: start it, hand it trades, ask it.

Everything here runs on the event loop. A trade is one buffered socket write and
an asyncio future that the settler's DURABLE acknowledgement resolves; a request
is an awaited reply; budget given back arrives as RELEASE frames. No thread of
the server touches settlement, so the auction's latency does not depend on it.
If the settler dies, trades in flight fail (their bids are not sent) and a new
settler is started, which books what the journal holds.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import orjson

from exchange import cpus, frames
from exchange.config import SettlementConfig
from exchange.errors import NotFound
from exchange.settlement import Notice, Outcome, Receipt, State, Trade
from exchange.store import Busy, encode_trade

log = logging.getLogger("attnx.settlement")
START_TIMEOUT_S = 300.0  # recovery replays the journal: allow for a big one


class SettlerDown(RuntimeError):
    """The settlement process is not there: nothing can be made durable right now."""


class SettlementClient:
    def __init__(
        self,
        db_url: str,
        journal: Path,
        on_release: Callable[[str, int, int], None],
        settings: SettlementConfig | None = None,  # the [settlement] section; None = defaults
        stream: tuple[str, str] | None = None,  # (Redis URL, prefix): trades to the trade stream
    ) -> None:
        s = settings or SettlementConfig()
        self._args = ["--db", db_url, "--journal", str(journal), "--queue", str(s.queue),
                      "--sweep", str(s.sweep_interval_s), "--sync-window-ms", str(s.sync_window_ms),
                      "--commit-interval-ms", str(s.commit_interval_ms)]  # fmt: skip
        if stream is not None:
            self._args += ["--stream", stream[0], "--prefix", stream[1]]
        # Named even when not configured: a settler restarted after the server pinned
        # itself must not inherit the server's CPU.
        if own := s.cpus or tuple(sorted(cpus.available() or ())):
            self._args += ["--cpus", ",".join(map(str, own))]
        self.on_release = on_release  # (campaign id, day, micros), on the loop
        self.process: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self._sent = 0  # trades written on this connection
        self._outbox: list[bytes] = []  # trade frames of this loop turn, written together
        self._unsynced: deque[tuple[int, asyncio.Future]] = deque()
        self._requests: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._closing = False

    # -- life cycle ---------------------------------------------------------------

    def start(self) -> None:
        """Start the settler and wait until it has recovered (blocking: start-up only)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exchange.settler", "--fd", str(theirs.fileno()), *self._args],
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        ours.settimeout(START_TIMEOUT_S)
        buffer = bytearray()
        while not (got := frames.split(buffer)):
            chunk = ours.recv(1 << 16)
            if not chunk:
                ours.close()
                raise SettlerDown("the settlement process exited while starting: see its log")
            buffer += chunk
        if got[0][0] != frames.READY:
            raise SettlerDown(f"the settlement process said {got[0][0]!r} before READY")
        ours.setblocking(False)
        self._sock, self._sent = ours, 0
        log.info("settlement process %d ready (journal %s)", self.process.pid,
                 orjson.loads(got[0][1])["journal"])  # fmt: skip

    async def attach(self) -> None:
        """Serve the connection from the running loop."""
        reader, self._writer = await asyncio.open_unix_connection(sock=self._sock)
        self._reader_task = asyncio.create_task(self._read(reader))

    async def close(self) -> None:
        """Close the connection; the settler books everything journaled and exits."""
        self._closing = True
        if self._writer is not None:
            self._writer.write_eof()
            await self._writer.drain()
        if self._reader_task is not None:
            await self._reader_task
        if self.process is not None:
            code = await asyncio.to_thread(self.process.wait)
            if code != 0:
                log.error("the settlement process exited with status %d", code)

    # -- trades and requests --------------------------------------------------------

    def record_trade(self, trade: Trade) -> asyncio.Future:
        """Hand a trade over; the future resolves once it is journaled and synced."""
        future = asyncio.get_running_loop().create_future()
        if self._writer is None or self._writer.is_closing():
            future.set_exception(SettlerDown("the settlement process is restarting"))
            return future
        if not self._outbox:  # one write per loop turn, after the auction that made it
            asyncio.get_running_loop().call_soon(self._send_outbox)
        self._outbox.append(frames.frame(frames.TRADE, encode_trade(trade)))
        self._sent += 1
        self._unsynced.append((self._sent, future))
        return future

    def _send_outbox(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(b"".join(self._outbox))
        self._outbox.clear()

    async def notice(self, notice: Notice) -> Receipt:
        result = await self._request("notice", asdict(notice))
        return Receipt(Outcome(result["outcome"]), State(result["state"]), result["message"])

    async def save_campaign(self, campaign_id: str, body: str) -> None:
        await self._request("campaign", [campaign_id, body])

    async def metrics(self) -> dict:
        return await self._request("metrics", None)

    async def flush(self) -> None:
        """Wait until everything sent so far is booked (tests, shutdown)."""
        await self._request("flush", None)

    async def _request(self, kind: str, payload):
        if self._writer is None or self._writer.is_closing():
            raise SettlerDown("the settlement process is restarting: retry shortly")
        request_id = next(self._ids)
        future = self._requests[request_id] = asyncio.get_running_loop().create_future()
        self._writer.write(frames.frame(frames.REQUEST, orjson.dumps([request_id, kind, payload])))
        return await future

    # -- the settler's side ---------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buffer = bytearray()
        try:
            while chunk := await reader.read(1 << 16):
                buffer += chunk
                for kind, payload in frames.split(buffer):
                    self._dispatch(kind, payload)
        except ConnectionError:  # a settler killed mid-write resets the connection
            pass
        self._writer.close()
        self._fail_pending()
        if not self._closing:
            asyncio.get_running_loop().create_task(self._restart())

    def _dispatch(self, kind: bytes, payload: bytes) -> None:
        if kind == frames.DURABLE:
            synced = frames.COUNT.unpack(payload)[0]
            while self._unsynced and self._unsynced[0][0] <= synced:
                future = self._unsynced.popleft()[1]
                if not future.done():
                    future.set_result(None)
        elif kind == frames.REPLY:
            self._reply(*orjson.loads(payload))
        elif kind == frames.RELEASE:
            self.on_release(*orjson.loads(payload))

    def _reply(self, request_id: int, error: str, result) -> None:
        future = self._requests.pop(request_id, None)
        if future is None or future.done():
            return
        if not error:
            future.set_result(result)
        elif error == "not_found":
            future.set_exception(NotFound(result))
        elif error == "busy":
            future.set_exception(Busy(result))
        else:
            future.set_exception(RuntimeError(result))

    def _fail_pending(self) -> None:
        down = SettlerDown("the settlement process stopped before confirming")
        for _, future in self._unsynced:
            if not future.done():
                future.set_exception(down)
        for future in self._requests.values():
            if not future.done():
                future.set_exception(down)
        self._unsynced.clear()
        self._requests.clear()

    async def _restart(self) -> None:
        code = await asyncio.to_thread(self.process.wait)
        log.error("the settlement process exited (status %s): starting another", code)
        while not self._closing:
            try:
                await asyncio.to_thread(self.start)
                await self.attach()
                return
            except Exception:
                log.exception("could not start the settlement process; trying again in 5 s")
                await asyncio.sleep(5)
