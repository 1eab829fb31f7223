"""Redis connections from a `[state] url`: one Redis, or a Redis Cluster.

    redis://host:6379/0              one Redis (rediss:// with TLS, unix:// a socket)
    redis+cluster://host:6379        a Redis Cluster, found from any of its nodes

Every key the exchange's scripts touch together shares a hash tag, so each script
runs on one node of a cluster. redis-py refuses scripts inside a cluster pipeline;
`Script.run` hides that difference: one pipeline on a single Redis, one call after
another (each to its key's node) on a cluster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")

Call = tuple[Sequence[str], Sequence[Any]]  # (keys, args) of one script call


def is_cluster(url: str) -> bool:
    return "+cluster://" in url


def _plain(url: str) -> str:
    return url.replace("+cluster://", "://", 1)


def async_client(url: str, **kw: Any) -> aioredis.Redis | AsyncRedisCluster:
    if is_cluster(url):
        kw.pop("retry", None)  # the cluster client retries by moving to the slot's new node
        return AsyncRedisCluster.from_url(_plain(url), **kw)
    return aioredis.Redis.from_url(url, **kw)


def sync_client(url: str, **kw: Any) -> redis.Redis | RedisCluster:
    if is_cluster(url):
        return RedisCluster.from_url(_plain(url), **kw)
    return redis.Redis.from_url(url, **kw)


class Script:
    """A Lua script called by its SHA, loaded again wherever Redis forgot it (a restart)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def run(
        self, client: aioredis.Redis | AsyncRedisCluster, calls: Sequence[Call]
    ) -> list[Any]:
        """Each call's result, or the ResponseError Redis answered it with (in order).
        Raises what a down Redis raises."""
        results = await self._send(client, calls)
        forgotten = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if forgotten:  # not run: load it and send those again
            await client.script_load(self.source)
            again = await self._send(client, [calls[i] for i in forgotten])
            for i, result in zip(forgotten, again, strict=True):
                results[i] = result
        return results

    async def _send(self, client, calls: Sequence[Call]) -> list[Any]:
        if isinstance(client, AsyncRedisCluster):
            # One after another: redis-py 8.1's cluster client breaks a node connection
            # that several calls open at once ('NoneType' object has no attribute
            # 'writelines'), so concurrency is not safe. A round trip per call.
            return [await self._one(client, keys, args) for keys, args in calls]
        async with client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(self.sha, len(keys), *keys, *args)
            return await pipe.execute(raise_on_error=False)

    async def _one(self, client: AsyncRedisCluster, keys: Sequence[str], args: Sequence[Any]):
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.ResponseError as exc:  # NOSCRIPT, or the script's own error reply
            return exc
