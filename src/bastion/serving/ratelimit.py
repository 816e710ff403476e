"""Token-bucket rate limits for the gateway: in-process by default, shared through Redis.

The gateway limits each principal and each endpoint with a token bucket. A bucket holds up to
`burst` tokens, starts full and refills continuously at `rate` tokens per second; a request of
`cost` tokens is allowed iff the bucket holds at least `cost` tokens, which are then taken. A
refused request learns when it could succeed: `retry_after = (cost - tokens) / rate` seconds,
which the gateway sends as `Retry-After` with its 429. A cost above `burst` could never succeed,
so it is a caller bug and raises `InvalidInput` (code `ratelimit.cost_exceeds_burst`) rather than
returning an infinite `retry_after`.

Two backends implement the `RateLimiter` protocol:

* `LocalRateLimiter` keeps buckets in a dict under one lock (thread-safe, about a microsecond per
  acquire). Memory is bounded: past `max_keys` buckets it first drops the buckets that have
  refilled (a full bucket and a missing one mean the same thing, so nothing is lost), then the
  least recently used ones, down to a low-water mark so the O(n) sweep is amortised over many
  inserts. An evicted bucket that was not full comes back full: a key evicted that way gains at
  most one burst, so size `max_keys` above the number of keys active within a refill period.
* `RedisRateLimiter` keeps each bucket in a Redis hash and updates it with one Lua script run by
  EVALSHA: one round trip, atomic across replicas, so N gateway replicas together honour one
  limit. The script reads the clock with Redis `TIME` (replicas' clocks may differ) and expires
  the key once the bucket would be full again (+ a margin), so idle keys vanish. The script is
  loaded on the first NOSCRIPT reply (and again after a `SCRIPT FLUSH` or a server restart).
  Every call is bounded by `timeout`; on any backend failure the limiter never raises: with
  `on_error="local"` it decides with an in-process fallback limiter (each replica then limits on
  its own, so the fleet admits up to N times the limit), with `on_error="reject"` it refuses
  with `retry_after=1`. Failures are counted in `backend_errors` (and reported to an optional
  callback), and after a failure Redis is left alone for `cooldown` seconds so that an outage
  costs requests nothing rather than a timeout each. `ping()` connects and loads the script
  before traffic arrives (startup, readiness). Requires Redis >= 5 (effects replication).

`limiter_from_url` picks the backend from configuration: nothing or `memory://` for the
in-process limiter, `redis://`, `rediss://` or `unix://` for Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from bastion.core.errors import ConfigError, InvalidInput

log = logging.getLogger("bastion.serving.ratelimit")

MAX_BURST = 10**9

#: Redis keys outlive the time to refill fully by this much (milliseconds).
_EXPIRY_MARGIN_MS = 1_000
#: ... and never live longer than this (a bucket refilling slower than that resets early).
_MAX_EXPIRY_MS = 366 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Limit:
    """`rate` tokens per second refill into a bucket holding at most `burst` tokens."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        rate_ok = isinstance(self.rate, int | float) and not isinstance(self.rate, bool)
        if not rate_ok or not (math.isfinite(self.rate) and self.rate > 0):
            raise InvalidInput(
                "a rate limit's rate must be a finite number of tokens per second above 0",
                code="ratelimit.invalid",
                details={"field": "rate"},
            )
        burst_ok = isinstance(self.burst, int) and not isinstance(self.burst, bool)
        if not burst_ok or not 1 <= self.burst <= MAX_BURST:
            raise InvalidInput(
                f"a rate limit's burst must be an integer from 1 to {MAX_BURST}",
                code="ratelimit.invalid",
                details={"field": "burst", "max": MAX_BURST},
            )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one acquire: `retry_after` seconds until it could succeed (0 if allowed);
    `remaining` tokens left in the bucket afterwards."""

    allowed: bool
    retry_after: float
    remaining: float

    @property
    def retry_after_header(self) -> str:
        """`Retry-After` value (RFC 9110 delay-seconds): whole seconds, rounded up, at least 1."""
        return str(max(1, math.ceil(self.retry_after)))


_REJECTED_BY_BACKEND = Verdict(allowed=False, retry_after=1.0, remaining=0.0)

# A frozen dataclass's __init__ goes through object.__setattr__ per field (~430 ns for three);
# the hot path fills the slots through their descriptors instead (~250 ns), same object.
_new_object = object.__new__
_set_allowed = Verdict.__dict__["allowed"].__set__
_set_retry_after = Verdict.__dict__["retry_after"].__set__
_set_remaining = Verdict.__dict__["remaining"].__set__


def _verdict(allowed: bool, retry_after: float, remaining: float) -> Verdict:
    verdict: Verdict = _new_object(Verdict)
    _set_allowed(verdict, allowed)
    _set_retry_after(verdict, retry_after)
    _set_remaining(verdict, remaining)
    return verdict


def _check_cost(limit: Limit, cost: float) -> None:
    """Raise unless 0 <= cost <= burst. NaN fails the comparison too."""
    if 0.0 <= cost <= limit.burst:
        return
    if cost > limit.burst and math.isfinite(cost):
        raise InvalidInput(
            "a request costs more tokens than the bucket can ever hold",
            code="ratelimit.cost_exceeds_burst",
            details={"cost": cost, "burst": limit.burst},
        )
    raise InvalidInput(
        "a request's cost must be a finite number of tokens, 0 or more",
        code="ratelimit.invalid",
        details={"field": "cost"},
    )


@runtime_checkable
class RateLimiter(Protocol):
    """What the gateway needs from a limiter."""

    async def acquire(self, key: str, limit: Limit, cost: float = 1.0) -> Verdict: ...

    async def close(self) -> None: ...


class _Bucket:
    """One key's bucket: `tokens` as of `stamp`, and the limit it was last used with."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, tokens: float, stamp: float, rate: float, burst: int) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.rate = rate
        self.burst = burst


