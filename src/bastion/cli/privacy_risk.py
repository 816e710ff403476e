"""Placeholder: commands are added by the module's owner."""

from __future__ import annotations

import typer


def register(group: typer.Typer) -> None:
    """Add this module's commands to `group`."""
