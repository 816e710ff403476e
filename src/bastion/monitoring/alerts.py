"""Alerts and where they go: the `Alert` record, sinks (a log line, an HMAC-signed webhook)
and `AlertRouter`, which de-duplicates, repeats and resolves.

A sink's `send` must return at once: alerts are raised next to the request path and a slow or
dead receiver must never hold it up. `WebhookSink` only enqueues; one daemon thread POSTs,
retrying connection errors, timeouts, 429 and 5xx with capped exponential back-off and
jitter, then gives up and counts the event failed. A full queue drops (and counts) new events.

Webhook requests carry

    Content-Type: application/json
    X-Bastion-Event-Id: <32 hex digits, the same on every retry of one event>
    X-Bastion-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

(the scheme of Stripe's webhook signatures); `verify_signature` checks one for a receiver,
rejecting stale timestamps so that a captured request cannot be replayed later.

Alert summaries and evidence are operational facts (endpoint names, ratios, counts), never
request payloads, tokens or secrets. The webhook secret and the URL's query string and
credentials never reach a log line.

Imports `bastion.core` only among Bastion packages; never `bastion.deploy`, `bastion.serving`,
`bastion.api`, `bastion.cli` or `bastion.platform` (layers above).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol, runtime_checkable

import httpx
import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from bastion.core.errors import InvalidInput

log = logging.getLogger("bastion.alerts")

Severity = Literal["page", "ticket", "info"]
State = Literal["firing", "resolved"]
AlertKey = tuple[str, str, tuple[tuple[str, str], ...]]

SEVERITIES: Final = frozenset({"page", "ticket", "info"})
OUTCOMES: Final = ("sent", "retried", "failed", "dropped")
MAX_SUMMARY: Final = 300
MAX_LABELS: Final = 16
MAX_LABEL_CHARS: Final = 128
MAX_BODY_BYTES: Final = 64 * 1024  # a larger event is sent with its evidence left out
SIGNATURE_HEADER: Final = "X-Bastion-Signature"
EVENT_ID_HEADER: Final = "X-Bastion-Event-Id"
_NAME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")
_MAX_SIGNATURE_HEADER: Final = 1024
_random = secrets.SystemRandom()


def _bad_alert(message: str, **details: object) -> InvalidInput:
    return InvalidInput(message, code="alerts.bad_alert", details=details)


def _short_str(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise _bad_alert(f"{what} must be a non-empty string of at most {limit} characters")
    return value


@dataclass(frozen=True)
class Alert:
    """Something an operator should know about one endpoint.

    `name` is a stable identifier (`BastionSloAvailabilityFastBurn`, `CanaryRolledBack`,
    `DriftDetected`); `summary` is one line; `labels` distinguish alerts of one name on one
    endpoint (e.g. `{"slo": "latency"}`); `evidence` is JSON-able detail for the receiver.
    """

    name: str
    severity: Severity
    endpoint: str
    summary: str
    labels: Mapping[str, str]
    value: float | None
    started_at: float
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise _bad_alert("an alert name is a letter then letters, digits or _ (≤ 100)")
        if self.severity not in SEVERITIES:
            raise _bad_alert("an alert's severity is page, ticket or info")
        _short_str(self.endpoint, "an alert's endpoint", MAX_LABEL_CHARS)
        summary = _short_str(self.summary, "an alert's summary", MAX_SUMMARY)
        if "\n" in summary or "\r" in summary:
            raise _bad_alert("an alert's summary is one line")
        if not isinstance(self.labels, Mapping) or len(self.labels) > MAX_LABELS:
            raise _bad_alert(f"an alert has at most {MAX_LABELS} labels")
        for k, v in self.labels.items():
            _short_str(k, "a label name", MAX_LABEL_CHARS)
            _short_str(v, "a label value", MAX_LABEL_CHARS)
        if self.value is not None and not isinstance(self.value, int | float):
            raise _bad_alert("an alert's value is a number or None")
        if not isinstance(self.started_at, int | float) or not math.isfinite(self.started_at):
            raise _bad_alert("an alert's started_at is a unix time")
        if not isinstance(self.evidence, Mapping):
            raise _bad_alert("an alert's evidence is a mapping")
        evidence = dict(self.evidence)
        try:
            orjson.dumps(evidence)
        except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
            raise _bad_alert("an alert's evidence must be JSON-able") from exc
        # Read-only copies: the key must not change under a router holding the alert.
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        object.__setattr__(self, "evidence", MappingProxyType(evidence))

    @property
    def key(self) -> AlertKey:
        """What makes two alerts the same alert: name, endpoint and labels."""
        return (self.name, self.endpoint, tuple(sorted(self.labels.items())))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "severity": self.severity,
            "endpoint": self.endpoint,
            "summary": self.summary,
            "labels": dict(self.labels),
            "value": self.value,
            "started_at": self.started_at,
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True)
class AlertEvent:
    """One notification: an alert now `firing` (first time or repeated) or `resolved`.

    `id` is unique per event and stays the same across a webhook's retries, so a receiver
    can drop duplicates."""

    alert: Alert
    state: State
    sent_at: float
    id: str = field(default_factory=lambda: secrets.token_hex(16))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "sent_at": self.sent_at,
            "alert": self.alert.to_json(),
        }


class AlertSink(Protocol):
    """Where alert events go. `send` must not block its caller for long, and may raise only
    on a bug (the router catches and counts it)."""

    name: str

    def send(self, event: AlertEvent) -> None: ...


@runtime_checkable
class CountingSink(Protocol):
    """A sink that counts its outcomes (exposed as bastion_alert_notifications_total)."""

    def stats(self) -> Mapping[str, int]: ...


@runtime_checkable
class ClosingSink(Protocol):
    def close(self, timeout: float = ...) -> None: ...


class LogSink:
    """One JSON line per event on logger `bastion.alerts`: WARNING for a firing page or
    ticket, INFO for info alerts and resolutions."""

    def __init__(self, *, name: str = "log", logger: logging.Logger | None = None) -> None:
        self.name = name
        self._log = logger or log
        self._sent = 0
        self._lock = threading.Lock()

    def send(self, event: AlertEvent) -> None:
        urgent = event.state == "firing" and event.alert.severity in ("page", "ticket")
        self._log.log(
            logging.WARNING if urgent else logging.INFO,
            "alert %s",
            orjson.dumps(event.to_json()).decode(),
        )
        with self._lock:
            self._sent += 1

    def stats(self) -> Mapping[str, int]:
        with self._lock:
            return {"sent": self._sent}


def _signature(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, *, now: float | None = None) -> str:
    """The `X-Bastion-Signature` value of `body` at `now`: `t=<unix>,v1=<hex>`."""
    t = int(time.time() if now is None else now)
    return f"t={t},v1={_signature(secret, t, body)}"


def verify_signature(
    secret: bytes, body: bytes, header: str, *, now: float | None = None, tolerance: float = 300
) -> bool:
    """Whether `header` (an `X-Bastion-Signature` value) signs `body` with `secret` at a time
    within `tolerance` seconds of `now`. Any `v1=` entry may match (key rotation);
    the comparison is constant-time. Malformed headers are simply False."""
    if not secret or not isinstance(header, str) or len(header) > _MAX_SIGNATURE_HEADER:
        return False
    timestamp: int | None = None
    candidates = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            if timestamp is not None or not value.isdigit() or len(value) > 12:
                return False
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = _signature(secret, timestamp, body)
    matched = False
    for candidate in candidates:  # compare all, so timing says nothing about which matched
        matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    return matched


def _redacted(url: httpx.URL) -> str:
    """scheme://host[:port]/path: no credentials, no query (either may carry a secret)."""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


