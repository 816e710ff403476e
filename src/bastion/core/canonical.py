"""Canonical JSON (RFC 8785, JCS) for everything Bastion hashes or signs.

Two parties that hash the same logical document must get the same bytes, whatever their
JSON library's key order or number formatting; JCS fixes both. The `rfc8785` package
(Trail of Bits) does the serialisation; this module only translates its errors.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

from bastion.core.errors import InvalidInput
from bastion.core.ids import Digest


def canonical_json(value: Any) -> bytes:
    """Serialise `value` per RFC 8785 (UTF-8, sorted keys, ECMAScript numbers, no spaces).

    Raises `InvalidInput` (`core.not_canonicalizable`) for values JCS cannot represent:
    NaN or infinite floats, integers outside the IEEE-754 safe range, non-string keys,
    or types that are not JSON.
    """
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidInput(
            f"value cannot be canonicalised as RFC 8785 JSON: {exc}",
            code="core.not_canonicalizable",
        ) from exc


def sha256_digest(data: bytes) -> Digest:
    """`sha256:<hex>` of `data`, the digest form used across Bastion."""
    return Digest("sha256:" + hashlib.sha256(data).hexdigest())
