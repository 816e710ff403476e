"""Shared fixtures. Store-backed fixtures run on SQLite and on the real PostgreSQL server.

PostgreSQL comes from BASTION_TEST_POSTGRES_URL; each test gets its own schema (dropped
afterwards) so tests never see each other's rows. Where no server answers, PostgreSQL cases
skip with the reason shown, unless BASTION_REQUIRE_POSTGRES=1 (set by .ci/run) makes that a
failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from bastion.core import ManualClock, Settings
from bastion.identity import Role
from bastion.platform import Platform
from support import Actor, MakeActor

PG_URL = os.environ.get("BASTION_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's BASTION_* settings."""
    for key in list(os.environ):
        if key.startswith("BASTION_") and not key.startswith(("BASTION_TEST_", "BASTION_REQUIRE_")):
            monkeypatch.delenv(key)


def _pg_available() -> str | None:
    try:
        engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.connect() as conn:
            conn.exec_driver_sql("select 1")
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "no server to test against"
        return f"PostgreSQL at {PG_URL} unreachable: {type(exc).__name__}"
    return None


@pytest.fixture(scope="session")
def pg_unavailable() -> str | None:
    return _pg_available()


@pytest.fixture
def pg_schema_url(pg_unavailable: str | None) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, private schema."""
    if pg_unavailable:
        if os.environ.get("BASTION_REQUIRE_POSTGRES") == "1":
            pytest.fail(pg_unavailable)
        pytest.skip(pg_unavailable)
    schema = f"t_{secrets.token_hex(6)}"
    admin = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'bastion.db'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings.from_env(home=tmp_path / "home", database_url=db_url)


@pytest.fixture
def platform(settings: Settings, clock: ManualClock) -> Iterator[Platform]:
    with Platform.initialise(settings, clock=clock) as p:
        yield p


@pytest.fixture
def admin(platform: Platform) -> Actor:
    principal, issued = platform.bootstrap_admin("root-admin")
    return Actor(principal, issued)


@pytest.fixture
def make_actor(platform: Platform, admin: Actor) -> MakeActor:
    """`make_actor("alice", Role.APPROVER, ...)`: a principal with these roles and a token."""
    admin_caller = platform.tokens.authenticate(admin.token)

    def make(name: str, *roles: Role, kind: str = "user", resources: tuple[str, ...] = ()) -> Actor:
        principal = platform.principals.add(admin_caller, name=name, kind=kind, roles=roles)
        issued = platform.tokens.create(
            admin_caller, principal_id=principal.id, resources=resources
        )
        return Actor(principal, issued)

    return make
