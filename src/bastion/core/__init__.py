"""Primitives every layer may use: settings, errors, ids, canonical JSON, clock.

Imports nothing from the rest of Bastion.
"""

from bastion.core.canonical import canonical_json, sha256_digest
from bastion.core.clock import Clock, ManualClock, SystemClock
from bastion.core.errors import (
    AuthenticationError,
    BastionError,
    Conflict,
    ErrorKind,
    IntegrityError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    TooLarge,
    Unavailable,
)
from bastion.core.ids import Digest, KeyId, PrincipalId, RequestId, TokenId, new_id
from bastion.core.settings import Settings

__all__ = [
    "AuthenticationError",
    "BastionError",
    "Clock",
    "Conflict",
    "Digest",
    "ErrorKind",
    "IntegrityError",
    "InvalidInput",
    "KeyId",
    "ManualClock",
    "NotFound",
    "PermissionDenied",
    "PrincipalId",
    "RequestId",
    "Settings",
    "SystemClock",
    "TokenId",
    "TooLarge",
    "Unavailable",
    "canonical_json",
    "new_id",
    "sha256_digest",
]
