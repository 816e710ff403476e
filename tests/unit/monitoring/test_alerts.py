"""Alerts, sinks and the router. The webhook is exercised against a real HTTP server on
127.0.0.1 (and a closed port); back-off waits are injected so nothing sleeps for real."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bastion.core.errors import ConfigError, InvalidInput
from bastion.core.settings import Settings
from bastion.monitoring.alerts import (
    EVENT_ID_HEADER,
    MAX_BODY_BYTES,
    SIGNATURE_HEADER,
    Alert,
    AlertEvent,
    AlertRouter,
    LogSink,
    WebhookSink,
    sign,
    verify_signature,
)

SECRET = b"0123456789abcdef-webhook-secret"


def alert(name: str = "DriftDetected", endpoint: str = "fraud", **kwargs: Any) -> Alert:
    fields: dict[str, Any] = {
        "severity": "ticket",
        "summary": f"{endpoint}: drift",
        "labels": {},
        "value": 0.3,
        "started_at": 1000.0,
    }
    fields.update(kwargs)
    return Alert(name=name, endpoint=endpoint, **fields)


def event(a: Alert | None = None, state: str = "firing") -> AlertEvent:
    return AlertEvent(a or alert(), state, 1000.0)  # type: ignore[arg-type]


# -- a real receiver ----------------------------------------------------------------------------


class Receiver:
    """An HTTP server answering POSTs with scripted statuses (then 200), recording each."""

    def __init__(self, statuses: list[int], headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses)
        self.extra_headers = headers or {}
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.requests.append((dict(self.headers), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                for k, v in receiver.extra_headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    made: list[Receiver] = []

    def make(statuses: list[int], headers: dict[str, str] | None = None) -> Receiver:
        r = Receiver(statuses, headers)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook?token=QUERYSECRET"


class Sleeps:
    """An injected back-off: records the delays, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


# -- Alert --------------------------------------------------------------------------------------


def test_alert_key_and_json() -> None:
    a = alert(labels={"slo": "latency", "a": "b"}, evidence={"burn": 20.0})
    assert a.key == ("DriftDetected", "fraud", (("a", "b"), ("slo", "latency")))
    doc = a.to_json()
    assert doc["labels"] == {"a": "b", "slo": "latency"}
    assert doc["evidence"] == {"burn": 20.0}
    assert json.loads(orjson.dumps(doc)) == doc


def test_alert_labels_are_copied_read_only() -> None:
    labels = {"slo": "latency"}
    a = alert(labels=labels)
    labels["slo"] = "availability"  # the caller's dict changing does not change the key
    assert a.key[2] == (("slo", "latency"),)
    with pytest.raises(TypeError):
        a.labels["x"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "has space"},
        {"name": ""},
        {"name": "9Starts"},
        {"severity": "critical"},
        {"summary": "two\nlines"},
        {"summary": "x" * 301},
        {"summary": ""},
        {"endpoint": ""},
        {"labels": {"k": 1}},
        {"labels": {f"k{i}": "v" for i in range(17)}},
        {"value": "high"},
        {"started_at": float("nan")},
        {"evidence": {"obj": object()}},
    ],
)
def test_bad_alerts_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        alert(**kwargs)
    assert caught.value.code == "alerts.bad_alert"


# -- signatures ---------------------------------------------------------------------------------


def test_signature_round_trip_and_tampering() -> None:
    body = b'{"state":"firing"}'
    header = sign(SECRET, body, now=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify_signature(SECRET, body, header, now=1_700_000_000)
    assert verify_signature(SECRET, body, header, now=1_700_000_300)  # at the tolerance
    assert not verify_signature(SECRET, body, header, now=1_700_000_301)  # stale: replay
    assert not verify_signature(SECRET, body, header, now=1_699_999_699)  # from the future
    assert not verify_signature(SECRET, body + b" ", header, now=1_700_000_000)
    assert not verify_signature(SECRET[:-1] + b"X", body, header, now=1_700_000_000)
    assert not verify_signature(b"", body, header, now=1_700_000_000)
    # The timestamp is signed: moving it into the window breaks the signature.
    moved = header.replace("t=1700000000", "t=1700000999")
    assert not verify_signature(SECRET, body, moved, now=1_700_000_999)
    # Several v1 values (a receiver rotating keys): any may match.
    wrong = "v1=" + "0" * 64
    assert verify_signature(SECRET, body, f"{header},{wrong}", now=1_700_000_000)
    assert not verify_signature(SECRET, body, f"t=1700000000,{wrong}", now=1_700_000_000)


@pytest.mark.parametrize(
    "header",
    ["", "t=1", "v1=ab", "t=abc,v1=00", "t=1,t=1,v1=00", "garbage", "t=1,v1", "x" * 2000],
)
def test_malformed_signature_headers_are_false(header: str) -> None:
    assert not verify_signature(SECRET, b"{}", header, now=1)


@given(st.text(max_size=200), st.binary(max_size=64))
def test_verify_signature_never_raises(header: str, body: bytes) -> None:
    assert verify_signature(SECRET, body, header) in (True, False)


# -- LogSink ------------------------------------------------------------------------------------


def test_log_sink_levels_and_structure(caplog: pytest.LogCaptureFixture) -> None:
    sink = LogSink()
    with caplog.at_level(logging.INFO, logger="bastion.alerts"):
        sink.send(event(alert(severity="page")))
        sink.send(event(alert(severity="page"), state="resolved"))
        sink.send(event(alert(name="CanaryRolledBack", severity="info")))
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, logging.INFO, logging.INFO]
    first = json.loads(caplog.records[0].getMessage().removeprefix("alert "))
    assert first["state"] == "firing"
    assert first["alert"]["name"] == "DriftDetected"
    assert sink.stats() == {"sent": 3}


