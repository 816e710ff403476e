"""Token-bucket rate limits: the in-process limiter with an injected clock, and the Redis limiter
against the real server (127.0.0.1:6379, or BASTION_TEST_REDIS_URL).

Redis cases skip with the reason when no server answers, unless BASTION_REQUIRE_REDIS=1 makes
that a failure. Each Redis test uses its own random key prefix and deletes its keys afterwards.
No pytest-asyncio here: coroutines run under `asyncio.run` inside the tests.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from bastion.core.errors import ConfigError, InvalidInput
from bastion.serving.ratelimit import (
    _BUCKET_SCRIPT_SHA,
    MAX_BURST,
    Limit,
    LocalRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    Verdict,
    _verdict,
    limiter_from_url,
)

REDIS_URL = os.environ.get("BASTION_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(main())


# -- Limit, Verdict, cost ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "burst", "field"),
    [
        (0, 1, "rate"),
        (-1.0, 1, "rate"),
        (math.nan, 1, "rate"),
        (math.inf, 1, "rate"),
        (True, 1, "rate"),
        ("1", 1, "rate"),
        (1.0, 0, "burst"),
        (1.0, -5, "burst"),
        (1.0, MAX_BURST + 1, "burst"),
        (1.0, 2.0, "burst"),
        (1.0, True, "burst"),
    ],
)
def test_limit_rejects_invalid_values(rate: Any, burst: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Limit(rate=rate, burst=burst)
    assert info.value.code == "ratelimit.invalid"
    assert info.value.details["field"] == field


def test_limit_accepts_the_edges() -> None:
    assert Limit(rate=1e-9, burst=1).burst == 1
    assert Limit(rate=5, burst=MAX_BURST).burst == MAX_BURST


def test_cost_above_burst_is_a_caller_error() -> None:
    limiter = LocalRateLimiter(clock=FakeClock())
    with pytest.raises(InvalidInput) as info:
        limiter.try_acquire("k", Limit(rate=1, burst=3), cost=3.5)
    assert info.value.code == "ratelimit.cost_exceeds_burst"
    assert info.value.details == {"cost": 3.5, "burst": 3}
    assert len(limiter) == 0  # nothing was created for the bad call


@pytest.mark.parametrize("cost", [-1.0, math.nan, math.inf, -math.inf])
def test_cost_must_be_finite_and_not_negative(cost: float) -> None:
    limiter = LocalRateLimiter(clock=FakeClock())
    with pytest.raises(InvalidInput) as info:
        limiter.try_acquire("k", Limit(rate=1, burst=3), cost=cost)
    assert info.value.code == "ratelimit.invalid"


def test_cost_equal_to_burst_and_zero_cost() -> None:
    limiter = LocalRateLimiter(clock=FakeClock())
    limit = Limit(rate=1, burst=3)
    assert limiter.try_acquire("k", limit, cost=0).allowed
    assert limiter.try_acquire("k", limit, cost=3) == Verdict(True, 0.0, 0.0)
    peek = limiter.try_acquire("k", limit, cost=0)
    assert peek.allowed
    assert peek.remaining == 0.0


def test_fast_verdict_is_an_ordinary_verdict() -> None:
    fast = _verdict(False, 2.5, 0.5)
    assert fast == Verdict(allowed=False, retry_after=2.5, remaining=0.5)
    assert type(fast) is Verdict
    assert hash(fast) == hash(Verdict(False, 2.5, 0.5))
    with pytest.raises(AttributeError):
        fast.allowed = True  # type: ignore[misc]


@pytest.mark.parametrize(
    ("retry_after", "header"), [(0.0, "1"), (0.2, "1"), (1.0, "1"), (1.01, "2"), (59.5, "60")]
)
def test_retry_after_header_rounds_up_to_whole_seconds(retry_after: float, header: str) -> None:
    assert Verdict(False, retry_after, 0.0).retry_after_header == header


# -- LocalRateLimiter --------------------------------------------------------------------------


def test_burst_then_refusal() -> None:
    limiter = LocalRateLimiter(clock=FakeClock())
    limit = Limit(rate=1, burst=5)
    verdicts = [limiter.try_acquire("alice", limit) for _ in range(7)]
    assert [v.allowed for v in verdicts] == [True] * 5 + [False] * 2
    assert [v.remaining for v in verdicts[:5]] == [4, 3, 2, 1, 0]
    assert all(v.retry_after == 0.0 for v in verdicts[:5])


def test_refill_over_time_is_continuous_and_capped_at_burst() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock)
    limit = Limit(rate=2, burst=4)
    for _ in range(4):
        assert limiter.try_acquire("k", limit).allowed
    assert not limiter.try_acquire("k", limit).allowed
    clock.advance(0.25)  # half a token
    v = limiter.try_acquire("k", limit)
    assert not v.allowed
    assert v.remaining == pytest.approx(0.5)
    clock.advance(0.25)  # one token
    assert limiter.try_acquire("k", limit).allowed
    assert not limiter.try_acquire("k", limit).allowed
    clock.advance(3600)  # long idle: full, not 7200 tokens
    grants = sum(limiter.try_acquire("k", limit).allowed for _ in range(10))
    assert grants == 4


def test_retry_after_is_exact_time_to_enough_tokens() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock)
    limit = Limit(rate=4, burst=10)
    assert limiter.try_acquire("k", limit, cost=9).allowed  # 1 token left
    denied = limiter.try_acquire("k", limit, cost=3)
    assert not denied.allowed
    assert denied.retry_after == pytest.approx((3 - 1) / 4)
    assert denied.remaining == pytest.approx(1)
    clock.advance(denied.retry_after * 0.99)
    assert not limiter.try_acquire("k", limit, cost=3).allowed
    clock.advance(denied.retry_after * 0.01)
    ok = limiter.try_acquire("k", limit, cost=3)
    assert ok.allowed
    assert ok.remaining == pytest.approx(0, abs=1e-9)


def test_keys_are_independent() -> None:
    limiter = LocalRateLimiter(clock=FakeClock())
    limit = Limit(rate=1, burst=2)
    assert [limiter.try_acquire("a", limit).allowed for _ in range(3)] == [True, True, False]
    assert [limiter.try_acquire("b", limit).allowed for _ in range(3)] == [True, True, False]
    assert len(limiter) == 2


def test_a_lowered_burst_caps_the_stored_tokens() -> None:
    limiter = LocalRateLimiter(clock=FakeClock())
    assert limiter.try_acquire("k", Limit(rate=1, burst=100)).allowed  # 99 left
    smaller = Limit(rate=1, burst=3)
    assert sum(limiter.try_acquire("k", smaller).allowed for _ in range(10)) == 3


def test_a_clock_going_backwards_adds_no_tokens() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock)
    limit = Limit(rate=1, burst=1)
    assert limiter.try_acquire("k", limit).allowed
    clock.advance(-100)
    v = limiter.try_acquire("k", limit)
    assert not v.allowed
    assert v.remaining == 0.0
    assert v.retry_after == pytest.approx(1.0)


def test_the_async_acquire_and_the_protocol() -> None:
    limiter = LocalRateLimiter(clock=FakeClock())
    assert isinstance(limiter, RateLimiter)
    limit = Limit(rate=1, burst=1)

    async def scenario() -> list[bool]:
        out = [(await limiter.acquire("k", limit)).allowed for _ in range(2)]
        await limiter.close()
        out.append((await limiter.acquire("k", limit)).allowed)  # close() forgot the bucket
        return out

    assert run(scenario()) == [True, False, True]


def test_max_keys_must_be_positive() -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(InvalidInput) as info:
            LocalRateLimiter(max_keys=bad)  # type: ignore[arg-type]
        assert info.value.code == "ratelimit.invalid"


def test_eviction_drops_refilled_buckets_before_recently_used_ones() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock, max_keys=10)
    slow = Limit(rate=1e-6, burst=1)  # stays empty
    fast = Limit(rate=1000, burst=1)  # full again after 1 ms
    for i in range(5):  # oldest: empty buckets
        assert limiter.try_acquire(f"slow{i}", slow).allowed
    for i in range(5):  # newest: buckets that will have refilled
        assert limiter.try_acquire(f"fast{i}", fast).allowed
    clock.advance(1.0)
    assert len(limiter) == 10
    assert limiter.try_acquire("new", slow).allowed
    assert len(limiter) == 6  # the five refilled buckets went, the LRU empty ones stayed
    assert limiter.evictions == 5
    for i in range(5):  # their state survived: still empty
        assert not limiter.try_acquire(f"slow{i}", slow).allowed


def test_eviction_falls_back_to_least_recently_used() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock, max_keys=32)  # low water: 30
    limit = Limit(rate=1e-6, burst=1)  # nothing refills
    for i in range(32):
        assert limiter.try_acquire(f"k{i}", limit).allowed
    assert not limiter.try_acquire("k0", limit).allowed  # k0 becomes the most recently used
    assert limiter.try_acquire("new", limit).allowed
    assert len(limiter) == 31  # evicted down to 30, then "new"
    assert limiter.evictions == 2
    # k1 and k2 (least recently used) were forgotten and start full again; k0 was kept.
    assert limiter.try_acquire("k1", limit).allowed
    assert not limiter.try_acquire("k0", limit).allowed
    assert not limiter.try_acquire("k31", limit).allowed


def test_memory_stays_bounded_under_many_distinct_keys() -> None:
    limiter = LocalRateLimiter(clock=FakeClock(), max_keys=100)
    limit = Limit(rate=1e-6, burst=5)
    peak = 0
    for i in range(5_000):
        limiter.try_acquire(f"attacker-{i}", limit)
        peak = max(peak, len(limiter))
    assert peak == 100
    assert len(limiter) <= 100


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Make the interpreter switch threads every microsecond, so unlocked races show."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("frequent_thread_switches")
def test_thread_safety_grants_exactly_the_burst() -> None:
    limiter = LocalRateLimiter(clock=lambda: 0.0, max_keys=1000)  # frozen clock: no refill
    limit = Limit(rate=1, burst=1000)
    granted: list[int] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        mine = 0
        for _ in range(400):
            mine += limiter.try_acquire("shared", limit).allowed
            limiter.try_acquire(f"own-{threading.get_ident()}", limit)
        granted.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 8
    assert sum(granted) == 1000  # 3200 attempts, exactly the burst granted


@pytest.mark.usefixtures("frequent_thread_switches")
def test_thread_safety_with_fractional_costs_and_real_clock() -> None:
    limiter = LocalRateLimiter()
    limit = Limit(rate=1e-9, burst=100)  # refill negligible during the test
    granted: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = 0.0
        for _ in range(500):
            if limiter.try_acquire("k", limit, cost=0.25).allowed:
                mine += 0.25
        with lock:
            granted.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == pytest.approx(100.0)


# -- limiter_from_url --------------------------------------------------------------------------


@pytest.mark.parametrize("url", [None, "", "memory://"])
def test_from_url_memory(url: str | None) -> None:
    limiter = limiter_from_url(url, max_keys=7)
    assert isinstance(limiter, LocalRateLimiter)
    assert limiter._max_keys == 7


def test_from_url_redis() -> None:
    limiter = limiter_from_url("redis://127.0.0.1:6379/3", prefix="x:", on_error="reject")
    assert isinstance(limiter, RedisRateLimiter)
    run(limiter.close())


@pytest.mark.parametrize(
    ("url", "scheme"),
    [("http://u:s3cret@host/", "http"), ("s3cret", ""), ("memcached://h", "memcached")],
)
def test_from_url_rejects_other_schemes_without_echoing_the_url(url: str, scheme: str) -> None:
    with pytest.raises(ConfigError) as info:
        limiter_from_url(url)
    assert info.value.code == "ratelimit.url_unsupported"
    assert info.value.details == {"scheme": scheme}
    assert "s3cret" not in str(info.value)
    assert "s3cret" not in repr(info.value.to_dict())


def test_malformed_redis_url_does_not_echo_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        RedisRateLimiter("redis://:hunter2@host:notaport/0")
    assert info.value.code == "ratelimit.url_invalid"
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"on_error": "allow"}, "on_error"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": math.inf}, "timeout"),
        ({"cooldown": -1}, "cooldown"),
    ],
)
def test_redis_limiter_options_are_validated(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        RedisRateLimiter(REDIS_URL, **kw)
    assert info.value.code == "ratelimit.invalid"
    assert info.value.details["field"] == field


# -- RedisRateLimiter against the real server -------------------------------------------------


def _redis_unavailable() -> str | None:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        where = urlsplit(REDIS_URL)  # host and port only: the URL may hold a password
        return f"Redis at {where.hostname}:{where.port or 6379} unreachable: {type(exc).__name__}"
    return None


@pytest.fixture(scope="module")
def redis_url() -> str:
    reason = _redis_unavailable()
    if reason is not None:
        if os.environ.get("BASTION_REQUIRE_REDIS") == "1":
            pytest.fail(f"{reason} (BASTION_REQUIRE_REDIS=1)")
        pytest.skip(reason)
    return REDIS_URL


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted after the test."""
    value = f"bastion:test:rl:{secrets.token_hex(8)}:"
    yield value
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=value + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def with_limiters(n: int, url: str, scenario: Callable[..., Awaitable[Any]], **kw: Any) -> Any:
    """Run `scenario(*limiters)` with `n` fresh RedisRateLimiters in one event loop.

    The timeout defaults to 1 s here: tests not about timeouts must not fail because a loaded
    machine took more than the production 50 ms to open a burst of connections.
    """
    kw.setdefault("timeout", 1.0)

    async def main() -> Any:
        limiters = [RedisRateLimiter(url, **kw) for _ in range(n)]
        try:
            return await scenario(*limiters)
        finally:
            for limiter in limiters:
                await limiter.close()

    return asyncio.run(main())


