"""Keyed tokenization: deterministic HMAC tokens, reversible AES-SIV tokens, versioned keys
that rotate and can be crypto-shredded.

Two kinds of token, both keyed and both deterministic (same key version, context and value
give the same token in every process, so joins on tokenized columns still work):

    dtk_v<version>_<32 hex digits>     HMAC-SHA256(mac_key, context || 0x00 || value),
                                       first 128 bits; irreversible by design
    rtk_v<version>_<base64url>         AES-SIV (RFC 5297, AES-256) of the UTF-8 value with
                                       the context as associated data; reversible by whoever
                                       may detokenize, and authenticated: a changed byte, a
                                       wrong context or another version's key fails

The *context* is a domain such as a column name (1-128 characters of A-Z a-z 0-9 _ . : -).
The same value in two contexts gives two unrelated tokens: a column can be joined with
another only when both were tokenized with the same context, which is the caller's decision.
A reversible token detokenizes only under the context it was made with.

Keys. Each key version is a data key in the key store, listed in `token_keys`; exactly one
version is `active` (new tokens), older ones are `retired` (their reversible tokens still
detokenize, their deterministic tokens can still be produced on request for joins) or
`destroyed` (the data key is shredded: the version's reversible tokens can never be reversed
and its deterministic tokens can never be produced again). The first tokenization creates
version 1. From a data key, HKDF-SHA256 (RFC 5869) derives two independent subkeys,
info `bastion-token-hmac-v1` (32 bytes, HMAC) and `bastion-token-siv-v1` (64 bytes,
AES-256-SIV), so no key serves two algorithms; derived subkeys are cached in memory per
version (never on disk), and every call re-reads the small `token_keys` table, so a version
destroyed by another process is refused here at once.

Deterministic tokens cannot be moved to a new version without the original values; reversible
ones can (`retokenize`). Permissions: tokenize needs `dataset.write` (a data pipeline's
service account, or a data steward, tokenizes while preparing a dataset); detokenize,
retokenize, rotate and destroy need `privacy.manage`; listing keys needs `dataset.read`.
Ledger: `privacy.token_key.created|rotated|destroyed` (version and key id, never key bytes)
and `privacy.detokenized` / `privacy.retokenized` per call (actor, count, context, key
versions; never values or tokens). Tokenize calls are too many to ledger one by one: they are
counted in memory (`usage()`).

Imports `bastion.identity`, `bastion.ledger`, `bastion.store`, `bastion.crypto`,
`bastion.core`, the standard library and `cryptography`; never `bastion.registry`,
`bastion.supplychain` or anything above.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.orm import Session

from bastion.core.clock import Clock
from bastion.core.errors import (
    BastionError,
    Conflict,
    CryptoError,
    IntegrityError,
    InvalidInput,
    NotFound,
)
from bastion.core.ids import KeyId
from bastion.crypto.keystore import KeyStore
from bastion.identity import Authorizer, Caller, Permission
from bastion.ledger import AuditLog
from bastion.store.db import Database
from bastion.store.tables import TokenKeyRow

MAX_VALUE_BYTES: Final = 4096
MAX_BATCH: Final = 100_000
MAX_CONTEXT_CHARS: Final = 128
DETERMINISTIC_PREFIX: Final = "dtk"
REVERSIBLE_PREFIX: Final = "rtk"
HMAC_INFO: Final = b"bastion-token-hmac-v1"
SIV_INFO: Final = b"bastion-token-siv-v1"
_DIGEST_BYTES: Final = 16  # 128 bits of the HMAC: collisions need ~2^64 distinct values
_SIV_TAG: Final = 16
# PostgreSQL advisory lock held by every key-version change ("BSTNTKEY").
_PG_LOCK: Final = 0x4253_544E_544B_4559
# Longest reversible token body: base64url (no padding) of the longest value plus the SIV tag.
_MAX_RTK_BODY: Final = -(-(MAX_VALUE_BYTES + _SIV_TAG) * 4 // 3)

_CONTEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_TOKEN = re.compile(r"^(dtk|rtk)_v([1-9][0-9]{0,8})_([A-Za-z0-9_-]+)$")
_DTK_BODY = re.compile(r"^[0-9a-f]{32}$")


class KeyState(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"
    DESTROYED = "destroyed"


@dataclass(frozen=True, slots=True)
class TokenKey:
    """One tokenization key version (metadata only: the key bytes stay in the key store)."""

    version: int
    key_id: KeyId
    state: KeyState
    created_at: datetime
    created_by: str
    retired_at: datetime | None
    destroyed_at: datetime | None


@dataclass(frozen=True, slots=True)
class DestructionEvidence:
    """What shows a key version is gone: the `token_keys` row says destroyed, and the key
    store, asked for the data key, answers `keystore_answer` (`crypto.key_shredded`)."""

    version: int
    key_id: KeyId
    destroyed_at: datetime
    keystore_answer: str


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Values tokenized and detokenized by this process since it started (not ledgered)."""

    tokenized: int
    detokenized: int


