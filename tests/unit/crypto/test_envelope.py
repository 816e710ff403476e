"""EnvelopeCipher: STREAM-framed AES-256-GCM. Round trips, properties, and mutants."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.core.canonical import sha256_digest
from bastion.core.errors import CryptoError, IntegrityError, InvalidInput
from bastion.core.ids import KeyId
from bastion.crypto.envelope import MAX_CHUNK_SIZE, EnvelopeCipher
from bastion.crypto.keystore import LocalKeyStore
from bastion.crypto.masterkey import MasterKey

CHUNK = 64
TAG = 16


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> LocalKeyStore:
    return LocalKeyStore.create(tmp_path_factory.mktemp("env") / "keys", MasterKey.generate())


@pytest.fixture
def cipher(keystore: LocalKeyStore) -> EnvelopeCipher:
    return EnvelopeCipher(keystore, chunk_size=CHUNK)


def _pattern(size: int) -> bytes:
    """Distinctive, non-repeating within a chunk, so a leak would be a visible substring."""
    out = b"".join(b"PLAINTEXT-%06d|" % i for i in range(size // 15 + 1))
    return out[:size]


def _header_len(blob: bytes) -> int:
    return 7 + 1 + 1 + blob[8] + 4 + 7


def _chunks(blob: bytes, chunk: int = CHUNK) -> tuple[bytes, list[bytes]]:
    h = _header_len(blob)
    body = blob[h:]
    span = chunk + TAG
    return blob[:h], [body[i : i + span] for i in range(0, len(body), span)]


def _integrity(cipher: EnvelopeCipher, blob: bytes, *, aad: bytes = b"aad") -> IntegrityError:
    with pytest.raises(IntegrityError) as err:
        cipher.decrypt(blob, aad=aad)
    assert err.value.code == "crypto.integrity"
    return err.value


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK - 10])
def test_round_trip(cipher: EnvelopeCipher, size: int) -> None:
    data = _pattern(size)
    blob, info = cipher.encrypt(data, aad=b"ctx")
    chunks = max(1, -(-size // CHUNK))
    assert len(blob) == _header_len(blob) + size + chunks * TAG
    assert info.plaintext_size == size
    assert info.ciphertext_size == len(blob)
    assert info.plaintext_digest == sha256_digest(data)
    assert cipher.key_id_of(blob) == info.key_id
    assert cipher.decrypt(blob, aad=b"ctx") == data

    out = io.BytesIO()
    dec = cipher.decrypt_stream(io.BytesIO(blob), out, aad=b"ctx")
    assert out.getvalue() == data
    assert dec == info


def test_file_to_file_with_default_chunk_size(keystore: LocalKeyStore, tmp_path: Path) -> None:
    cipher = EnvelopeCipher(keystore)
    data = _pattern(3 * 1024 * 1024 + 5)
    (tmp_path / "plain").write_bytes(data)
    with (tmp_path / "plain").open("rb") as src, (tmp_path / "sealed").open("wb") as dst:
        info = cipher.encrypt_stream(src, dst)
    assert info.ciphertext_size == (tmp_path / "sealed").stat().st_size
    with (tmp_path / "sealed").open("rb") as src, (tmp_path / "back").open("wb") as dst:
        cipher.decrypt_stream(src, dst)
    assert (tmp_path / "back").read_bytes() == data


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=2000), chunk_size=st.integers(1, 300), aad=st.binary(max_size=40))
def test_round_trip_property(
    keystore: LocalKeyStore, data: bytes, chunk_size: int, aad: bytes
) -> None:
    cipher = EnvelopeCipher(keystore, chunk_size=chunk_size)
    blob, info = cipher.encrypt(data, aad=aad)
    assert cipher.decrypt(blob, aad=aad) == data
    assert info.plaintext_digest == "sha256:" + hashlib.sha256(data).hexdigest()
    chunks = max(1, -(-len(data) // chunk_size))
    assert len(blob) == _header_len(blob) + len(data) + chunks * TAG


def test_same_plaintext_encrypts_differently(cipher: EnvelopeCipher) -> None:
    a, info_a = cipher.encrypt(b"same", aad=b"aad")
    b, info_b = cipher.encrypt(b"same", aad=b"aad")
    assert info_a.key_id != info_b.key_id
    assert a[_header_len(a) :] != b[_header_len(b) :]


def test_ciphertext_contains_no_plaintext(keystore: LocalKeyStore) -> None:
    secret = _pattern(1024)
    for chunk_size in (CHUNK, 1024 * 1024):
        blob, _ = EnvelopeCipher(keystore, chunk_size=chunk_size).encrypt(secret)
        assert secret not in blob
        for i in range(0, 1024 - 16, 16):
            assert secret[i : i + 16] not in blob


def test_key_id_of_reads_a_stream_without_decrypting(cipher: EnvelopeCipher) -> None:
    blob, info = cipher.encrypt(b"x" * 200)
    stream = io.BytesIO(blob)
    assert cipher.key_id_of(stream) == info.key_id
    assert stream.tell() == _header_len(blob)
    assert cipher.key_id_of(blob[: _header_len(blob)]) == info.key_id


@pytest.mark.parametrize("chunk_size", [0, -1, MAX_CHUNK_SIZE + 1])
def test_bad_chunk_size_rejected(keystore: LocalKeyStore, chunk_size: int) -> None:
    with pytest.raises(InvalidInput) as err:
        EnvelopeCipher(keystore, chunk_size=chunk_size)
    assert err.value.code == "crypto.bad_chunk_size"


# ------------------------------------------------------------------ mutants


@pytest.fixture
def sealed(cipher: EnvelopeCipher) -> bytes:
    blob, _ = cipher.encrypt(_pattern(3 * CHUNK - 10), aad=b"aad")
    return blob


def test_every_single_bit_flip_is_detected(cipher: EnvelopeCipher, sealed: bytes) -> None:
    # Covers each region: magic, version, key id length, key id, chunk size, nonce prefix,
    # and the body and tag of every chunk.
    for position in range(len(sealed)):
        for bit in (0x01, 0x80):
            mutant = bytearray(sealed)
            mutant[position] ^= bit
            _integrity(cipher, bytes(mutant))


def test_flips_name_the_failed_check(cipher: EnvelopeCipher, sealed: bytes) -> None:
    header, chunks = _chunks(sealed)
    assert "bad header" in _integrity(cipher, b"X" + sealed[1:]).message
    for index in range(len(chunks)):
        start = len(header) + index * (CHUNK + TAG)
        for offset in (0, len(chunks[index]) - 1):  # chunk body, then its tag
            mutant = bytearray(sealed)
            mutant[start + offset] ^= 0x04
            err = _integrity(cipher, bytes(mutant))
            assert f"tag failed at chunk {index}" in err.message
            assert err.details["chunk"] == index


@pytest.mark.parametrize("cut", [0, 1, 8, 20, -1, -15, -16, -17])
def test_truncation_is_detected(cipher: EnvelopeCipher, sealed: bytes, cut: int) -> None:
    _integrity(cipher, sealed[:cut])


def test_truncation_at_every_offset_is_detected(cipher: EnvelopeCipher, sealed: bytes) -> None:
    for end in range(len(sealed)):
        _integrity(cipher, sealed[:end])


def test_dropping_the_final_chunk_is_reported_as_truncation(
    cipher: EnvelopeCipher,
) -> None:
    # With a whole number of chunks, every remaining chunk is intact: only the flag tells.
    blob, _ = cipher.encrypt(_pattern(3 * CHUNK), aad=b"aad")
    header, chunks = _chunks(blob)
    assert len(chunks) == 3
    err = _integrity(cipher, header + chunks[0] + chunks[1])
    assert "truncated" in err.message
    err = _integrity(cipher, header + chunks[0])
    assert "truncated" in err.message
    assert "truncated" in _integrity(cipher, header).message


def test_dropping_the_final_short_chunk_is_detected(cipher: EnvelopeCipher, sealed: bytes) -> None:
    header, chunks = _chunks(sealed)
    assert len(chunks[-1]) < CHUNK + TAG
    _integrity(cipher, header + b"".join(chunks[:-1]))


@pytest.mark.parametrize("garbage", [b"\x00", b"x" * 16, b"y" * (CHUNK + TAG), b"z" * 500])
def test_trailing_garbage_is_detected(
    cipher: EnvelopeCipher, sealed: bytes, garbage: bytes
) -> None:
    _integrity(cipher, sealed + garbage)
    full, _ = cipher.encrypt(_pattern(2 * CHUNK), aad=b"aad")
    err = _integrity(cipher, full + garbage)
    if len(garbage) <= CHUNK + TAG:
        assert "trailing data" in err.message


def test_appending_a_copy_of_the_last_chunk_is_detected(cipher: EnvelopeCipher) -> None:
    blob, _ = cipher.encrypt(_pattern(2 * CHUNK), aad=b"aad")
    _, chunks = _chunks(blob)
    _integrity(cipher, blob + chunks[-1])


def test_reordered_or_duplicated_chunks_are_detected(cipher: EnvelopeCipher, sealed: bytes) -> None:
    header, (c0, c1, c2) = _chunks(sealed)
    _integrity(cipher, header + c1 + c0 + c2)
    _integrity(cipher, header + c0 + c0 + c2)
    _integrity(cipher, header + c0 + c2)
    _integrity(cipher, header + c0 + c1 + c1 + c2)


def test_replacing_the_key_id_is_detected(
    cipher: EnvelopeCipher, keystore: LocalKeyStore, sealed: bytes
) -> None:
    original = cipher.key_id_of(sealed)
    other, _ = keystore.create_data_key()
    assert len(other) == len(original)
    swapped = sealed.replace(original.encode(), other.encode())
    assert swapped != sealed
    _integrity(cipher, swapped)
    unknown = "dek_" + "0" * 26
    err = _integrity(cipher, sealed.replace(original.encode(), unknown.encode()))
    assert err.details["cause"] == "crypto.key_not_found"


def test_header_from_another_blob_is_detected(cipher: EnvelopeCipher, sealed: bytes) -> None:
    other, _ = cipher.encrypt(_pattern(3 * CHUNK - 10), aad=b"aad")
    header, _ = _chunks(other)
    _, chunks = _chunks(sealed)
    _integrity(cipher, header + b"".join(chunks))


def test_wrong_aad_is_detected(cipher: EnvelopeCipher, sealed: bytes) -> None:
    _integrity(cipher, sealed, aad=b"other")
    _integrity(cipher, sealed, aad=b"")
    assert cipher.decrypt(sealed, aad=b"aad") == _pattern(3 * CHUNK - 10)


def test_chunk_size_field_cannot_be_lied_about(cipher: EnvelopeCipher, sealed: bytes) -> None:
    h = _header_len(sealed)
    size_at = h - 7 - 4
    for fake in (1, 80, MAX_CHUNK_SIZE, 2**32 - 1):
        mutant = bytearray(sealed)
        mutant[size_at : size_at + 4] = fake.to_bytes(4, "big")
        _integrity(cipher, bytes(mutant))


def test_not_an_envelope(cipher: EnvelopeCipher) -> None:
    assert "bad header" in _integrity(cipher, b"").message
    assert "bad header" in _integrity(cipher, b"hello world, not encrypted at all").message


# ------------------------------------------------------------------ keys and failures


def test_shredded_key_is_reported_as_shredded(
    cipher: EnvelopeCipher, keystore: LocalKeyStore
) -> None:
    blob, info = cipher.encrypt(b"to be forgotten")
    keystore.shred_data_key(info.key_id)
    with pytest.raises(CryptoError) as err:
        cipher.decrypt(blob)
    assert err.value.code == "crypto.key_shredded"


class _FailingSource(io.RawIOBase):
    def __init__(self, good: int) -> None:
        self._left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            raise OSError("disk went away")
        n = min(len(buf), self._left, 10)
        buf[:n] = b"s" * n
        self._left -= n
        return n


def test_failed_encryption_shreds_its_data_key(
    cipher: EnvelopeCipher, keystore: LocalKeyStore
) -> None:
    before = set(keystore.list_data_keys())
    out = io.BytesIO()
    with pytest.raises(OSError, match="disk went away"):
        cipher.encrypt_stream(_FailingSource(150), out)  # type: ignore[arg-type]
    written = out.getvalue()
    assert written  # the header and some chunks did go out...
    assert set(keystore.list_data_keys()) == before
    with pytest.raises(CryptoError) as err:  # ...but can never be read
        keystore.data_key(KeyId(cipher.key_id_of(written)))
    assert err.value.code == "crypto.key_shredded"


def test_encrypting_reader_streams_the_same_format(
    cipher: EnvelopeCipher, keystore: LocalKeyStore
) -> None:
    data = _pattern(500)
    with cipher.encrypting_reader(io.BytesIO(data), aad=b"r") as reader:
        parts = []
        while piece := reader.read(7):
            parts.append(piece)
        info = reader.info
    blob = b"".join(parts)
    assert info.ciphertext_size == len(blob)
    assert cipher.decrypt(blob, aad=b"r") == data
    assert info.key_id in keystore.list_data_keys()


def test_encrypting_reader_closed_early_shreds_its_key(
    cipher: EnvelopeCipher, keystore: LocalKeyStore
) -> None:
    reader = cipher.encrypting_reader(io.BytesIO(_pattern(500)))
    header = reader.read(1000)
    reader.read(10)
    with pytest.raises(CryptoError, match="not finished"):
        _ = reader.info
    reader.close()
    with pytest.raises(CryptoError) as err:
        keystore.data_key(cipher.key_id_of(header))
    assert err.value.code == "crypto.key_shredded"


def test_encrypting_reader_abort_after_finish_shreds_its_key(
    cipher: EnvelopeCipher, keystore: LocalKeyStore
) -> None:
    reader = cipher.encrypting_reader(io.BytesIO(b"abc"))
    while reader.read():
        pass
    reader.abort()
    with pytest.raises(CryptoError) as err:
        keystore.data_key(reader.info.key_id)
    assert err.value.code == "crypto.key_shredded"


def test_source_returning_too_much_is_refused(cipher: EnvelopeCipher) -> None:
    class Greedy:
        def read(self, size: int = -1, /) -> bytes:
            return b"g" * (size + 1)

    with pytest.raises(InvalidInput) as err:
        cipher.encrypt_stream(Greedy(), io.BytesIO())  # type: ignore[arg-type]
    assert err.value.code == "crypto.bad_source"
