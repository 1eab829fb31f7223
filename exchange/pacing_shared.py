"""Pacing shared by many bid servers: one leader paces every campaign for all of them.

Each process sees only its own auctions, and pacing on a share of the traffic
would misjudge every spend rate. So at each interval boundary every process
reports its counters (per campaign id: eligible auctions, wins, seconds bought,
spend in the interval and today) to Redis. The process holding the leader lock
(`SET NX PX`, renewed every interval, taken over by another process when it
expires) waits a moment for the reports, sums them, runs the pacer over all
campaigns and publishes the multipliers; every process, the leader included,
applies what was published. A process that cannot reach Redis keeps its
multipliers (the leases still bound its spend).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import orjson

from exchange.bank import holder_id
from exchange.pacers import Observation
from exchange.redis_client import async_client

REPORT_TTL_S = 3600


class SharedPacing:
    def __init__(self, url: str, prefix: str, interval_s: float, settle_s: float | None = None):
        self.redis = async_client(url)
        self.prefix = prefix
        self.interval_s = interval_s
        self.settle_s = min(2.0, interval_s / 4) if settle_s is None else settle_s
        self.me = holder_id(self)

    def _key(self, *parts: object) -> str:
        return ":".join([self.prefix, "pacing", *map(str, parts)])

    async def report(self, interval: int, ids: list[str], obs: Observation) -> None:
        """This process's counters of the interval that just ended."""
        body = orjson.dumps(
            {
                "ids": ids,
                "spent": obs.spent.tolist(),
                "last_spend": obs.last_spend.tolist(),
                "last_seen": obs.last_seen.tolist(),
                "last_wins": obs.last_wins.tolist(),
                "last_seconds": obs.last_seconds.tolist(),
            }
        )
        key = self._key("reports", interval)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, self.me, body)
            pipe.expire(key, REPORT_TTL_S)
            await pipe.execute()

    async def lead(self) -> bool:
        """Take or keep the leader lock for the next interval; True if this process leads."""
        ttl_ms = int(self.interval_s * 2000)
        key = self._key("leader")
        if await self.redis.set(key, self.me, nx=True, px=ttl_ms):
            return True
        holder = await self.redis.get(key)
        if holder is not None and holder.decode() == self.me:
            await self.redis.pexpire(key, ttl_ms)
            return True
        return False

    async def merge(self, interval: int, ids: list[str], local: Observation) -> Observation:
        """The interval's observation over all processes, in this process's campaign order
        (campaigns this process does not know are left out)."""
        await asyncio.sleep(self.settle_s)  # let the other processes' reports arrive
        reports = await self.redis.hgetall(self._key("reports", interval))
        slot = {campaign_id: i for i, campaign_id in enumerate(ids)}
        sums = {
            name: np.zeros(len(ids), dtype=getattr(local, name).dtype)
            for name in ("spent", "last_spend", "last_seen", "last_wins", "last_seconds")
        }
        for body in reports.values():
            report = orjson.loads(body)
            known = [(slot[c], j) for j, c in enumerate(report["ids"]) if c in slot]
            if not known:
                continue
            mine, theirs = (np.array(x) for x in zip(*known, strict=True))
            for name, total in sums.items():
                total[mine] += np.asarray(report[name], dtype=total.dtype)[theirs]
        return replace(local, **sums)

    async def publish(self, interval: int, ids: list[str], decided) -> None:
        multiplier, pass_rate = decided
        body = orjson.dumps(
            {"interval": interval, "ids": ids, "m": multiplier.tolist(), "p": pass_rate.tolist()}
        )
        await self.redis.set(self._key("decision"), body)

    async def fetch(self, interval: int, wait_s: float) -> dict | None:
        """The leader's decision for this interval, waiting up to `wait_s` for it."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            body = await self.redis.get(self._key("decision"))
            if body is not None:
                decision = orjson.loads(body)
                if decision["interval"] >= interval:
                    return decision
            if asyncio.get_running_loop().time() > deadline:
                return None
            await asyncio.sleep(min(0.05, self.settle_s / 4 or 0.01))

    async def close(self) -> None:
        await self.redis.aclose()


def by_slot(decision: dict, slots: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(slots, multipliers, pass rates) of a decision, for the campaigns this process has."""
    pairs = [(slots[c], i) for i, c in enumerate(decision["ids"]) if c in slots]
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    mine, theirs = (np.array(x) for x in zip(*pairs, strict=True))
    return mine, np.asarray(decision["m"])[theirs], np.asarray(decision["p"])[theirs]
