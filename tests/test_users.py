"""The per-user store (histories and frequency-cap times): one behavioural suite for the
memory and the Redis backends, then what only Redis has: several processes, key layout,
batching, and a Redis that goes away and comes back."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable

import pytest
import redis
import redis.asyncio.client

from exchange import users as users_module
from exchange.users import (
    UNKNOWN,
    Impression,
    MemoryUsers,
    RedisUsers,
    UserState,
    UserStore,
    _Changes,
    open_users,
)
from tests.conftest import PrivateRedis, RedisTarget

T0 = 1_700_000_000_000  # ms


class MsClock:
    """A settable clock in ms, for record times and expiry."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def shown(item: int, campaign: str = "c", count: int = 0, window_ms: int = 0) -> Impression:
    return Impression(campaign, item, count, window_ms)


class Stores:
    """Makes stores of one backend; `run(scenario)` runs an async scenario in a fresh event
    loop and closes every store made for it, in that loop."""

    def __init__(self, kind: str, target: RedisTarget | None) -> None:
        self.kind = kind
        self.target = target
        self.made: list[UserStore] = []

    def __call__(self, clock_ms: Callable[[], int] | None = None, **kw) -> UserStore:
        clock = clock_ms or MsClock()
        if self.kind == "memory":
            made: UserStore = MemoryUsers(clock_ms=clock, **kw)
        else:
            assert self.target is not None
            kw.setdefault("prefix", self.target.prefix)
            made = RedisUsers(self.target.url, clock_ms=clock, **kw)
        self.made.append(made)
        return made

    def run(self, scenario: Callable[[], Awaitable[None]]) -> None:
        async def main() -> None:
            try:
                await scenario()
            finally:
                for store in self.made:
                    await store.close()
                self.made.clear()

        asyncio.run(main())


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def stores(request: pytest.FixtureRequest) -> Stores:
    if request.param == "memory":
        return Stores("memory", None)
    target: RedisTarget = request.getfixturevalue("redis_target")
    if request.param == "redis-cluster":  # the same suite against a three-node cluster
        target = RedisTarget(request.getfixturevalue("redis_cluster"), target.prefix)
    return Stores("redis", target)


@pytest.fixture
def redis_stores(redis_target: RedisTarget) -> Stores:
    return Stores("redis", redis_target)


