"""What every CLI command module shares: consoles, exit codes, auth, output helpers."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bastion.core.errors import BastionError, ConfigError, ErrorKind, InvalidInput
from bastion.core.settings import Settings
from bastion.identity import Caller
from bastion.platform import Platform

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

EXIT_CODES: dict[ErrorKind, int] = {
    ErrorKind.INVALID: 2,
    ErrorKind.TOO_LARGE: 2,
    ErrorKind.UNAUTHENTICATED: 3,
    ErrorKind.DENIED: 3,
    ErrorKind.RATE_LIMITED: 3,
    ErrorKind.NOT_FOUND: 4,
    ErrorKind.CONFLICT: 5,
    ErrorKind.INTEGRITY: 6,
    ErrorKind.UNAVAILABLE: 7,
    ErrorKind.INTERNAL: 1,
}

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

TokenFile = Annotated[
    Path | None,
    typer.Option("--token-file", help="File holding the API token (default: $BASTION_TOKEN)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


EXIT_UNUSABLE = 2  # standalone commands: the inputs (files, keys), not the model, are the problem


def exit_unusable(message: str) -> NoReturn:
    """One line on stderr and exit 2 (for standalone commands that run without a home)."""
    typer.echo(f"error: {message}", err=True)
    sys.exit(EXIT_UNUSABLE)


def fail(error: BastionError) -> NoReturn:
    err.print(f"[bold red]error[/] {escape(f'[{error.code}]: {error.message}')}", highlight=False)
    for key, value in error.details.items():  # details are non-secret by contract
        err.print(f"  {key}: {escape(str(value))}", highlight=False)
    sys.exit(EXIT_CODES[error.kind])


def parse_duration(text: str) -> timedelta:
    """`90`, `30s`, `15m`, `8h`, `7d` → timedelta; `InvalidInput` otherwise."""
    match = _DURATION.match(text.strip())
    if not match:
        raise InvalidInput(
            f"bad duration {text!r}: use e.g. 90s, 15m, 8h, 7d", code="input.invalid"
        )
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


@contextmanager
def open_platform() -> Iterator[Platform]:
    with Platform.from_settings(Settings.from_env()) as platform:
        yield platform


def caller_of(platform: Platform, token_file: Path | None) -> Caller:
    if token_file is not None:
        try:
            raw = token_file.read_text().strip()
        except OSError as error:
            raise ConfigError(f"cannot read token file {token_file}: {error.strerror}") from error
    else:
        raw = os.environ.get("BASTION_TOKEN", "").strip()
    return platform.tokens.authenticate(raw or None)


def new_table(*columns: str) -> Table:
    table = Table()
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def print_json(value: Any) -> None:
    """Machine output: dataclasses become objects, anything else unknown becomes a string."""
    out.print_json(json.dumps(value, default=_jsonable))
