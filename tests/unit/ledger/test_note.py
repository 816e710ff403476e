"""Signed checkpoints (C2SP signed-note + tlog-checkpoint, Ed25519).

Known vectors are the PeterNeumann and EnochRoot keys, note and signatures from the Go
reference implementation's tests (golang.org/x/mod/sumdb/note `note_test.go`). The checkpoint
golden note is assembled here independently, with `cryptography` and `hashlib`, and every
mutant of a good note must be rejected.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.ledger.errors import LedgerError, MalformedNoteError, SignatureError
from bastion.ledger.note import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    key_id,
    signer_from_seed,
)

# --------------------------------------------------------------------------- Go vectors

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqd"
    "ngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWL"
    "ox33WWd1RvMc+QQ=\n"
)

# --------------------------------------------------------------------------- fixtures

SEED = bytes(range(32))
ORIGIN = "example.com/bastion/log"
ROOT = hashlib.sha256(b"a root").digest()


def _signer(seed: bytes = SEED, name: str = ORIGIN) -> NoteSigner:
    return signer_from_seed(seed, name)


def _verifier(seed: bytes = SEED, name: str = ORIGIN) -> NoteVerifier:
    return NoteVerifier.from_vkey(_signer(seed, name).verifier_key())


def _note(size: int = 42, root: bytes = ROOT, origin: str = ORIGIN) -> str:
    return _signer().sign(Checkpoint(origin=origin, size=size, root=root))


def _independent_key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + b"\x01" + public_key).digest()[:4]


def _vkey_for(name: str, typed_key: bytes, kid: bytes | None = None) -> str:
    """A vkey assembled by hand; the key ID defaults to the correct hash of name and key."""
    kid = kid if kid is not None else hashlib.sha256(name.encode() + b"\n" + typed_key).digest()
    return f"{name}+{kid[:4].hex()}+{base64.b64encode(typed_key).decode()}"


# --------------------------------------------------------------------------- interop


def test_go_vector_verifies() -> None:
    verifier = NoteVerifier.from_vkey(PETER_VKEY)
    assert verifier.name == "PeterNeumann"
    assert verifier.key_id == bytes.fromhex("c74f20a3")
    assert verifier.verifier_key() == PETER_VKEY
    assert verifier.verify_text(TEXT + "\n" + PETER_SIG) == TEXT.encode()
    assert verifier.verify_text((TEXT + "\n" + PETER_SIG).encode()) == TEXT.encode()


def test_go_vector_is_not_a_checkpoint() -> None:
    with pytest.raises(MalformedNoteError):
        NoteVerifier.from_vkey(PETER_VKEY).verify(TEXT + "\n" + PETER_SIG)


def test_go_signer_reproduces_published_note_byte_for_byte() -> None:
    # The Go private key is "PRIVATE+KEY+<name>+<id>+base64(0x01 ‖ seed)"; Ed25519 is
    # deterministic, so our signer must produce Go's exact output.
    typed_seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])
    assert typed_seed[0] == 0x01
    signer = signer_from_seed(typed_seed[1:], "PeterNeumann")
    assert signer.verifier_key() == PETER_VKEY
    assert signer.key_id.hex() == "c74f20a3"
    assert signer.sign_text(TEXT) == TEXT + "\n" + PETER_SIG


def test_go_vector_other_signatures_ignored_and_both_keys_verify() -> None:
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert NoteVerifier.from_vkey(PETER_VKEY).verify_text(note) == TEXT.encode()
    assert NoteVerifier.from_vkey(ENOCH_VKEY).verify_text(note) == TEXT.encode()
    # Duplicated identical signatures are fine; Enoch alone is not Peter.
    note = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG
    assert NoteVerifier.from_vkey(PETER_VKEY).verify_text(note) == TEXT.encode()
    with pytest.raises(SignatureError, match="no signature by PeterNeumann"):
        NoteVerifier.from_vkey(PETER_VKEY).verify_text(TEXT + "\n" + ENOCH_SIG)


def test_go_vector_signature_limit() -> None:
    verifier = NoteVerifier.from_vkey(PETER_VKEY)
    assert verifier.verify_text(TEXT + "\n" + PETER_SIG * MAX_SIGNATURES) == TEXT.encode()
    with pytest.raises(MalformedNoteError, match="more than 100"):
        verifier.verify_text(TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1))


def test_go_vector_invalid_signature() -> None:
    sig = PETER_SIG.encode()
    bad = TEXT.encode() + b"\n" + sig[:60] + b"ABCD" + sig[60:]
    with pytest.raises(SignatureError, match=r"invalid signature by PeterNeumann\+c74f20a3"):
        NoteVerifier.from_vkey(PETER_VKEY).verify_text(bad)


def test_go_vector_a_bad_duplicate_by_our_key_is_rejected() -> None:
    # Stricter than Go (which skips repeats): the spec says a known key's signature MUST be
    # verified, and a failing one SHOULD reject the note.
    sig = PETER_SIG.encode()
    bad = TEXT.encode() + b"\n" + sig + sig[:60] + b"ABCD" + sig[60:]
    with pytest.raises(SignatureError):
        NoteVerifier.from_vkey(PETER_VKEY).verify_text(bad)


@pytest.mark.parametrize(
    "message",
    [
        TEXT.encode(),
        (TEXT + "\n").encode(),
        (TEXT + "\n" + PETER_SIG[:-1]).encode(),
        b"\x01" + (TEXT + "\n" + PETER_SIG).encode(),
        b"\xff" + (TEXT + "\n" + PETER_SIG).encode(),
        (
            TEXT
            + "\n"
            + "\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXg"
            "KvqfqdngotpRZb6KE6RyyBwJnAM="
        ).encode(),
        (TEXT + "\n" + PETER_SIG + "Unexpected line.\n").encode(),
    ],
    ids=["no-sigs", "blank-only", "no-final-newline", "control", "not-utf8", "bad-name", "extra"],
)
def test_go_vector_malformed_messages(message: bytes) -> None:
    with pytest.raises(MalformedNoteError):
        NoteVerifier.from_vkey(PETER_VKEY).verify_text(message)


def test_go_vkey_manglings_all_rejected() -> None:
    good = PETER_VKEY.encode()
    for i in range(len(good) + 1):
        for j in range(i + 1, len(good) + 1):
            if (i, j) != (0, len(good)):
                with pytest.raises(MalformedNoteError):
                    NoteVerifier.from_vkey(good[i:j].decode())
    for i in range(len(good)):
        mangled = bytearray(good)
        mangled[i] += 1
        with pytest.raises(MalformedNoteError):
            NoteVerifier.from_vkey(mangled.decode())
    # From Go's tests: a wrong-length key and an unknown algorithm.
    for vkey in (
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ):
        with pytest.raises(MalformedNoteError):
            NoteVerifier.from_vkey(vkey)


# --------------------------------------------------------------------------- golden format


def test_golden_checkpoint_note_format() -> None:
    private = Ed25519PrivateKey.from_private_bytes(SEED)
    public = private.public_key().public_bytes_raw()
    checkpoint = Checkpoint(origin=ORIGIN, size=1234567, root=ROOT)
    note = _signer().sign(checkpoint)

    body = f"{ORIGIN}\n1234567\n{base64.b64encode(ROOT).decode()}\n"
    assert checkpoint.body() == body.encode()
    kid = _independent_key_id(ORIGIN, public)
    signature = private.sign(body.encode())  # Ed25519 is deterministic
    expected = f"{body}\n\u2014 {ORIGIN} {base64.b64encode(kid + signature).decode()}\n"
    assert note == expected

    lines = note.split("\n")
    assert lines[0] == ORIGIN
    assert lines[1] == "1234567"
    assert base64.b64decode(lines[2], validate=True) == ROOT
    assert lines[3] == ""
    assert lines[4].startswith("\u2014 ")
    assert lines[4].encode().startswith(b"\xe2\x80\x94 ")
    assert lines[5] == ""
    assert len(lines) == 6
    name, blob = lines[4][2:].split(" ")
    assert name == ORIGIN
    decoded = base64.b64decode(blob, validate=True)
    assert len(decoded) == 68
    assert decoded[:4] == kid
    assert _signer().key_id == kid
    assert key_id(ORIGIN, public) == kid
    private.public_key().verify(decoded[4:], body.encode())  # raises if wrong

    typed_key = base64.b64encode(b"\x01" + public).decode()
    assert _signer().verifier_key() == f"{ORIGIN}+{kid.hex()}+{typed_key}"


def test_round_trip() -> None:
    checkpoint = Checkpoint(origin=ORIGIN, size=7, root=ROOT)
    assert _verifier().verify(_signer().sign(checkpoint)) == checkpoint
    assert _signer().verifier().verify(_signer().sign(checkpoint)) == checkpoint


def test_round_trip_with_extensions_and_size_zero() -> None:
    checkpoint = Checkpoint(
        origin="log with inner spaces+plus", size=0, root=ROOT, extensions=("ext one", "two")
    )
    assert checkpoint.body().endswith(b"\next one\ntwo\n")
    assert _verifier().verify(_signer().sign(checkpoint)) == checkpoint


def test_max_size_uint64() -> None:
    checkpoint = Checkpoint(origin=ORIGIN, size=2**64 - 1, root=ROOT)
    assert _verifier().verify(_signer().sign(checkpoint)).size == 2**64 - 1
    with pytest.raises(MalformedNoteError):
        Checkpoint(origin=ORIGIN, size=2**64, root=ROOT)
    body = f"{ORIGIN}\n{2**64}\n{base64.b64encode(ROOT).decode()}\n".encode()
    with pytest.raises(MalformedNoteError):
        Checkpoint.parse_body(body)


def test_no_private_key_in_repr() -> None:
    signer = _signer()
    text = repr(signer) + str(signer) + repr(_verifier())
    for secret in (SEED.hex(), base64.b64encode(SEED).decode(), repr(SEED)):
        assert secret not in text
    assert "example.com/bastion/log" in repr(signer)
    assert not hasattr(signer, "__dict__")
    assert not any(
        isinstance(getattr(signer, a), Ed25519PrivateKey)
        for a in dir(signer)
        if not a.startswith("_")
    )


# --------------------------------------------------------------------------- mutants


def test_changed_size_root_origin_rejected() -> None:
    note = _note(size=42)
    verifier = _verifier()
    for mutant in (
        note.replace("\n42\n", "\n43\n", 1),
        note.replace("\n42\n", "\n41\n", 1),
        note.replace(base64.b64encode(ROOT).decode(), base64.b64encode(bytes(32)).decode()),
        note.replace(ORIGIN + "\n", ORIGIN + "x\n", 1),
    ):
        assert mutant != note
        with pytest.raises(SignatureError):
            verifier.verify(mutant)


def test_flipped_signature_bit_rejected() -> None:
    note = _note()
    body, sig_line = note.split("\n\n")
    prefix, blob = sig_line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(blob))
    for index in (4, 30, 67):  # first, middle and last byte of the Ed25519 signature
        flipped = bytearray(raw)
        flipped[index] ^= 0x01
        mutant = f"{body}\n\n{prefix} {base64.b64encode(bytes(flipped)).decode()}\n"
        with pytest.raises(SignatureError, match="invalid signature"):
            _verifier().verify(mutant)
    # A flipped key-ID bit turns it into an unknown key's signature: ignored, so none is ours.
    raw[0] ^= 0x01
    mutant = f"{body}\n\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(SignatureError, match="no signature by"):
        _verifier().verify(mutant)


def test_truncated_signature_rejected() -> None:
    note = _note()
    body, sig_line = note.split("\n\n")
    prefix, blob = sig_line.rstrip("\n").rsplit(" ", 1)
    short = base64.b64encode(base64.b64decode(blob)[:-1]).decode()
    with pytest.raises(SignatureError):
        _verifier().verify(f"{body}\n\n{prefix} {short}\n")
    tiny = base64.b64encode(base64.b64decode(blob)[:4]).decode()
    with pytest.raises(MalformedNoteError):
        _verifier().verify(f"{body}\n\n{prefix} {tiny}\n")


def test_signature_by_another_key_only() -> None:
    checkpoint = Checkpoint(origin=ORIGIN, size=1, root=ROOT)
    other = _signer(seed=b"\x07" * 32).sign(checkpoint)
    with pytest.raises(SignatureError, match=f"no signature by {ORIGIN}"):
        _verifier().verify(other)
    # Same key, other name: also not ours.
    renamed = _signer(name="other.example/log").sign(checkpoint)
    with pytest.raises(SignatureError, match="no signature by"):
        _verifier().verify(renamed)


def test_other_signatures_are_ignored() -> None:
    checkpoint = Checkpoint(origin=ORIGIN, size=3, root=ROOT)
    ours = _signer().sign(checkpoint)
    theirs = _signer(seed=b"\x09" * 32, name="witness.example/w1").sign(checkpoint)
    their_line = theirs.split("\n\n")[1]
    for note in (
        ours + their_line,
        ours.split("\n\n")[0] + "\n\n" + their_line + ours.split("\n\n")[1],
    ):
        assert _verifier().verify(note) == checkpoint
        assert (
            NoteVerifier.from_vkey(
                _signer(seed=b"\x09" * 32, name="witness.example/w1").verifier_key()
            ).verify(note)
            == checkpoint
        )


def test_every_truncation_rejected() -> None:
    note = _note().encode()
    verifier = _verifier()
    for cut in range(len(note)):
        with pytest.raises(LedgerError) as info:
            verifier.verify(note[:cut])
        assert isinstance(info.value, MalformedNoteError | SignatureError)


def test_missing_blank_line_rejected() -> None:
    note = _note()
    with pytest.raises(MalformedNoteError):
        _verifier().verify(note.replace("\n\n", "\n", 1))


def test_extra_blank_line_in_body_rejected() -> None:
    signer = _signer()
    body = f"{ORIGIN}\n42\n\n{base64.b64encode(ROOT).decode()}\n"
    note = signer.sign_text(body)
    # The signature is good (a note text may contain blank lines) but it is no checkpoint.
    assert _verifier().verify_text(note) == body.encode()
    with pytest.raises(MalformedNoteError, match="empty line"):
        _verifier().verify(note)
    # Inserted after signing: the signature no longer covers the text.
    good = _note(size=42)
    with pytest.raises(SignatureError):
        _verifier().verify(good.replace("\n42\n", "\n\n42\n", 1))


@pytest.mark.parametrize("garbage", ["garbage", "garbage\n", "\n", "\n\n", " ", "\u2014 x\n"])
def test_trailing_garbage_rejected(garbage: str) -> None:
    with pytest.raises(MalformedNoteError):
        _verifier().verify(_note() + garbage)


def test_leading_zero_size_rejected() -> None:
    signer = _signer()
    root = base64.b64encode(ROOT).decode()
    for size in ("042", "00", "+42", "-1", " 42", "42 ", "4_2", "0x2a", "\u0664\u0662", ""):
        body = f"{ORIGIN}\n{size}\n{root}\n"
        with pytest.raises(MalformedNoteError):
            Checkpoint.parse_body(body.encode())
        if size:
            # Validly signed, still malformed: the body is checked after the signature.
            with pytest.raises(MalformedNoteError):
                _verifier().verify(signer.sign_text(body))


def test_bad_roots_rejected() -> None:
    signer = _signer()
    for root in (
        base64.b64encode(bytes(31)).decode(),
        base64.b64encode(bytes(33)).decode(),
        base64.b64encode(ROOT).decode().rstrip("="),  # unpadded
        base64.urlsafe_b64encode(b"\xff" * 32).decode(),  # URL-safe alphabet
        base64.b64encode(ROOT).decode()[:-2] + "B=",  # non-canonical trailing bits
        ROOT.hex(),
        " " + base64.b64encode(ROOT).decode(),
    ):
        body = f"{ORIGIN}\n1\n{root}\n"
        with pytest.raises(MalformedNoteError):
            _verifier().verify(signer.sign_text(body))
    with pytest.raises(MalformedNoteError):
        Checkpoint(origin=ORIGIN, size=1, root=bytes(31))


def test_bad_origins_rejected() -> None:
    for origin in ("", " log", "log ", "lo\ng", "lo\tg", "log\x7f\x01", "\u3000log"):
        with pytest.raises(MalformedNoteError):
            Checkpoint(origin=origin, size=1, root=ROOT)
    with pytest.raises(MalformedNoteError):
        Checkpoint.parse_body(b"\n1\n" + base64.b64encode(ROOT) + b"\n")


def test_bad_extensions_rejected() -> None:
    for extensions in (("",), ("a\nb",), ("a\x00",)):
        with pytest.raises(MalformedNoteError):
            Checkpoint(origin=ORIGIN, size=1, root=ROOT, extensions=extensions)


def test_short_or_unterminated_body_rejected() -> None:
    root = base64.b64encode(ROOT).decode()
    for body in (f"{ORIGIN}\n1\n", f"{ORIGIN}\n1\n{root}", f"{ORIGIN}\n1\n{root}\n\n", ""):
        with pytest.raises(MalformedNoteError):
            Checkpoint.parse_body(body.encode())


def test_non_utf8_rejected() -> None:
    note = _note().encode()
    for mutant in (b"\xff" + note, note.replace(b"\xe2\x80\x94", b"\xe2\x80"), note + b"\xc3"):
        with pytest.raises(MalformedNoteError):
            _verifier().verify(mutant)
    with pytest.raises(MalformedNoteError):
        _verifier().verify(_note() + "\udc80")  # lone surrogate in a str
    with pytest.raises(MalformedNoteError):
        Checkpoint.parse_body(b"\xfflog\n1\n" + base64.b64encode(ROOT) + b"\n")
    with pytest.raises(MalformedNoteError):
        _signer().sign_text(b"\xff\n")


def test_control_characters_rejected() -> None:
    note = _note()
    for char in ("\x00", "\r", "\t", "\x1b"):
        with pytest.raises(MalformedNoteError):
            _verifier().verify(note.replace("\n\n", "\n" + char + "\n", 1))
        with pytest.raises(MalformedNoteError):
            _signer().sign_text(f"a{char}b\n")


def test_bad_signature_lines_rejected() -> None:
    note = _note()
    body, line = note.split("\n\n")
    blob = line.rstrip("\n").rsplit(" ", 1)[1]
    for bad in (
        f"- {ORIGIN} {blob}",  # ASCII hyphen, not em dash
        f"\u2014{ORIGIN} {blob}",  # no space after the dash
        f"\u2014 {ORIGIN}  {blob}",  # two spaces
        f"\u2014 {ORIGIN} {blob} ",  # trailing space
        f"\u2014 {ORIGIN}",  # no signature
        f"\u2014 {ORIGIN} ",  # empty signature
        f"\u2014  {blob}",  # empty name
        f"\u2014 a+b {blob}",  # '+' in name
        f"\u2014 {ORIGIN} {blob.rstrip('=')}",  # unpadded
        f"\u2014 {ORIGIN} !{blob[1:]}",  # not base64
    ):
        with pytest.raises(MalformedNoteError):
            _verifier().verify(f"{body}\n\n{bad}\n")
    # One good line does not excuse a malformed one.
    with pytest.raises(MalformedNoteError):
        _verifier().verify(f"{note}\u2014 {ORIGIN} !!!!\n")


def test_bad_vkeys_rejected() -> None:
    public = Ed25519PrivateKey.from_private_bytes(SEED).public_key().public_bytes_raw()
    good = _vkey_for(ORIGIN, b"\x01" + public)
    assert NoteVerifier.from_vkey(good).verifier_key() == good
    # Upper-case hex is accepted as Go's strconv.ParseUint does.
    name, kid, key = good.split("+", 2)
    assert NoteVerifier.from_vkey(f"{name}+{kid.upper()}+{key}").key_id.hex() == kid
    wrong_hash = bytes(b ^ 0xFF for b in bytes.fromhex(kid))
    for bad in (
        _vkey_for(ORIGIN, b"\x01" + public, kid=wrong_hash),  # wrong hash
        _vkey_for("other.example", b"\x01" + public, kid=bytes.fromhex(kid)),  # other name
        _vkey_for(ORIGIN, b"\x02" + public),  # wrong algorithm, hash adjusted
        _vkey_for(ORIGIN, b"\x01" + public[:31]),  # 31-byte key, hash adjusted
        _vkey_for(ORIGIN, b"\x01" + public + b"\x00"),  # 33-byte key, hash adjusted
        _vkey_for(ORIGIN, b""),  # no key
        _vkey_for("bad name", b"\x01" + public),
        f"{name}+{kid}",
        f"{name}+{kid[:7]}+{key}",
        f"{name}+0x{kid[2:]}+{key}",
        f"{name}+{kid}+{key}=",  # stray padding
        f"{name}+{kid}+{key[:-1]}",  # truncated base64
        f"+{kid}+{key}",
        f" {good}",
        f"{good}\n",
        "",
    ):
        with pytest.raises(MalformedNoteError):
            NoteVerifier.from_vkey(bad)


def test_key_names_validated() -> None:
    for name in ("", "a b", "a+b", "a\u00a0b", "a\u2028b", "a\nb", "a\x00b"):
        with pytest.raises(MalformedNoteError):
            signer_from_seed(SEED, name)
    for seed in (b"", bytes(31), bytes(33)):
        with pytest.raises(MalformedNoteError):
            signer_from_seed(seed, ORIGIN)


def test_sign_text_requires_final_newline() -> None:
    for text in ("", "abc"):
        with pytest.raises(MalformedNoteError):
            _signer().sign_text(text)


def test_note_size_limit() -> None:
    signer = _signer()
    overhead = len(signer.sign_text("x\n").encode()) - len(b"x\n")
    text = "a" * (MAX_NOTE_BYTES - overhead - 1) + "\n"
    note = signer.sign_text(text)
    assert len(note.encode()) == MAX_NOTE_BYTES
    assert _verifier().verify_text(note) == text.encode()
    with pytest.raises(MalformedNoteError):
        signer.sign_text("a" + text)
    # A note one byte over the limit is refused before any parsing.
    with pytest.raises(MalformedNoteError, match="exceeds"):
        _verifier().verify_text("a" + note)
    with pytest.raises(MalformedNoteError, match="exceeds"):
        _verifier().verify_text(("a" + note).encode())


# --------------------------------------------------------------------------- properties

_origin_chars = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"))
origins = st.text(_origin_chars, min_size=1, max_size=40).filter(lambda s: s == s.strip())
key_names = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=30,
).filter(lambda s: "+" not in s and not any(c.isspace() for c in s))
sizes = st.integers(min_value=0, max_value=2**64 - 1)
roots = st.binary(min_size=32, max_size=32)


@settings(max_examples=150, deadline=None)
@given(origin=origins, size=sizes, root=roots, data=st.data())
def test_property_round_trip_and_body_byte_changes_fail(
    origin: str, size: int, root: bytes, data: st.DataObject
) -> None:
    checkpoint = Checkpoint(origin=origin, size=size, root=root)
    signer = _signer()
    verifier = _verifier()
    note = signer.sign(checkpoint).encode()
    assert verifier.verify(note) == checkpoint
    assert Checkpoint.parse_body(checkpoint.body()) == checkpoint

    body_len = len(checkpoint.body())
    position = data.draw(st.integers(min_value=0, max_value=body_len - 1), label="position")
    value = data.draw(
        st.integers(min_value=0, max_value=255).filter(lambda v: v != note[position]),
        label="value",
    )
    mutant = bytearray(note)
    mutant[position] = value
    with pytest.raises((SignatureError, MalformedNoteError)):
        verifier.verify(bytes(mutant))


@settings(max_examples=50, deadline=None)
@given(name=key_names, seed=st.binary(min_size=32, max_size=32), size=sizes, root=roots)
def test_property_origin_as_key_name(name: str, seed: bytes, size: int, root: bytes) -> None:
    signer = signer_from_seed(seed, name)
    verifier = NoteVerifier.from_vkey(signer.verifier_key())
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    assert verifier.key_id == _independent_key_id(name, public)
    checkpoint = Checkpoint(origin=name, size=size, root=root)
    assert verifier.verify(signer.sign(checkpoint)) == checkpoint
