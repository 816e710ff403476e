"""Alembic environment: runs migrations on the connection `Database.migrate` hands over."""

from __future__ import annotations

from alembic import context

from bastion.store.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached when someone runs the alembic CLI
    raise RuntimeError("run migrations through `bastion init` (Database.migrate)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
