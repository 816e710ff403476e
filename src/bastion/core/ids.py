"""Typed identifiers.

Ids are opaque strings with a short type prefix (`prn_`, `tok_`, ...) followed by a ULID-style
body (48-bit millisecond time + 80 random bits, Crockford base32), so they sort by creation
time, are safe in URLs and file names, and a stray id in a log says what it names.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import NewType

PrincipalId = NewType("PrincipalId", str)
TokenId = NewType("TokenId", str)
KeyId = NewType("KeyId", str)
RequestId = NewType("RequestId", str)
EventId = NewType("EventId", str)
Digest = NewType("Digest", str)

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PREFIX = re.compile(r"^[a-z]{2,8}$")
_ID = re.compile(r"^[a-z]{2,8}_[0-9A-HJKMNP-TV-Z]{26}$")


def new_id(prefix: str) -> str:
    """A new time-sortable id such as `prn_01JD3...`; `prefix` is 2-8 lower-case letters."""
    if not _PREFIX.match(prefix):
        raise ValueError(f"bad id prefix {prefix!r}")
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def is_id(value: str, prefix: str) -> bool:
    """True when `value` is a well-formed id with this prefix."""
    return bool(_ID.match(value)) and value.startswith(prefix + "_")