# -- WebhookSink --------------------------------------------------------------------------------


def test_webhook_retries_5xx_then_delivers_signed(receiver_factory: Any) -> None:
    rx = receiver_factory([503, 503, 200])
    sleeps = Sleeps()
    sink = WebhookSink(rx.url, SECRET, sleep=sleeps, backoff=0.5, max_backoff=30)
    e = event()
    sink.send(e)
    sink.close(timeout=10)
    assert sink.stats() == {"sent": 1, "retried": 2, "failed": 0, "dropped": 0}
    assert len(rx.requests) == 3
    assert len(sleeps.delays) == 2
    assert 0.25 <= sleeps.delays[0] <= 0.5  # jitter: between half and all of the step
    assert 0.5 <= sleeps.delays[1] <= 1.0
    for headers, body in rx.requests:
        assert headers["Content-Type"] == "application/json"
        assert headers[EVENT_ID_HEADER] == e.id  # the same id on every retry
        assert verify_signature(SECRET, body, headers[SIGNATURE_HEADER])
        assert json.loads(body) == e.to_json()


def test_webhook_does_not_retry_other_4xx(receiver_factory: Any) -> None:
    rx = receiver_factory([400])
    sleeps = Sleeps()
    sink = WebhookSink(rx.url, SECRET, sleep=sleeps)
    sink.send(event())
    sink.close(timeout=10)
    assert sink.stats() == {"sent": 0, "retried": 0, "failed": 1, "dropped": 0}
    assert len(rx.requests) == 1
    assert sleeps.delays == []


def test_webhook_honours_retry_after_on_429_up_to_the_cap(receiver_factory: Any) -> None:
    rx = receiver_factory([429, 429], headers={"Retry-After": "20"})
    sleeps = Sleeps()
    sink = WebhookSink(rx.url, SECRET, sleep=sleeps, backoff=0.1, max_backoff=5)
    sink.send(event())
    sink.close(timeout=10)
    assert sink.stats()["sent"] == 1
    assert sleeps.delays == [5, 5]


def test_webhook_backoff_grows_to_the_cap_and_gives_up(receiver_factory: Any) -> None:
    rx = receiver_factory([500] * 10)
    sleeps = Sleeps()
    sink = WebhookSink(rx.url, SECRET, sleep=sleeps, backoff=1, max_backoff=4, max_attempts=6)
    sink.send(event())
    sink.close(timeout=10)
    assert sink.stats() == {"sent": 0, "retried": 5, "failed": 1, "dropped": 0}
    assert len(rx.requests) == 6
    steps = [1, 2, 4, 4, 4]
    assert len(sleeps.delays) == len(steps)
    for delay, step in zip(sleeps.delays, steps, strict=True):
        assert step / 2 <= delay <= step


