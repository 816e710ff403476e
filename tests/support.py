"""Types shared by tests (importable as `support`; tests/ is on pytest's pythonpath)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
