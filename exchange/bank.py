"""The budget bank: daily budgets leased out to bid-server processes, never overdrawn.

A bid server cannot ask Redis before every bid (a round trip is ~0.1 ms; the whole
auction has a millisecond), so it spends from a *lease*: a slice of a campaign's
daily budget that the bank has carved out for it alone (RTBkit's master and slave
bankers). Leases are carved atomically, so the leases of all processes together
never exceed the budget: overspend is impossible, and what a crash can cost is
underspend — the unspent part of the dead process's leases, at most one lease per
campaign per process.

`MemoryBank` is the embedded default (one process); `RedisBank` keeps the ledger of
leases in Redis with one Lua script per operation, so N processes on M machines
share it. Both answer batches, one round trip for many campaigns, and pass the
same behavioural tests.

A Redis restarted without its data would hand every budget out again. The bank
therefore has an *epoch*, set when it is (re)built: an empty bank has none, and the
first process to notice rebuilds it (see `exchange.leases`) before anyone leases.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from exchange.redis_client import REDIS_SCHEMES, Script, async_client

KEY_TTL_S = 3 * 86_400  # a day's leases are kept two days past the day
REBUILD_LOCK_MS = 30_000  # a rebuilding process that dies frees the lock after this


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    campaign_id: str
    daily_budget_micros: int  # the budget as this process knows it now
    want_micros: int


def holder_id(owner: object) -> str:
    """Who holds a lock or wrote a report: host, process and object, unique while alive."""
    return f"{socket.gethostname()}:{os.getpid()}:{id(owner):x}"


class BankError(ValueError):
    """A request the bank refuses: the message names the field."""


def _check(day: int, requests: Sequence[LeaseRequest]) -> None:
    if day < 0:
        raise BankError(f"day must be >= 0, got {day}")
    for i, r in enumerate(requests):
        if not r.campaign_id:
            raise BankError(f"requests[{i}].campaign_id must not be empty")
        if r.daily_budget_micros < 0:
            raise BankError(f"requests[{i}].daily_budget_micros must be >= 0")
        if r.want_micros < 0:
            raise BankError(f"requests[{i}].want_micros must be >= 0")


def _check_returns(day: int, returns: Sequence[tuple[str, int]]) -> None:
    if day < 0:
        raise BankError(f"day must be >= 0, got {day}")
    for i, (campaign_id, micros) in enumerate(returns):
        if not campaign_id:
            raise BankError(f"returns[{i}].campaign_id must not be empty")
        if micros < 0:
            raise BankError(f"returns[{i}].micros must be >= 0")


class BudgetBank(Protocol):
    async def lease(self, day: int, requests: Sequence[LeaseRequest]) -> list[int]:
        """Carve up to `want` micros for each request; returns the micros granted, which
        keep the day's leases of that campaign within its daily budget."""

    async def give_back(self, day: int, returns: Sequence[tuple[str, int]]) -> None:
        """Unspent lease returned (shutdown, pause): others may lease it again."""

    async def leased(self, day: int, campaign_ids: Sequence[str]) -> list[int]:
        """Micros leased out today per campaign, over all processes."""

    async def add_leased(self, day: int, amounts: Sequence[tuple[str, int]]) -> None:
        """Count micros as leased without granting them (rebuilding a bank that lost its data)."""

    async def epoch(self) -> str | None:
        """The bank's generation; None when it holds nothing (new, or its data was lost)."""

    async def begin_rebuild(self, holder: str) -> bool:
        """Take the rebuild lock (expires); False if another process is rebuilding."""

    async def finish_rebuild(self, holder: str) -> str:
        """Start a new generation and release the lock; returns the new epoch."""

    async def close(self) -> None: ...


class MemoryBank:
    """The bank of a single process: the same rules, in a dict."""

    def __init__(self) -> None:
        self._leased: dict[tuple[int, str], int] = {}
        self._epoch: str | None = None
        self._rebuilding: str | None = None

    async def lease(self, day: int, requests: Sequence[LeaseRequest]) -> list[int]:
        _check(day, requests)
        granted = []
        for r in requests:
            leased = self._leased.get((day, r.campaign_id), 0)
            grant = max(0, min(r.want_micros, r.daily_budget_micros - leased))
            self._leased[day, r.campaign_id] = leased + grant
            granted.append(grant)
        return granted

    async def give_back(self, day: int, returns: Sequence[tuple[str, int]]) -> None:
        _check_returns(day, returns)
        for campaign_id, micros in returns:
            leased = self._leased.get((day, campaign_id), 0)
            if micros > leased:
                raise BankError(
                    f"cannot give back {micros} micros of {campaign_id}: {leased} leased"
                )
            self._leased[day, campaign_id] = leased - micros

    async def leased(self, day: int, campaign_ids: Sequence[str]) -> list[int]:
        return [self._leased.get((day, c), 0) for c in campaign_ids]

    async def add_leased(self, day: int, amounts: Sequence[tuple[str, int]]) -> None:
        _check_returns(day, amounts)
        for campaign_id, micros in amounts:
            self._leased[day, campaign_id] = self._leased.get((day, campaign_id), 0) + micros

    async def epoch(self) -> str | None:
        return self._epoch

    async def begin_rebuild(self, holder: str) -> bool:
        if self._rebuilding not in (None, holder):
            return False
        self._rebuilding = holder
        return True

    async def finish_rebuild(self, holder: str) -> str:
        self._epoch, self._rebuilding = secrets.token_hex(8), None
        return self._epoch

    def lose_everything(self) -> None:
        """What a Redis restarted without its data looks like (for tests)."""
        self._leased.clear()
        self._epoch = None

    async def close(self) -> None:
        pass


