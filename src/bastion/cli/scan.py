"""`bastion scan PATH`: standalone artifact scanning (placeholder: being written)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `scan` command to `app`."""