def test_a_dead_webhook_never_blocks_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    entered, release = threading.Event(), threading.Event()

    def sleep(seconds: float) -> None:  # the worker parks in its first back-off
        entered.set()
        release.wait()

    url = closed_port_url()
    sink = WebhookSink(url, SECRET, sleep=sleep, queue_size=100, max_attempts=2)
    sink.send(event())
    assert entered.wait(10)
    for _ in range(1000):  # every call returns while the worker is stuck backing off
        sink.send(event())
    assert sink.pending() == 101  # one in flight, the queue full
    assert sink.stats() == {"sent": 0, "retried": 1, "failed": 0, "dropped": 900}
    release.set()
    with caplog.at_level(logging.WARNING, logger="bastion.alerts"):
        sink.close(timeout=30)
    assert sink.stats() == {"sent": 0, "retried": 101, "failed": 101, "dropped": 900}
    assert sink.pending() == 0
    # Failures are logged without the secret, the query string or a body.
    assert "gave up" in caplog.text
    assert "QUERYSECRET" not in caplog.text
    assert SECRET.decode() not in caplog.text
    assert "QUERYSECRET" not in repr(sink)
    assert sink.target.endswith("/hook")


def test_close_counts_what_it_could_not_deliver_as_dropped() -> None:
    # Default sleep: an interruptible wait, so close() cuts a 60 s back-off short.
    sink = WebhookSink(closed_port_url(), SECRET, backoff=60, max_backoff=60)
    for _ in range(5):
        sink.send(event())
    sink.close(timeout=0.5)
    stats = sink.stats()
    assert stats["sent"] == 0
    assert stats["failed"] + stats["dropped"] == 5
    assert stats["dropped"] >= 4
    sink.send(event())  # after close: dropped, no error
    assert sink.stats()["dropped"] == stats["dropped"] + 1


def test_webhook_trims_oversized_evidence(receiver_factory: Any) -> None:
    rx = receiver_factory([])
    sink = WebhookSink(rx.url, SECRET, sleep=Sleeps())
    big = alert(evidence={"blob": "x" * (MAX_BODY_BYTES + 10)})
    sink.send(event(big))
    sink.close(timeout=10)
    (_, body), *_ = rx.requests
    assert len(body) < MAX_BODY_BYTES
    doc = json.loads(body)
    assert doc["alert"]["evidence"]["truncated"] is True
    assert doc["alert"]["name"] == "DriftDetected"


def test_webhook_through_an_injected_transport() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    sink = WebhookSink("https://alerts.invalid/x", SECRET, transport=httpx.MockTransport(handler))
    sink.send(event())
    sink.close(timeout=10)
    assert sink.stats()["sent"] == 1
    assert seen[0].url.scheme == "https"
    assert verify_signature(SECRET, seen[0].content, seen[0].headers[SIGNATURE_HEADER])


