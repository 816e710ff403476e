"""The SQL database: engine set-up, transactions, migrations, error translation.

SQLite (WAL, foreign keys on, `BEGIN IMMEDIATE` for writers so concurrent writers queue on the
busy timeout instead of failing to upgrade a read lock) is the embedded default; PostgreSQL is
reached through psycopg 3 by URL. Callers get an ORM `Session` inside `transaction()`; everything
they do there commits together or not at all.

Imports only `bastion.core` and `bastion.store.tables`; never services above.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from bastion.core.errors import BastionError, ConfigError, Conflict, ErrorKind, StoreError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_WRITE = "bastion_write"


def normalise_url(url: str) -> URL:
    """Parse a database URL; `postgresql://` means psycopg 3. Raises `ConfigError` if unknown."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError as error:
        raise ConfigError(f"invalid database URL: {error}") from error
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if parsed.drivername != "sqlite":
            raise ConfigError(f"unsupported SQLite driver {parsed.drivername!r}; use sqlite://")
        return parsed
    raise ConfigError(f"unsupported database {backend!r}; use sqlite:// or postgresql://")


class Database:
    """One database, its engine and its migrations."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 10_000, pool_size: int = 5) -> None:
        self.url = normalise_url(url)
        self.backend = self.url.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.backend == "sqlite":
            if self.url.database in (None, "", ":memory:"):
                raise ConfigError("in-memory SQLite is not supported; give a file path")
            path = Path(self.url.database)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Create the file private before SQLite does (its -wal/-shm files copy this mode).
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout_ms / 1000}
        else:
            kwargs.update(pool_size=pool_size, pool_pre_ping=True)
        # hide_parameters: bound values (token hashes, wrapped keys) never reach an error
        # message or a log line.
        self.engine: Engine = sa.create_engine(self.url, hide_parameters=True, **kwargs)
        if self.backend == "sqlite":
            _configure_sqlite(self.engine, busy_timeout_ms)
        self._hooks: list[Callable[[dict[str, Any]], None]] = []
        self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            bind=self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False
        )

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A read-write transaction: commits on normal exit, rolls back on any exception.

        After a successful commit, every hook added with `after_commit` runs with the
        session's `info` dict (a service marks there what a hook should react to). A hook's
        failure is its own business: the commit has happened and stands.

        Raises `Conflict` (`store.conflict`) on a uniqueness or foreign-key violation and
        `StoreError` (`store.unavailable`) when the database cannot be reached or is busy.
        """
        with _translated(), self._write_sessions.begin() as session:
            yield session
            info = dict(session.info)
        for hook in self._hooks:
            hook(info)

    def after_commit(self, hook: Callable[[dict[str, Any]], None], *, first: bool = False) -> None:
        """Run `hook(session_info)` after each committed `transaction()`; `first` puts it
        before the hooks already added (for what must not wait behind them)."""
        if first:
            self._hooks.insert(0, hook)
        else:
            self._hooks.append(hook)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work (rolled back at the end). Rows loaded in it stay readable
        afterwards as detached snapshots: they are expunged before the rollback, which would
        otherwise expire them."""
        with _translated(), self._sessions() as session:
            try:
                yield session
            finally:
                session.expunge_all()
                session.rollback()

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only unit of work whose statements all see the same committed state.

        `read()` on PostgreSQL runs at READ COMMITTED, where each statement sees what was
        committed when *it* started: a reader that lists checkpoints and then entries can see
        entries a concurrent writer committed in between, without their checkpoint. Here the
        transaction is REPEATABLE READ and read-only, so every statement reads one snapshot.
        SQLite's read transaction already holds one snapshot (WAL) from its first read."""
        with self.read() as session:
            if self.backend == "postgresql":
                session.connection(
                    execution_options={
                        "isolation_level": "REPEATABLE READ",
                        "postgresql_readonly": True,
                    }
                )
            yield session

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """A plain Core connection for hot, read-only paths (no ORM session).

        On PostgreSQL it runs in autocommit mode, so a single-statement read costs one round
        trip instead of three (BEGIN, query, ROLLBACK); each statement sees its own snapshot.
        """
        with _translated(), self.engine.connect() as connection:
            if self.backend == "postgresql":
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection

    def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic `upgrade head`)."""
        with _translated(), self.engine.begin() as connection:
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def revision(self) -> str | None:
        with _translated(), self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def check_current(self) -> None:
        """Raise `StoreError` (`store.schema_outdated`) unless the schema is at head."""
        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        current = self.revision()
        if current != head:
            raise StoreError(
                f"database schema is at {current or 'nothing'}, code expects {head}; "
                "run `bastion init` to migrate",
                code="store.schema_outdated",
            )

    def dispose(self) -> None:
        self.engine.dispose()


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so BEGIN is ours (see `_on_begin`).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that later writes can
        # fail with SQLITE_BUSY without waiting, while IMMEDIATE waits on the busy timeout.
        immediate = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def _translated() -> Iterator[None]:
    """Turn driver exceptions into Bastion errors, once, at the adapter boundary."""
    try:
        yield
    except BastionError:
        raise
    except exc.IntegrityError as error:
        raise Conflict(
            "the change conflicts with existing data (duplicate or dangling reference)",
            code="store.conflict",
        ) from error
    except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError) as error:
        raise StoreError(
            f"database unavailable: {type(getattr(error, 'orig', None) or error).__name__}",
            code="store.unavailable",
        ) from error
    except exc.StatementError as error:
        # A value the column cannot take (e.g. a naive datetime): a bug in the caller, said
        # without echoing the values.
        cause = error.orig if error.orig is not None else error
        # Our own bind-time checks (ValueError/TypeError) carry no values; driver messages may.
        reason = str(cause) if isinstance(cause, ValueError | TypeError) else type(cause).__name__
        raise StoreError(
            f"database rejected a statement: {reason}",
            code="store.bad_statement",
            kind=ErrorKind.INTERNAL,
        ) from None
