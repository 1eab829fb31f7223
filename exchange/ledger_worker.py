"""Ledger workers: book the trade stream into the shared ledger, each trade exactly once.

    attnx settle --config attnx.toml [--workers M]     (on any machine)

`attnx serve` with shared state starts `[settlement] ledger_workers` of them itself.
Each worker is a consumer of the stream's group "ledger" (exchange.trade_stream):

    XREADGROUP ─▶ one transaction: claim the (journal, seq) pairs never booked,
                  book their trades ─▶ commit ─▶ XACK + XDEL

Delivery is at least once: a worker that dies between reading and acknowledging
leaves its entries pending, and another worker takes them over with XAUTOCLAIM
once they have been idle for `claim_idle_ms`. Booking is exactly once: the claim
in the ledger (`ledger.claim_records`) skips a record already booked, whoever
booked it, so a record read twice, or shipped twice, moves no money twice.
A trade id booked before under another record is a retried request that won
again: its second reservation goes back to the budget bank.

SIGTERM drains: the worker books until the stream has nothing more for it, then
exits. SIGINT is ignored (a Ctrl-C reaches the whole process group, and the bid
servers' last trades must still find a worker); the supervisor sends SIGTERM
once the servers are down.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import orjson
import redis

from exchange import ledger
from exchange.bank import RedisBank, holder_id
from exchange.db import Database
from exchange.lifeline import stop_with_parent
from exchange.redis_client import async_client
from exchange.trade_stream import GROUP, StreamKeys

log = logging.getLogger("attnx.ledger_worker")

BATCH = 500  # entries per read, and per ledger transaction
BLOCK_MS = 500  # how long a read waits for new entries
DRAIN_IDLE_READS = 2  # a draining worker stops after this many empty reads
FORGET_CONSUMER_MS = 3_600_000  # a consumer idle this long with nothing pending is removed
BACKOFF_S = (0.05, 2.0)

Entry = tuple[bytes, dict[bytes, bytes]]  # (stream entry id, fields)


@dataclass
class WorkerMetrics:
    booked: int = 0  # trades booked
    seen_before: int = 0  # records delivered again (reclaimed or re-shipped): skipped
    repeated: int = 0  # trade ids booked before (retried requests): reservation given back
    claimed: int = 0  # entries taken over from another worker
    rejected: int = 0  # records the ledger could not book (logged in full)


class LedgerWorker:
    def __init__(
        self,
        db: Database,
        url: str,
        prefix: str = "attnx",
        claim_idle_ms: int = 10_000,
        name: str = "",
        commit_interval_ms: float = 20.0,
    ) -> None:
        self.redis = async_client(url, socket_timeout=5.0, socket_connect_timeout=1.0)
        self.bank = RedisBank(url, prefix)
        self.keys = StreamKeys.of(prefix)
        self.claim_idle_ms = claim_idle_ms
        # At most one ledger commit per interval: under load a read then gathers an
        # interval's trades into one transaction (one fsync), not one trade each.
        self.commit_interval_s = commit_interval_ms / 1000
        self.name = name or holder_id(self)
        self.metrics = WorkerMetrics()
        self.conn = db.connect()
        self._claim_from = b"0-0"  # XAUTOCLAIM's cursor

    async def ensure_group(self) -> None:
        """The group, reading from the stream's start (also after Redis lost its data)."""
        try:
            await self.redis.xgroup_create(self.keys.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, new: bool = True, block_ms: int | None = BLOCK_MS) -> list[Entry]:
        """New entries for this worker, or (new=False) those it read and has not acknowledged."""
        answer = await self.redis.xreadgroup(
            GROUP, self.name, {self.keys.stream: ">" if new else "0"}, count=BATCH,
            block=block_ms if new else None,
        )  # fmt: skip
        return answer[0][1] if answer else []

    async def claim(self) -> list[Entry]:
        """Entries another worker read and left idle too long (it died): ours now."""
        cursor, entries, _deleted = await self.redis.xautoclaim(
            self.keys.stream, GROUP, self.name, self.claim_idle_ms, self._claim_from, count=BATCH
        )
        self._claim_from = cursor
        self.metrics.claimed += len(entries)
        if entries:
            log.warning("took over %d trades a stopped ledger worker had read", len(entries))
        return entries

    def book(self, entries: list[Entry]) -> list[tuple[str, int, int]]:
        """Book the entries' trades in one transaction; returns the reservations to give
        back (campaign, day, micros). Raises if the ledger fails: nothing is acknowledged."""
        records, bodies = [], {}
        for entry_id, fields in entries:
            try:
                key = (fields[b"j"].decode(), int(fields[b"s"]))
                bodies[key] = orjson.loads(fields[b"t"])
            except (KeyError, ValueError) as exc:
                self.metrics.rejected += 1
                log.error("stream entry %s is not a trade record (%r), skipped: %r",
                          entry_id, exc, fields)  # fmt: skip
                continue
            records.append(key)
        now = time.time_ns()
        with self.conn.transaction():
            claimed = ledger.claim_records(self.conn, records)
            self.metrics.seen_before += len(records) - len(claimed)
            fresh = [bodies[r] for r in records if r in claimed]
            try:
                with self.conn.savepoint():
                    repeated = ledger.insert_trades(self.conn, fresh, now)
            except Exception:  # one record the ledger refuses must not hold up the others
                repeated = []
                for trade in list(fresh):
                    try:
                        with self.conn.savepoint():
                            repeated += ledger.insert_trades(self.conn, [trade], now)
                    except Exception:
                        fresh.remove(trade)
                        self.metrics.rejected += 1
                        log.exception("trade record cannot be booked, skipped: %r", trade)
        self.metrics.booked += len(fresh) - len(repeated)
        self.metrics.repeated += len(repeated)
        return [ledger.reservation(t) for t in repeated]

    async def ack(self, entries: list[Entry]) -> None:
        """Booked: acknowledged and deleted (the stream holds only what is not booked)."""
        ids = [entry_id for entry_id, _ in entries]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xack(self.keys.stream, GROUP, *ids)
            pipe.xdel(self.keys.stream, *ids)
            await pipe.execute()

    async def give_back(self, releases: list[tuple[str, int, int]]) -> None:
        by_day: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for campaign_id, day, micros in releases:
            by_day[day].append((campaign_id, micros))
        for day, returns in by_day.items():
            try:
                await self.bank.give_back(day, returns)
            except Exception as exc:  # underspends at worst: never books money twice
                log.warning("could not give %d reservations back: %s", len(returns), exc)

    async def step(self, entries: list[Entry]) -> int:
        """Book, acknowledge, give back: one batch, in that order."""
        if entries:
            releases = self.book(entries)
            await self.ack(entries)
            await self.give_back(releases)
        return len(entries)

    async def forget_dead_consumers(self) -> None:
        for c in await self.redis.xinfo_consumers(self.keys.stream, GROUP):
            if c["pending"] == 0 and c["idle"] > FORGET_CONSUMER_MS:
                await self.redis.xgroup_delconsumer(self.keys.stream, GROUP, c["name"])

    async def run(self, stop: asyncio.Event, drain_s: float = 30.0) -> None:
        """Book until `stop` is set and nothing more is there to book (or, with Redis
        unreachable, for `drain_s` after it: what is left stays in the stream)."""
        backoff, own_pending, next_claim, idle_reads = BACKOFF_S[0], True, 0.0, 0
        give_up = None
        while not (stop.is_set() and idle_reads >= DRAIN_IDLE_READS and not own_pending):
            if stop.is_set():
                give_up = give_up or time.monotonic() + drain_s
                if time.monotonic() > give_up:
                    log.error("stopping before the stream is drained: other workers book it")
                    break
            try:
                if own_pending:  # after a failure or a restart: what we read and did not ack
                    own_pending = await self.step(await self.read(new=False)) > 0
                elif time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + self.claim_idle_ms / 2000
                    await self.step(await self.claim())
                    await self.forget_dead_consumers()
                else:
                    block = BLOCK_MS // 5 if stop.is_set() else BLOCK_MS
                    got = await self.step(await self.read(block_ms=block))
                    idle_reads = 0 if got else idle_reads + 1
                    if got and not stop.is_set():
                        await asyncio.sleep(self.commit_interval_s)
                backoff = BACKOFF_S[0]
            except redis.ResponseError as exc:  # NOGROUP, or UNBLOCKED: the stream is gone
                log.warning("the trade stream or its group is gone (%s): recreating", exc)
                await self._retry(self.ensure_group(), backoff)
                backoff = await _sleep(backoff)
            except (redis.RedisError, OSError) as exc:
                log.warning("Redis: %s; retrying in %.2f s", exc, backoff)
                own_pending, backoff = True, await _sleep(backoff)
            except Exception:
                log.exception("the ledger failed; the batch stays pending, retrying")
                own_pending, backoff = True, await _sleep(backoff)
        log.info("ledger worker %s stopped: %s", self.name, self.metrics)

    async def _retry(self, action, backoff: float) -> None:
        try:
            await action
        except (redis.RedisError, OSError):
            await _sleep(backoff)

    async def close(self) -> None:
        await self.redis.aclose()
        await self.bank.close()
        self.conn.close()


