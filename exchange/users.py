"""Per-user state for the bid path: behaviour histories and frequency-cap impression times.

Every bid request with a user id needs two things about that user, read before the
auction and written after a win:

- the *history*: item ids of the ads the user was shown, newest first, at most L of
  them (the attention model's sequence length);
- the *seen* times: per campaign that has a frequency cap (at most `count` impressions
  in `window_ms`), the newest impression times in ms, newest first, at most `count` of
  them. That is all a cap needs: a campaign is capped iff it has `count` times and the
  oldest is inside the window. Each campaign's window is stored with its times (the one
  given at its last record), so a load can drop expired times without the campaign list.

`MemoryUsers` is the embedded default (one process, a bounded LRU of users).
`RedisUsers` shares the state between bid-server processes and machines. Both pass the
same behavioural tests (tests/test_users.py).

Redis key layout (`{prefix}` is `config.state.prefix`, "attnx" by default). A user's
keys share the hash tag `{user_id}`, so on Redis Cluster they live in one slot and the
record script may touch both:

    {prefix}:user:{<user_id>}:history   list of item ids, newest first, LTRIMmed to L;
                                         TTL history_ttl_s (30 days), refreshed by writes
    {prefix}:user:{<user_id>}:caps      hash: campaign id -> "window_ms:t1,t2,..." (times
                                         in ms, newest first, at most the cap's count);
                                         TTL at least its largest window, never shortened

The hot path never waits on Redis to write: `record` folds the impressions into a
per-user pending change in memory (bounded: at most L items and `count` times per
campaign, whatever the number of records) and a background task writes all users'
changes every `flush_interval_s` (20 ms), one pipeline of EVALSHA calls per flush (one
atomic Lua script per user). Reads are batched the same way: every `load` issued in one
event-loop turn goes to Redis in one pipeline (one read-only script per user returning
LRANGE and HGETALL together). redis-py spends ~150 µs of CPU per command or pipeline on
this machine, far more than Redis does, so fewer commands and pipelines per request is
what keeps the Redis mode's cost down (bench.scaleout: CPU µs per request by process).
The price of the 20 ms: a cap can be overshot by requests for the same user that other
processes answer within it.

A down Redis costs no latency and loses nothing it need not: a load answers `UNKNOWN`
(caps unknown: the caller decides whether to bid); after a failure, loads answer
UNKNOWN at once for a backoff (0.1 s doubling to 2 s) while a single probe at a time
tries Redis; records stay queued (at most `max_pending_users` users, the oldest dropped
beyond that, counted in `dropped`) and are written when Redis answers again.

Writes are at-least-once: a write whose reply is lost (the connection broke after Redis
ran it) is sent again, so such a rare failure can duplicate an item or a time (a cap is
then met one impression early, never late). redis-py's own retries are turned off for
that reason: they would resend whole pipelines after a mere timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from exchange.redis_client import REDIS_SCHEMES, Script, async_client

log = logging.getLogger("attnx.users")

DEFAULT_HISTORY_LEN = 50
HISTORY_TTL_S = 30 * 86_400
MAX_PENDING_USERS = 100_000  # users whose records wait for Redis; the oldest are dropped past it
BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 2.0
CONNECT_TIMEOUT_S = 0.1
READ_TIMEOUT_S = 0.1  # a load waits at most this long for a hung Redis
WRITE_TIMEOUT_S = 1.0  # writes are off the hot path: a slow reply is not a lost one
WRITE_CHUNK_USERS = 1000  # a backlog after an outage is written in pipelines of this many users
CLOSE_FLUSH_S = 1.0  # how long close() waits for queued records to reach Redis


def wall_ms() -> int:
    """Now, in integer ms since the epoch (the clock impression times are kept in)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Impression:
    """One ad shown to a user: what the store must remember about it."""

    campaign_id: str
    item: int  # the ad's item id (goes into the history); > 0
    cap_count: int = 0  # at most this many impressions in cap_window_ms (0 = no cap: history only)
    cap_window_ms: int = 0


@dataclass(slots=True)
class UserState:
    """What a bid needs to know about a user; the caller owns it (a fresh copy per load)."""

    history: list[int]  # item ids, newest first, at most L
    seen: dict[str, list[int]]  # campaign id -> newest-first impression times (ms); capped only
    known: bool = True  # False: the store could not be read (Redis down): caps are unknown


