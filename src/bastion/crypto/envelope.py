"""Envelope encryption of byte streams: a fresh AES-256-GCM data key per blob, chunked with
the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár, "Online Authenticated-Encryption
and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015, section 7).

Wire format (all integers big-endian):

    header  = magic "BSTNENV" (7) | version 0x01 (1) | key id length (1) | key id (ASCII)
              | chunk size (4) | nonce prefix (7, random per blob)
    chunk i = AES-256-GCM(data key, nonce_i, plaintext_i, aad) = ciphertext_i | tag (16)
    nonce_i = nonce prefix | uint32(i) | 0x01 if chunk i is the last chunk else 0x00
    aad     = SHA-256(header) | caller aad

Every chunk but the last carries exactly `chunk size` plaintext bytes; the last carries 0 to
`chunk size` (empty input is one empty last chunk). Because the index and the last-chunk flag
are in the nonce and the header digest is in every chunk's AAD, a decryptor detects bit flips,
reordered, dropped or duplicated chunks, truncation (no chunk flagged last), trailing data,
and any change to the header, including the key id.

The data key comes from a `KeyStore`; the header names it, so shredding the key (see
`bastion.crypto.keystore`) makes every copy of the blob unreadable.

Imports only `bastion.core`, `bastion.crypto.keystore`, the standard library and
`cryptography`; never `bastion.store` or anything above it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import secrets
import struct
from collections.abc import Generator
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.core.errors import BastionError, CryptoError, IntegrityError, InvalidInput
from bastion.core.ids import Digest, KeyId
from bastion.crypto.keystore import KeyStore

MAGIC = b"BSTNENV"
FORMAT_VERSION = 1
TAG_BYTES = 16
NONCE_PREFIX_BYTES = 7
DEFAULT_CHUNK_SIZE = 1024 * 1024
# The header's chunk size is attacker-controlled and sizes our read buffers: cap it.
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_CHUNKS = 2**32  # the chunk index is a uint32 in the nonce

_FIXED = struct.Struct(">7sBB")  # magic, version, key id length
_TRAILER = struct.Struct(">I7s")  # chunk size, nonce prefix
_COUNTER = struct.Struct(">IB")  # chunk index, last-chunk flag
_KEY_ID = re.compile(rb"^[A-Za-z0-9_.:-]{1,255}$")


@dataclass(frozen=True, slots=True)
class EnvelopeInfo:
    """What one encryption or decryption handled. The digest is of the plaintext."""

    key_id: KeyId
    plaintext_size: int
    ciphertext_size: int
    plaintext_digest: Digest


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class EncryptingReader:
    """A readable stream of ciphertext, encrypted lazily as it is read (see
    `EnvelopeCipher.encrypting_reader`). `read` returns at most one chunk per call.

    If it is closed before the end (or the source fails), the blob's data key is shredded, so
    whatever ciphertext was already consumed can never be decrypted.
    """

    def __init__(self, chunks: Generator[bytes, None, EnvelopeInfo], keystore: KeyStore) -> None:
        self._chunks = chunks
        self._keystore = keystore
        self._pending = b""
        self._offset = 0
        self._info: EnvelopeInfo | None = None

    def read(self, size: int = -1, /) -> bytes:
        """Up to `size` bytes of ciphertext (all of the current chunk if `size` < 0); b"" at
        the end. Raises whatever the source or the key store raised."""
        while self._offset >= len(self._pending):
            if self._info is not None:
                return b""
            try:
                self._pending = next(self._chunks)
            except StopIteration as done:
                self._info = done.value
                self._pending = b""
            self._offset = 0
        start = self._offset
        if size < 0 or size >= len(self._pending) - start:
            self._offset = len(self._pending)
            return self._pending if start == 0 else self._pending[start:]
        self._offset = start + size
        return self._pending[start : start + size]

    def readable(self) -> bool:
        return True

    @property
    def info(self) -> EnvelopeInfo:
        """The result, once `read` has returned b"". Raises `CryptoError` before that."""
        if self._info is None:
            raise CryptoError("encryption has not finished", code="crypto.error")
        return self._info

    @property
    def finished(self) -> bool:
        """True once all ciphertext has been read."""
        return self._info is not None

    def close(self) -> None:
        """Stop; if encryption had not finished, the blob's data key is shredded."""
        self._chunks.close()

    def abort(self) -> None:
        """Discard the blob: shred its data key whether or not encryption finished (for a
        consumer that failed after reading everything, e.g. a store that refused the write).
        Never raises a `BastionError`, so it cannot mask the failure being handled."""
        if self._info is None:
            self._chunks.close()
            return
        with contextlib.suppress(BastionError):
            self._keystore.shred_data_key(self._info.key_id)

    def __enter__(self) -> EncryptingReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EnvelopeCipher:
    """Streaming authenticated encryption of blobs under per-blob data keys.

    Thread-safe if its key store is: it keeps no per-call state.
    """

    def __init__(self, keystore: KeyStore, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        """Raises `InvalidInput` (`crypto.bad_chunk_size`) unless 1 <= chunk_size <= 16 MiB."""
        if not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise InvalidInput(
                f"chunk_size must be between 1 and {MAX_CHUNK_SIZE} bytes",
                code="crypto.bad_chunk_size",
            )
        self._keystore = keystore
        self._chunk_size = chunk_size

    def __repr__(self) -> str:
        return f"EnvelopeCipher(chunk_size={self._chunk_size})"

    @property
    def keystore(self) -> KeyStore:
        return self._keystore

    # -------------------------------------------------------------------- encrypt

    def encrypt_stream(self, src: BinaryIO, dst: BinaryIO, *, aad: bytes = b"") -> EnvelopeInfo:
        """Encrypt all of `src` into `dst` under a new data key; `aad` must be given again to
        decrypt (bind the blob's name or purpose here).

        If reading, writing or storing the key fails, the new data key is shredded (so bytes
        already written to `dst` are unreadable) and the error propagates.
        """
        chunks = self._encrypt_chunks(src, aad)
        try:
            while True:
                try:
                    piece = next(chunks)
                except StopIteration as done:
                    info: EnvelopeInfo = done.value
                    return info
                dst.write(piece)
        except BaseException:
            chunks.close()
            raise

    def encrypting_reader(self, src: _Readable, *, aad: bytes = b"") -> EncryptingReader:
        """A readable stream of the ciphertext of `src`, produced as it is read: lets a
        consumer that pulls bytes (a blob store's `put`) store an encrypted blob without a
        temporary copy. Use it as a context manager; see `EncryptingReader`.
        """
        return EncryptingReader(self._encrypt_chunks(src, aad), self._keystore)

    def encrypt(self, data: bytes, *, aad: bytes = b"") -> tuple[bytes, EnvelopeInfo]:
        """Encrypt `data` in memory; returns the blob and its `EnvelopeInfo`."""
        out = io.BytesIO()
        info = self.encrypt_stream(io.BytesIO(data), out, aad=aad)
        return out.getvalue(), info

    def _encrypt_chunks(self, src: _Readable, aad: bytes) -> Generator[bytes, None, EnvelopeInfo]:
        size = self._chunk_size
        key_id, key = self._keystore.create_data_key()
        try:
            aead = AESGCM(key)
            prefix = secrets.token_bytes(NONCE_PREFIX_BYTES)
            header = _encode_header(key_id, size, prefix)
            chunk_aad = hashlib.sha256(header).digest() + bytes(aad)
            yield header
            digest = hashlib.sha256()
            plain_total, cipher_total = 0, len(header)
            # Two buffers: we must read one chunk ahead to know whether this one is the last.
            cur, spare = bytearray(size), bytearray(size)
            n = _read_full(src, cur)
            index = 0
            while True:
                if n < size:
                    last, m = True, 0
                else:
                    m = _read_full(src, spare)
                    last = m == 0
                view = memoryview(cur)[:n]
                digest.update(view)
                sealed = aead.encrypt(prefix + _COUNTER.pack(index, last), view, chunk_aad)
                view.release()
                plain_total += n
                cipher_total += len(sealed)
                yield sealed
                if last:
                    break
                index += 1
                if index >= MAX_CHUNKS:
                    raise InvalidInput(
                        "input too large for one envelope (2^32 chunks)",
                        code="crypto.too_many_chunks",
                    )
                cur, spare = spare, cur
                n = m
        except BaseException:
            # Incomplete ciphertext may already be out of our hands: make it undecryptable.
            with contextlib.suppress(BastionError):
                self._keystore.shred_data_key(key_id)
            raise
        return EnvelopeInfo(
            key_id=key_id,
            plaintext_size=plain_total,
            ciphertext_size=cipher_total,
            plaintext_digest=Digest("sha256:" + digest.hexdigest()),
        )

    # -------------------------------------------------------------------- decrypt

    def decrypt_stream(self, src: BinaryIO, dst: BinaryIO, *, aad: bytes = b"") -> EnvelopeInfo:
        """Decrypt and verify `src` into `dst`, chunk by chunk.

        Plaintext reaches `dst` before the whole stream is verified: the caller must not use
        or trust `dst` until this returns, and must discard it if this raises.

        Raises:
            IntegrityError: `crypto.integrity`, saying which check failed: bad header,
                authentication tag at chunk N (tampered bytes, wrong aad, swapped chunks),
                truncated (final chunk missing), or trailing data; also when the header names
                a key this key store never had.
            CryptoError: `crypto.key_shredded` if the blob's data key was shredded.
        """
        header, key_id, size, prefix = _read_header(src)
        aead = AESGCM(self._data_key_for(key_id))
        chunk_aad = hashlib.sha256(header).digest() + bytes(aad)
        span = size + TAG_BYTES
        digest = hashlib.sha256()
        plain_total, cipher_total = 0, len(header)
        cur, spare = bytearray(span), bytearray(span)
        n = _read_full(src, cur)
        index = 0
        while True:
            if n < span:
                last, m = True, 0
            else:
                m = _read_full(src, spare)
                last = m == 0
            if n < TAG_BYTES:
                raise _integrity(
                    f"truncated: the stream ends inside chunk {index}", key_id, chunk=index
                )
            view = memoryview(cur)[:n]
            try:
                plain = aead.decrypt(prefix + _COUNTER.pack(index, last), view, chunk_aad)
            except InvalidTag:
                raise _diagnose(aead, prefix, index, last, view, chunk_aad, key_id) from None
            finally:
                view.release()
            digest.update(plain)
            dst.write(plain)
            plain_total += len(plain)
            cipher_total += n
            if last:
                break
            index += 1
            if index >= MAX_CHUNKS:
                raise _integrity("too many chunks", key_id, chunk=index)
            cur, spare = spare, cur
            n = m
        return EnvelopeInfo(
            key_id=key_id,
            plaintext_size=plain_total,
            ciphertext_size=cipher_total,
            plaintext_digest=Digest("sha256:" + digest.hexdigest()),
        )

    def decrypt(self, blob: bytes, *, aad: bytes = b"") -> bytes:
        """Decrypt and verify an in-memory blob. Raises as `decrypt_stream`."""
        out = io.BytesIO()
        self.decrypt_stream(io.BytesIO(blob), out, aad=aad)
        return out.getvalue()

    def key_id_of(self, source: bytes | bytearray | memoryview | BinaryIO) -> KeyId:
        """The data key id named in a blob's header, without decrypting anything.

        `source` is the blob's bytes (at least its header) or a stream positioned at its
        start; a stream is left just after the header. The id is not authenticated until the
        blob is decrypted. Raises `IntegrityError` (`crypto.integrity`) for a bad header.
        """
        stream: _Readable = (
            io.BytesIO(source) if isinstance(source, bytes | bytearray | memoryview) else source
        )
        return _read_header(stream)[1]

    def _data_key_for(self, key_id: KeyId) -> bytes:
        try:
            return self._keystore.data_key(key_id)
        except CryptoError as exc:
            if exc.code != "crypto.key_not_found":
                raise  # a shredded key must stay visible as such
            # The header is not authenticated yet; an unknown key id most likely means it was
            # altered, or the blob belongs to another key store. Either way it cannot be trusted.
            raise IntegrityError(
                f"bad header or foreign blob: it names data key {key_id}, which this key store "
                "does not hold",
                code="crypto.integrity",
                details={"key_id": key_id, "check": "header", "cause": exc.code},
            ) from exc


def _encode_header(key_id: str, chunk_size: int, prefix: bytes) -> bytes:
    raw_id = key_id.encode("ascii")
    if not _KEY_ID.fullmatch(raw_id):
        raise CryptoError("key store returned an unusable key id", code="crypto.error")
    return (
        _FIXED.pack(MAGIC, FORMAT_VERSION, len(raw_id)) + raw_id + _TRAILER.pack(chunk_size, prefix)
    )


def _read_header(src: _Readable) -> tuple[bytes, KeyId, int, bytes]:
    """(header bytes, key id, chunk size, nonce prefix). Raises `IntegrityError`."""
    fixed = _read_exact(src, _FIXED.size)
    if fixed is None:
        raise _bad_header("too short")
    magic, version, id_len = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise _bad_header("not a Bastion envelope (wrong magic)")
    if version != FORMAT_VERSION:
        raise _bad_header(f"unsupported format version {version}")
    rest = _read_exact(src, id_len + _TRAILER.size)
    if rest is None:
        raise _bad_header("too short")
    raw_id = rest[:id_len]
    if not _KEY_ID.fullmatch(raw_id):
        raise _bad_header("malformed key id")
    chunk_size, prefix = _TRAILER.unpack(rest[id_len:])
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise _bad_header(f"chunk size {chunk_size} out of range")
    return fixed + rest, KeyId(raw_id.decode("ascii")), chunk_size, prefix


def _read_exact(src: _Readable, size: int) -> bytes | None:
    buf = bytearray(size)
    return bytes(buf) if _read_full(src, buf) == size else None


def _read_full(src: _Readable, buf: bytearray) -> int:
    """Fill `buf` from `src` unless it ends first; returns the number of bytes read."""
    view = memoryview(buf)
    filled = 0
    readinto = getattr(src, "readinto", None)
    try:
        while filled < len(buf):
            if readinto is not None:
                got = readinto(view[filled:])
            else:
                data = src.read(len(buf) - filled)
                got = len(data)
                if got > len(buf) - filled:
                    raise InvalidInput(
                        "source stream returned more bytes than requested",
                        code="crypto.bad_source",
                    )
                view[filled : filled + got] = data
            if got is None:
                # A non-blocking source with nothing ready would look like a short file and
                # silently end the stream; refuse it.
                raise InvalidInput(
                    "source stream is non-blocking", code="crypto.nonblocking_source"
                )
            if not got:
                break
            filled += got
    finally:
        view.release()
    return filled


def _diagnose(
    aead: AESGCM,
    prefix: bytes,
    index: int,
    last: bool,
    sealed: memoryview,
    chunk_aad: bytes,
    key_id: KeyId,
) -> IntegrityError:
    """Name the failed check. Only runs on failure; trying the other last-chunk flag tells
    truncation and trailing data apart from plain tampering."""
    try:
        aead.decrypt(prefix + _COUNTER.pack(index, not last), sealed, chunk_aad)
    except InvalidTag:
        return _integrity(
            f"authentication tag failed at chunk {index} (tampered or reordered data, wrong "
            "aad, or a header that does not belong to this body)",
            key_id,
            chunk=index,
        )
    if last:
        return _integrity(
            f"truncated: the stream ends after chunk {index}, which is not the final chunk",
            key_id,
            chunk=index,
        )
    return _integrity(f"trailing data after the final chunk {index}", key_id, chunk=index)


def _integrity(message: str, key_id: KeyId, *, chunk: int) -> IntegrityError:
    return IntegrityError(
        f"envelope integrity check failed: {message}",
        code="crypto.integrity",
        details={"key_id": key_id, "chunk": chunk},
    )


def _bad_header(why: str) -> IntegrityError:
    return IntegrityError(
        f"envelope integrity check failed: bad header: {why}",
        code="crypto.integrity",
        details={"check": "header"},
    )