class LocalRateLimiter:
    """In-process token buckets, thread-safe, with at most `max_keys` buckets in memory.

    `clock` is a monotonic clock in seconds (injectable for tests). `try_acquire` is the
    synchronous core, usable from threads; `acquire` is the `RateLimiter` coroutine.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise InvalidInput(
                "max_keys must be a positive integer",
                code="ratelimit.invalid",
                details={"field": "max_keys"},
            )
        self._clock = clock
        self._max_keys = max_keys
        # After an eviction sweep at most this many buckets remain, so the next sweep is at
        # least max_keys // 16 inserts away.
        self._low_water = max_keys - max(1, max_keys // 16)
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def try_acquire(self, key: str, limit: Limit, cost: float = 1.0) -> Verdict:
        """Take `cost` tokens from `key`'s bucket if it holds that many."""
        if not 0.0 <= cost <= limit.burst:
            _check_cost(limit, cost)
        rate = limit.rate
        burst = limit.burst
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self._max_keys:
                    self._evict(now)
                bucket = self._buckets[key] = _Bucket(burst, now, rate, burst)
                tokens: float = burst
            else:
                self._buckets.move_to_end(key)
                elapsed = now - bucket.stamp
                tokens = bucket.tokens
                if elapsed > 0:
                    tokens += elapsed * rate
                if tokens > burst:  # also when the limit's burst was lowered
                    tokens = burst
                bucket.stamp = now
                bucket.rate = rate
                bucket.burst = burst
            if tokens >= cost:
                tokens -= cost
                bucket.tokens = tokens
                return _verdict(True, 0.0, tokens)
            bucket.tokens = tokens
        return _verdict(False, (cost - tokens) / rate, tokens)

    async def acquire(self, key: str, limit: Limit, cost: float = 1.0) -> Verdict:
        return self.try_acquire(key, limit, cost)

    async def close(self) -> None:
        with self._lock:
            self._buckets.clear()

    def _evict(self, now: float) -> None:
        """Drop every refilled bucket, then the least recently used down to the low-water mark.

        Called with the lock held, when the dict is at `max_keys`.
        """
        buckets = self._buckets
        full = [
            key
            for key, b in buckets.items()
            if b.tokens + max(0.0, now - b.stamp) * b.rate >= b.burst
        ]
        for key in full:
            del buckets[key]
        evicted = len(full)
        while len(buckets) > self._low_water:
            buckets.popitem(last=False)
            evicted += 1
        self.evictions += evicted


# KEYS[1]: the bucket, a hash {t: tokens, ts: seconds (Redis TIME) when t was right}.
# ARGV: rate, burst, cost, expiry margin (ms), longest expiry (ms).
# Returns {allowed (0|1), retry_after, remaining}; floats as strings, since Redis would
# truncate a Lua number to an integer. "%.17g" keeps every bit of a double.
_BUCKET_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = burst
if state[1] and state[2] then
  tokens = tonumber(state[1])
  local elapsed = now - tonumber(state[2])
  if elapsed > 0 then tokens = tokens + elapsed * rate end
  if tokens > burst then tokens = burst end