UNKNOWN = UserState([], {}, known=False)  # what a load answers while the store is unreachable


def _unknown() -> UserState:
    """A fresh state equal to UNKNOWN: callers may modify what they get without harming others."""
    return UserState([], {}, known=False)


class UserStore(Protocol):
    async def load(self, user_id: str) -> UserState:
        """The user's history and unexpired cap times; UNKNOWN (never an error) if unreadable."""

    def record(self, user_id: str, impressions: list[Impression]) -> None:
        """Remember ads shown to the user, in list order. Never blocks, never raises because
        the store is down; raises ValueError for a bad impression (nothing is recorded)."""

    async def flush(self) -> None:
        """Wait until everything recorded so far is written (tests, shutdown)."""

    async def close(self) -> None: ...


def _check(user_id: str, impressions: Iterable[Impression]) -> None:
    """Refuse the whole call before applying any of it, naming the bad field."""
    if not user_id:
        raise ValueError("user_id must not be empty")
    for i, imp in enumerate(impressions):
        if not imp.campaign_id:
            raise ValueError(f"impressions[{i}].campaign_id must not be empty")
        if imp.item <= 0:
            raise ValueError(f"impressions[{i}].item must be positive, got {imp.item}")
        if imp.cap_count < 0:
            raise ValueError(f"impressions[{i}].cap_count must be >= 0, got {imp.cap_count}")
        if imp.cap_count > 0 and imp.cap_window_ms <= 0:
            raise ValueError(
                f"impressions[{i}].cap_window_ms must be positive when cap_count > 0, "
                f"got {imp.cap_window_ms}"
            )


class _Cap:
    """One campaign's times in a change: the new times (newest first, trimmed to the cap's
    count) and how many of the times stored before the change survive it (`keep`)."""

    __slots__ = ("keep", "times", "window_ms")

    def __init__(self, window_ms: int, times: list[int], keep: int) -> None:
        self.window_ms = window_ms
        self.times = times
        self.keep = keep


class _Changes:
    """A run of records for one user, folded: applying it to a stored state equals applying
    the records one by one, but it never holds more than L items and `count` times per
    campaign, however many records it folds. The memory store keeps each user's whole
    state as one (with nothing stored before it, `keep` is moot)."""

    __slots__ = ("caps", "count", "items")

    def __init__(self, history_len: int) -> None:
        self.items: deque[int] = deque(maxlen=history_len)  # newest first
        self.caps: dict[str, _Cap] = {}
        self.count = 0  # impressions folded in (what a drop loses)

    def add(self, impressions: list[Impression], now_ms: int) -> None:
        for imp in impressions:
            self.items.appendleft(imp.item)
            if imp.cap_count > 0:
                cap = self.caps.get(imp.campaign_id)
                if cap is None:
                    cap = _Cap(imp.cap_window_ms, [now_ms], imp.cap_count - 1)
                    self.caps[imp.campaign_id] = cap
                else:  # stored times are behind all of ours: the trim cuts them first
                    cap.keep = min(cap.keep, max(0, imp.cap_count - 1 - len(cap.times)))
                    cap.times.insert(0, now_ms)
                    del cap.times[imp.cap_count :]
                    cap.window_ms = imp.cap_window_ms
        self.count += len(impressions)

    def then(self, newer: _Changes) -> None:
        """Fold `newer` in after these changes (a failed write goes back in front of the
        records made since)."""
        self.items.extendleft(reversed(newer.items))
        for campaign_id, new in newer.caps.items():
            old = self.caps.get(campaign_id)
            if old is None:
                self.caps[campaign_id] = new
            else:
                old.keep = min(old.keep, max(0, new.keep - len(old.times)))
                old.times = new.times + old.times[: new.keep]
                old.window_ms = new.window_ms
        self.count += newer.count


def _unexpired(times: list[int], window_ms: int, now_ms: int) -> list[int]:
    cutoff = now_ms - window_ms
    return [t for t in times if t > cutoff]


