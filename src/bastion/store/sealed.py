"""`SealedBlobStore`: a blob store whose blobs are envelope-encrypted at rest.

Each blob gets its own data key (`bastion.crypto.envelope`); the underlying `BlobStore` only
ever sees ciphertext. The blob's key is bound into the encryption's associated data, so a
ciphertext copied or moved to another key does not decrypt. Shredding a blob destroys its data
key, which makes every copy of the ciphertext, including ones in backups, unreadable.

Imports only `bastion.core`, `bastion.crypto`, `bastion.store.blobs` and the standard
library; nothing above the store layer.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import BinaryIO

from bastion.core.errors import IntegrityError
from bastion.core.ids import Digest, KeyId
from bastion.crypto.envelope import EnvelopeCipher, EnvelopeInfo
from bastion.crypto.keystore import KeyStore, ShredRecord
from bastion.store.blobs import BlobStore, ByteSource, validate_key

_AAD_DOMAIN = b"bastion/sealed-blob/v1\x00"


@dataclass(frozen=True, slots=True)
class SealedBlob:
    """A stored encrypted blob: what to record in metadata to find and check it later."""

    key: str
    key_id: KeyId
    plaintext_size: int
    plaintext_digest: Digest
    ciphertext_digest: Digest


class SealedBlobStore:
    """Encrypt on `put`, verify and decrypt on read, crypto-shred on `shred`.

    `keystore` must be the key store `cipher` uses; it is asked to shred data keys.
    """

    def __init__(self, blobs: BlobStore, cipher: EnvelopeCipher, keystore: KeyStore) -> None:
        self._blobs = blobs
        self._cipher = cipher
        self._keystore = keystore

    def __repr__(self) -> str:
        return f"SealedBlobStore({self._blobs!r})"

    def put(self, key: str, src: ByteSource | bytes, *, max_bytes: int | None = None) -> SealedBlob:
        """Encrypt `src` under a new data key and store the ciphertext under `key`.

        Streams: plaintext is encrypted chunk by chunk as the store writes, with no temporary
        copy. `max_bytes` limits the stored (ciphertext) size. If anything fails, nothing is
        stored and the new data key is shredded.

        Raises `StoreError` (`store.path_escape`) for a bad key, `TooLarge`
        (`store.blob_too_large`), or whatever the source or the key store raise.
        """
        validate_key(key)
        source: ByteSource = (
            io.BytesIO(src) if isinstance(src, bytes | bytearray | memoryview) else src
        )
        previous = self._previous_key_id(key)
        with self._cipher.encrypting_reader(source, aad=_aad(key)) as reader:
            try:
                stored = self._blobs.put(key, reader, max_bytes=max_bytes)
            except BaseException:
                reader.abort()
                raise
            info = reader.info
        if previous is not None and previous != info.key_id:
            # The old version is gone from the store; its data key must not outlive it.
            self._keystore.shred_data_key(previous)
        return SealedBlob(
            key=key,
            key_id=info.key_id,
            plaintext_size=info.plaintext_size,
            plaintext_digest=info.plaintext_digest,
            ciphertext_digest=stored.digest,
        )

    def _previous_key_id(self, key: str) -> KeyId | None:
        if not self._blobs.exists(key):
            return None
        try:
            return self.key_id(key)
        except IntegrityError:
            return None  # an unreadable old header names no key we could shred

    def get(self, key: str) -> bytes:
        """The verified plaintext of `key`.

        Raises:
            NotFound: `store.blob_not_found`.
            IntegrityError: `crypto.integrity` if the ciphertext was altered or moved here
                from another key.
            CryptoError: `crypto.key_shredded` if the blob was shredded.
        """
        out = io.BytesIO()
        self.open_verified(key, out)
        return out.getvalue()

    def open_verified(self, key: str, dst: BinaryIO) -> EnvelopeInfo:
        """Decrypt `key` into `dst`, verifying every chunk. Raises as `get`.

        Plaintext reaches `dst` as it is verified chunk by chunk; if this raises, discard
        whatever was written to `dst`.
        """
        with self._blobs.open(key) as src:
            return self._cipher.decrypt_stream(src, dst, aad=_aad(key))

    def key_id(self, key: str) -> KeyId:
        """The data key id in the header of blob `key` (unauthenticated until decrypted).

        Raises `NotFound` (`store.blob_not_found`) or `IntegrityError` for a bad header.
        """
        with self._blobs.open(key) as src:
            return self._cipher.key_id_of(src)

    def shred(self, key: str) -> ShredRecord:
        """Crypto-shred blob `key`: destroy its data key, then delete the ciphertext.

        The key goes first: if deleting the ciphertext then fails, what remains is unreadable.
        Afterwards any copy of the ciphertext raises `CryptoError` (`crypto.key_shredded`).
        See `bastion.crypto.keystore` for what it takes to also cover old key-store backups.

        Raises `NotFound` (`store.blob_not_found`) if there is no blob under `key`.
        """
        record = self._keystore.shred_data_key(self.key_id(key))
        self._blobs.delete(key)
        return record


def _aad(key: str) -> bytes:
    return _AAD_DOMAIN + key.encode("utf-8")