class PipelineCounter:
    """Counts pipeline round trips to Redis (redis-py's Pipeline.execute) and their sizes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        real = redis.asyncio.client.Pipeline.execute
        counter = self

        async def execute(pipe, *args, **kw):
            counter.sizes.append(len(pipe.command_stack))
            return await real(pipe, *args, **kw)

        monkeypatch.setattr(redis.asyncio.client.Pipeline, "execute", execute)


@pytest.fixture
def pipelines(monkeypatch: pytest.MonkeyPatch) -> PipelineCounter:
    return PipelineCounter(monkeypatch)


# --- the behaviour both backends share ----------------------------------------------------


def test_an_unknown_user_has_an_empty_known_state(stores: Stores):
    async def scenario():
        users = stores()
        state = await users.load("nobody")
        assert state == UserState([], {})
        assert state.known

    stores.run(scenario)


def test_history_is_newest_first_with_duplicates_and_trimmed_to_its_length(stores: Stores):
    async def scenario():
        users = stores(history_len=3)
        users.record("u", [shown(1)])
        assert (await flushed_load(users, "u")).history == [1]
        users.record("u", [shown(2), shown(3)])  # in list order: 3 is the newest
        assert (await flushed_load(users, "u")).history == [3, 2, 1]
        users.record("u", [shown(4), shown(3)])
        assert (await flushed_load(users, "u")).history == [3, 4, 3]  # duplicates are kept
        for item in (5, 6, 7, 8):  # several records folded into one write
            users.record("u", [shown(item)])
        assert (await flushed_load(users, "u")).history == [8, 7, 6]

    stores.run(scenario)


def test_cap_times_are_newest_first_and_trimmed_to_the_cap_count(stores: Stores):
    clock = MsClock()

    async def scenario():
        users = stores(clock_ms=clock)
        hour = 3_600_000

        def at(t: int, count: int = 3, campaign: str = "c") -> None:
            clock.now = T0 + t
            users.record("u", [shown(t + 1, campaign, count, hour)])

        at(1)
        at(2)  # two records in one write
        assert (await flushed_load(users, "u")).seen == {"c": [T0 + 2, T0 + 1]}
        at(3)
        at(4)
        assert (await flushed_load(users, "u")).seen == {"c": [T0 + 4, T0 + 3, T0 + 2]}
        at(5)  # one more, written on its own: the oldest stored time goes
        assert (await flushed_load(users, "u")).seen == {"c": [T0 + 5, T0 + 4, T0 + 3]}
        at(6, count=1)  # the cap was lowered: only the newest time is needed
        assert (await flushed_load(users, "u")).seen == {"c": [T0 + 6]}
        at(7, count=2)
        at(8, count=4)
        at(9, count=2)  # lowered again within one write: cuts the times stored before it
        assert (await flushed_load(users, "u")).seen == {"c": [T0 + 9, T0 + 8]}
        at(10, count=5)
        assert (await flushed_load(users, "u")).seen == {"c": [T0 + 10, T0 + 9, T0 + 8]}
        clock.now = T0 + 20  # several impressions of one campaign in one call share the time
        users.record("v", [shown(1, "c", 2, hour), shown(2, "c", 2, hour), shown(3, "c", 2, hour)])
        assert (await flushed_load(users, "v")).seen == {"c": [T0 + 20, T0 + 20]}

    stores.run(scenario)


def test_times_expire_at_the_window_given_by_the_latest_record(stores: Stores):
    clock = MsClock()

    async def scenario():
        users = stores(clock_ms=clock)
        users.record("u", [shown(1, "c", 2, 1000), shown(2, "d", 5, 10_000)])
        clock.now = T0 + 500
        users.record("u", [shown(3, "c", 2, 1000)])
        await users.flush()
        clock.now = T0 + 999
        assert (await users.load("u")).seen == {"c": [T0 + 500, T0], "d": [T0]}
        clock.now = T0 + 1000  # a time at now - window is out of the window
        assert (await users.load("u")).seen == {"c": [T0 + 500], "d": [T0]}
        clock.now = T0 + 1500  # nothing left: the campaign is absent, not empty
        assert (await users.load("u")).seen == {"d": [T0]}
        assert (await users.load("u")).history == [3, 2, 1]  # the history does not expire
        users.record("u", [shown(4, "c", 2, 5000)])  # a longer window for c from now on
        await users.flush()
        clock.now = T0 + 5400
        assert (await users.load("u")).seen == {"c": [T0 + 1500, T0 + 500], "d": [T0]}
        clock.now = T0 + 6000
        assert (await users.load("u")).seen == {"c": [T0 + 1500], "d": [T0]}

    stores.run(scenario)


def test_uncapped_impressions_go_into_the_history_only(stores: Stores):
    clock = MsClock()

    async def scenario():
        users = stores(clock_ms=clock)
        users.record("u", [shown(1, "c")])  # cap_count 0: no cap
        assert await flushed_load(users, "u") == UserState([1], {})
        users.record("u", [shown(2, "c", 1, 1000)])
        clock.now += 10
        users.record("u", [shown(3, "c")])  # an uncapped impression leaves c's times alone
        assert await flushed_load(users, "u") == UserState([3, 2, 1], {"c": [T0]})

    stores.run(scenario)


def test_users_and_campaigns_are_kept_apart(stores: Stores):
    clock = MsClock()

    async def scenario():
        users = stores(clock_ms=clock)
        users.record("alice", [shown(1, "c", 3, 60_000), shown(2, "d", 3, 60_000)])
        clock.now += 1
        users.record("bob", [shown(3, "c", 3, 60_000)])
        clock.now += 1
        users.record("alice", [shown(4, "d", 3, 60_000)])
        await users.flush()
        alice, bob = await asyncio.gather(users.load("alice"), users.load("bob"))
        assert alice == UserState([4, 2, 1], {"c": [T0], "d": [T0 + 2, T0]})
        assert bob == UserState([3], {"c": [T0 + 1]})
        assert await users.load("carol") == UserState([], {})

    stores.run(scenario)


def test_a_loaded_state_belongs_to_the_caller(stores: Stores):
    async def scenario():
        users = stores()
        users.record("u", [shown(1, "c", 2, 60_000)])
        await users.flush()
        first, second = await asyncio.gather(users.load("u"), users.load("u"))
        first.history.append(99)
        first.seen["c"].append(99)
        assert second == (await users.load("u")) == UserState([1], {"c": [T0]})

    stores.run(scenario)


@pytest.mark.parametrize(
    ("user_id", "impressions", "message"),
    [
        ("u", [shown(0)], r"impressions\[0\]\.item must be positive"),
        ("u", [shown(1), shown(-3)], r"impressions\[1\]\.item must be positive"),
        ("u", [shown(1, "c", -1, 10)], r"impressions\[0\]\.cap_count must be >= 0"),
        ("u", [shown(1, "c", 2, 0)], r"impressions\[0\]\.cap_window_ms must be positive"),
        ("u", [shown(1), shown(2, "")], r"impressions\[1\]\.campaign_id must not be empty"),
        ("", [shown(1)], r"user_id must not be empty"),
    ],
)
def test_bad_impressions_name_the_field_and_record_nothing(
    stores: Stores, user_id, impressions, message
):
    async def scenario():
        users = stores()
        with pytest.raises(ValueError, match=message):
            users.record(user_id, impressions)
        assert await flushed_load(users, "u") == UserState([], {})  # not even the good ones

    stores.run(scenario)


async def flushed_load(users: UserStore, user_id: str) -> UserState:
    await users.flush()
    return await users.load(user_id)


def test_records_folded_before_a_write_equal_the_records_one_by_one(stores: Stores):
    """Random records of capped campaigns (counts that go up and down) and flushes at random
    points: the store must answer what applying each record in turn gives."""
    rng = random.Random(5)
    clock = MsClock()

    async def scenario():
        users = stores(clock_ms=clock, history_len=4)
        history: list[int] = []
        seen: dict[str, list[int]] = {}
        for step in range(300):
            clock.now = T0 + step
            batch = [
                shown(rng.randint(1, 9), rng.choice("ab"), rng.randint(0, 4), 1_000_000)
                for _ in range(rng.randint(1, 3))
            ]
            users.record("u", batch)
            for imp in batch:
                history = [imp.item, *history][:4]
                if imp.cap_count:
                    seen[imp.campaign_id] = [clock.now, *seen.get(imp.campaign_id, [])]
                    del seen[imp.campaign_id][imp.cap_count :]
            if rng.random() < 0.3:
                assert await flushed_load(users, "u") == UserState(history, seen), step

    stores.run(scenario)


def test_a_failed_write_folded_with_later_records_equals_them_one_by_one():
    """What a write that failed puts back, followed by what was recorded meanwhile, applied
    to what Redis holds (as the script does), equals the records applied one by one."""
    rng = random.Random(11)
    for case in range(500):
        stored_items = [rng.randint(1, 9) for _ in range(rng.randint(0, 4))]
        stored = sorted(rng.sample(range(100), rng.randint(0, 5)), reverse=True)
        ops = [(1000 + i, rng.randint(1, 9), rng.randint(1, 5)) for i in range(rng.randint(1, 8))]
        items, times = list(stored_items), list(stored)
        for t, item, count in ops:
            items = [item, *items][:4]
            times = [t, *times][:count]
        cut = rng.randint(1, len(ops))
        older, newer = _Changes(4), _Changes(4)
        for part, changes in ((ops[:cut], older), (ops[cut:], newer)):
            for t, item, count in part:
                changes.add([shown(item, "c", count, 10)], t)
        older.then(newer)
        cap = older.caps["c"]
        assert cap.times + stored[: cap.keep] == times, (case, stored, ops, cut)
        assert [*older.items, *stored_items][:4] == items, (case, stored_items, ops, cut)


# --- memory only --------------------------------------------------------------------------


def test_memory_forgets_the_least_recently_used_user_beyond_max_users():
    async def scenario():
        users = MemoryUsers(max_users=2)
        users.record("a", [shown(1)])
        users.record("b", [shown(2)])
        assert (await users.load("a")).history == [1]  # a load counts as a use
        users.record("c", [shown(3)])  # one too many: b, the least recently used, goes
        assert (await users.load("b")).history == []
        assert (await users.load("a")).history == [1]
        assert (await users.load("c")).history == [3]
        assert users.evicted == 1
        users.record("c", [shown(4)])  # a record counts as a use
        users.record("d", [shown(5)])
        assert (await users.load("c")).history == [4, 3]
        assert (await users.load("a")).history == []

    asyncio.run(scenario())


def test_a_memory_load_never_suspends():
    users = MemoryUsers()
    users.record("u", [shown(7)])
    coro = users.load("u")
    with pytest.raises(StopIteration) as done:  # finished at the first step: no await inside
        coro.send(None)
    assert done.value.value == UserState([7], {})


def test_open_users_knows_its_urls():
    assert isinstance(open_users("memory"), MemoryUsers)
    made = open_users("redis://127.0.0.1:6379/15", prefix="p", history_len=7)
    assert isinstance(made, RedisUsers)
    assert (made.prefix, made.history_len) == ("p", 7)
    asyncio.run(made.close())
    with pytest.raises(ValueError, match=r"config\.state\.url must be \"memory\" or a redis://"):
        open_users("postgres://nope")


# --- Redis only ---------------------------------------------------------------------------


def test_two_processes_sharing_redis_see_each_others_records(redis_stores: Stores):
    clock = MsClock()

    async def scenario():
        one, two = redis_stores(clock_ms=clock), redis_stores(clock_ms=clock)
        for t, store in enumerate([one, two, one, two, two]):
            clock.now = T0 + t
            store.record("u", [shown(t + 1, "c", 3, 60_000)])
            await store.flush()
        expected = UserState([5, 4, 3, 2, 1], {"c": [T0 + 4, T0 + 3, T0 + 2]})
        assert await one.load("u") == expected
        assert await two.load("u") == expected
        late = redis_stores(clock_ms=clock, flush_interval_s=0.2)
        clock.now = T0 + 10
        late.record("u", [shown(6, "c", 3, 60_000)])  # written after a newer one of two's
        clock.now = T0 + 11
        two.record("u", [shown(7, "c", 3, 60_000)])
        await two.flush()
        await late.flush()
        # times stay newest first; the history is in the order written
        assert await one.load("u") == UserState(
            [6, 7, 5, 4, 3, 2, 1], {"c": [T0 + 11, T0 + 10, T0 + 4]}
        )
        for t in range(100):  # both at once, without waiting for each other
            one.record("hot", [shown(1000 + t)])
            two.record("hot", [shown(2000 + t)])
            await asyncio.sleep(0)
        await asyncio.gather(one.flush(), two.flush())
        history = (await one.load("hot")).history
        assert len(history) == 50  # the default length
        assert [i for i in history if i < 2000] == sorted(
            (i for i in history if i < 2000), reverse=True
        )
        assert [i for i in history if i >= 2000] == sorted(
            (i for i in history if i >= 2000), reverse=True
        )

    redis_stores.run(scenario)


def test_stores_with_other_prefixes_do_not_see_each_other(redis_target: RedisTarget):
    async def scenario():
        ours = RedisUsers(redis_target.url, prefix=redis_target.prefix)
        theirs = RedisUsers(redis_target.url, prefix=f"{redis_target.prefix}-other")
        try:
            ours.record("u", [shown(1, "c", 1, 60_000)])
            await ours.flush()
            assert await theirs.load("u") == UserState([], {})
            theirs.record("u", [shown(2)])
            await theirs.flush()
            assert (await ours.load("u")).history == [1]
        finally:
            await ours.close()
            await theirs.close()
            client = redis.Redis.from_url(redis_target.url)
            client.delete(*client.keys(f"{redis_target.prefix}-other:*"))

    asyncio.run(scenario())


def test_keys_share_a_hash_tag_and_expire_no_sooner_than_needed(redis_stores: Stores):
    prefix = redis_stores.target.prefix
    client = redis.Redis.from_url(redis_stores.target.url)
    history_key, caps_key = f"{prefix}:user:{{u:1}}:history", f"{prefix}:user:{{u:1}}:caps"

    async def scenario():
        users = redis_stores(history_len=3, history_ttl_s=1000)
        users.record("u:1", [shown(i) for i in (1, 2)])
        await users.flush()
        users.record("u:1", [shown(i, "c", 2, 60_000) for i in (3, 4)])
        await users.flush()
        assert client.lrange(history_key, 0, -1) == [b"4", b"3", b"2"]  # trimmed in Redis
        assert 990 < client.ttl(history_key) <= 1000
        assert client.hgetall(caps_key) == {b"c": f"60000:{T0},{T0}".encode()}
        assert 59_000 < client.pttl(caps_key) <= 60_000
        users.record("u:1", [shown(5, "d", 1, 1000)])  # a shorter window never shortens it
        await users.flush()
        assert 59_000 < client.pttl(caps_key) <= 60_000
        users.record("u:1", [shown(6, "e", 1, 120_000)])  # a longer one lengthens it
        await users.flush()
        assert 119_000 < client.pttl(caps_key) <= 120_000
        assert sorted(client.keys(f"{prefix}:*")) == sorted(
            k.encode() for k in (history_key, caps_key)
        )

    redis_stores.run(scenario)
    client.close()


def test_loads_of_one_loop_turn_share_one_pipeline(redis_stores: Stores, pipelines):
    async def scenario():
        users = redis_stores()
        for n in range(32):
            users.record(f"u{n}", [shown(n + 1)])
        await users.flush()  # warm: script loaded, connections made
        pipelines.sizes.clear()
        states = await asyncio.gather(*(users.load(f"u{n}") for n in range(32)))
        assert [s.history for s in states] == [[n + 1] for n in range(32)]
        assert pipelines.sizes == [32]  # one load script per user, one round trip
        pipelines.sizes.clear()
        await users.load("u1")
        await users.load("u2")
        assert pipelines.sizes == [1, 1]  # loads of separate turns go separately

    redis_stores.run(scenario)


def test_records_of_many_users_are_written_in_one_pipeline(redis_stores: Stores, pipelines):
    async def scenario():
        users = redis_stores()
        users.record("warm", [shown(1)])
        await users.flush()  # the script is known to Redis now
        pipelines.sizes.clear()
        for n in range(50):
            users.record(f"u{n}", [shown(n + 1, "c", 2, 60_000)])
            users.record(f"u{n}", [shown(n + 2)])
        await users.flush()
        assert pipelines.sizes == [50]  # one script call per user, all in one round trip
        assert (await users.load("u7")).history == [9, 8]

    redis_stores.run(scenario)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_down_redis_answers_unknown_at_once_and_records_never_raise(
    monkeypatch: pytest.MonkeyPatch, pipelines, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setattr(users_module, "CLOSE_FLUSH_S", 0.05)
    caplog.set_level(logging.INFO, logger="attnx.users")

    async def scenario():
        users = RedisUsers(f"redis://127.0.0.1:{free_port()}/0", prefix="nobody-listens")
        started = time.perf_counter()
        states = [await users.load(f"u{n}") for n in range(20)]
        elapsed = time.perf_counter() - started
        users.record("u0", [shown(1, "c", 1, 1000)])
        assert all(s == UNKNOWN and not s.known for s in states)
        assert elapsed < 0.05, f"20 loads took {elapsed * 1000:.1f} ms"
        assert len(pipelines.sizes) == 1  # the first found Redis down; the rest did not try
        await asyncio.sleep(0.35)  # a few backoffs: probes fail again
        assert await users.load("u0") == UNKNOWN
        await users.close()  # gives up on the queued record, without raising

    asyncio.run(scenario())
    down = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(down) == 1, [r.getMessage() for r in caplog.records]


def test_a_hung_redis_costs_one_timeout_per_backoff(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(users_module, "CLOSE_FLUSH_S", 0.05)
    with socket.socket() as hung:  # accepts connections (the kernel does), never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)

        async def scenario():
            users = RedisUsers(f"redis://127.0.0.1:{hung.getsockname()[1]}/0", prefix="hung")
            started = time.perf_counter()
            assert await users.load("u") == UNKNOWN  # waits out the short timeout once
            first = time.perf_counter() - started
            assert first < 0.5
            started = time.perf_counter()
            states = await asyncio.gather(*(users.load(f"u{n}") for n in range(20)))
            states += [await users.load(f"u{n}") for n in range(20)]
            elapsed = time.perf_counter() - started
            assert all(s == UNKNOWN for s in states)
            assert elapsed < 0.05, f"40 loads took {elapsed * 1000:.1f} ms after the first"
            await users.close()

        asyncio.run(scenario())


def test_records_made_while_redis_is_down_are_written_when_it_is_back(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="attnx.users")
    clock = MsClock()

    async def scenario():
        users = RedisUsers(private_redis.url, clock_ms=clock)
        users.record("u", [shown(1, "c", 3, 3_600_000)])
        await users.flush()
        private_redis.stop()
        for item in (2, 3):
            clock.now += 1
            users.record("u", [shown(item, "c", 3, 3_600_000)])
            users.record("v", [shown(item)])
            await asyncio.sleep(0.01)  # the writer tries, and fails
        assert await users.load("u") == UNKNOWN
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(users.flush(), 0.3)
        clock.now += 1
        users.record("u", [shown(4, "c", 3, 3_600_000)])
        private_redis.start()  # with its data, without its scripts
        await asyncio.wait_for(users.flush(), 5)
        assert await users.load("u") == UserState([4, 3, 2, 1], {"c": [T0 + 3, T0 + 2, T0 + 1]})
        assert (await users.load("v")).history == [3, 2]
        assert users.dropped == 0
        await users.close()

    asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m for m in messages) == 1, messages
    assert sum("answers again" in m for m in messages) == 1, messages


def test_records_waiting_for_redis_are_bounded_oldest_dropped_first(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
):
    async def scenario():
        users = RedisUsers(private_redis.url)
        users.max_pending_users = 3
        await users.load("warm")
        private_redis.stop()
        users.record("u0", [shown(1), shown(2)])
        await asyncio.sleep(0.01)  # the writer finds Redis down and puts the records back
        for n in range(1, 5):
            users.record(f"u{n}", [shown(1)])
        assert users.dropped == 3  # u0's two impressions and u1's
        private_redis.start()
        await asyncio.wait_for(users.flush(), 5)
        states = await asyncio.gather(*(users.load(f"u{n}") for n in range(5)))
        assert [s.history for s in states] == [[], [], [1], [1], [1]]
        await users.close()

    asyncio.run(scenario())
    dropping = [r for r in caplog.records if "dropping the oldest" in r.getMessage()]
    assert len(dropping) == 1