async def _sleep(backoff: float) -> float:
    await asyncio.sleep(backoff)
    return min(backoff * 2, BACKOFF_S[1])


class LedgerWorkers:
    """M ledger worker processes, restarted when one dies, stopped (drained) on request."""

    def __init__(self, args: list[str], count: int) -> None:
        self.args, self.count = args, count
        self.processes: list[subprocess.Popen] = []
        self.restarts = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ledger-workers", daemon=True)

    def start(self) -> None:
        self.processes = [self._spawn() for _ in range(self.count)]
        self._thread.start()

    def _spawn(self) -> subprocess.Popen:
        """A worker that stops when this process dies (started from the main thread, or
        from the watcher, which lives until stop() ends them all)."""
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exchange.ledger_worker",
                *self.args,
                "--parent",
                str(os.getpid()),
            ]
        )

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for i, p in enumerate(self.processes):
                if p.poll() is not None and not self._stopping.is_set():
                    log.error("ledger worker %d exited (status %s): starting another",
                              p.pid, p.returncode)  # fmt: skip
                    self.restarts += 1
                    self.processes[i] = self._spawn()

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM: each books what is left in the stream, then exits."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        for p in self.processes:
            if p.poll() is None:
                p.terminate()
        for p in self.processes:
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.error("ledger worker %d did not drain in %.0f s: killed", p.pid, timeout_s)
                p.kill()


