"""AuditLog: canonical event bodies, refusal of secrets and bad types, transactional writes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from bastion.core import canonical_json
from bastion.core.clock import ManualClock
from bastion.core.errors import InvalidInput
from bastion.ledger import AuditLog, Event
from bastion.store.db import Database
from bastion.store.tables import LedgerEntryRow

START = datetime(2026, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def audit(clock: ManualClock) -> AuditLog:
    return AuditLog(clock=clock)


def _count(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(LedgerEntryRow)) or 0)


def _append(db: Database, audit: AuditLog, **fields: Any) -> None:
    event = Event(
        type=fields.pop("type", "test.thing.done"),
        actor=fields.pop("actor", "prn_actor"),
        subject=fields.pop("subject", "thing:1"),
        **fields,
    )
    with db.transaction() as session:
        audit.append(session, event)


# ------------------------------------------------------------------ body


def test_body_is_canonical_json_with_the_documented_fields(db: Database, audit: AuditLog) -> None:
    data = {"z": [3, 1.5, None], "a": {"é": True, "b": "x"}, "n": 10}
    with db.transaction() as session:
        recorded = audit.append(
            session,
            Event(
                type="identity.token.created",
                actor="prn_01",
                subject="token:tok_01",
                data=data,
                request_id="req-7",
            ),
        )
    with db.read() as session:
        stored = session.scalars(sa.select(LedgerEntryRow)).one()
        row = (stored.seq, stored.event_id, stored.event_type, stored.created_at, stored.body)

    seq, event_id, event_type, created_at, body = row
    assert body == recorded.body
    parsed = json.loads(body)
    assert canonical_json(parsed) == body
    assert set(parsed) == {"v", "id", "type", "actor", "subject", "time", "request_id", "data"}
    assert parsed == {
        "v": 1,
        "id": recorded.event_id,
        "type": "identity.token.created",
        "actor": "prn_01",
        "subject": "token:tok_01",
        "time": "2026-05-06T07:08:09.123000Z",
        "request_id": "req-7",
        "data": data,
    }
    assert recorded.event_id.startswith("evt_")
    assert (seq, event_id, event_type) == (
        recorded.seq,
        recorded.event_id,
        "identity.token.created",
    )
    assert created_at == START


def test_body_has_null_request_id_and_empty_data_by_default(db: Database, audit: AuditLog) -> None:
    with db.transaction() as session:
        recorded = audit.append(session, Event(type="test.x", actor="a", subject="s"))
    parsed = json.loads(recorded.body)
    assert parsed["request_id"] is None
    assert parsed["data"] == {}
    assert parsed["time"] == "2026-05-06T07:08:09.123000Z"


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "data",
    [
        {"token": "x"},
        {"Token": "x"},
        {"x": {"password": 1}},
        {"outer": {"inner": {"client_secret": "s"}}},
        {"api_key": "k"},
        {"private_key": "pem"},
        {"PASSPHRASE": "p"},
    ],
)
def test_secret_looking_keys_are_refused_and_nothing_is_written(
    db: Database, audit: AuditLog, data: dict[str, Any]
) -> None:
    # pytest.raises sits inside the transaction, which then commits: append queued nothing.
    with db.transaction() as session, pytest.raises(InvalidInput) as info:
        audit.append(session, Event(type="test.x", actor="a", subject="s", data=data))
    assert info.value.code == "ledger.secret_in_event"
    assert "secrets never enter" in info.value.message
    assert _count(db) == 0


def test_secret_value_is_not_echoed_in_the_refusal(db: Database, audit: AuditLog) -> None:
    with pytest.raises(InvalidInput) as info, db.transaction() as session:
        audit.append(
            session, Event(type="test.x", actor="a", subject="s", data={"password": "hunter2"})
        )
    assert "hunter2" not in str(info.value)


def test_secret_keys_inside_lists_are_refused(db: Database, audit: AuditLog) -> None:
    """Secret-looking keys are found inside lists too, not only nested mappings."""
    with db.transaction() as session, pytest.raises(InvalidInput) as info:
        audit.append(
            session,
            Event(
                type="test.x",
                actor="a",
                subject="s",
                data={"changes": [{"password": "hunter2"}]},
            ),
        )
    assert info.value.code == "ledger.secret_in_event"
    assert _count(db) == 0


def test_ordinary_keys_that_mention_tokens_are_allowed(db: Database, audit: AuditLog) -> None:
    # `^token$` only: ids and counts of tokens are what events are about.
    _append(db, audit, data={"token_id": "tok_1", "tokens": 3, "principal": "prn_1"})
    assert _count(db) == 1


@pytest.mark.parametrize(
    "bad_type", ["", "created", "Identity.created", "identity..created", "identity.", "a b.c"]
)
def test_bad_event_type_is_refused(db: Database, audit: AuditLog, bad_type: str) -> None:
    with db.transaction() as session, pytest.raises(InvalidInput) as info:
        audit.append(session, Event(type=bad_type, actor="a", subject="s"))
    assert info.value.code == "ledger.bad_event"
    assert _count(db) == 0


def test_data_that_is_not_json_is_refused(db: Database, audit: AuditLog) -> None:
    with db.transaction() as session, pytest.raises(InvalidInput) as info:
        audit.append(
            session, Event(type="test.x", actor="a", subject="s", data={"x": float("nan")})
        )
    assert info.value.code == "core.not_canonicalizable"
    assert _count(db) == 0


def test_event_in_a_failed_transaction_is_not_stored(db: Database, audit: AuditLog) -> None:
    class Boom(Exception):
        pass

    def fail_after_append() -> None:
        with db.transaction() as session:
            recorded = audit.append(session, Event(type="test.x", actor="a", subject="s"))
            assert recorded.seq >= 1  # flushed: it reached the database before the failure
            raise Boom

    with pytest.raises(Boom):
        fail_after_append()
    assert _count(db) == 0


# ------------------------------------------------------------------ reading


def test_events_filter_by_subject_types_start_and_limit(
    db: Database, audit: AuditLog, clock: ManualClock
) -> None:
    for i in range(6):
        clock.advance(timedelta(seconds=1))
        subject = "model:a" if i % 2 == 0 else "model:b"
        _append(db, audit, type=f"test.step{i % 3}", subject=subject, data={"i": i})

    with db.read() as session:
        every = audit.events(session)
        assert [e.seq for e in every] == [1, 2, 3, 4, 5, 6]
        assert [json.loads(e.body)["data"]["i"] for e in every] == [0, 1, 2, 3, 4, 5]
        assert all(e.time.tzinfo is not None for e in every)
        assert every[0].time == START + timedelta(seconds=1)

        a = audit.events(session, subject="model:a")
        assert [e.seq for e in a] == [1, 3, 5]
        assert {e.subject for e in a} == {"model:a"}

        assert [e.seq for e in audit.events(session, start=3)] == [3, 4, 5, 6]
        assert [e.seq for e in audit.events(session, start=2, limit=2)] == [2, 3]
        assert [e.seq for e in audit.events(session, subject="model:b", start=3, limit=1)] == [4]
        assert [e.seq for e in audit.events(session, types=["test.step0"])] == [1, 4]
        assert audit.events(session, start=7) == []
        assert audit.events(session, subject="model:none") == []


@pytest.mark.parametrize("key", ["access_token", "refresh_token", "TOKEN", "client_credential"])
def test_token_like_keys_are_refused(db: Database, audit: AuditLog, key: str) -> None:
    with db.transaction() as session, pytest.raises(InvalidInput) as info:
        audit.append(session, Event(type="test.x", actor="a", subject="s", data={key: "v"}))
    assert info.value.code == "ledger.secret_in_event"


def test_token_ids_are_fine(db: Database, audit: AuditLog) -> None:
    with db.transaction() as session:
        audit.append(
            session,
            Event(type="test.x", actor="a", subject="s", data={"token_id": "tok_1", "tokens": 3}),
        )
    assert _count(db) == 1