@dataclass(frozen=True, slots=True)
class _Subkeys:
    key_id: KeyId
    mac: bytes
    siv: AESSIV


class Tokenizer:
    """Keyed tokenization over the key store and the `token_keys` table. Thread-safe."""

    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        authorizer: Authorizer,
        keystore: KeyStore,
        clock: Clock,
        max_value_bytes: int = MAX_VALUE_BYTES,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._db = database
        self._audit = audit
        self._authz = authorizer
        self._keystore = keystore
        self._clock = clock
        self._max_value = max_value_bytes
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._subkeys: dict[int, _Subkeys] = {}
        self._tokenized = 0
        self._detokenized = 0

    def __repr__(self) -> str:
        return "Tokenizer()"

    # ------------------------------------------------------------------ tokens

    def tokenize(
        self,
        caller: Caller,
        values: Sequence[str | None],
        *,
        context: str,
        reversible: bool = False,
        version: int | None = None,
    ) -> list[str | None]:
        """Tokens for `values` in `context`, in order; `None` stays `None`.

        Deterministic (`dtk_…`) unless `reversible` (`rtk_…`). New tokens use the active key
        version (version 1 is created on first use); `version` asks for a retired one instead,
        to join new data with data tokenized before a rotation.

        Raises:
            PermissionDenied: without `dataset.write`.
            InvalidInput: `privacy.bad_context`, `privacy.bad_batch`, `privacy.batch_too_large`,
                `privacy.bad_value` (not a string, or not encodable as UTF-8),
                `privacy.value_too_large` (over 4 KiB in UTF-8).
            NotFound: `privacy.token_key_unknown`, `privacy.token_key_destroyed` (`version`).
        """
        self._authz.authorize(caller, Permission.DATASET_WRITE)
        ctx = _check_context(context)
        self._check_batch(values, "values")
        encoded = [self._encode(value, i) for i, value in enumerate(values)]
        if all(value is None for value in encoded):
            return [None] * len(encoded)
        if version is None:
            key = self._active(caller)
        else:
            key = self._usable(self._rows(), _check_version(version))
        keys = self._keys_for(key)
        prefix = f"{REVERSIBLE_PREFIX if reversible else DETERMINISTIC_PREFIX}_v{key.version}_"
        if reversible:
            tokens = _reversible(keys.siv, prefix, ctx, encoded)
        else:
            tokens = _deterministic(keys.mac, prefix, ctx, encoded)
        with self._lock:
            self._tokenized += sum(value is not None for value in encoded)
        return tokens

    def detokenize(
        self, caller: Caller, tokens: Sequence[str | None], *, context: str
    ) -> list[str | None]:
        """The values behind reversible `tokens` made in `context`; `None` stays `None`.

        All or nothing: one bad token fails the whole batch. Each call that reverses at least
        one token is recorded in the ledger (`privacy.detokenized`: count, context, key
        versions) before any value is returned.

        Raises:
            PermissionDenied: without `privacy.manage`.
            InvalidInput: `privacy.bad_token` (malformed, altered, or made in another
                context), `privacy.token_irreversible` (a deterministic token),
                `privacy.bad_context`, `privacy.bad_batch`, `privacy.batch_too_large`.
            NotFound: `privacy.token_key_unknown`, `privacy.token_key_destroyed`.
        """
        self._authz.authorize(caller, Permission.PRIVACY_MANAGE)
        values, versions = self._reverse(tokens, context)
        count = sum(value is not None for value in values)
        if count:
            self._record_reversal(
                caller,
                "privacy.detokenized",
                context,
                versions,
                {"count": count, "context": context, "key_versions": sorted(versions)},
            )
        with self._lock:
            self._detokenized += count
        return values

    def retokenize(
        self, caller: Caller, tokens: Sequence[str | None], *, context: str
    ) -> list[str | None]:
        """Reversible `tokens` of any live version re-issued under the active version.

        Values never leave the service; the call is one ledger entry (`privacy.retokenized`).
        Deterministic tokens cannot be re-issued (that needs the original values).
        Raises what `detokenize` raises.
        """
        self._authz.authorize(caller, Permission.PRIVACY_MANAGE)
        values, versions = self._reverse(tokens, context)
        if not any(value is not None for value in values):
            return [None] * len(values)
        key = self._active(caller)
        encoded = [None if value is None else value.encode("utf-8") for value in values]
        prefix = f"{REVERSIBLE_PREFIX}_v{key.version}_"
        result = _reversible(self._keys_for(key).siv, prefix, context.encode("ascii"), encoded)
        self._record_reversal(
            caller,
            "privacy.retokenized",
            context,
            versions | {key.version},
            {
                "count": sum(value is not None for value in values),
                "context": context,
                "from_versions": sorted(versions),
                "to_version": key.version,
            },
        )
        return result

    def usage(self) -> TokenUsage:
        with self._lock:
            return TokenUsage(tokenized=self._tokenized, detokenized=self._detokenized)

    # -------------------------------------------------------------------- keys

    def keys(self, caller: Caller) -> list[TokenKey]:
        """Every key version, oldest first (metadata only). Needs `dataset.read`."""
        self._authz.authorize(caller, Permission.DATASET_READ)
        with self._db.read() as session:
            rows = session.scalars(sa.select(TokenKeyRow).order_by(TokenKeyRow.version)).all()
            return [_view(row) for row in rows]

    def rotate(self, caller: Caller) -> TokenKey:
        """Make a new active key version and retire the previous one (`privacy.manage`).

        Tokens made from now on use the new version; the retired version's reversible tokens
        still detokenize until it is destroyed. Concurrent rotations queue on a lock and
        each gets its own version.
        """
        self._authz.authorize(caller, Permission.PRIVACY_MANAGE)
        return self._new_version(caller, first=False)

    def destroy(self, caller: Caller, version: int) -> DestructionEvidence:
        """Crypto-shred retired key version `version` (`privacy.manage`): its reversible tokens
        can never be reversed again, its deterministic tokens never produced again.

        The shred runs inside the transaction that marks the row destroyed and appends
        `privacy.token_key.destroyed`, so a failure before the shred changes nothing, and a
        commit failing after it leaves a retired row whose key the key store refuses (reported
        as destroyed; a retry completes the record). Destroying a destroyed version returns
        its evidence again.

        Raises:
            NotFound: `privacy.token_key_unknown`.
            Conflict: `privacy.token_key_active` (rotate first).
            IntegrityError: `privacy.token_key_not_shredded` if the key store still gives out
                the key afterwards.
        """
        self._authz.authorize(caller, Permission.PRIVACY_MANAGE)
        number = _check_version(version)
        with self._db.transaction() as session:
            row = session.get(TokenKeyRow, number, with_for_update=True)
            if row is None:
                raise _unknown(number)
            if row.state == KeyState.ACTIVE:
                raise Conflict(
                    f"token key v{number} is the active version; rotate first, then destroy it",
                    code="privacy.token_key_active",
                    details={"version": number},
                )
            if row.state == KeyState.RETIRED:
                shred = self._keystore.shred_data_key(KeyId(row.key_id))
                row.state = KeyState.DESTROYED
                row.destroyed_at = self._clock.now()
                self._audit.append(
                    session,
                    caller.event(
                        "privacy.token_key.destroyed",
                        f"token-key:v{number}",
                        {
                            "version": number,
                            "key_id": row.key_id,
                            "kek_id": shred.kek_id,
                            "shredded_at": shred.shredded_at.isoformat(),
                        },
                    ),
                )
            key = _view(row)
        with self._lock:
            self._subkeys.pop(number, None)
        return self._evidence(key)

    def evidence(self, caller: Caller, version: int) -> DestructionEvidence:
        """Check, now, that destroyed version `version` cannot be used: the key store must
        refuse its data key (`dataset.read`).

        Raises `NotFound` (`privacy.token_key_unknown`), `Conflict`
        (`privacy.token_key_not_destroyed`), or `IntegrityError`
        (`privacy.token_key_not_shredded`) if the key store still has the key.
        """
        self._authz.authorize(caller, Permission.DATASET_READ)
        number = _check_version(version)
        with self._db.read() as session:
            row = session.get(TokenKeyRow, number)
            if row is None:
                raise _unknown(number)
            key = _view(row)
        if key.state != KeyState.DESTROYED:
            raise Conflict(
                f"token key v{number} is {key.state.value}, not destroyed",
                code="privacy.token_key_not_destroyed",
                details={"version": number},
            )
        return self._evidence(key)

    # --------------------------------------------------------------- internals

    def _check_batch(self, items: Sequence[object], what: str) -> None:
        if isinstance(items, str | bytes) or not isinstance(items, Sequence):
            raise InvalidInput(
                f"{what} must be a list of strings or nulls", code="privacy.bad_batch"
            )
        if len(items) > self._max_batch:
            raise InvalidInput(
                f"{len(items)} {what} in one call; at most {self._max_batch}",
                code="privacy.batch_too_large",
                details={"count": len(items), "limit": self._max_batch},
            )

    def _encode(self, value: object, index: int) -> bytes | None:
        # Errors name the position, never the value: it may be exactly the PII being protected.
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidInput(
                f"value #{index} is a {type(value).__name__}, not a string",
                code="privacy.bad_value",
                details={"index": index},
            )
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(
                f"value #{index} is not valid Unicode text (lone surrogate)",
                code="privacy.bad_value",
                details={"index": index},
            ) from None
        if len(raw) > self._max_value:
            raise InvalidInput(
                f"value #{index} is {len(raw)} bytes in UTF-8; at most {self._max_value}",
                code="privacy.value_too_large",
                details={"index": index, "bytes": len(raw), "limit": self._max_value},
            )
        return raw

    def _reverse(
        self, tokens: Sequence[str | None], context: str
    ) -> tuple[list[str | None], set[int]]:
        ctx = _check_context(context)
        self._check_batch(tokens, "tokens")
        parsed = [_parse_reversible(token, i) for i, token in enumerate(tokens)]
        versions = {p[0] for p in parsed if p is not None}
        if not versions:
            return [None] * len(parsed), versions
        rows = self._rows()
        keys = {v: self._keys_for(self._usable(rows, v)) for v in sorted(versions)}
        values: list[str | None] = []
        for i, item in enumerate(parsed):
            if item is None:
                values.append(None)
                continue
            version, raw = item
            try:
                plain = keys[version].siv.decrypt(raw, [ctx])
                values.append(plain.decode("utf-8"))
            except (InvalidTag, UnicodeDecodeError):
                raise InvalidInput(
                    f"token #{i} does not authenticate under context {context!r} and key "
                    f"v{version}: it was made in another context, or it has been altered",
                    code="privacy.bad_token",
                    details={"index": i},
                ) from None
        return values, versions

    def _record_reversal(
        self,
        caller: Caller,
        event: str,
        context: str,
        versions: set[int],
        data: dict[str, object],
    ) -> None:
        """Ledger a reversal; first re-check, inside the transaction and under a share lock
        (PostgreSQL; SQLite transactions are serial), that no version used was destroyed
        meanwhile, so no value is released once its key's destruction has committed."""
        with self._db.transaction() as session:
            states = session.execute(
                sa.select(TokenKeyRow.version, TokenKeyRow.state, TokenKeyRow.destroyed_at)
                .where(TokenKeyRow.version.in_(sorted(versions)))
                .with_for_update(read=True)
            ).all()
            for number, state, destroyed_at in states:
                if state == KeyState.DESTROYED:
                    raise _destroyed(number, destroyed_at)
            self._audit.append(session, caller.event(event, f"tokens:{context}", data))

    def _rows(self) -> dict[int, TokenKey]:
        # Every call reads the (small) table, so a version destroyed by another process is
        # refused at once; a Core read costs a fraction of an ORM session.
        table = TokenKeyRow.__table__
        with self._db.connect() as connection:
            rows = connection.execute(sa.select(table)).mappings().all()
        return {
            int(row["version"]): TokenKey(
                version=int(row["version"]),
                key_id=KeyId(row["key_id"]),
                state=KeyState(row["state"]),
                created_at=row["created_at"],
                created_by=row["created_by"],
                retired_at=row["retired_at"],
                destroyed_at=row["destroyed_at"],
            )
            for row in rows
        }

    def _active(self, caller: Caller) -> TokenKey:
        rows = self._rows()
        if not rows:
            try:
                return self._new_version(caller, first=True)
            except Conflict:
                rows = self._rows()  # another caller created version 1 at the same moment
        active = [key for key in rows.values() if key.state == KeyState.ACTIVE]
        if len(active) != 1:
            raise IntegrityError(
                f"token_keys holds {len(active)} active versions; exactly one is required",
                code="privacy.token_key_state",
                details={"active": sorted(key.version for key in active)},
            )
        return active[0]

    def _new_version(self, caller: Caller, *, first: bool) -> TokenKey:
        """Insert the next version as active and retire the previous active one, in one
        transaction. Writers queue: on PostgreSQL on an advisory lock (a row lock cannot
        cover a version not yet inserted), on SQLite on its one writer; the primary key on
        `version` backs both. With `first`, finding any version is a `Conflict` (another
        caller made version 1). A data key made for a version that does not commit is
        shredded, as nothing was tokenized with it."""
        key_id: KeyId | None = None
        try:
            with self._db.transaction() as session:
                if self._db.backend == "postgresql":
                    session.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK)))
                top = session.scalar(sa.select(sa.func.max(TokenKeyRow.version)))
                if first and top is not None:
                    raise Conflict("token key version 1 exists", code="store.conflict")
                number = (top or 0) + 1
                key_id, _ = self._keystore.create_data_key()
                now = self._clock.now()
                row = TokenKeyRow(
                    version=number,
                    key_id=key_id,
                    state=KeyState.ACTIVE,
                    created_at=now,
                    created_by=caller.principal_id,
                )
                session.add(row)
                session.flush()
                retired = _retire_others(session, number, now)
                self._audit.append(
                    session,
                    caller.event(
                        "privacy.token_key.created" if first else "privacy.token_key.rotated",
                        f"token-key:v{number}",
                        {"version": number, "key_id": key_id, "retired": retired},
                    ),
                )
                key = _view(row)
        except BaseException:
            if key_id is not None:
                self._discard_unused(key_id)
            raise
        return key

    def _discard_unused(self, key_id: KeyId) -> None:
        """Shred a data key made for a version that did not commit. An after-commit hook can
        fail after a good commit, so the table decides; if it cannot be read, the key is kept
        (an orphan costs a file; shredding a live key would lose data)."""
        try:
            with self._db.read() as session:
                used = session.scalar(
                    sa.select(TokenKeyRow.version).where(TokenKeyRow.key_id == key_id)
                )
        except BastionError:
            return
        if used is None:
            with contextlib.suppress(BastionError):  # the caller's own error matters more
                self._keystore.shred_data_key(key_id)

    def _usable(self, rows: dict[int, TokenKey], version: int) -> TokenKey:
        key = rows.get(version)
        if key is None:
            raise _unknown(version)
        if key.state == KeyState.DESTROYED:
            raise _destroyed(version, key.destroyed_at)
        return key

    def _keys_for(self, key: TokenKey) -> _Subkeys:
        with self._lock:
            cached = self._subkeys.get(key.version)
        if cached is not None and cached.key_id == key.key_id:
            return cached
        try:
            data_key = self._keystore.data_key(key.key_id)
        except CryptoError as error:
            if error.code == "crypto.key_shredded":
                # Shredded but not (yet) marked: a destroy whose commit failed. Same answer.
                raise _destroyed(key.version, key.destroyed_at) from None
            raise
        subkeys = _Subkeys(
            key_id=key.key_id,
            mac=_derive(data_key, HMAC_INFO, 32),
            siv=AESSIV(_derive(data_key, SIV_INFO, 64)),
        )
        with self._lock:
            self._subkeys[key.version] = subkeys
        return subkeys

    def _evidence(self, key: TokenKey) -> DestructionEvidence:
        try:
            self._keystore.data_key(key.key_id)
        except BastionError as error:
            answer = error.code
        else:
            answer = "key_present"
        if answer != "crypto.key_shredded" or key.destroyed_at is None:
            raise IntegrityError(
                f"token key v{key.version} is marked destroyed but the key store answers "
                f"{answer!r} for its data key {key.key_id}",
                code="privacy.token_key_not_shredded",
                details={"version": key.version, "key_id": key.key_id, "answer": answer},
            )
        return DestructionEvidence(
            version=key.version,
            key_id=key.key_id,
            destroyed_at=key.destroyed_at,
            keystore_answer=answer,
        )