class WebhookSink:
    """POSTs alert events as signed JSON, from one background thread.

    `send` enqueues and returns; when `queue_size` events wait, new ones are dropped and
    counted. Each event is tried up to `max_attempts` times: connection errors, timeouts, 429
    and 5xx are retried after `backoff * 2**(attempt - 1)` seconds (capped at `max_backoff`;
    a `Retry-After` in seconds is honoured up to the cap), jittered to between half and all
    of it; other statuses (including redirects, which are not followed) fail at once.
    `sleep` waits between attempts (default: an interruptible wait that `close` cuts short).
    """

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        name: str = "webhook",
        timeout: float = 2.0,
        queue_size: int = 1000,
        max_attempts: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise InvalidInput(
                "the alert webhook URL is not a URL", code="alerts.bad_webhook"
            ) from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise InvalidInput(
                "the alert webhook URL must be http:// or https:// with a host",
                code="alerts.bad_webhook",
                details={"scheme": parsed.scheme[:16]},
            )
        if not isinstance(secret, bytes) or len(secret) < 16:
            raise InvalidInput(
                "the alert webhook secret must be at least 16 bytes", code="alerts.bad_webhook"
            )
        for what, number, low, high in (
            ("timeout", timeout, 0.001, 300),
            ("backoff", backoff, 0, 3600),
            ("max_backoff", max_backoff, 0, 86400),
        ):
            if not isinstance(number, int | float) or not low <= number <= high:
                raise InvalidInput(
                    f"{what} must be between {low} and {high} seconds", code="alerts.bad_webhook"
                )
        for what, count, high in (
            ("queue_size", queue_size, 1_000_000),
            ("max_attempts", max_attempts, 100),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= high:
                raise InvalidInput(
                    f"{what} must be an integer from 1 to {high}", code="alerts.bad_webhook"
                )
        self.name = name
        self.target = _redacted(parsed)  # safe to log and show
        self._url = parsed
        self._secret = secret
        self._timeout = timeout
        self._queue_size = queue_size
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._max_backoff = max(max_backoff, backoff)
        self._clock = clock
        self._stop = threading.Event()
        self._sleep: Callable[[float], object] = sleep if sleep is not None else self._stop.wait
        self._client = httpx.Client(transport=transport, timeout=timeout, follow_redirects=False)
        self._cond = threading.Condition()
        self._queue: deque[AlertEvent] = deque()
        self._closing = False
        self._busy = False
        self._counts = dict.fromkeys(OUTCOMES, 0)
        self._thread = threading.Thread(
            target=self._run, name=f"bastion-alerts-{name}", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:  # never the secret, never the query string
        return f"WebhookSink(name={self.name!r}, target={self.target!r})"

    # -- caller side ---------------------------------------------------------------------------

    def send(self, event: AlertEvent) -> None:
        """Enqueue `event`; drop and count it when the queue is full or the sink closed."""
        with self._cond:
            if self._closing or len(self._queue) >= self._queue_size:
                self._counts["dropped"] += 1
                return
            self._queue.append(event)
            self._cond.notify()

    def stats(self) -> Mapping[str, int]:
        """Counts by outcome: sent, retried (extra attempts), failed (gave up), dropped."""
        with self._cond:
            return dict(self._counts)

    def pending(self) -> int:
        """Events waiting or being delivered."""
        with self._cond:
            return len(self._queue) + (1 if self._busy else 0)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what can be delivered within `timeout` seconds, then stop; what is left
        is counted dropped."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stop.set()  # cuts a back-off short; an attempt in flight ends by its timeout
            with self._cond:
                self._cond.notify_all()
            self._thread.join(self._timeout + 1)
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
            self._counts["dropped"] += left
        if left:
            log.warning("alert webhook %s closed with %d events undelivered", self.target, left)
        if not self._thread.is_alive():
            self._client.close()

    # -- worker side ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue or self._stop.is_set():
                    return
                event = self._queue.popleft()
                self._busy = True
            try:
                self._deliver(event)
            except Exception:  # a bug here must not kill the only worker
                log.exception("alert webhook %s: delivering an event failed", self.target)
                self._count("failed")
            finally:
                with self._cond:
                    self._busy = False

    def _count(self, outcome: str) -> None:
        with self._cond:
            self._counts[outcome] += 1

    def _body(self, event: AlertEvent) -> bytes:
        body = orjson.dumps(event.to_json())
        if len(body) > MAX_BODY_BYTES:
            doc = event.to_json()
            doc["alert"]["evidence"] = {"truncated": True, "bytes": len(body)}
            body = orjson.dumps(doc)
        return body

    def _deliver(self, event: AlertEvent) -> None:
        body = self._body(event)
        reason = ""
        for attempt in range(1, self._max_attempts + 1):
            if self._stop.is_set():
                self._count("dropped")
                return
            status, reason, retry_after = self._post(body, event.id)
            if status == "sent":
                self._count("sent")
                return
            if status == "rejected" or attempt == self._max_attempts:
                break
            self._count("retried")
            delay = min(self._max_backoff, self._backoff * 2 ** (attempt - 1))
            delay = delay / 2 + _random.uniform(0, delay / 2)
            if retry_after is not None:
                delay = min(self._max_backoff, max(delay, retry_after))
            self._sleep(delay)
        self._count("failed")
        log.warning(
            "alert webhook %s: gave up on event %s (%s %s, %s): %s",
            self.target,
            event.id,
            event.alert.name,
            event.state,
            f"after {attempt} attempts" if status == "retry" else "not retried",
            reason,
        )

    def _post(self, body: bytes, event_id: str) -> tuple[str, str, float | None]:
        """One attempt: ("sent" | "retry" | "rejected", reason, Retry-After seconds)."""
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body, now=self._clock()),
            EVENT_ID_HEADER: event_id,
        }
        try:
            # stream: the receiver's answer body is never read, however large.
            with self._client.stream("POST", self._url, content=body, headers=headers) as r:
                code = r.status_code
                retry_after = r.headers.get("Retry-After", "")
        except httpx.HTTPError as exc:
            return "retry", type(exc).__name__, None
        if 200 <= code < 300:
            return "sent", str(code), None
        if code == 429 or code >= 500:
            seconds = float(retry_after) if retry_after.isdigit() else None
            return "retry", f"HTTP {code}", seconds
        return "rejected", f"HTTP {code}", None