end
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
end
local ttl = math.ceil((burst - tokens) / rate * 1000) + tonumber(ARGV[4])
if ttl > tonumber(ARGV[5]) then ttl = tonumber(ARGV[5]) end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl))
return {allowed, string.format('%.17g', retry), string.format('%.17g', tokens)}
"""
_BUCKET_SCRIPT_SHA = hashlib.sha1(_BUCKET_SCRIPT.encode(), usedforsecurity=False).hexdigest()


class RedisRateLimiter:
    """Token buckets in Redis, shared by every replica that uses the same server and prefix.

    Use one instance per event loop (the gateway builds it at startup and closes it at
    shutdown): the asyncio Redis client's connections belong to the loop that opened them.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "bastion:rl:",
        on_error: str = "local",
        fallback: LocalRateLimiter | None = None,
        timeout: float = 0.05,
        cooldown: float = 1.0,
        on_backend_error: Callable[[str], None] | None = None,
    ) -> None:
        if on_error not in ("local", "reject"):
            raise InvalidInput(
                'on_error must be "local" or "reject"',
                code="ratelimit.invalid",
                details={"field": "on_error"},
            )
        if not (math.isfinite(timeout) and timeout > 0):
            raise InvalidInput(
                "timeout must be a positive number of seconds",
                code="ratelimit.invalid",
                details={"field": "timeout"},
            )
        if not (math.isfinite(cooldown) and cooldown >= 0):
            raise InvalidInput(
                "cooldown must be 0 or more seconds",
                code="ratelimit.invalid",
                details={"field": "cooldown"},
            )
        try:
            self._client: aioredis.Redis = aioredis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),  # one attempt: the fallback is the retry
            )
        except ValueError as exc:  # the URL may hold a password: never echo it
            raise ConfigError(
                "the rate-limit Redis URL is malformed", code="ratelimit.url_invalid"
            ) from exc
        self._prefix = prefix
        self._on_error: Literal["local", "reject"] = "local" if on_error == "local" else "reject"
        self._fallback = fallback if fallback is not None else LocalRateLimiter()
        self._owns_fallback = fallback is None
        self._timeout = timeout
        self._cooldown = cooldown
        self._on_backend_error = on_backend_error
        self._skip_until = 0.0  # monotonic time before which Redis is not tried
        self.backend_errors = 0

    @property
    def fallback(self) -> LocalRateLimiter:
        return self._fallback

    async def acquire(self, key: str, limit: Limit, cost: float = 1.0) -> Verdict:
        if not 0.0 <= cost <= limit.burst:
            _check_cost(limit, cost)
        if self._skip_until and time.monotonic() < self._skip_until:
            return self._degraded(key, limit, cost, "circuit_open")
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._run(self._prefix + key, limit, cost)
            allowed, retry_after, remaining = reply
            verdict = Verdict(allowed == 1, float(retry_after), float(remaining))
        except TimeoutError:
            return self._failed(key, limit, cost, "timeout", None)
        except Exception as exc:  # noqa: BLE001 - a backend failure must never reach the caller
            return self._failed(key, limit, cost, "error", exc)
        self._skip_until = 0.0
        return verdict

    async def ping(self) -> bool:
        """Connect and load the script ahead of traffic (at startup, or as a readiness check).

        True if Redis answered within the timeout; never raises, counts nothing.
        """
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.script_load(_BUCKET_SCRIPT)
        except Exception:  # noqa: BLE001 - "not reachable" is the answer, not an error
            return False
        return True

    async def close(self) -> None:
        await self._client.aclose()
        if self._owns_fallback:
            await self._fallback.close()

    async def _run(self, redis_key: str, limit: Limit, cost: float) -> Any:
        args = (redis_key, limit.rate, limit.burst, cost, _EXPIRY_MARGIN_MS, _MAX_EXPIRY_MS)
        try:
            return await self._client.evalsha(_BUCKET_SCRIPT_SHA, 1, *args)
        except NoScriptError:
            # First use, or the server lost its script cache (SCRIPT FLUSH, restart, failover).
            await self._client.script_load(_BUCKET_SCRIPT)
            return await self._client.evalsha(_BUCKET_SCRIPT_SHA, 1, *args)

    def _failed(
        self, key: str, limit: Limit, cost: float, reason: str, exc: BaseException | None
    ) -> Verdict:
        if self._skip_until == 0.0:  # log the transition, not every request
            log.warning(
                "rate-limit backend unavailable (%s%s); deciding %s for %.1fs",
                reason,
                f": {type(exc).__name__}" if exc is not None else "",
                "locally" if self._on_error == "local" else "by rejecting",
                self._cooldown,
            )
        if self._cooldown > 0:
            self._skip_until = time.monotonic() + self._cooldown
        return self._degraded(key, limit, cost, reason)

    def _degraded(self, key: str, limit: Limit, cost: float, reason: str) -> Verdict:
        self.backend_errors += 1
        if self._on_backend_error is not None:
            try:
                self._on_backend_error(reason)
            except Exception:  # a broken callback must not fail the request
                log.exception("rate-limit backend error callback failed")
        if self._on_error == "reject":
            return _REJECTED_BY_BACKEND
        return self._fallback.try_acquire(key, limit, cost)


def limiter_from_url(url: str | None, **kw: Any) -> RateLimiter:
    """`None`, `""` or `memory://` → `LocalRateLimiter(**kw)`; `redis://host:port/db`
    (or `rediss://`, `unix://`) → `RedisRateLimiter(url, **kw)`."""
    if not url or url == "memory://":
        return LocalRateLimiter(**kw)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("redis", "rediss", "unix"):
        return RedisRateLimiter(url, **kw)
    raise ConfigError(
        "the rate-limit backend URL must be memory://, redis://, rediss:// or unix://",
        code="ratelimit.url_unsupported",
        details={"scheme": scheme[:16]},
    )