def test_redis_two_replicas_share_one_limit_exactly(redis_url: str, prefix: str) -> None:
    limit = Limit(rate=1e-6, burst=10)

    async def scenario(a: RedisRateLimiter, b: RedisRateLimiter) -> list[Verdict]:
        calls = [(a if i % 2 else b).acquire("principal:alice", limit) for i in range(40)]
        verdicts = list(await asyncio.gather(*calls))
        assert a.backend_errors == b.backend_errors == 0
        return verdicts

    verdicts = with_limiters(2, redis_url, scenario, prefix=prefix)
    assert sum(v.allowed for v in verdicts) == 10
    remaining = sorted(v.remaining for v in verdicts if v.allowed)
    assert remaining == pytest.approx(list(range(10)), abs=1e-3)


def test_ping_loads_the_script_or_says_no(redis_url: str, sync_redis: redis.Redis) -> None:
    async def scenario(r: RedisRateLimiter) -> bool:
        return await r.ping()

    sync_redis.script_flush()
    assert with_limiters(1, redis_url, scenario)
    assert sync_redis.script_exists(_BUCKET_SCRIPT_SHA) == [True]
    started = time.perf_counter()
    assert not with_limiters(1, "redis://127.0.0.1:1/0", scenario, timeout=0.05)
    assert time.perf_counter() - started < 0.5


