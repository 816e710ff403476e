"""Tokenizer: token formats and keys, limits, malformed and altered tokens, rotation and
destruction, on a real SQLite database and a real key store in tmp_path."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.core.clock import ManualClock
from bastion.core.errors import (
    BastionError,
    Conflict,
    IntegrityError,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from bastion.core.ids import KeyId
from bastion.crypto.keystore import LocalKeyStore, ShredRecord
from bastion.crypto.masterkey import MasterKey
from bastion.identity import AccessCounters, Authorizer, Caller, Role
from bastion.ledger import AuditLog
from bastion.privacy.tokens import (
    MAX_BATCH,
    MAX_VALUE_BYTES,
    KeyState,
    Tokenizer,
)
from bastion.store.db import Database
from bastion.store.tables import LedgerEntryRow, TokenKeyRow

DTK = re.compile(r"^dtk_v(\d+)_[0-9a-f]{32}$")
RTK = re.compile(r"^rtk_v(\d+)_[A-Za-z0-9_-]+$")
STEWARD = Caller.system("steward", [Role.DATA_STEWARD])


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture
def keystore(tmp_path: Path, clock: ManualClock) -> LocalKeyStore:
    return LocalKeyStore.create(tmp_path / "keys", MasterKey.generate(), clock=clock)


def _tokenizer(
    database: Database, keystore: object, clock: ManualClock, **limits: int
) -> Tokenizer:
    return Tokenizer(
        database=database,
        audit=AuditLog(clock=clock),
        authorizer=Authorizer(counters=AccessCounters()),
        keystore=keystore,  # type: ignore[arg-type]
        clock=clock,
        **limits,
    )


@pytest.fixture
def tokenizer(database: Database, keystore: LocalKeyStore, clock: ManualClock) -> Tokenizer:
    return _tokenizer(database, keystore, clock)


def _key_rows(database: Database) -> list[tuple[int, str, str]]:
    with database.read() as session:
        rows = session.execute(
            sa.select(TokenKeyRow.version, TokenKeyRow.key_id, TokenKeyRow.state).order_by(
                TokenKeyRow.version
            )
        ).all()
    return [(int(v), str(k), str(s)) for v, k, s in rows]


def _events(database: Database) -> list[dict[str, Any]]:
    with database.read() as session:
        bodies = session.scalars(sa.select(LedgerEntryRow.body).order_by(LedgerEntryRow.seq))
        return [json.loads(body) for body in bodies]


def _subkey(data_key: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(data_key)


# ------------------------------------------------------------------------ formats and keys


def test_deterministic_token_is_hkdf_keyed_hmac_of_context_and_value(
    tokenizer: Tokenizer, database: Database, keystore: LocalKeyStore
) -> None:
    [token] = tokenizer.tokenize(STEWARD, ["alice@example.com"], context="email")
    assert token is not None
    assert DTK.match(token)
    [(version, key_id, state)] = _key_rows(database)
    assert (version, state) == (1, "active")
    mac_key = _subkey(keystore.data_key(KeyId(key_id)), b"bastion-token-hmac-v1", 32)
    expected = hmac.new(mac_key, b"email\x00alice@example.com", hashlib.sha256).digest()
    assert token == "dtk_v1_" + expected[:16].hex()
    # Never a plain or unsalted hash of the value.
    assert hashlib.sha256(b"alice@example.com").hexdigest()[:32] not in token
    assert hashlib.sha256(b"email\x00alice@example.com").hexdigest()[:32] not in token


def test_reversible_token_is_aes_siv_under_its_own_subkey(
    tokenizer: Tokenizer, database: Database, keystore: LocalKeyStore
) -> None:
    [token] = tokenizer.tokenize(STEWARD, ["4111 1111 1111 1111"], context="card", reversible=True)
    assert token is not None
    assert RTK.match(token)
    [(_, key_id, _)] = _key_rows(database)
    data_key = keystore.data_key(KeyId(key_id))
    siv_key = _subkey(data_key, b"bastion-token-siv-v1", 64)
    body = token.removeprefix("rtk_v1_")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert AESSIV(siv_key).decrypt(raw, [b"card"]) == b"4111 1111 1111 1111"
    # The two algorithms never share a key: the HMAC subkey is not a part of the SIV key.
    mac_key = _subkey(data_key, b"bastion-token-hmac-v1", 32)
    assert mac_key not in (siv_key[:32], siv_key[32:], data_key)


def test_same_value_and_context_give_the_same_token(
    tokenizer: Tokenizer, database: Database, keystore: LocalKeyStore, clock: ManualClock
) -> None:
    values = ["alice", "bob", "alice", "", "Ålice"]
    first = tokenizer.tokenize(STEWARD, values, context="name")
    assert first[0] == first[2]
    assert len(set(first)) == 4
    # A second service over the same database and key store (as a second process would be).
    other = _tokenizer(database, keystore, clock)
    assert other.tokenize(STEWARD, values, context="name") == first
    rev = tokenizer.tokenize(STEWARD, values, context="name", reversible=True)
    assert rev[0] == rev[2]  # reversible tokens are deterministic too: joins work on them
    assert other.tokenize(STEWARD, values, context="name", reversible=True) == rev


def test_different_contexts_give_unrelated_tokens(tokenizer: Tokenizer) -> None:
    a = tokenizer.tokenize(STEWARD, ["x", "y"], context="email")
    b = tokenizer.tokenize(STEWARD, ["x", "y"], context="email2")
    assert set(a).isdisjoint(b)
    ra = tokenizer.tokenize(STEWARD, ["x"], context="email", reversible=True)
    rb = tokenizer.tokenize(STEWARD, ["x"], context="email2", reversible=True)
    assert ra != rb
    # The separator keeps (context, value) pairs apart: "ab"+"c" is not "a"+"bc".
    assert tokenizer.tokenize(STEWARD, ["c"], context="ab") != tokenizer.tokenize(
        STEWARD, ["bc"], context="a"
    )


def test_none_stays_none_and_needs_no_key(tokenizer: Tokenizer, database: Database) -> None:
    assert tokenizer.tokenize(STEWARD, [None, None], context="email") == [None, None]
    assert tokenizer.tokenize(STEWARD, [], context="email") == []
    assert _key_rows(database) == []  # nothing to tokenize, no key made
    out = tokenizer.tokenize(STEWARD, [None, "a", None], context="c", reversible=True)
    assert out[0] is None
    assert out[2] is None
    assert out[1] is not None
    assert tokenizer.detokenize(STEWARD, out, context="c") == [None, "a", None]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(st.text(max_size=200), min_size=1, max_size=8))
def test_reversible_round_trip(tokenizer: Tokenizer, values: list[str]) -> None:
    tokens = tokenizer.tokenize(STEWARD, list(values), context="free.text", reversible=True)
    assert all(t is not None and RTK.match(t) for t in tokens)
    assert tokenizer.detokenize(STEWARD, tokens, context="free.text") == values


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.text(
        alphabet=st.characters(codec="utf-8"), min_size=MAX_VALUE_BYTES // 4, max_size=4000
    )
)
def test_reversible_round_trip_up_to_the_limit(tokenizer: Tokenizer, value: str) -> None:
    data = value.encode("utf-8")[:MAX_VALUE_BYTES].decode("utf-8", errors="ignore")
    [token] = tokenizer.tokenize(STEWARD, [data], context="blob", reversible=True)
    assert tokenizer.detokenize(STEWARD, [token], context="blob") == [data]


# ----------------------------------------------------------------------------------- limits


def test_value_limit_counts_utf8_bytes(tokenizer: Tokenizer) -> None:
    assert tokenizer.tokenize(STEWARD, ["a" * MAX_VALUE_BYTES], context="c")[0]
    with pytest.raises(InvalidInput) as caught:
        tokenizer.tokenize(STEWARD, ["ok", "é" * (MAX_VALUE_BYTES // 2 + 1)], context="c")
    assert caught.value.code == "privacy.value_too_large"
    assert caught.value.details["index"] == 1
    assert "é" not in caught.value.message  # errors name the position, never the value


def test_batch_limit(tokenizer: Tokenizer, database: Database, keystore: LocalKeyStore) -> None:
    assert len(tokenizer.tokenize(STEWARD, [None] * MAX_BATCH, context="c")) == MAX_BATCH
    for call in (
        lambda: tokenizer.tokenize(STEWARD, [None] * (MAX_BATCH + 1), context="c"),
        lambda: tokenizer.detokenize(STEWARD, [None] * (MAX_BATCH + 1), context="c"),
    ):
        with pytest.raises(InvalidInput) as caught:
            call()
        assert caught.value.code == "privacy.batch_too_large"
    small = _tokenizer(database, keystore, ManualClock(), max_batch=2)
    with pytest.raises(InvalidInput, match="at most 2"):
        small.tokenize(STEWARD, ["a", "b", "c"], context="c")


@pytest.mark.parametrize(
    "context",
    ["", "x" * 129, "first name", "-lead", "_lead", "naïve", "a/b", "a\x00b", None, 7],
)
def test_bad_contexts_are_refused(tokenizer: Tokenizer, context: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        tokenizer.tokenize(STEWARD, ["v"], context=context)  # type: ignore[arg-type]
    assert caught.value.code == "privacy.bad_context"
    with pytest.raises(InvalidInput) as caught:
        tokenizer.detokenize(STEWARD, [None], context=context)  # type: ignore[arg-type]
    assert caught.value.code == "privacy.bad_context"


@pytest.mark.parametrize("context", ["a", "x" * 128, "users.email", "crm:customer-id_2"])
def test_good_contexts(tokenizer: Tokenizer, context: str) -> None:
    assert tokenizer.tokenize(STEWARD, ["v"], context=context)[0]


@pytest.mark.parametrize("values", ["abc", b"abc", 42])
def test_a_batch_must_be_a_list(tokenizer: Tokenizer, values: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        tokenizer.tokenize(STEWARD, values, context="c")  # type: ignore[arg-type]
    assert caught.value.code == "privacy.bad_batch"


@pytest.mark.parametrize("value", [42, b"bytes", 1.5, "\ud800"])
def test_bad_values_are_refused(tokenizer: Tokenizer, value: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        tokenizer.tokenize(STEWARD, ["fine", value], context="c")  # type: ignore[list-item]
    assert caught.value.code == "privacy.bad_value"
    assert caught.value.details == {"index": 1}


# --------------------------------------------------------------- malformed and altered tokens


@pytest.fixture
def rtk(tokenizer: Tokenizer) -> str:
    [token] = tokenizer.tokenize(STEWARD, ["secret value"], context="c", reversible=True)
    assert token is not None
    return token


def _flip(token: str, position: int) -> str:
    head, body = token[:7], token[7:]
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[position] ^= 0x01
    return head + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda t: _flip(t, 0), id="bit-flip-tag"),
        pytest.param(lambda t: _flip(t, -1), id="bit-flip-ciphertext"),
        pytest.param(lambda t: t[:-2], id="truncated"),
        pytest.param(lambda t: t + "AAAA", id="trailing-garbage"),
        pytest.param(lambda t: t[:7] + "A" * 24, id="forged-body"),
    ],
)
def test_altered_tokens_fail_authentication(
    tokenizer: Tokenizer, rtk: str, mutate: Callable[[str], str]
) -> None:
    altered = mutate(rtk)
    assert altered != rtk
    with pytest.raises(InvalidInput) as caught:
        tokenizer.detokenize(STEWARD, [rtk, altered], context="c")
    assert caught.value.code == "privacy.bad_token"
    assert caught.value.details == {"index": 1}
    assert altered not in caught.value.message


def test_a_token_only_opens_in_its_context(tokenizer: Tokenizer, rtk: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        tokenizer.detokenize(STEWARD, [rtk], context="other")
    assert caught.value.code == "privacy.bad_token"
    assert "another context" in caught.value.message


@pytest.mark.parametrize(
    "token",
    [
        "",
        "rtk_",
        "rtk_v1_",
        "rtk_v0_AAAAAAAAAAAAAAAAAAAAAA",
        "rtk_v01_AAAAAAAAAAAAAAAAAAAAAA",
        "rtk_1_AAAAAAAAAAAAAAAAAAAAAA",
        "RTK_v1_AAAAAAAAAAAAAAAAAAAAAA",
        "xtk_v1_AAAAAAAAAAAAAAAAAAAAAA",
        "rtk_v1_AAAA AAAAAAAAAAAAAAAAAA",
        "rtk_v1_AAAAA",  # 5 base64 chars cannot be a whole number of bytes
        "rtk_v1_AAAAAAAA",  # decodes to 6 bytes: shorter than the SIV tag
        "rtk_v1_" + "A" * 6000,
        "dtk_v1_xyz",
        " rtk_v1_AAAAAAAAAAAAAAAAAAAAAA",
        "rtk_v1_AAAAAAAAAAAAAAAAAAAAAA\n",
    ],
)
def test_malformed_tokens(tokenizer: Tokenizer, rtk: str, token: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        tokenizer.detokenize(STEWARD, [rtk, token], context="c")
    assert caught.value.code == "privacy.bad_token"
    assert caught.value.details == {"index": 1}


@pytest.mark.parametrize("token", [42, b"rtk_v1_AAAA", ["rtk"]])
def test_non_string_tokens(tokenizer: Tokenizer, token: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        tokenizer.detokenize(STEWARD, [token], context="c")  # type: ignore[list-item]
    assert caught.value.code == "privacy.bad_token"


def test_deterministic_tokens_do_not_detokenize(tokenizer: Tokenizer) -> None:
    [dtk] = tokenizer.tokenize(STEWARD, ["v"], context="c")
    with pytest.raises(InvalidInput) as caught:
        tokenizer.detokenize(STEWARD, [dtk], context="c")
    assert caught.value.code == "privacy.token_irreversible"


def test_unknown_version(tokenizer: Tokenizer, rtk: str) -> None:
    forged = "rtk_v7_" + rtk[7:]
    with pytest.raises(NotFound) as caught:
        tokenizer.detokenize(STEWARD, [forged], context="c")
    assert caught.value.code == "privacy.token_key_unknown"
    with pytest.raises(NotFound) as caught:
        tokenizer.tokenize(STEWARD, ["v"], context="c", version=7)
    assert caught.value.code == "privacy.token_key_unknown"


def test_a_token_relabelled_to_another_version_fails(tokenizer: Tokenizer, rtk: str) -> None:
    tokenizer.rotate(STEWARD)
    with pytest.raises(InvalidInput) as caught:
        tokenizer.detokenize(STEWARD, ["rtk_v2_" + rtk[7:]], context="c")
    assert caught.value.code == "privacy.bad_token"


def test_a_failed_batch_is_not_ledgered(tokenizer: Tokenizer, database: Database, rtk: str) -> None:
    before = len(_events(database))
    with pytest.raises(InvalidInput):
        tokenizer.detokenize(STEWARD, [rtk, rtk[:-3]], context="c")
    assert len(_events(database)) == before
    assert tokenizer.usage().detokenized == 0


# ------------------------------------------------------------------- rotation, destruction


def test_rotation_and_destruction(
    tokenizer: Tokenizer, database: Database, keystore: LocalKeyStore, clock: ManualClock
) -> None:
    old_dtk = tokenizer.tokenize(STEWARD, ["v"], context="c")
    old_rtk = tokenizer.tokenize(STEWARD, ["v"], context="c", reversible=True)
    v2 = tokenizer.rotate(STEWARD)
    assert v2.version == 2
    assert v2.state is KeyState.ACTIVE
    assert [s for _, _, s in _key_rows(database)] == ["retired", "active"]
    new_dtk = tokenizer.tokenize(STEWARD, ["v"], context="c")
    assert new_dtk[0] is not None
    assert new_dtk[0].startswith("dtk_v2_")
    assert new_dtk != old_dtk
    # A retired version still detokenizes, and still produces its tokens when asked.
    assert tokenizer.detokenize(STEWARD, old_rtk, context="c") == ["v"]
    assert tokenizer.tokenize(STEWARD, ["v"], context="c", version=1) == old_dtk
    # Re-issue reversible tokens under the active version.
    moved = tokenizer.retokenize(STEWARD, [*old_rtk, None], context="c")
    assert moved[0] is not None
    assert moved[0].startswith("rtk_v2_")
    assert moved[1] is None
    assert tokenizer.detokenize(STEWARD, moved, context="c") == ["v", None]

    clock.advance(timedelta(days=3))
    evidence = tokenizer.destroy(STEWARD, 1)
    assert evidence.version == 1
    assert evidence.keystore_answer == "crypto.key_shredded"
    assert evidence.destroyed_at == clock.now()
    [(_, key_id, state), _] = _key_rows(database)
    assert state == "destroyed"
    assert evidence.key_id == key_id
    with pytest.raises(BastionError) as shredded:
        keystore.data_key(KeyId(key_id))
    assert shredded.value.code == "crypto.key_shredded"
    for call in (
        lambda: tokenizer.detokenize(STEWARD, old_rtk, context="c"),
        lambda: tokenizer.tokenize(STEWARD, ["v"], context="c", version=1),
        lambda: tokenizer.retokenize(STEWARD, old_rtk, context="c"),
    ):
        with pytest.raises(NotFound) as caught:
            call()
        assert caught.value.code == "privacy.token_key_destroyed"
        assert clock.now().date().isoformat() in caught.value.message
    # Destroying again is idempotent: the same evidence, no second ledger entry.
    count = sum(e["type"] == "privacy.token_key.destroyed" for e in _events(database))
    assert tokenizer.destroy(STEWARD, 1) == evidence
    assert tokenizer.evidence(STEWARD, 1) == evidence
    assert sum(e["type"] == "privacy.token_key.destroyed" for e in _events(database)) == count == 1


def test_destroy_refusals(tokenizer: Tokenizer) -> None:
    with pytest.raises(NotFound) as unknown:
        tokenizer.destroy(STEWARD, 1)
    assert unknown.value.code == "privacy.token_key_unknown"
    tokenizer.tokenize(STEWARD, ["v"], context="c")
    with pytest.raises(Conflict) as active:
        tokenizer.destroy(STEWARD, 1)
    assert active.value.code == "privacy.token_key_active"
    with pytest.raises(Conflict) as live:
        tokenizer.evidence(STEWARD, 1)
    assert live.value.code == "privacy.token_key_not_destroyed"
    for bad in (0, -1, True, "1", 1.0):
        with pytest.raises(InvalidInput) as caught:
            tokenizer.destroy(STEWARD, bad)  # type: ignore[arg-type]
        assert caught.value.code == "privacy.bad_version"


def test_shredded_but_unmarked_key_reads_as_destroyed(
    tokenizer: Tokenizer, database: Database, keystore: LocalKeyStore, clock: ManualClock
) -> None:
    """A destroy whose commit failed after the shred: the row says retired, the key is gone."""
    rtk = tokenizer.tokenize(STEWARD, ["v"], context="c", reversible=True)
    tokenizer.rotate(STEWARD)
    [(_, key_id, _), _] = _key_rows(database)
    keystore.shred_data_key(KeyId(key_id))
    fresh = _tokenizer(database, keystore, clock)  # no cached subkeys
    with pytest.raises(NotFound) as caught:
        fresh.detokenize(STEWARD, rtk, context="c")
    assert caught.value.code == "privacy.token_key_destroyed"
    # Retrying the destroy completes the record.
    assert fresh.destroy(STEWARD, 1).keystore_answer == "crypto.key_shredded"


def test_a_cached_key_is_refused_once_destroyed_elsewhere(
    database: Database, keystore: LocalKeyStore, clock: ManualClock
) -> None:
    here, there = _tokenizer(database, keystore, clock), _tokenizer(database, keystore, clock)
    rtk = here.tokenize(STEWARD, ["v"], context="c", reversible=True)
    assert here.detokenize(STEWARD, rtk, context="c") == ["v"]  # subkeys now cached here
    there.rotate(STEWARD)
    there.destroy(STEWARD, 1)
    with pytest.raises(NotFound) as caught:
        here.detokenize(STEWARD, rtk, context="c")
    assert caught.value.code == "privacy.token_key_destroyed"


class _ForgetfulKeyStore:
    """A key store whose shred does nothing: the evidence check must catch it."""

    def __init__(self, inner: LocalKeyStore) -> None:
        self._inner = inner

    def create_data_key(self) -> tuple[KeyId, bytes]:
        return self._inner.create_data_key()

    def data_key(self, key_id: KeyId) -> bytes:
        return self._inner.data_key(key_id)

    def shred_data_key(self, key_id: KeyId) -> ShredRecord:
        return ShredRecord(key_id=key_id, shredded_at=ManualClock().now(), kek_id=KeyId("kek_x"))


def test_evidence_fails_when_the_key_survives(
    database: Database, keystore: LocalKeyStore, clock: ManualClock
) -> None:
    tokenizer = _tokenizer(database, _ForgetfulKeyStore(keystore), clock)
    tokenizer.tokenize(STEWARD, ["v"], context="c")
    tokenizer.rotate(STEWARD)
    with pytest.raises(IntegrityError) as caught:
        tokenizer.destroy(STEWARD, 1)
    assert caught.value.code == "privacy.token_key_not_shredded"
    assert caught.value.details["answer"] == "key_present"


def test_first_use_after_a_racer_reuses_its_version(
    tokenizer: Tokenizer, database: Database, keystore: LocalKeyStore
) -> None:
    """`_new_version(first=True)` when version 1 already exists: no second key is made."""
    tokenizer.tokenize(STEWARD, ["v"], context="c")
    keys_before = keystore.list_data_keys()
    with pytest.raises(Conflict):
        tokenizer._new_version(STEWARD, first=True)
    assert keystore.list_data_keys() == keys_before
    assert len(_key_rows(database)) == 1


def test_two_active_versions_are_an_integrity_error(
    tokenizer: Tokenizer, database: Database
) -> None:
    tokenizer.tokenize(STEWARD, ["v"], context="c")
    tokenizer.rotate(STEWARD)
    with database.transaction() as session:
        session.execute(sa.update(TokenKeyRow).values(state="active"))
    with pytest.raises(IntegrityError) as caught:
        tokenizer.tokenize(STEWARD, ["v"], context="c")
    assert caught.value.code == "privacy.token_key_state"


# ------------------------------------------------------------------- permissions and ledger


@pytest.mark.parametrize("role", list(Role))
def test_permissions(tokenizer: Tokenizer, role: Role) -> None:
    steward_token = tokenizer.tokenize(STEWARD, ["v"], context="c", reversible=True)
    caller = Caller.system(f"as-{role.value}", [role])
    calls = {
        "tokenize": lambda: tokenizer.tokenize(caller, ["v"], context="c"),
        "detokenize": lambda: tokenizer.detokenize(caller, steward_token, context="c"),
        "retokenize": lambda: tokenizer.retokenize(caller, steward_token, context="c"),
        "rotate": lambda: tokenizer.rotate(caller),
        "keys": lambda: tokenizer.keys(caller),
    }
    allowed = {
        Role.DATA_STEWARD: set(calls),
        Role.ADMIN: {"keys"},
        Role.AUDITOR: {"keys"},
        Role.APPROVER: {"keys"},
        Role.MODEL_DEVELOPER: {"keys"},
    }.get(role, set())
    for name, call in calls.items():
        if name in allowed:
            call()
        else:
            with pytest.raises(PermissionDenied):
                call()


def test_ledger_records_keys_and_reversals_without_values(
    tokenizer: Tokenizer, database: Database
) -> None:
    secret_values = ["alice@example.com", "bob@example.com"]
    tokens = tokenizer.tokenize(STEWARD, secret_values, context="email", reversible=True)
    dtks = tokenizer.tokenize(STEWARD, secret_values, context="email")
    assert [e["type"] for e in _events(database)] == ["privacy.token_key.created"]
    tokenizer.detokenize(STEWARD, [*tokens, None], context="email")
    tokenizer.detokenize(STEWARD, [None], context="email")  # reverses nothing: no entry
    tokenizer.rotate(STEWARD)
    tokenizer.retokenize(STEWARD, tokens, context="email")
    tokenizer.destroy(STEWARD, 1)
    events = _events(database)
    assert [e["type"] for e in events] == [
        "privacy.token_key.created",
        "privacy.detokenized",
        "privacy.token_key.rotated",
        "privacy.retokenized",
        "privacy.token_key.destroyed",
    ]
    created, detok, rotated, retok, destroyed = (e["data"] for e in events)
    assert created == {"version": 1, "key_id": _key_rows(database)[0][1], "retired": []}
    assert detok == {"count": 2, "context": "email", "key_versions": [1]}
    assert rotated["retired"] == [1]
    assert rotated["version"] == 2
    assert retok == {"count": 2, "context": "email", "from_versions": [1], "to_version": 2}
    assert destroyed["version"] == 1
    assert "shredded_at" in destroyed
    assert all(e["actor"] == STEWARD.principal_id for e in events)
    text = json.dumps(events)
    for leaked in [*secret_values, *tokens, *dtks, "example.com"]:
        assert leaked is not None
        assert leaked not in text
    assert tokenizer.usage().tokenized == 4
    assert tokenizer.usage().detokenized == 2


def test_repr_and_key_listing_hold_no_key_bytes(
    tokenizer: Tokenizer, keystore: LocalKeyStore
) -> None:
    tokenizer.tokenize(STEWARD, ["v"], context="c")
    [key] = tokenizer.keys(STEWARD)
    data_key = keystore.data_key(key.key_id)
    for text in (repr(tokenizer), repr(key)):
        assert data_key.hex() not in text
        assert base64.b64encode(data_key).decode() not in text