def worker_args(
    db_url: str, state_url: str, prefix: str, claim_idle_ms: int, commit_interval_ms: float
) -> list[str]:
    return ["--db", db_url, "--state", state_url, "--prefix", prefix,
            "--claim-idle-ms", str(claim_idle_ms),
            "--commit-interval-ms", str(commit_interval_ms)]  # fmt: skip


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    worker = LedgerWorker(
        Database(args.db), args.state, args.prefix, args.claim_idle_ms,
        commit_interval_ms=args.commit_interval_ms,
    )  # fmt: skip
    log.info("ledger worker %s: %s -> %s", worker.name, worker.keys.stream, args.db)
    try:
        await worker.ensure_group()
    except (redis.RedisError, OSError) as exc:
        log.warning("Redis is not reachable yet (%s): retrying", exc)
    try:
        await worker.run(stop)
    finally:
        await worker.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="AttnX ledger worker (the trade stream's reader)")
    parser.add_argument("--db", required=True, help="ledger database URL")
    parser.add_argument("--state", required=True, help="Redis URL of the trade stream")
    parser.add_argument("--prefix", default="attnx", help="Redis key prefix")
    parser.add_argument("--claim-idle-ms", type=int, default=10_000,
                        help="take over another worker's entries idle this long")  # fmt: skip
    parser.add_argument("--commit-interval-ms", type=float, default=20.0,
                        help="at most one ledger commit per interval")  # fmt: skip
    parser.add_argument("--parent", type=int, help="stop (drain) when this process dies")
    args = parser.parse_args(argv)
    if args.parent:
        stop_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
