"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed-note envelopes (Ed25519).

The log's sequencer signs a `Checkpoint` (origin, tree size, root) with a `NoteSigner`; anyone
holding the log's verifier key (`name+keyid+base64key`) checks it with a `NoteVerifier`, which
verifies the signature before it parses the body. The wire format is interoperable with
golang.org/x/mod/sumdb/note and the transparency-dev witnesses:

    example.com/log42                       <- origin
    20852163                                <- tree size, ASCII decimal
    CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=   <- root hash, standard base64
                                            <- blank line ends the signed text
    — example.com/log42 <base64(key ID ‖ Ed25519 signature)>

Specs: https://c2sp.org/signed-note (v1.0.0), https://c2sp.org/tlog-checkpoint.

Imports nothing from Bastion except `bastion.ledger.errors`; beyond the standard library only
`cryptography` (Ed25519). Every failure is a `MalformedNoteError` (bad syntax, bad key) or a
`SignatureError` (well formed, but not signed by the expected key); no `cryptography` exception
escapes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from bastion.ledger.errors import MalformedNoteError, SignatureError

__all__ = [
    "ALG_ED25519",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "Checkpoint",
    "NoteSigner",
    "NoteVerifier",
    "key_id",
    "signer_from_seed",
]

ALG_ED25519 = 0x01
"""Signature type identifier byte of Ed25519 in signed-note key IDs and verifier keys."""

MAX_NOTE_BYTES = 1 << 20
"""Largest signed note accepted (and produced), in bytes, signatures included."""

MAX_SIGNATURES = 100
"""Most signature lines accepted in one note (the spec requires at least 16; Go allows 100)."""

HASH_SIZE = 32
_ED25519_KEY_SIZE = 32
_ED25519_SIG_SIZE = 64
_MAX_SIZE = (1 << 64) - 1  # tree sizes are uint64 in every other implementation
_SIG_PREFIX = "\u2014 "  # em dash, space
_SIG_PREFIX_BYTES = _SIG_PREFIX.encode()
_SEPARATOR = b"\n\n"
_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,19}")
_HEX8_RE = re.compile(r"[0-9a-fA-F]{8}")
_CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f]")  # below U+0020, newline excepted


# --------------------------------------------------------------------------- helpers


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Strict standard base64 (RFC 4648 §4): padded, alphabet only, canonical; None if not."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None
    # Re-encoding rejects non-zero trailing bits and any other non-canonical spelling.
    return raw if _b64encode(raw) == text else None


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        raise MalformedNoteError(f"{what} is not valid UTF-8") from None


def _is_space(char: str) -> bool:
    # Go's unicode.IsSpace: the White_Space property (Zs/Zl/Zp plus the ASCII and Latin-1 ones).
    return char.isspace() or unicodedata.category(char) in ("Zs", "Zl", "Zp")


def _check_key_name(name: object) -> str:
    """A signed-note key name: non-empty, no Unicode space, no '+', no control character."""
    if not isinstance(name, str) or not name:
        raise MalformedNoteError("key name must be a non-empty string")
    _utf8(name, "key name")
    if "+" in name or any(_is_space(c) for c in name) or _CONTROL_RE.search(name):
        raise MalformedNoteError(
            f"invalid key name {name!r}: no spaces, '+' or control characters allowed"
        )
    return name


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte signed-note key ID of an Ed25519 key (C2SP signed-note, "Ed25519 signatures").

    SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key)[:4]. Raises `MalformedNoteError` for
    an invalid name or a key that is not 32 bytes.
    """
    _check_key_name(name)
    if len(public_key) != _ED25519_KEY_SIZE:
        raise MalformedNoteError(f"Ed25519 public key must be 32 bytes, not {len(public_key)}")
    return _key_hash(name, bytes([ALG_ED25519]) + public_key)


def _key_hash(name: str, typed_key: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + typed_key).digest()[:4]


def _check_text(text: bytes, what: str) -> str:
    """Decode a note (or its text) and apply the spec's character rules."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedNoteError(f"{what} is not valid UTF-8") from None
    if _CONTROL_RE.search(decoded):
        raise MalformedNoteError(f"{what} contains a control character other than newline")
    return decoded


