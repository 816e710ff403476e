"""The error tree. Every failure a caller can see is a `BastionError` with a stable `code`.

Codes are dotted, lower-case and stable across releases (`auth.token_expired`,
`crypto.integrity`); messages are for humans and may change. The `kind` says what sort of
failure it is, and only the edges (one FastAPI handler, one CLI wrapper) turn a kind into an
HTTP status or an exit code.

    BastionError                       bastion.internal        (kind internal)
    ├── InvalidInput                   input.invalid           (invalid, 422)
    ├── TooLarge                       input.too_large         (too_large, 413)
    ├── NotFound                       not_found               (not_found, 404)
    ├── Conflict                       conflict                (conflict, 409)
    ├── Unavailable                    unavailable             (unavailable, 503)
    ├── ConfigError                    config.invalid          (invalid)
    ├── AuthenticationError            auth.unauthenticated    (unauthenticated, 401)
    │     auth.token_missing, auth.token_malformed, auth.token_unknown,
    │     auth.token_expired, auth.token_revoked, auth.principal_disabled
    ├── PermissionDenied               auth.denied             (denied, 403)
    │     auth.scope_denied, auth.sod_violation
    ├── IntegrityError                 integrity.failed        (integrity, 500)
    │     crypto.integrity, crypto.wrong_master_key, store.digest_mismatch
    ├── CryptoError                    crypto.error
    │     crypto.key_not_found, crypto.key_shredded, crypto.keystore_missing
    └── StoreError                     store.error             (unavailable)
          store.path_escape (invalid), store.schema_outdated, store.unavailable

Secrets never appear in a message or in `details`. Integrity failures carry the expected and
computed values (digests, roots) in `details` so an operator can see what differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar


class ErrorKind(StrEnum):
    """What sort of failure an error is; the edges map it to a status."""

    INVALID = "invalid"
    TOO_LARGE = "too_large"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    UNAUTHENTICATED = "unauthenticated"
    DENIED = "denied"
    RATE_LIMITED = "rate_limited"
    INTEGRITY = "integrity"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


# The edges' one mapping from kind to HTTP status (the API's error handler, gateway metrics).
HTTP_STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID: 422,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.DENIED: 403,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.INTEGRITY: 500,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.INTERNAL: 500,
}


class BastionError(Exception):
    """Base of every error Bastion raises on purpose."""

    default_code: ClassVar[str] = "bastion.internal"
    default_kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        kind: ErrorKind | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.kind = kind or self.default_kind
        self.details: dict[str, Any] = dict(details or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"

    def to_dict(self) -> dict[str, Any]:
        """The public error body: `{"code", "message"}` plus non-secret details if any."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(BastionError):
    default_code = "input.invalid"
    default_kind = ErrorKind.INVALID


class TooLarge(BastionError):
    default_code = "input.too_large"
    default_kind = ErrorKind.TOO_LARGE


class NotFound(BastionError):
    default_code = "not_found"
    default_kind = ErrorKind.NOT_FOUND


class Conflict(BastionError):
    default_code = "conflict"
    default_kind = ErrorKind.CONFLICT


class Unavailable(BastionError):
    default_code = "unavailable"
    default_kind = ErrorKind.UNAVAILABLE


class ConfigError(BastionError):
    default_code = "config.invalid"
    default_kind = ErrorKind.INVALID


class AuthenticationError(BastionError):
    """No usable credential: 401. The code says which (missing, malformed, expired, ...)."""

    default_code = "auth.unauthenticated"
    default_kind = ErrorKind.UNAUTHENTICATED


class PermissionDenied(BastionError):
    """A known caller asked for something its roles, scope or duties do not allow: 403."""

    default_code = "auth.denied"
    default_kind = ErrorKind.DENIED


class IntegrityError(BastionError):
    """Stored or received bytes are not what they claim to be (tag, digest or root mismatch)."""

    default_code = "integrity.failed"
    default_kind = ErrorKind.INTEGRITY


class CryptoError(BastionError):
    default_code = "crypto.error"
    default_kind = ErrorKind.INTERNAL


class StoreError(BastionError):
    default_code = "store.error"
    default_kind = ErrorKind.UNAVAILABLE