def test_redis_keys_are_independent_and_prefixed(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    limit = Limit(rate=1e-6, burst=2)

    async def scenario(r: RedisRateLimiter) -> tuple[list[bool], list[bool]]:
        a = [(await r.acquire("a", limit)).allowed for _ in range(3)]
        b = [(await r.acquire("b", limit)).allowed for _ in range(3)]
        return a, b

    a, b = with_limiters(1, redis_url, scenario, prefix=prefix)
    assert a == b == [True, True, False]
    assert sorted(sync_redis.scan_iter(match=prefix + "*")) == [
        (prefix + "a").encode(),
        (prefix + "b").encode(),
    ]


def test_redis_retry_after_and_refill_use_the_server_clock(redis_url: str, prefix: str) -> None:
    async def scenario(r: RedisRateLimiter) -> None:
        slow = Limit(rate=0.5, burst=2)
        assert (await r.acquire("slow", slow)).allowed
        assert (await r.acquire("slow", slow)).allowed
        denied = await r.acquire("slow", slow)
        assert not denied.allowed
        assert denied.retry_after == pytest.approx(2.0, abs=0.1)  # (1 - ~0 tokens) / 0.5
        assert 0 <= denied.remaining < 0.05

        fast = Limit(rate=200, burst=1)
        assert (await r.acquire("fast", fast)).allowed
        first = await r.acquire("fast", fast)
        if not first.allowed:  # refill takes 5 ms
            await asyncio.sleep(first.retry_after + 0.005)
            assert (await r.acquire("fast", fast)).allowed

    with_limiters(1, redis_url, scenario, prefix=prefix)


def test_redis_cost_validation_happens_before_any_round_trip(prefix: str) -> None:
    async def scenario(r: RedisRateLimiter) -> None:
        with pytest.raises(InvalidInput) as info:
            await r.acquire("k", Limit(rate=1, burst=2), cost=5)
        assert info.value.code == "ratelimit.cost_exceeds_burst"
        with pytest.raises(InvalidInput):
            await r.acquire("k", Limit(rate=1, burst=2), cost=-1)
        assert r.backend_errors == 0

    # Against a closed port: a round trip would have counted a backend error.
    with_limiters(1, "redis://127.0.0.1:1/0", scenario, prefix=prefix)


def test_redis_keys_expire_once_the_bucket_would_be_full(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    async def scenario(r: RedisRateLimiter) -> None:
        await r.acquire("k", Limit(rate=1, burst=10), cost=3)  # 3 s to refill, + 1 s margin

    with_limiters(1, redis_url, scenario, prefix=prefix)
    ttl_ms = sync_redis.pttl(prefix + "k")
    assert 3_500 < ttl_ms <= 4_000
    stored = sync_redis.hgetall(prefix + "k")
    assert set(stored) == {b"t", b"ts"}
    assert float(stored[b"t"]) == pytest.approx(7.0, abs=0.01)


def test_redis_expiry_is_capped_for_very_slow_refill(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    async def scenario(r: RedisRateLimiter) -> None:
        await r.acquire("k", Limit(rate=1e-9, burst=10))

    with_limiters(1, redis_url, scenario, prefix=prefix)
    assert 0 < sync_redis.pttl(prefix + "k") <= 366 * 24 * 3600 * 1000


def test_redis_recovers_from_noscript(redis_url: str, prefix: str, sync_redis: redis.Redis) -> None:
    limit = Limit(rate=1e-6, burst=3)

    async def scenario(r: RedisRateLimiter) -> list[Verdict]:
        out = [await r.acquire("k", limit)]
        sync_redis.script_flush()
        out.append(await r.acquire("k", limit))  # NOSCRIPT → load → retry
        sync_redis.script_flush()
        out.append(await r.acquire("k", limit))
        out.append(await r.acquire("k", limit))
        assert r.backend_errors == 0
        return out

    verdicts = with_limiters(1, redis_url, scenario, prefix=prefix)
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts[:3]] == pytest.approx([2, 1, 0], abs=1e-3)


def test_unreachable_redis_falls_back_to_local_within_the_timeout() -> None:
    reasons: list[str] = []
    limit = Limit(rate=1e-6, burst=2)

    async def scenario(r: RedisRateLimiter) -> list[tuple[Verdict, float]]:
        out = []
        for _ in range(3):
            started = time.perf_counter()
            verdict = await r.acquire("k", limit)
            out.append((verdict, time.perf_counter() - started))
        assert r.backend_errors == 3
        assert len(r.fallback) == 1
        return out

    results = with_limiters(
        1,
        "redis://127.0.0.1:1/0",
        scenario,
        on_error="local",
        timeout=0.05,
        on_backend_error=reasons.append,
    )
    assert [v.allowed for v, _ in results] == [True, True, False]
    assert results[2][0].retry_after > 1000  # the local bucket's answer, not a flat 1 s
    assert all(elapsed < 0.05 + 0.1 for _, elapsed in results)
    assert reasons == ["error", "circuit_open", "circuit_open"]


def test_unreachable_redis_with_reject_denies_for_one_second() -> None:
    async def scenario(r: RedisRateLimiter) -> list[Verdict]:
        started = time.perf_counter()
        verdicts = [await r.acquire("k", Limit(rate=100, burst=100)) for _ in range(3)]
        assert time.perf_counter() - started < 0.05 + 0.1
        assert r.backend_errors == 3
        assert len(r.fallback) == 0  # the fallback was never consulted
        return verdicts

    verdicts = with_limiters(1, "redis://127.0.0.1:1/0", scenario, on_error="reject", timeout=0.05)
    assert verdicts == [Verdict(False, 1.0, 0.0)] * 3
    assert verdicts[0].retry_after_header == "1"


def test_a_redis_that_never_answers_costs_at_most_the_timeout() -> None:
    """A server that accepts TCP connections but never replies (a hung Redis)."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes handshakes; nobody ever reads or writes
    port = silent.getsockname()[1]
    reasons: list[str] = []
    try:

        async def scenario(r: RedisRateLimiter) -> tuple[Verdict, float]:
            started = time.perf_counter()
            verdict = await r.acquire("k", Limit(rate=1, burst=1))
            return verdict, time.perf_counter() - started

        verdict, elapsed = with_limiters(
            1,
            f"redis://127.0.0.1:{port}/0",
            scenario,
            timeout=0.05,
            on_backend_error=reasons.append,
        )
    finally:
        silent.close()
    assert verdict.allowed  # decided locally
    assert reasons == ["timeout"]
    assert 0.04 <= elapsed < 0.05 + 0.1


class FlakyProxy:
    """A TCP proxy to Redis that can be taken down (it then drops every new connection)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.up = True
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        self.up = False
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def stop(self) -> None:
        await self.down()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def test_redis_outage_then_recovery(redis_url: str, prefix: str) -> None:
    target = urlsplit(redis_url)
    limit = Limit(rate=1e-6, burst=5)
    reasons: list[str] = []

    async def scenario() -> None:
        proxy = FlakyProxy(target.hostname or "127.0.0.1", target.port or 6379)
        await proxy.start()
        r = RedisRateLimiter(
            f"redis://127.0.0.1:{proxy.port}{target.path or '/0'}",
            prefix=prefix,
            timeout=0.2,
            cooldown=0.05,
            on_backend_error=reasons.append,
        )
        try:
            assert (await r.acquire("k", limit)).remaining == pytest.approx(4)  # via Redis
            await proxy.down()
            outage = await r.acquire("k", limit)  # the local fallback starts full
            assert outage.allowed
            assert outage.remaining == pytest.approx(4)
            assert (await r.acquire("k", limit)).remaining == pytest.approx(
                3
            )  # skipped Redis (cooldown)
            await asyncio.sleep(0.06)
            proxy.up = True
            back = await r.acquire("k", limit)  # Redis again: its bucket had 4 left
            assert back.remaining == pytest.approx(3)
            assert r.backend_errors == 2
        finally:
            await r.close()
            await proxy.stop()

    asyncio.run(scenario())
    assert reasons[0] in ("error", "timeout")
    assert reasons[1] == "circuit_open"
