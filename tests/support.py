"""Types shared by tests (importable as `support`; tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.identity import IssuedToken, Principal


@dataclass(frozen=True)
class Actor:
    """A principal plus one of its tokens."""

    principal: Principal
    issued: IssuedToken

    @property
    def token(self) -> str:
        return self.issued.secret

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issued.secret}"}


MakeActor = Callable[..., Actor]


# -- the CLI ---------------------------------------------------------------------------------

BIN = shutil.which("bastion", path=str(Path(sys.executable).parent)) or str(
    Path(sys.executable).parent / "bastion"
)
TOKEN_LINE = re.compile(r"^bst_[0-9A-Za-z]{72}$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def token(self) -> str:
        """The one token line on stdout."""
        lines = [line for line in self.out.splitlines() if line.startswith("bst_")]
        assert len(lines) == 1, self.out
        assert TOKEN_LINE.match(lines[0]), lines[0]
        return lines[0]


def _check(result: Result) -> Result:
    # Whatever happened, no token (nor anything shaped like one) is ever written to stderr.
    assert "bst_" not in result.err, result.err
    return result


def new_master_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def cli_token_for(cli: Any, admin_token: str, name: str, *roles: str) -> str:
    """Add principal `name` with `roles` through the CLI and return a fresh token for it."""
    role_args = [arg for r in roles for arg in ("--role", r)]
    added = cli("principal", "add", name, *role_args, "--json", token=admin_token)
    assert added.code == 0, added.err
    issued = cli("token", "create", "--for", name, "--json", token=admin_token)
    assert issued.code == 0, issued.err
    return str(issued.json()["token"])


# -- the server process ------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI or server process on `home`, without the caller's BASTION_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(BASTION_HOME=str(home), NO_COLOR="1", **extra)
    return env
