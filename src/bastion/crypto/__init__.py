"""Primitives for keys and encryption: the master key, key stores, and envelope encryption.

Imports only `bastion.core`, the standard library and `cryptography`; never `bastion.store`
or any layer above it.
"""

from bastion.crypto.envelope import EncryptingReader, EnvelopeCipher, EnvelopeInfo
from bastion.crypto.keystore import KeyStore, LocalKeyStore, RotationReport, ShredRecord
from bastion.crypto.masterkey import MasterKey, generate_master_key_b64, resolve_master_key

__all__ = [
    "EncryptingReader",
    "EnvelopeCipher",
    "EnvelopeInfo",
    "KeyStore",
    "LocalKeyStore",
    "MasterKey",
    "RotationReport",
    "ShredRecord",
    "generate_master_key_b64",
    "resolve_master_key",
]