@pytest.mark.parametrize(
    ("url", "secret", "kwargs"),
    [
        ("ftp://example.org/x", SECRET, {}),
        ("file:///etc/passwd", SECRET, {}),
        ("javascript:alert(1)", SECRET, {}),
        ("http://", SECRET, {}),
        ("not a url", SECRET, {}),
        ("https://example.org/x", b"short", {}),
        ("https://example.org/x", "a-str-secret-of-some-length", {}),
        ("https://example.org/x", SECRET, {"queue_size": 0}),
        ("https://example.org/x", SECRET, {"max_attempts": 0}),
        ("https://example.org/x", SECRET, {"timeout": 0}),
        ("https://example.org/x", SECRET, {"backoff": -1}),
    ],
)
def test_bad_webhook_configuration_is_refused(url: str, secret: Any, kwargs: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        WebhookSink(url, secret, **kwargs)
    assert caught.value.code == "alerts.bad_webhook"


# -- AlertRouter --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self, name: str = "rec") -> None:
        self.name = name
        self.events: list[AlertEvent] = []

    def send(self, event: AlertEvent) -> None:
        self.events.append(event)

    def seen(self) -> list[tuple[str, str]]:
        return [(e.alert.name, e.state) for e in self.events]


class Broken:
    name = "broken"

    def send(self, event: AlertEvent) -> None:
        raise RuntimeError("receiver bug")


def test_router_dedupes_until_the_repeat_interval() -> None:
    clock, rec = Clock(), Recorder()
    router = AlertRouter([rec], repeat_interval=600, clock=clock)
    router.fire(alert(started_at=1000.0))
    clock.now += 599
    router.fire(alert(started_at=1599.0, value=0.5))
    assert rec.seen() == [("DriftDetected", "firing")]
    clock.now += 1
    router.fire(alert(started_at=1600.0, value=0.6))
    assert rec.seen() == [("DriftDetected", "firing")] * 2
    repeat = rec.events[1].alert
    assert (repeat.started_at, repeat.value) == (1000.0, 0.6)  # first start, newest value
    # A different label set is a different alert.
    router.fire(alert(labels={"slo": "latency"}))
    assert len(rec.events) == 3
    assert len(router.active()) == 2


def test_router_resolves_once() -> None:
    rec = Recorder()
    router = AlertRouter([rec], clock=Clock())
    a = alert()
    router.fire(a)
    router.resolve(a.key)
    router.resolve(a.key)
    router.resolve(alert(name="NeverFired").key)
    assert rec.seen() == [("DriftDetected", "firing"), ("DriftDetected", "resolved")]
    assert router.active() == []
    router.fire(a)  # firing again after resolution is news
    assert rec.seen()[-1] == ("DriftDetected", "firing")


def test_router_sync_fires_new_and_resolves_stopped_within_its_names() -> None:
    rec = Recorder()
    router = AlertRouter([rec], clock=Clock())
    router.fire(alert(name="CanaryRolledBack", severity="info"))
    burn_a = alert(name="BastionSloAvailabilityFastBurn", endpoint="a", severity="page")
    burn_b = alert(name="BastionSloAvailabilityFastBurn", endpoint="b", severity="page")
    names = {"BastionSloAvailabilityFastBurn"}
    router.sync([burn_a, burn_b], names=names)
    router.sync([burn_b], names=names)
    router.sync([burn_b], names=names)
    assert [(e.alert.endpoint, e.state) for e in rec.events[1:]] == [
        ("a", "firing"),
        ("b", "firing"),
        ("a", "resolved"),
    ]
    assert {a.name for a in router.active()} == {"CanaryRolledBack", burn_b.name}
    router.sync([])  # no names: everything not in the list resolves
    assert router.active() == []


def test_a_raising_sink_does_not_stop_the_others() -> None:
    first, last = Recorder("first"), Recorder("last")
    router = AlertRouter([first, Broken(), last], clock=Clock())
    router.fire(alert())
    router.resolve(alert().key)
    assert len(first.events) == len(last.events) == 2
    registry = CollectorRegistry()
    registry.register(router.collector())
    text = generate_latest(registry).decode()
    assert 'bastion_alert_notifications_total{outcome="error",sink="broken"} 2.0' in text


def test_router_refuses_duplicate_sink_names() -> None:
    with pytest.raises(InvalidInput) as caught:
        AlertRouter([Recorder("x"), Recorder("x")])
    assert caught.value.code == "alerts.duplicate_sink"
    with pytest.raises(InvalidInput):
        AlertRouter([], repeat_interval=0)


def test_router_collector_exposes_firing_alerts_and_sink_outcomes(receiver_factory: Any) -> None:
    rx = receiver_factory([])
    hook = WebhookSink(rx.url, SECRET, sleep=Sleeps())
    log_sink = LogSink()
    router = AlertRouter([log_sink, hook], clock=Clock())
    router.fire(alert(endpoint="a", severity="page", name="BastionSloLatencyFastBurn"))
    router.fire(alert(endpoint="a", severity="ticket"))
    router.fire(alert(endpoint="b", severity="ticket"))
    router.close(timeout=10)
    registry = CollectorRegistry()
    registry.register(router.collector())
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
    }

    def firing(**labels: str) -> float | None:
        return samples.get(("bastion_alerts_firing", frozenset(labels.items())))

    assert firing(alertname="BastionSloLatencyFastBurn", severity="page", endpoint="a") == 1
    assert firing(alertname="DriftDetected", severity="ticket", endpoint="b") == 1
    notified = "bastion_alert_notifications_total"
    assert samples[(notified, frozenset({"sink": "webhook", "outcome": "sent"}.items()))] == 3
    assert samples[(notified, frozenset({"sink": "log", "outcome": "sent"}.items()))] == 3
    assert samples[(notified, frozenset({"sink": "webhook", "outcome": "dropped"}.items()))] == 0


# -- settings -----------------------------------------------------------------------------------


def test_webhook_settings_need_a_secret_and_an_http_url() -> None:
    s = Settings.from_env()
    assert (s.alert_webhook_url, s.alert_webhook_secret, s.alert_repeat_seconds) == (
        None,
        None,
        3600,
    )
    with pytest.raises(ConfigError, match="alert_webhook_secret"):
        Settings.from_env(alert_webhook_url="https://hooks.example.org/x")
    with pytest.raises(ConfigError, match="16 bytes"):
        Settings.from_env(alert_webhook_url="https://h/x", alert_webhook_secret="short")
    with pytest.raises(ConfigError, match="alert_webhook_url"):
        Settings.from_env(alert_webhook_url="ftp://x/y", alert_webhook_secret="k" * 16)
    ok = Settings.from_env(alert_webhook_url="https://h/x", alert_webhook_secret="k" * 16)
    assert ok.alert_webhook_secret is not None
    assert "k" * 16 not in repr(ok)
