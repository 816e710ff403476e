"""Persistence: the SQL database (SQLAlchemy 2 + Alembic) and blob stores.

May import `bastion.crypto` and `bastion.core`; never a service above.
"""

from bastion.store.db import Database

__all__ = ["Database"]