# -------------------------------------------------------------------------- helpers


def _deterministic(
    key: bytes, prefix: str, context: bytes, values: list[bytes | None]
) -> list[str | None]:
    # One HMAC state keyed and fed the context once, copied per value: the per-value cost is
    # the value's own compression rounds and one finalisation. Hex, not base32: the standard
    # library's base32 encoder costs three times the HMAC.
    base = hmac.new(key, context + b"\x00", hashlib.sha256)
    out: list[str | None] = []
    for value in values:
        if value is None:
            out.append(None)
            continue
        mac = base.copy()
        mac.update(value)
        out.append(prefix + mac.digest()[:_DIGEST_BYTES].hex())
    return out


def _reversible(
    siv: AESSIV, prefix: str, context: bytes, values: list[bytes | None]
) -> list[str | None]:
    ad = [context]
    out: list[str | None] = []
    for value in values:
        if value is None:
            out.append(None)
            continue
        body = base64.urlsafe_b64encode(siv.encrypt(value, ad)).rstrip(b"=").decode("ascii")
        out.append(prefix + body)
    return out


def _parse_reversible(token: object, index: int) -> tuple[int, bytes] | None:
    """`(version, ciphertext)` of a reversible token; `None` for `None`; coded errors else.
    Messages name the position, not the token."""
    if token is None:
        return None
    match = _TOKEN.match(token) if isinstance(token, str) else None
    if match is None:
        raise _bad_token(index, "is not a Bastion token (rtk_v<N>_<…>)")
    kind, version, body = match.groups()
    if kind == DETERMINISTIC_PREFIX:
        if not _DTK_BODY.match(body):
            raise _bad_token(index, "is a malformed deterministic token")
        raise InvalidInput(
            f"token #{index} is deterministic (dtk_): an HMAC, irreversible by design; "
            "only reversible (rtk_) tokens detokenize",
            code="privacy.token_irreversible",
            details={"index": index},
        )
    if len(body) > _MAX_RTK_BODY or len(body) % 4 == 1:
        raise _bad_token(index, "has a malformed body")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise _bad_token(index, "has a malformed body") from None
    if len(raw) < _SIV_TAG:
        raise _bad_token(index, "is too short")
    return int(version), raw


