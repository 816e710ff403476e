"""Fault injection for rehearsing rollbacks: added latency and server errors for one endpoint
version, configured only at server start (`BASTION_FAULT_INJECTION`, a JSON list), never
through the API.

    BASTION_FAULT_INJECTION='[{"endpoint": "fraud", "version": 2, "error_rate": 0.5,
                               "latency_ms": 300}]'

Each rule names an endpoint and a version number; a request that version answers waits
`latency_ms` first, then fails with 500 (`serving.fault_injected`) with probability
`error_rate`. This is how the canary guard's automatic rollback is tested end to end and
benchmarked: a real server, a real canary, a breach with a known onset. The server logs a
warning at start while any rule is set; the rules and every change made because of them
(rollbacks) are visible in the ledger and metrics like any other.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bastion.core.errors import BastionError, ConfigError, ErrorKind
from bastion.deploy import check_endpoint_name

MAX_RULES = 100


class InjectedFault(BastionError):
    default_code = "serving.fault_injected"
    default_kind = ErrorKind.INTERNAL


@dataclass(frozen=True)
class Fault:
    endpoint: str
    version: int
    error_rate: float = 0.0
    latency: float = 0.0  # seconds

    async def apply(self) -> None:
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if self.error_rate > 0 and random.random() < self.error_rate:  # noqa: S311 - chaos
            raise InjectedFault(
                f"fault injected into version {self.version} of {self.endpoint} "
                "(BASTION_FAULT_INJECTION)"
            )


def parse_faults(text: str | None) -> Mapping[tuple[str, int], Fault]:
    """The rules of `BASTION_FAULT_INJECTION` by (endpoint, version); `ConfigError`
    (`config.bad_fault`) for anything malformed."""
    if not text:
        return {}
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(f"not JSON: {exc.msg}") from None
    if not isinstance(doc, list) or len(doc) > MAX_RULES:
        raise _bad(f"must be a JSON list of at most {MAX_RULES} rules")
    out: dict[tuple[str, int], Fault] = {}
    for i, rule in enumerate(doc):
        if not isinstance(rule, dict):
            raise _bad(f"rule {i} is not an object")
        unknown = set(rule) - {"endpoint", "version", "error_rate", "latency_ms"}
        if unknown:
            raise _bad(f"rule {i} has unknown keys: {', '.join(sorted(unknown))}")
        endpoint, version = rule.get("endpoint"), rule.get("version")
        if not isinstance(endpoint, str):
            raise _bad(f"rule {i} needs an endpoint name")
        check_endpoint_name(endpoint)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise _bad(f"rule {i} needs a version number")
        error_rate = rule.get("error_rate", 0.0)
        latency_ms = rule.get("latency_ms", 0.0)
        for name, value, high in (
            ("error_rate", error_rate, 1.0),
            ("latency_ms", latency_ms, 60_000),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 <= value <= high
            ):
                raise _bad(f"rule {i}: {name} must be a number within [0, {high:g}]")
        out[(endpoint, version)] = Fault(endpoint, version, float(error_rate), latency_ms / 1000)
    return out


def _bad(message: str) -> ConfigError:
    return ConfigError(f"BASTION_FAULT_INJECTION: {message}", code="config.bad_fault")
