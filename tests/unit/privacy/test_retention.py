"""The pure parts of retention: dataset references, hold reasons, the policy input (the same
shape the registry builds), and the verifier's rule for leaves whose body retention removed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.core.errors import InvalidInput
from bastion.ledger.errors import TamperError
from bastion.ledger.merkle import CompactRange, leaf_hash
from bastion.ledger.note import NoteVerifier, signer_from_seed
from bastion.ledger.verify import LogReplay
from bastion.privacy.retention import RetentionService, check_reason, parse_ref
from bastion.store.datasets import dataset_doc
from bastion.store.tables import DatasetRow

NAMES = st.from_regex(r"[a-z][a-z0-9._-]{0,40}", fullmatch=True)


@given(NAMES, st.integers(min_value=1, max_value=10**6))
def test_parse_ref_round_trips(name: str, version: int) -> None:
    assert parse_ref(f"{name}@{version}") == (name, version)
    assert parse_ref(name) == (name, None)


@pytest.mark.parametrize("ref", ["", "@1", "loans@", "loans@0", "loans@-1", "loans@x", "a@1.5"])
def test_parse_ref_refuses(ref: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_ref(ref)
    assert refused.value.code == "retention.bad_ref"


def test_reasons_are_short_printable_text() -> None:
    assert check_reason("  litigation #7 ") == "litigation #7"
    assert check_reason("x" * 500) == "x" * 500
    for bad in ("", "   ", "x" * 501, "a\nb", "a\x00b", 42):
        with pytest.raises(InvalidInput) as refused:
            check_reason(bad)  # type: ignore[arg-type]
        assert refused.value.code == "retention.bad_reason"


@pytest.mark.parametrize("days", [None, 30])
@pytest.mark.parametrize("held", [False, True])
def test_the_policy_input_says_when_a_dataset_expired(days: int | None, held: bool) -> None:
    created = datetime(2026, 3, 1, tzinfo=UTC)
    row = DatasetRow(
        id="ds_01JTEST0000000000000000000",
        name="loans",
        version=3,
        owner="credit",
        purposes=["credit-scoring"],
        classification="confidential",
        retention_days=days,
        expires_at=created + timedelta(days=days) if days else None,
        legal_hold=held,
        schema=[],
        digest="sha256:" + "ab" * 32,
        source=None,
        status="active",
        created_at=created,
        created_by="prn_x",
    )
    for now in (created, created + timedelta(days=31)):
        doc = dataset_doc(row, now)
        assert doc["legal_hold"] is held
        assert doc["expires_at"] == (None if days is None else "2026-03-31T00:00:00+00:00")
        assert doc["expired"] is (days is not None and now >= created + timedelta(days=days))


def test_service_refuses_nonsense_limits() -> None:
    kwargs: dict[str, object] = dict.fromkeys(
        ("database", "audit", "authorizer", "policy", "blobs", "keystore", "clock")
    )
    with pytest.raises(InvalidInput) as window:
        RetentionService(**kwargs, prediction_retention_days=0)  # type: ignore[arg-type]
    assert window.value.code == "retention.bad_window"
    with pytest.raises(InvalidInput) as batch:
        RetentionService(**kwargs, prediction_batch=0)  # type: ignore[arg-type]
    assert batch.value.code == "retention.bad_batch"


# -- the verifier and emptied leaves -------------------------------------------------------------


def _replay() -> LogReplay:
    signer = signer_from_seed(b"\x01" * 32, "test/log")
    return LogReplay(verifier=NoteVerifier.from_vkey(signer.verifier_key()), origin="test/log")


@given(st.integers(min_value=1, max_value=40), st.data())
def test_an_emptied_prefix_gives_the_same_root(size: int, data: st.DataObject) -> None:
    bodies = [b"receipt %d" % i for i in range(size)]
    emptied = data.draw(st.integers(min_value=0, max_value=size))
    full, expired = CompactRange(), _replay()
    for i, body in enumerate(bodies):
        full.append(leaf_hash(body))
        if i < emptied:
            expired.expired_leaf(i, leaf_hash(body))
        else:
            expired.leaf(i, body, leaf_hash(body))
    assert expired.root() == full.root()
    assert expired.finish().expired == emptied


def test_an_emptied_leaf_after_a_full_one_is_a_deletion() -> None:
    replay = _replay()
    replay.expired_leaf(0, leaf_hash(b"a"))
    replay.leaf(1, b"b", leaf_hash(b"b"))
    with pytest.raises(TamperError, match="entry 2 has no body"):
        replay.expired_leaf(2, leaf_hash(b"c"))


def test_an_emptied_leaf_needs_a_whole_hash_at_its_place() -> None:
    with pytest.raises(TamperError, match="not 32"):
        _replay().expired_leaf(0, b"short")
    with pytest.raises(TamperError, match="expected"):
        _replay().expired_leaf(1, leaf_hash(b"a"))
