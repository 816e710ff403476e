"""Database: migrations, transactions, error translation, timestamps, SQLite set-up, concurrency.

Everything runs on the real SQLite and the real PostgreSQL (the `db_url` fixture); nothing
about the database is mocked.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from bastion.core.clock import ManualClock
from bastion.core.errors import ConfigError, Conflict, StoreError
from bastion.ledger import AuditLog, Event
from bastion.store.db import Database, _alembic_config
from bastion.store.tables import Base, LedgerEntryRow, PrincipalRoleRow, PrincipalRow

HEAD = ScriptDirectory.from_config(_alembic_config()).get_current_head()
WHEN = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def fresh(db_url: str) -> Iterator[Database]:
    """A database nobody has migrated yet."""
    db = Database(db_url)
    yield db
    db.dispose()


@pytest.fixture
def db(fresh: Database) -> Database:
    fresh.migrate()
    return fresh


def _principal(pid: str, name: str, when: datetime = WHEN) -> PrincipalRow:
    return PrincipalRow(
        id=pid,
        name=name,
        kind="user",
        description="",
        disabled=False,
        created_at=when,
        created_by="test",
        updated_at=when,
    )


def _insert(db: Database, *rows: Base) -> None:
    """Insert `rows` one after another (each flushed) in a single transaction."""
    with db.transaction() as session:
        for row in rows:
            session.add(row)
            session.flush()


def _principal_ids(db: Database) -> list[str]:
    with db.read() as session:
        return sorted(session.scalars(sa.select(PrincipalRow.id)))


def _diff(db: Database, metadata: sa.MetaData) -> list[object]:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


# ------------------------------------------------------------------ migrations


def test_migrate_brings_schema_to_head_and_matches_models(db: Database) -> None:
    db.check_current()
    assert db.revision() == HEAD
    assert _diff(db, Base.metadata) == []


def test_schema_comparison_notices_a_model_the_migrations_lack(db: Database) -> None:
    # Proves the comparison above looks at real columns: a model change shows up as a diff.
    changed = sa.MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["principals"].append_column(sa.Column("email", sa.String(256)))
    diff = _diff(db, changed)
    assert any("email" in repr(d) for d in diff), diff


def test_fresh_database_is_reported_outdated(fresh: Database) -> None:
    assert fresh.revision() is None
    with pytest.raises(StoreError) as info:
        fresh.check_current()
    assert info.value.code == "store.schema_outdated"
    assert "bastion init" in info.value.message


def test_unknown_revision_is_reported_outdated(db: Database) -> None:
    with db.engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError) as info:
        db.check_current()
    assert info.value.code == "store.schema_outdated"


def test_migrate_twice_is_idempotent_and_keeps_data(db: Database) -> None:
    with db.transaction() as session:
        session.add(_principal("prn_1", "alice"))
    db.migrate()
    db.check_current()
    assert db.revision() == HEAD
    assert _principal_ids(db) == ["prn_1"]


# ------------------------------------------------------------------ transactions


def test_transaction_commits_on_success(db: Database) -> None:
    with db.transaction() as session:
        session.add(_principal("prn_1", "alice"))
    assert _principal_ids(db) == ["prn_1"]


def test_a_snapshot_reads_one_state_while_another_writer_commits(db: Database) -> None:
    """What a verifier needs: a row committed between two statements of one snapshot is seen
    by neither (on PostgreSQL `read()` alone would show it to the second: READ COMMITTED)."""
    _insert(db, _principal("prn_1", "alice"))
    with db.snapshot() as session:
        first = sorted(session.scalars(sa.select(PrincipalRow.id)))
        _insert(db, _principal("prn_2", "bob"))  # another connection, committed
        second = sorted(session.scalars(sa.select(PrincipalRow.id)))
        count = session.scalar(sa.select(sa.func.count()).select_from(PrincipalRow))
    assert first == second == ["prn_1"]
    assert count == 1
    assert _principal_ids(db) == ["prn_1", "prn_2"]  # committed all along


def test_a_snapshot_is_read_only_on_postgresql(db: Database) -> None:
    if db.backend != "postgresql":
        pytest.skip("SQLite has no read-only transactions; the snapshot is rolled back anyway")
    with db.snapshot() as session:
        session.add(_principal("prn_9", "mallory"))
        with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
            session.flush()
    assert _principal_ids(db) == []


def test_transaction_rolls_back_on_exception(db: Database) -> None:
    class Boom(Exception):
        pass

    def fail_midway() -> None:
        with db.transaction() as session:
            session.add(_principal("prn_1", "alice"))
            session.flush()  # the row reached the database before the failure
            raise Boom

    with pytest.raises(Boom):
        fail_midway()
    assert _principal_ids(db) == []


def test_duplicate_primary_key_is_a_conflict(db: Database) -> None:
    with db.transaction() as session:
        session.add(_principal("prn_1", "alice"))
    with pytest.raises(Conflict) as info:
        _insert(db, _principal("prn_2", "bob"), _principal("prn_1", "carol"))
    assert info.value.code == "store.conflict"
    assert _principal_ids(db) == ["prn_1"]  # bob, written first, was rolled back too


def test_duplicate_unique_name_in_one_transaction_leaves_nothing(db: Database) -> None:
    with pytest.raises(Conflict) as info:
        _insert(db, _principal("prn_1", "alice"), _principal("prn_2", "alice"))
    assert info.value.code == "store.conflict"
    assert _principal_ids(db) == []


def test_dangling_foreign_key_is_a_conflict(db: Database) -> None:
    # On SQLite this only fails if `PRAGMA foreign_keys=ON` took effect.
    with pytest.raises(Conflict) as info, db.transaction() as session:
        session.add(PrincipalRoleRow(principal_id="prn_missing", role="admin"))
    assert info.value.code == "store.conflict"
    with db.read() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(PrincipalRoleRow)) == 0


def test_conflict_message_does_not_echo_row_values(db: Database) -> None:
    with db.transaction() as session:
        session.add(_principal("prn_1", "alice-very-private-name"))
    with pytest.raises(Conflict) as info, db.transaction() as session:
        session.add(_principal("prn_2", "alice-very-private-name"))
    assert "alice-very-private-name" not in str(info.value)


# ------------------------------------------------------------------ timestamps


def test_datetimes_round_trip_as_aware_utc(db: Database) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    written = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=india)
    with db.transaction() as session:
        session.add(_principal("prn_1", "alice", when=written))
    with db.read() as session:
        row = session.get(PrincipalRow, "prn_1")
        assert row is not None
        read = row.created_at
    assert read == written
    assert read.utcoffset() == timedelta(0)
    assert read.tzinfo is UTC
    assert (read.hour, read.minute, read.microsecond) == (23, 36, 123456)  # previous day, UTC


def test_naive_datetime_is_refused(db: Database) -> None:
    """A naive datetime is a coded StoreError that names the problem but no bound values."""
    from bastion.core.errors import StoreError

    with pytest.raises(StoreError, match="naive datetime") as info, db.transaction() as session:
        session.add(_principal("prn_1", "alice", when=datetime(2026, 1, 1)))
    assert info.value.code == "store.bad_statement"
    assert "alice" not in info.value.message
    assert info.value.__cause__ is None  # the driver error, with its parameters, is dropped
    assert _principal_ids(db) == []


# ------------------------------------------------------------------ SQLite specifics


def test_sqlite_uses_wal_foreign_keys_and_private_files(tmp_path: Path) -> None:
    path = tmp_path / "state" / "bastion.db"
    db = Database(f"sqlite:///{path}")
    try:
        db.migrate()
        with db.transaction() as session:
            session.add(_principal("prn_1", "alice"))
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            wal = path.with_name(path.name + "-wal")
            assert wal.exists()
            assert stat.S_IMODE(wal.stat().st_mode) == 0o600
    finally:
        db.dispose()


def test_sqlite_file_is_private_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        db = Database(f"sqlite:///{tmp_path / 'loose' / 'bastion.db'}")
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE((tmp_path / "loose" / "bastion.db").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "loose").stat().st_mode) & 0o077 == 0
    finally:
        db.dispose()


# ------------------------------------------------------------------ concurrency


def test_concurrent_writers_all_commit_with_gap_free_seq(db: Database) -> None:
    """8 threads x 25 read-then-write transactions. On SQLite a deferred BEGIN would fail
    such a transaction with "database is locked" at once; BEGIN IMMEDIATE + the busy timeout
    make writers queue instead."""
    threads, per_thread = 8, 25
    audit = AuditLog(clock=ManualClock())
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []
    observed: list[tuple[int, int]] = []  # (rows seen at start of transaction, seq written)
    lock = threading.Lock()

    def writer(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                with db.transaction() as session:
                    seen = session.scalar(sa.select(sa.func.count()).select_from(LedgerEntryRow))
                    recorded = audit.append(
                        session,
                        Event(type="test.concurrent", actor=f"t{n}", subject=f"s:{n}:{i}"),
                    )
                with lock:
                    observed.append((int(seen or 0), recorded.seq))
        except Exception as exc:  # noqa: BLE001 - collect every thread's failure for the assert
            with lock:
                errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not any(w.is_alive() for w in workers)
    assert errors == []

    total = threads * per_thread
    with db.read() as session:
        events = audit.events(session, limit=total + 10)
    assert len(events) == total
    assert [e.seq for e in events] == list(range(1, total + 1))
    assert len({e.event_id for e in events}) == total
    assert sorted(seq for _, seq in observed) == list(range(1, total + 1))
    if db.backend == "sqlite":
        # Writers are serialised: each one saw exactly the rows committed before it.
        assert all(seq == seen + 1 for seen, seq in observed)


# ------------------------------------------------------------------ configuration and outages


def test_unreachable_database_is_unavailable() -> None:
    db = Database("postgresql://postgres:hunter2@127.0.0.1:1/test")
    try:
        with pytest.raises(StoreError) as info, db.transaction() as session:
            session.add(_principal("prn_1", "alice"))
        assert info.value.code == "store.unavailable"
        assert "hunter2" not in str(info.value)
        assert "hunter2" not in repr(db)
        with pytest.raises(StoreError) as info:
            db.check_current()
        assert info.value.code == "store.unavailable"
    finally:
        db.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@127.0.0.1/bastion",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite+pysqlite:///tmp/x.db",
        "not a url",
    ],
)
def test_unsupported_database_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        Database(url)
    assert info.value.code == "config.invalid"