def _retire_others(session: Session, number: int, now: datetime) -> list[int]:
    result = session.execute(
        sa.update(TokenKeyRow)
        .where(TokenKeyRow.state == KeyState.ACTIVE, TokenKeyRow.version != number)
        .values(state=KeyState.RETIRED, retired_at=now)
        .returning(TokenKeyRow.version)
        .execution_options(synchronize_session=False)
    )
    return sorted(int(v) for v in result.scalars())


def _derive(data_key: bytes, info: bytes, length: int) -> bytes:
    # No salt: the input is a uniformly random 32-byte key (RFC 5869 §3.1).
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(data_key)


def _check_context(context: object) -> bytes:
    if not isinstance(context, str) or not _CONTEXT.match(context):
        raise InvalidInput(
            f"a context is 1-{MAX_CONTEXT_CHARS} characters of A-Z a-z 0-9 _ . : - "
            "starting with a letter or digit (for a CSV column with other characters, pass "
            "--context)",
            code="privacy.bad_context",
        )
    return context.encode("ascii")


def _check_version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidInput("a key version is a positive integer", code="privacy.bad_version")
    return version


def _view(row: TokenKeyRow) -> TokenKey:
    return TokenKey(
        version=row.version,
        key_id=KeyId(row.key_id),
        state=KeyState(row.state),
        created_at=row.created_at,
        created_by=row.created_by,
        retired_at=row.retired_at,
        destroyed_at=row.destroyed_at,
    )


def _bad_token(index: int, what: str) -> InvalidInput:
    return InvalidInput(
        f"token #{index} {what}", code="privacy.bad_token", details={"index": index}
    )


def _unknown(version: int) -> NotFound:
    return NotFound(
        f"no token key v{version}: the token was not made here, or its version is mistyped",
        code="privacy.token_key_unknown",
        details={"version": version},
    )


def _destroyed(version: int, when: datetime | None) -> NotFound:
    date = when.date().isoformat() if when is not None else "an unrecorded date"
    return NotFound(
        f"token key v{version} was rotated away and destroyed on {date}; tokens made with it "
        "can never be reversed (or produced) again",
        code="privacy.token_key_destroyed",
        details={"version": version, "destroyed_at": when.isoformat() if when else None},
    )
