"""SealedBlobStore: encrypted at rest, verified on read, crypto-shredded on request."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from bastion.core.canonical import sha256_digest
from bastion.core.errors import CryptoError, IntegrityError, NotFound, StoreError, TooLarge
from bastion.crypto.envelope import EnvelopeCipher
from bastion.crypto.keystore import LocalKeyStore
from bastion.crypto.masterkey import MasterKey
from bastion.store.blobs import BlobInfo, ByteSource, LocalBlobStore
from bastion.store.sealed import SealedBlobStore

SECRET = b"".join(b"PATIENT-RECORD-%05d;" % i for i in range(60))[:1024]


@pytest.fixture
def keystore(tmp_path: Path) -> LocalKeyStore:
    return LocalKeyStore.create(tmp_path / "keys", MasterKey.generate())


@pytest.fixture
def raw(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def sealed(raw: LocalBlobStore, keystore: LocalKeyStore) -> SealedBlobStore:
    return SealedBlobStore(raw, EnvelopeCipher(keystore, chunk_size=256), keystore)


def test_round_trip(sealed: SealedBlobStore, raw: LocalBlobStore) -> None:
    blob = sealed.put("datasets/d1/snapshot", SECRET)
    assert blob.key == "datasets/d1/snapshot"
    assert blob.plaintext_size == len(SECRET)
    assert blob.plaintext_digest == sha256_digest(SECRET)
    assert blob.ciphertext_digest == sha256_digest(raw.get("datasets/d1/snapshot"))
    assert sealed.key_id("datasets/d1/snapshot") == blob.key_id
    assert sealed.get("datasets/d1/snapshot") == SECRET

    out = io.BytesIO()
    info = sealed.open_verified("datasets/d1/snapshot", out)
    assert out.getvalue() == SECRET
    assert info.plaintext_digest == blob.plaintext_digest


def test_streamed_put_of_many_chunks(sealed: SealedBlobStore) -> None:
    data = bytes(range(256)) * 4000 + b"tail"
    blob = sealed.put("big", io.BytesIO(data))
    assert blob.plaintext_size == len(data)
    assert sealed.get("big") == data


def test_stored_bytes_contain_no_plaintext(sealed: SealedBlobStore, raw: LocalBlobStore) -> None:
    sealed.put("secret", SECRET)
    stored = raw.get("secret")
    assert SECRET not in stored
    for i in range(0, len(SECRET) - 16, 16):
        assert SECRET[i : i + 16] not in stored


def test_tampered_ciphertext_fails_integrity(sealed: SealedBlobStore, raw: LocalBlobStore) -> None:
    sealed.put("m", SECRET)
    stored = bytearray(raw.get("m"))
    for position in (0, 30, len(stored) // 2, len(stored) - 1):
        mutant = bytearray(stored)
        mutant[position] ^= 0x10
        raw.put("m", bytes(mutant))
        with pytest.raises(IntegrityError) as err:
            sealed.get("m")
        assert err.value.code == "crypto.integrity"
    raw.put("m", bytes(stored[:-1]))
    with pytest.raises(IntegrityError):
        sealed.get("m")
    raw.put("m", bytes(stored))
    assert sealed.get("m") == SECRET


def test_ciphertext_moved_to_another_key_fails_integrity(
    sealed: SealedBlobStore, raw: LocalBlobStore
) -> None:
    sealed.put("models/good", SECRET)
    raw.put("models/other", raw.get("models/good"))
    with pytest.raises(IntegrityError) as err:
        sealed.get("models/other")
    assert err.value.code == "crypto.integrity"
    assert sealed.get("models/good") == SECRET


def test_shred_defeats_a_kept_copy(
    sealed: SealedBlobStore, raw: LocalBlobStore, keystore: LocalKeyStore, tmp_path: Path
) -> None:
    blob = sealed.put("people/export.csv", SECRET)
    stored_file = raw.root / "people" / "export.csv"
    copy = tmp_path / "attacker-copy"
    shutil.copyfile(stored_file, copy)

    record = sealed.shred("people/export.csv")

    assert record.key_id == blob.key_id
    assert not raw.exists("people/export.csv")
    assert blob.key_id not in keystore.list_data_keys()
    shutil.copyfile(copy, stored_file)
    with pytest.raises(CryptoError) as err:
        sealed.get("people/export.csv")
    assert err.value.code == "crypto.key_shredded"


def test_shred_missing_blob_is_not_found(sealed: SealedBlobStore) -> None:
    with pytest.raises(NotFound) as err:
        sealed.shred("nothing")
    assert err.value.code == "store.blob_not_found"


def test_failed_put_stores_nothing_and_shreds_its_key(
    sealed: SealedBlobStore, raw: LocalBlobStore, keystore: LocalKeyStore
) -> None:
    with pytest.raises(TooLarge):
        sealed.put("too-big", SECRET * 10, max_bytes=5000)
    assert list(raw.keys()) == []
    assert keystore.list_data_keys() == []

    with pytest.raises(TooLarge):
        sealed.put("just-over", SECRET, max_bytes=len(SECRET) + 10)
    assert list(raw.keys()) == []
    assert keystore.list_data_keys() == []


class _RefusingStore(LocalBlobStore):
    """Reads the whole upload, then fails, as a store whose final commit fails would."""

    def put(self, key: str, src: ByteSource | bytes, *, max_bytes: int | None = None) -> BlobInfo:
        assert not isinstance(src, bytes)
        while src.read(1 << 20):
            pass
        raise StoreError("disk full at commit", code="store.unavailable")


def test_store_failing_after_the_whole_upload_shreds_the_key(
    tmp_path: Path, keystore: LocalKeyStore
) -> None:
    store = SealedBlobStore(
        _RefusingStore(tmp_path / "refusing"), EnvelopeCipher(keystore), keystore
    )
    with pytest.raises(StoreError, match="disk full"):
        store.put("m", SECRET)
    assert keystore.list_data_keys() == []
    assert len(list((keystore.keys_dir / "shredded").iterdir())) == 1


def test_failing_source_stores_nothing(
    sealed: SealedBlobStore, raw: LocalBlobStore, keystore: LocalKeyStore
) -> None:
    class Failing:
        def __init__(self) -> None:
            self.calls = 0

        def read(self, size: int = -1, /) -> bytes:
            self.calls += 1
            if self.calls > 3:
                raise ConnectionError("client went away")
            return b"q" * min(size, 100)

    with pytest.raises(ConnectionError):
        sealed.put("upload", Failing())
    assert list(raw.keys()) == []
    assert [p for p in raw.root.rglob("*") if p.is_file()] == []
    assert keystore.list_data_keys() == []


def test_bad_key_is_rejected_before_any_key_is_made(
    sealed: SealedBlobStore, keystore: LocalKeyStore
) -> None:
    with pytest.raises(StoreError) as err:
        sealed.put("../escape", SECRET)
    assert err.value.code == "store.path_escape"
    assert keystore.list_data_keys() == []


def test_overwrite_shreds_the_previous_data_key(
    sealed: SealedBlobStore, keystore: LocalKeyStore
) -> None:
    """Replacing a blob must not leave the old version's data key alive."""
    first = sealed.put("models/m.bin", b"version one")
    second = sealed.put("models/m.bin", b"version two")
    assert sealed.get("models/m.bin") == b"version two"
    assert first.key_id != second.key_id
    assert first.key_id not in keystore.list_data_keys()
    with pytest.raises(CryptoError) as info:
        keystore.data_key(first.key_id)
    assert info.value.code == "crypto.key_shredded"