@dataclass
class _Firing:
    alert: Alert
    last_sent: float


class AlertRouter:
    """Sends alert events to every sink, once per alert until it resolves.

    `fire` sends a new alert at once and an alert already firing again only after
    `repeat_interval` seconds; `resolve` sends "resolved" once. A sink that raises is
    logged and counted (`outcome="error"`) and the others still get the event.
    """

    def __init__(
        self,
        sinks: Sequence[AlertSink],
        *,
        repeat_interval: float = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise InvalidInput("alert sinks need distinct names", code="alerts.duplicate_sink")
        if not isinstance(repeat_interval, int | float) or not repeat_interval > 0:
            raise InvalidInput("repeat_interval must be positive", code="alerts.bad_router")
        self._sinks = tuple(sinks)
        self._repeat = repeat_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._firing: dict[AlertKey, _Firing] = {}
        self._errors = dict.fromkeys(names, 0)

    def fire(self, alert: Alert) -> None:
        """`alert` is firing: notify now if new or due for repeating."""
        now = self._clock()
        with self._lock:
            entry = self._firing.get(alert.key)
            if entry is None:
                self._firing[alert.key] = _Firing(alert, now)
                event = AlertEvent(alert, "firing", now)
            else:
                # Keep when it started; take the newest value and evidence.
                entry.alert = replace(alert, started_at=entry.alert.started_at)
                if now - entry.last_sent < self._repeat:
                    return
                entry.last_sent = now
                event = AlertEvent(entry.alert, "firing", now)
        self._dispatch(event)

    def resolve(self, key: AlertKey) -> None:
        """The alert with `key` stopped firing: notify once (nothing if it was not firing)."""
        with self._lock:
            entry = self._firing.pop(key, None)
        if entry is not None:
            self._dispatch(AlertEvent(entry.alert, "resolved", self._clock()))

    def sync(self, firing: Sequence[Alert], *, names: Collection[str] | None = None) -> None:
        """Make `firing` the set of alerts firing: fire each, resolve those that stopped.

        `names` limits what may be resolved to alerts of those names, so that one source
        (e.g. the SLO tracker's evaluation) does not resolve another's alerts.
        """
        current = {a.key for a in firing}
        for alert in firing:
            self.fire(alert)
        with self._lock:
            stale = [
                key
                for key in self._firing
                if key not in current and (names is None or key[0] in names)
            ]
        for key in stale:
            self.resolve(key)

    def active(self) -> list[Alert]:
        """The alerts firing now, oldest first."""
        with self._lock:
            return sorted((e.alert for e in self._firing.values()), key=lambda a: a.started_at)

    def collector(self) -> Collector:
        """bastion_alerts_firing{alertname,severity,endpoint} and
        bastion_alert_notifications_total{sink,outcome}."""
        return _RouterCollector(self)

    def close(self, timeout: float = 5.0) -> None:
        """Close every sink that can be closed (webhooks drain for up to `timeout`)."""
        for sink in self._sinks:
            if isinstance(sink, ClosingSink):
                try:
                    sink.close(timeout)
                except Exception:  # closing one sink must not skip the others
                    log.exception("closing alert sink %s failed", sink.name)

    def _dispatch(self, event: AlertEvent) -> None:
        for sink in self._sinks:
            try:
                sink.send(event)
            except Exception as exc:  # noqa: BLE001 (one broken sink must not silence the rest)
                with self._lock:
                    self._errors[sink.name] += 1
                log.error(
                    "alert sink %s raised %s on %s %s",
                    sink.name,
                    type(exc).__name__,
                    event.alert.name,
                    event.state,
                )

    def _samples(self) -> tuple[dict[tuple[str, str, str], int], dict[tuple[str, str], int]]:
        firing: dict[tuple[str, str, str], int] = {}
        with self._lock:
            for entry in self._firing.values():
                a = entry.alert
                labels = (a.name, a.severity, a.endpoint)
                firing[labels] = firing.get(labels, 0) + 1
            notified = {(name, "error"): n for name, n in self._errors.items()}
        for sink in self._sinks:
            if isinstance(sink, CountingSink):
                for outcome, n in sink.stats().items():
                    notified[(sink.name, outcome)] = n
        return firing, notified


class _RouterCollector(Collector):
    def __init__(self, router: AlertRouter) -> None:
        self._router = router

    def _families(self) -> tuple[GaugeMetricFamily, CounterMetricFamily]:
        return (
            GaugeMetricFamily(
                "bastion_alerts_firing",
                "Alerts firing in this process, by name, severity and endpoint.",
                labels=["alertname", "severity", "endpoint"],
            ),
            CounterMetricFamily(
                "bastion_alert_notifications",
                "Alert notifications by sink and outcome (sent, retried, failed, dropped, "
                "error: the sink raised).",
                labels=["sink", "outcome"],
            ),
        )

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        firing, notified = self._router._samples()
        gauge, counter = self._families()
        for labels, n in sorted(firing.items()):
            gauge.add_metric(list(labels), n)
        for (sink, outcome), n in sorted(notified.items()):
            counter.add_metric([sink, outcome], n)
        yield gauge
        yield counter
