"""`bastion signature sign|verify`: standalone OpenSSF model signing (placeholder)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `signature` command group to `app`."""