# --------------------------------------------------------------------------- checkpoint


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head as a C2SP tlog-checkpoint note text.

    `origin` names the log (non-empty; no newline, control character, or leading/trailing
    space), `size` is the number of leaves (0 ≤ size < 2^64), `root` the 32-byte RFC 6962 root
    at that size, and `extensions` the optional, opaque, non-empty extra lines. Constructing an
    invalid checkpoint raises `MalformedNoteError`.
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.extensions, tuple):
            object.__setattr__(self, "extensions", tuple(self.extensions))
        _check_line(self.origin, "origin")
        if self.origin != self.origin.strip():
            raise MalformedNoteError(f"origin {self.origin!r} has leading or trailing space")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise MalformedNoteError("tree size must be an integer")
        if not 0 <= self.size <= _MAX_SIZE:
            raise MalformedNoteError(f"tree size {self.size} is outside [0, 2^64)")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise MalformedNoteError(f"root hash must be {HASH_SIZE} bytes")
        for line in self.extensions:
            _check_line(line, "extension line")

    def body(self) -> bytes:
        """The note text: origin, size, base64 root and extension lines, each ending in "\\n"."""
        lines = [self.origin, str(self.size), _b64encode(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines).encode("utf-8")

    @classmethod
    def parse_body(cls, text: bytes) -> Checkpoint:
        """Parse a checkpoint note text strictly (C2SP tlog-checkpoint, "Note text").

        At least three non-empty lines, each ending in a newline; the size in decimal without
        leading zeros (except "0"); the root in canonical standard base64 of exactly 32 bytes.
        Raises `MalformedNoteError` on any deviation. Only parse text whose signature has
        been verified (`NoteVerifier.verify` does both).
        """
        decoded = _check_text(text, "checkpoint")
        if not decoded.endswith("\n"):
            raise MalformedNoteError("checkpoint must end with a newline")
        lines = decoded[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedNoteError("checkpoint needs origin, size and root lines")
        if any(not line for line in lines):
            raise MalformedNoteError("checkpoint contains an empty line")
        origin, size_text, root_text, *extensions = lines
        if not _SIZE_RE.fullmatch(size_text):
            raise MalformedNoteError(
                f"tree size {size_text[:32]!r} is not decimal without leading zeros"
            )
        root = _b64decode(root_text)
        if root is None or len(root) != HASH_SIZE:
            raise MalformedNoteError("root hash is not the standard base64 of 32 bytes")
        return cls(origin=origin, size=int(size_text), root=root, extensions=tuple(extensions))


def _check_line(line: object, what: str) -> None:
    if not isinstance(line, str) or not line:
        raise MalformedNoteError(f"{what} must be a non-empty string")
    _utf8(line, what)
    if "\n" in line or _CONTROL_RE.search(line):
        raise MalformedNoteError(f"{what} contains a newline or control character")


# --------------------------------------------------------------------------- signing


class NoteSigner:
    """Signs notes with an Ed25519 key under a signed-note key name (usually the log origin).

    The private key never appears in a repr, message or error.
    """

    __slots__ = ("_key_id", "_name", "_private_key", "_public_key")

    def __init__(self, private_key: Ed25519PrivateKey, name: str) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError("private_key must be an Ed25519PrivateKey")
        self._name = _check_key_name(name)
        self._private_key = private_key
        self._public_key = private_key.public_key().public_bytes_raw()
        self._key_id = key_id(name, self._public_key)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID that prefixes every signature."""
        return self._key_id

    def __repr__(self) -> str:
        return f"NoteSigner(name={self._name!r}, key_id={self._key_id.hex()!r})"

    def sign(self, checkpoint: Checkpoint) -> str:
        """The signed note for `checkpoint`: its body, a blank line, one signature line."""
        return self.sign_text(checkpoint.body())

    def sign_text(self, text: str | bytes) -> str:
        """Sign any note text (C2SP signed-note): text + "\\n" + "— <name> <base64>\\n".

        The text must be non-empty valid UTF-8 ending in a newline with no control characters
        other than newline, and the note must fit in `MAX_NOTE_BYTES`; `MalformedNoteError`
        otherwise.
        """
        raw = _utf8(text, "note text") if isinstance(text, str) else bytes(text)
        _check_text(raw, "note text")
        if not raw.endswith(b"\n"):
            raise MalformedNoteError("note text must end with a newline")
        signature = self._private_key.sign(raw)
        note = raw + b"\n" + self._signature_line(signature)
        if len(note) > MAX_NOTE_BYTES:
            raise MalformedNoteError(f"signed note would exceed {MAX_NOTE_BYTES} bytes")
        return note.decode("utf-8")

    def _signature_line(self, signature: bytes) -> bytes:
        line = f"{_SIG_PREFIX}{self._name} {_b64encode(self._key_id + signature)}\n"
        return line.encode("utf-8")

    def verifier_key(self) -> str:
        """The verifier key `<name>+<8 hex key ID>+<base64(0x01 ‖ public key)>`."""
        return _vkey(self._name, self._key_id, self._public_key)

    def verifier(self) -> NoteVerifier:
        """A verifier for this signer's notes."""
        return NoteVerifier(self._name, Ed25519PublicKey.from_public_bytes(self._public_key))


def signer_from_seed(seed: bytes, name: str) -> NoteSigner:
    """A `NoteSigner` from a 32-byte Ed25519 seed (RFC 8032 private key), e.g. a key-store secret.

    Raises `MalformedNoteError` for a seed that is not 32 bytes or an invalid key name.
    """
    if not isinstance(seed, bytes) or len(seed) != _ED25519_KEY_SIZE:
        raise MalformedNoteError("Ed25519 seed must be 32 bytes")
    try:
        private_key = Ed25519PrivateKey.from_private_bytes(seed)
    except ValueError:  # pragma: no cover - any 32 bytes are a valid seed
        raise MalformedNoteError("invalid Ed25519 seed") from None
    return NoteSigner(private_key, name)


def _vkey(name: str, kid: bytes, public_key: bytes) -> str:
    return f"{name}+{kid.hex()}+{_b64encode(bytes([ALG_ED25519]) + public_key)}"


# --------------------------------------------------------------------------- verifying


class NoteVerifier:
    """Checks signed notes against one trusted Ed25519 key (C2SP signed-note, "Signatures").

    Signature lines by other keys are ignored; every line carrying this key's name and ID must
    verify; at least one must be present.
    """

    __slots__ = ("_key_id", "_name", "_public_bytes", "_public_key")

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        if not isinstance(public_key, Ed25519PublicKey):
            raise TypeError("public_key must be an Ed25519PublicKey")
        self._name = _check_key_name(name)
        self._public_key = public_key
        self._public_bytes = public_key.public_bytes_raw()
        self._key_id = key_id(name, self._public_bytes)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse a verifier key `<name>+<8 hex key ID>+<base64(0x01 ‖ 32-byte key)>`.

        As golang.org/x/mod/sumdb/note `NewVerifier`: the key ID must equal the hash of name
        and key, the algorithm byte must be 0x01 (Ed25519) and the key 32 bytes.
        Raises `MalformedNoteError` otherwise.
        """
        if not isinstance(vkey, str):
            raise MalformedNoteError("verifier key must be a string")
        name, _, rest = vkey.partition("+")
        hash_hex, _, key_b64 = rest.partition("+")
        _check_key_name(name)
        typed_key = _b64decode(key_b64)
        if not _HEX8_RE.fullmatch(hash_hex) or not typed_key:
            raise MalformedNoteError("malformed verifier key: want name+hex8+base64")
        computed = _key_hash(name, typed_key)
        if computed != bytes.fromhex(hash_hex):
            raise MalformedNoteError(
                "verifier key ID does not match its name and key",
                details={"expected": hash_hex.lower(), "computed": computed.hex()},
            )
        if typed_key[0] != ALG_ED25519:
            raise MalformedNoteError(f"unsupported verifier key algorithm 0x{typed_key[0]:02x}")
        if len(typed_key) != 1 + _ED25519_KEY_SIZE:
            raise MalformedNoteError("Ed25519 verifier key must be 32 bytes")
        return cls(name, Ed25519PublicKey.from_public_bytes(typed_key[1:]))

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    def verifier_key(self) -> str:
        """This verifier as a vkey string (the inverse of `from_vkey`)."""
        return _vkey(self._name, self._key_id, self._public_bytes)

    def __repr__(self) -> str:
        return f"NoteVerifier({self.verifier_key()!r})"

    def verify(self, note: str | bytes) -> Checkpoint:
        """Verify a signed checkpoint and return it (C2SP signed-note + tlog-checkpoint).

        Raises `MalformedNoteError` for a malformed note or checkpoint body and
        `SignatureError` when no signature line by this key is present or one fails.
        """
        return Checkpoint.parse_body(self.verify_text(note))

    def verify_text(self, note: str | bytes) -> bytes:
        """Verify any signed note and return its text (up to and including its last newline).

        The note is split at its last blank line; it must be valid UTF-8 without control
        characters other than newline, at most `MAX_NOTE_BYTES` long, with 1 to
        `MAX_SIGNATURES` well-formed signature lines. Raises `MalformedNoteError` or
        `SignatureError` as `verify`.
        """
        if len(note) > MAX_NOTE_BYTES:
            raise MalformedNoteError(f"note exceeds {MAX_NOTE_BYTES} bytes")
        raw = _utf8(note, "note") if isinstance(note, str) else bytes(note)
        if len(raw) > MAX_NOTE_BYTES:
            raise MalformedNoteError(f"note exceeds {MAX_NOTE_BYTES} bytes")
        _check_text(raw, "note")
        split = raw.rfind(_SEPARATOR)
        if split < 0:
            raise MalformedNoteError("note has no blank line before its signatures")
        text, block = raw[: split + 1], raw[split + 2 :]
        if not block.endswith(b"\n"):
            raise MalformedNoteError("note has no signature lines, or lacks a final newline")
        lines = block[:-1].split(b"\n")
        if len(lines) > MAX_SIGNATURES:
            raise MalformedNoteError(f"note has more than {MAX_SIGNATURES} signatures")

        ours: list[bytes] = []
        for line in lines:
            name, kid, signature = _parse_signature_line(line)
            # Spec: signatures from unknown keys are ignored, even if name or ID (not both)
            # matches ours.
            if name == self._name and kid == self._key_id:
                ours.append(signature)
        key = f"{self._name}+{self._key_id.hex()}"
        if not ours:
            raise SignatureError(f"no signature by {self._name}", details={"key": key})
        for signature in ours:
            # Spec: a known key's signature MUST be verified, and a failure rejects the note.
            if len(signature) != _ED25519_SIG_SIZE:
                raise SignatureError(f"invalid signature by {key}", details={"key": key})
            try:
                self._public_key.verify(signature, text)
            except InvalidSignature:
                raise SignatureError(f"invalid signature by {key}", details={"key": key}) from None
        return text


def _parse_signature_line(line: bytes) -> tuple[str, bytes, bytes]:
    """`— <name> <base64(key ID ‖ signature)>` → (name, key ID, signature)."""
    if not line.startswith(_SIG_PREFIX_BYTES):
        raise MalformedNoteError("malformed signature line")
    name, _, sig_b64 = line[len(_SIG_PREFIX_BYTES) :].decode("utf-8").partition(" ")
    try:
        _check_key_name(name)
    except MalformedNoteError:
        raise MalformedNoteError("malformed signature line: bad key name") from None
    blob = _b64decode(sig_b64)
    if blob is None or len(blob) < 5:
        raise MalformedNoteError("malformed signature line: bad signature encoding")
    return name, blob[:4], blob[4:]