# KEYS[1] the campaign's day; ARGV: daily budget, wanted, ttl. Lua numbers are doubles:
# exact for micros up to 2^53 (9e9 USD).
_LEASE = """
local leased = tonumber(redis.call('HGET', KEYS[1], 'leased') or '0')
local grant = math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) - leased)
if grant < 0 then grant = 0 end
if grant > 0 then redis.call('HINCRBY', KEYS[1], 'leased', grant) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return grant
"""

# KEYS[1] the campaign's day; ARGV: micros returned. Refuses to go below zero.
_GIVE_BACK = """
local leased = tonumber(redis.call('HGET', KEYS[1], 'leased') or '0')
local back = tonumber(ARGV[1])
if back > leased then
  return redis.error_reply('cannot give back ' .. ARGV[1] .. ' micros: ' .. leased .. ' leased')
end
redis.call('HINCRBY', KEYS[1], 'leased', -back)
return leased - back
"""


class RedisBank:
    """Leases in Redis: a hash per campaign and day, changed only by Lua scripts (atomic),
    batched in pipelines. Keys hash on the campaign id, so Redis Cluster spreads them."""

    def __init__(self, url: str, prefix: str = "attnx") -> None:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # No retries: a lease script resent after a lost reply would be granted twice
        # (never an overspend, but budget leased to nobody until the day ends).
        self.redis = async_client(url, retry=Retry(NoBackoff(), 0))
        self.prefix = prefix
        self._lease = Script(_LEASE)
        self._give_back = Script(_GIVE_BACK)

    def key(self, day: int, campaign_id: str) -> str:
        return f"{self.prefix}:bank:{{{campaign_id}}}:{day}"

    async def lease(self, day: int, requests: Sequence[LeaseRequest]) -> list[int]:
        _check(day, requests)
        if not requests:
            return []
        calls = [
            ([self.key(day, r.campaign_id)], [r.daily_budget_micros, r.want_micros, KEY_TTL_S])
            for r in requests
        ]
        granted = await self._lease.run(self.redis, calls)
        if errors := [g for g in granted if isinstance(g, Exception)]:
            raise errors[0]
        return [int(g) for g in granted]

    async def give_back(self, day: int, returns: Sequence[tuple[str, int]]) -> None:
        _check_returns(day, returns)
        if not returns:
            return
        calls = [([self.key(day, campaign_id)], [micros]) for campaign_id, micros in returns]
        results = await self._give_back.run(self.redis, calls)
        errors = [
            (c, r) for (c, _), r in zip(returns, results, strict=True) if isinstance(r, Exception)
        ]
        if errors:
            campaign_id, exc = errors[0]
            raise BankError(f"{campaign_id}: {exc}")

    async def leased(self, day: int, campaign_ids: Sequence[str]) -> list[int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in campaign_ids:
                pipe.hget(self.key(day, c), "leased")
            return [int(v or 0) for v in await pipe.execute()]

    async def add_leased(self, day: int, amounts: Sequence[tuple[str, int]]) -> None:
        _check_returns(day, amounts)
        async with self.redis.pipeline(transaction=False) as pipe:
            for campaign_id, micros in amounts:
                pipe.hincrby(self.key(day, campaign_id), "leased", micros)
                pipe.expire(self.key(day, campaign_id), KEY_TTL_S)
            await pipe.execute()

    async def epoch(self) -> str | None:
        value = await self.redis.get(f"{self.prefix}:bank:epoch")
        return None if value is None else value.decode()

    async def begin_rebuild(self, holder: str) -> bool:
        key = f"{self.prefix}:bank:rebuild"
        return bool(await self.redis.set(key, holder, nx=True, px=REBUILD_LOCK_MS))

    async def finish_rebuild(self, holder: str) -> str:
        epoch = secrets.token_hex(8)  # first the epoch, then the lock (keys on any node)
        await self.redis.set(f"{self.prefix}:bank:epoch", epoch)
        await self.redis.delete(f"{self.prefix}:bank:rebuild")
        return epoch

    async def close(self) -> None:
        await self.redis.aclose()


def open_bank(url: str, prefix: str = "attnx") -> BudgetBank:
    """`memory` (the embedded default), a `redis://` URL, or `redis+cluster://`."""
    if url == "memory":
        return MemoryBank()
    if url.startswith(REDIS_SCHEMES):
        return RedisBank(url, prefix)
    raise BankError(f'state url must be "memory" or "redis://host:port/db", got {url!r}')