class MemoryUsers:
    """The embedded store of a single process: a bounded LRU of users.

    At most `max_users` users are kept; beyond that the least recently used (loaded or
    recorded) is forgotten, as if it had never been seen (counted in `evicted`). Memory per
    user is bounded by L items plus `count` times per capped campaign it has seen.
    """

    def __init__(
        self,
        history_len: int = DEFAULT_HISTORY_LEN,
        max_users: int = 1_000_000,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        if history_len < 1:
            raise ValueError(f"history_len must be >= 1, got {history_len}")
        if max_users < 1:
            raise ValueError(f"max_users must be >= 1, got {max_users}")
        self.history_len = history_len
        self.max_users = max_users
        self.clock_ms = clock_ms
        self.evicted = 0
        self._users: OrderedDict[str, _Changes] = OrderedDict()

    async def load(self, user_id: str) -> UserState:
        """Never suspends: the bid path pays a dict lookup and a copy."""
        state = self._users.get(user_id)
        if state is None:
            return UserState([], {})
        self._users.move_to_end(user_id)
        now = self.clock_ms()
        seen = {}
        for campaign_id, cap in state.caps.items():
            times = _unexpired(cap.times, cap.window_ms, now)
            if times:
                seen[campaign_id] = times
        return UserState(list(state.items), seen)

    def record(self, user_id: str, impressions: list[Impression]) -> None:
        _check(user_id, impressions)
        if not impressions:
            return
        state = self._users.get(user_id)
        if state is None:
            state = self._users[user_id] = _Changes(self.history_len)
            if len(self._users) > self.max_users:
                self._users.popitem(last=False)
                self.evicted += 1
        else:
            self._users.move_to_end(user_id)
        state.add(impressions, self.clock_ms())

    async def flush(self) -> None:
        pass

    async def close(self) -> None:
        pass


# KEYS[1] the user's history list, KEYS[2] the user's caps hash.
# ARGV[1] L, ARGV[2] history TTL (s), ARGV[3] n items, ARGV[4 .. 3+n] the items oldest first
# (LPUSH puts the last one at the front); then 4 values per capped campaign: its id, its
# window (ms), how many stored times survive (keep), the new times "t1,t2" (newest first).
# KEYS: history, caps; ARGV: the last history index. Both in one call: a load costs one
# command, not two (redis-py spends more per command than Redis does).
_LOAD = """
return {redis.call('LRANGE', KEYS[1], 0, ARGV[1]), redis.call('HGETALL', KEYS[2])}
"""

_RECORD = """
local n = tonumber(ARGV[3])
if n > 0 then
  for j = 4, 3 + n, 1000 do  -- unpack() has a limit: push long histories in slices
    redis.call('LPUSH', KEYS[1], unpack(ARGV, j, math.min(j + 999, 3 + n)))
  end
  redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[1]) - 1)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
local function newer(a, b) return tonumber(a) > tonumber(b) end
local longest = 0
for i = 4 + n, #ARGV, 4 do
  local campaign, window, keep = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local value = ARGV[i + 3]
  local old = keep > 0 and redis.call('HGET', KEYS[2], campaign)
  if old then
    local times, kept = {}, 0
    for t in string.gmatch(value, '[^,]+') do times[#times + 1] = t end
    for t in string.gmatch(string.sub(old, string.find(old, ':', 1, true) + 1), '[^,]+') do
      if kept == keep then break end
      kept = kept + 1
      times[#times + 1] = t
    end
    table.sort(times, newer)  -- another process may have written newer times first
    value = table.concat(times, ',')
  end
  redis.call('HSET', KEYS[2], campaign, ARGV[i + 1] .. ':' .. value)
  if window > longest then longest = window end
end
if longest > 0 and redis.call('PTTL', KEYS[2]) < longest then
  redis.call('PEXPIRE', KEYS[2], longest)
end
return 1
"""


class _Health:
    """Whether Redis answers, and when to try again: after a failure, nothing is sent for a
    backoff (0.1 s doubling to 2 s), then one probe at a time. State changes are logged
    once, not per request."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.down = False
        self.probing = False
        self.backoff_s = 0.0
        self.retry_at = 0.0
        self.down_since = 0.0
        self.failures = 0

    def blocked(self) -> bool:
        """True while nothing should be sent (cheap: the hot path asks per load)."""
        return self.down and (self.probing or time.monotonic() < self.retry_at)

    def may_try(self) -> bool:
        """True if a call may go to Redis now; while down, the caller becomes the probe."""
        if not self.down:
            return True
        if self.blocked():
            return False
        self.probing = True
        return True

    def ok(self) -> None:
        if self.down:
            log.info(
                "users store: Redis at %s answers again after %.1f s down (%d failed tries)",
                self.where, time.monotonic() - self.down_since, self.failures,
            )  # fmt: skip
            self.down = False
            self.failures = 0
        self.probing = False

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self.failures += 1
        if not self.down:
            self.down, self.down_since, self.backoff_s = True, now, BACKOFF_START_S
            log.warning(
                "users store: Redis at %s is unreachable (%s: %s); loads answer UNKNOWN and "
                "records are queued until it is back",
                self.where, type(exc).__name__, exc,
            )  # fmt: skip
        elif self.probing:
            self.backoff_s = min(self.backoff_s * 2, BACKOFF_MAX_S)
        self.probing = False
        self.retry_at = now + self.backoff_s


class RedisUsers:
    """User state shared through Redis by any number of bid-server processes (see the module
    docstring for the key layout, batching and what happens while Redis is down)."""

    def __init__(
        self,
        url: str,
        prefix: str = "attnx",
        history_len: int = DEFAULT_HISTORY_LEN,
        history_ttl_s: int = HISTORY_TTL_S,
        clock_ms: Callable[[], int] = wall_ms,
        flush_interval_s: float = 0.02,
    ) -> None:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError

        if history_len < 1:
            raise ValueError(f"history_len must be >= 1, got {history_len}")
        if history_ttl_s < 1:
            raise ValueError(f"history_ttl_s must be >= 1, got {history_ttl_s}")
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix must be non-empty without braces, got {prefix!r}")
        self.prefix = prefix
        self.history_len = history_len
        self.history_ttl_s = history_ttl_s
        self.clock_ms = clock_ms
        self.flush_interval_s = flush_interval_s
        self.max_pending_users = MAX_PENDING_USERS
        self.dropped = 0  # impressions never written: dropped past max_pending_users, or refused

        def client(socket_timeout: float, retry: Retry):
            return async_client(
                url,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=socket_timeout,
                retry=retry,
            )

        # Reads are idempotent: a broken pooled connection (Redis restarted) is reconnected
        # once; a timeout is not retried (a hung Redis would cost the hot path twice).
        self._reader = client(READ_TIMEOUT_S, Retry(NoBackoff(), 1, (RedisConnectionError,)))
        # A resent pipeline of record scripts could apply them twice: no retries.
        self._writer = client(WRITE_TIMEOUT_S, Retry(NoBackoff(), 0))
        self._record_script, self._load_script = Script(_RECORD), Script(_LOAD)
        self._down_errors = (RedisError, OSError, asyncio.TimeoutError)
        self._health = _Health(url.rpartition("@")[2])  # never log a password
        # loads of this loop turn, by user: one pipeline for all of them
        self._loads: dict[str, list[asyncio.Future[UserState]]] = {}
        self._tasks: set[asyncio.Task] = set()
        # records not yet written, by user, oldest first; `_recorded` counts record calls,
        # `_done` is the count up to which every one is written (or dropped)
        self._pending: OrderedDict[str, _Changes] = OrderedDict()
        self._recorded = 0
        self._done = 0
        self._dropping = False
        self._wake: asyncio.Event | None = None
        self._write_task: asyncio.Task | None = None

    def _keys(self, user_id: str) -> tuple[str, str]:
        base = f"{self.prefix}:user:{{{user_id}}}"
        return f"{base}:history", f"{base}:caps"

    # --- reads ---------------------------------------------------------------------------

    async def load(self, user_id: str) -> UserState:
        """Batched: every load of this loop turn shares one pipeline, sent on the next turn."""
        if not user_id:
            return UserState([], {})
        if self._health.blocked():
            return _unknown()  # Redis is down: no latency, no connection attempt
        loop = asyncio.get_running_loop()
        future: asyncio.Future[UserState] = loop.create_future()
        waiting = self._loads.get(user_id)
        if waiting is not None:
            waiting.append(future)
        else:
            if not self._loads:
                loop.call_soon(self._send_loads)
            self._loads[user_id] = [future]
        return await future

    def _send_loads(self) -> None:
        loads, self._loads = self._loads, {}
        if not loads:  # answered by close()
            return
        if not self._health.may_try():
            _resolve(loads, None)
            return
        self._spawn(self._fetch(loads, probe=self._health.probing))

    async def _fetch(self, loads: dict[str, list[asyncio.Future[UserState]]], probe: bool) -> None:
        states: dict[str, UserState] | None = None
        try:
            if probe:  # after an outage, pooled connections are likely dead: start afresh
                await _drop_idle_connections(self._reader)
            replies = await self._read(list(loads))
            self._health.ok()
            now = self.clock_ms()
            states = {
                user_id: UserState(
                    [int(item) for item in history],
                    _parse_caps(dict(zip(caps[::2], caps[1::2], strict=True)), now),
                )
                for user_id, (history, caps) in zip(loads, replies, strict=True)
            }
        except self._down_errors as exc:
            self._health.failed(exc)
        except Exception:  # not Redis being down (a bug, a foreign value): still never raise
            log.exception("users store: a batch of %d loads failed", len(loads))
        finally:
            _resolve(loads, states)

    async def _read(self, user_ids: list[str]) -> list:
        """One load script call per user, all in one pipeline (on a cluster, concurrent)."""
        calls = [(self._keys(user_id), [self.history_len - 1]) for user_id in user_ids]
        replies = await self._load_script.run(self._reader, calls)
        if errors := [r for r in replies if isinstance(r, Exception)]:
            raise errors[0]
        return replies

    # --- writes --------------------------------------------------------------------------

    def record(self, user_id: str, impressions: list[Impression]) -> None:
        """Folds the impressions into the user's pending change; the writer task sends it."""
        _check(user_id, impressions)
        if not impressions:
            return
        changes = self._pending.get(user_id)
        if changes is None:
            changes = self._pending[user_id] = _Changes(self.history_len)
            if len(self._pending) > self.max_pending_users:
                self._drop_oldest()
        changes.add(impressions, self.clock_ms())
        self._recorded += 1
        self._start_writer()

    def _start_writer(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # recorded outside a loop: the next flush or load starts it
            return
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._write_task is None or self._write_task.done():
            self._write_task = loop.create_task(self._write_loop())
        self._wake.set()

    async def _write_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.flush_interval_s)  # gather a flush's worth of records
            if not self._pending:  # nothing in flight either: all recorded is written or dropped
                self._done = self._recorded
                self._wake.clear()
                continue
            if not self._health.may_try():
                await asyncio.sleep(max(self._health.retry_at - time.monotonic(), 0))
                continue
            await self._write_pending(probe=self._health.probing)

    async def _write_pending(self, probe: bool) -> None:
        batch, upto = list(self._pending.items()), self._recorded
        self._pending = OrderedDict()
        assert self._wake is not None
        self._wake.clear()
        if probe:  # after an outage, pooled connections are likely dead: start afresh
            await self._writer.connection_pool.disconnect(inuse_connections=False)
        for start in range(0, len(batch), WRITE_CHUNK_USERS):
            try:
                await self._write(batch[start : start + WRITE_CHUNK_USERS])
            except self._down_errors as exc:
                self._health.failed(exc)
                self._requeue(batch[start:])
                return
            except asyncio.CancelledError:  # close(): it clears what is left
                self._requeue(batch[start:])
                raise
            except Exception:  # not Redis being down: sending it again would fail again
                lost = batch[start:]
                self.dropped += sum(changes.count for _, changes in lost)
                log.exception("users store: dropped the records of %d users", len(lost))
                return
        self._health.ok()
        if self._dropping:
            log.warning("users store: %d impressions were dropped in all", self.dropped)
            self._dropping = False
        self._done = max(self._done, upto)

    async def _write(self, chunk: list[tuple[str, _Changes]]) -> None:
        """One pipeline: one script call per user (on a cluster, concurrent calls). Redis
        forgets scripts when it restarts: `Script` loads it again and resends those."""
        calls = [(self._keys(user_id), self._args(changes)) for user_id, changes in chunk]
        results = await self._record_script.run(self._writer, calls)
        for (user_id, changes), result in zip(chunk, results, strict=True):
            if isinstance(result, Exception):
                self.dropped += changes.count  # e.g. WRONGTYPE: resending cannot help
                log.error("users store: records of user %r refused: %s", user_id, result)

    def _args(self, changes: _Changes) -> list[int | str]:
        args: list[int | str] = [self.history_len, self.history_ttl_s, len(changes.items)]
        args.extend(reversed(changes.items))
        for campaign_id, cap in changes.caps.items():
            args += (campaign_id, cap.window_ms, cap.keep, ",".join(map(str, cap.times)))
        return args

    def _requeue(self, failed: list[tuple[str, _Changes]]) -> None:
        """Put a failed write back, in front of the records made since it was taken."""
        merged = OrderedDict(failed)
        for user_id, newer in self._pending.items():
            older = merged.get(user_id)
            if older is None:
                merged[user_id] = newer
            else:
                older.then(newer)
        self._pending = merged
        while len(self._pending) > self.max_pending_users:
            self._drop_oldest()
        assert self._wake is not None
        self._wake.set()

    def _drop_oldest(self) -> None:
        _, changes = self._pending.popitem(last=False)
        self.dropped += changes.count
        if not self._dropping:
            self._dropping = True
            log.warning(
                "users store: more than %d users' records wait for Redis; dropping the oldest",
                self.max_pending_users,
            )

    async def flush(self) -> None:
        """Waits (indefinitely, retrying while Redis is down: bound it with asyncio.wait_for)
        until every record made before the call is written, or dropped."""
        target = self._recorded
        while self._done < target:
            self._start_writer()
            await asyncio.sleep(self.flush_interval_s)

    async def close(self) -> None:
        """Writes what is queued (for up to CLOSE_FLUSH_S), then lets go of Redis."""
        try:
            await asyncio.wait_for(self.flush(), CLOSE_FLUSH_S)
        except TimeoutError:
            lost = sum(c.count for c in self._pending.values())
            self.dropped += lost
            log.warning("users store: closed with %d impressions not written to Redis", lost)
        tasks = [t for t in (self._write_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        _resolve(self._loads, None)
        self._loads = {}
        self._write_task = None
        self._pending.clear()
        await self._reader.aclose()
        await self._writer.aclose()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # a task nobody references may be garbage-collected mid-flight
        task.add_done_callback(self._tasks.discard)


async def _drop_idle_connections(client) -> None:
    """After an outage, pooled connections are likely dead (a cluster client finds its
    nodes again by itself)."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        await pool.disconnect(inuse_connections=False)


def _parse_caps(raw: dict[bytes, bytes], now_ms: int) -> dict[str, list[int]]:
    """HGETALL reply -> unexpired times per campaign (values are "window_ms:t1,t2,...")."""
    seen = {}
    for campaign_id, value in raw.items():
        window, _, times = value.partition(b":")
        cutoff = now_ms - int(window)
        kept = [t for t in map(int, times.split(b",")) if t > cutoff]
        if kept:
            seen[campaign_id.decode()] = kept
    return seen


def _resolve(
    loads: dict[str, list[asyncio.Future[UserState]]], states: dict[str, UserState] | None
) -> None:
    """Answer every waiting load: its state, or UNKNOWN; a copy for each extra waiter."""
    for user_id, futures in loads.items():
        state = None if states is None else states.get(user_id)
        for future in futures:
            if not future.done():
                if state is None:
                    future.set_result(_unknown())
                else:
                    future.set_result(state)
                    seen = {c: list(t) for c, t in state.seen.items()}
                    state = UserState(list(state.history), seen)


def open_users(
    url: str, prefix: str = "attnx", history_len: int = DEFAULT_HISTORY_LEN
) -> UserStore:
    """The store `config.state.url` names: "memory" (the embedded default, one process) or
    a redis:// / rediss:// / unix:// URL (shared by every process using that Redis)."""
    if url == "memory":
        return MemoryUsers(history_len)
    if url.startswith(REDIS_SCHEMES):
        return RedisUsers(url, prefix, history_len)
    raise ValueError(
        f'config.state.url must be "memory" or a redis://, rediss:// or unix:// URL, got {url!r}'
    )
