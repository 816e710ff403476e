"""Interop with the reference implementation, model-signing 1.1.1 (a dev dependency only).

Both directions, through the reference library and its `model_signing` CLI: Bastion's bundles
verify with the reference, the reference's bundles verify with Bastion, and tampered models and
bundles are rejected by both (where the reference checks at all: the cases it misses are
asserted too, to show why Bastion writes the format itself).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import model_signing
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.supplychain.signing import (
    DEFAULT_IGNORE_PATHS,
    FileDigest,
    SignatureInvalid,
    Signer,
    Verifier,
    load_private_key_pem,
    load_public_key_pem,
)

REFERENCE_CLI = Path(sys.executable).parent / "model_signing"
#: What the reference raises when it rejects (it has no error type of its own).
REFERENCE_REJECTS = (ValueError, TypeError, KeyError, InvalidSignature)


# -- helpers ------------------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _model(root: Path) -> Path:
    _write(root / "weights" / "layer0.bin", os.urandom(200_000))
    _write(root / "weights" / "layer1.bin", os.urandom(3 * 1024 * 1024 + 5))
    _write(root / "config.json", b'{"layers": 2}')
    _write(root / "tokenizer" / "deep" / "vocab.txt", b"a\nb\n")
    _write(root / "a" / "b", b"ab")
    _write(root / "a.b", b"a.b")
    _write(root / "empty.dat", b"")
    _write(root / ".gitattributes", b"*.bin filter=lfs\n")
    _write(root / ".git" / "HEAD", b"ref: refs/heads/main\n")
    return root


class Keys:
    """A key pair on disk, as operators hold it."""

    def __init__(
        self,
        directory: Path,
        curve: ec.EllipticCurve | None = None,
        fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
    ) -> None:
        self.key = ec.generate_private_key(curve or ec.SECP256R1())
        directory.mkdir(parents=True, exist_ok=True)
        self.private = _write(
            directory / "key.pem",
            self.key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()),
        )
        self.public = _write(
            directory / "key.pub",
            self.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    def signer(self) -> Signer:
        return Signer(load_private_key_pem(self.private.read_bytes()))

    def verifier(self) -> Verifier:
        return Verifier(load_public_key_pem(self.public.read_bytes()))


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path / "keys")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return _model(tmp_path / "model")


def _ref_verify(model: Path, signature: Path, public: Path) -> None:
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public).verify(
        model, signature
    )


def _ref_sign(model: Path, signature: Path, private: Path) -> None:
    model_signing.signing.Config().use_elliptic_key_signer(private_key=private).sign(
        model, signature
    )


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REFERENCE_CLI), *map(str, args)], capture_output=True, text=True, check=False
    )


def _cli_verify(model: Path, signature: Path, public: Path) -> subprocess.CompletedProcess[str]:
    return _cli("verify", "key", model, "--signature", signature, "--public_key", public)


def _pae(payload: bytes) -> bytes:
    kind = b"application/vnd.in-toto+json"
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _sign_statement(key: ec.EllipticCurvePrivateKey, statement: dict[str, Any]) -> bytes:
    """A validly signed bundle around a crafted statement, built without the code under test."""
    payload = json.dumps(statement, indent=2).encode()
    sig = key.sign(_pae(payload), ec.ECDSA(hashes.SHA256()))
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return json.dumps(
        {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "publicKey": {"hint": hashlib.sha256(pem).hexdigest()},
                "tlogEntries": [],
            },
            "dsseEnvelope": {
                "payload": base64.b64encode(payload).decode(),
                "payloadType": "application/vnd.in-toto+json",
                "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}],
            },
        }
    ).encode()


def _statement_for(resources: list[dict[str, str]]) -> dict[str, Any]:
    subject = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest()
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "model", "digest": {"sha256": subject}}],
        "predicateType": "https://model_signing/signature/v1.0",
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": False,
                "ignore_paths": list(DEFAULT_IGNORE_PATHS),
            },
            "resources": resources,
        },
    }


def _real_resources(model: Path) -> list[dict[str, str]]:
    resources = []
    for path in sorted(model.rglob("*")):
        rel = path.relative_to(model).as_posix()
        if path.is_file() and rel.split("/")[0] not in DEFAULT_IGNORE_PATHS:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            resources.append({"name": rel, "algorithm": "sha256", "digest": digest})
    return resources


# -- Bastion signs, the reference verifies -----------------------------------------------------


@pytest.mark.parametrize(
    ("curve", "fmt"),
    [
        (ec.SECP256R1(), serialization.PrivateFormat.PKCS8),
        # what `openssl ecparam -name prime256v1 -genkey -noout` writes: SEC1 "EC PRIVATE KEY"
        (ec.SECP256R1(), serialization.PrivateFormat.TraditionalOpenSSL),
        (ec.SECP384R1(), serialization.PrivateFormat.PKCS8),
        (ec.SECP521R1(), serialization.PrivateFormat.PKCS8),
    ],
    ids=["p256-pkcs8", "p256-openssl-ecparam", "p384", "p521"],
)
def test_reference_verifies_bastion_directory_signature(
    tmp_path: Path, model: Path, curve: ec.EllipticCurve, fmt: serialization.PrivateFormat
) -> None:
    keys = Keys(tmp_path / "keys", curve, fmt)
    signature = _write(tmp_path / "model.sig", keys.signer().sign_directory(model))
    result = _cli_verify(model, signature, keys.public)
    assert result.returncode == 0, result.stderr
    assert "Verification succeeded" in result.stdout
    _ref_verify(model, signature, keys.public)


def test_reference_verifies_bastion_signature_inside_the_model(keys: Keys, model: Path) -> None:
    signature = model / "model.sig"
    _write(signature, keys.signer().sign_directory(model, ignore=["model.sig"]))
    result = _cli_verify(model, signature, keys.public)
    assert result.returncode == 0, result.stderr
    _ref_verify(model, signature, keys.public)  # the library honours the signed ignore_paths


def test_reference_verifies_bastion_single_file_signature(keys: Keys, tmp_path: Path) -> None:
    path = _write(tmp_path / "model.onnx", os.urandom(70_000))
    signature = _write(tmp_path / "model.sig", keys.signer().sign_directory(path))
    result = _cli_verify(path, signature, keys.public)
    assert result.returncode == 0, result.stderr
    _ref_verify(path, signature, keys.public)


def test_reference_verifies_signature_from_precomputed_digests(
    keys: Keys, model: Path, tmp_path: Path
) -> None:
    """The registry's path: digests it already holds, never re-reading the directory."""
    files = [
        FileDigest(r["name"], "sha256", bytes.fromhex(r["digest"])) for r in _real_resources(model)
    ]
    signature = _write(tmp_path / "model.sig", keys.signer().sign(model.name, files[::-1]))
    _ref_verify(model, signature, keys.public)
    assert _cli_verify(model, signature, keys.public).returncode == 0


# -- the reference signs, Bastion verifies -----------------------------------------------------


def test_bastion_verifies_reference_cli_signature(keys: Keys, model: Path) -> None:
    signature = model / "model.sig"  # the reference's default place, recorded in ignore_paths
    result = _cli("sign", "key", model, "--private_key", keys.private, "--signature", signature)
    assert result.returncode == 0, result.stderr
    manifest = keys.verifier().verify_directory(signature.read_bytes(), model)
    assert manifest.model_name == "model"
    assert "model.sig" in manifest.ignore_paths
    assert len(manifest.files) == 7


def test_bastion_verifies_reference_cli_single_file(keys: Keys, tmp_path: Path) -> None:
    path = _write(tmp_path / "model.safetensors", os.urandom(1000))
    signature = tmp_path / "model.sig"
    result = _cli("sign", "key", path, "--private_key", keys.private, "--signature", signature)
    assert result.returncode == 0, result.stderr
    manifest = keys.verifier().verify_directory(signature.read_bytes(), path)
    assert [f.path for f in manifest.files] == ["."]


@pytest.mark.parametrize(
    ("curve", "fmt"),
    [
        (ec.SECP256R1(), serialization.PrivateFormat.TraditionalOpenSSL),
        (ec.SECP384R1(), serialization.PrivateFormat.PKCS8),
    ],
    ids=["p256-openssl-ecparam", "p384"],
)
def test_bastion_verifies_reference_library_signature(
    tmp_path: Path, model: Path, curve: ec.EllipticCurve, fmt: serialization.PrivateFormat
) -> None:
    keys = Keys(tmp_path / "keys", curve, fmt)
    signature = tmp_path / "model.sig"
    _ref_sign(model, signature, keys.private)
    manifest = keys.verifier().verify_directory(signature.read_bytes(), model)
    assert {f.path for f in manifest.files} == {r["name"] for r in _real_resources(model)}
    single = _write(tmp_path / "single.bin", b"weights")
    _ref_sign(single, tmp_path / "single.sig", keys.private)
    assert keys.verifier().verify_directory((tmp_path / "single.sig").read_bytes(), single)


def test_bastion_verifies_reference_blake2_signature(
    keys: Keys, model: Path, tmp_path: Path
) -> None:
    """The reference writes these (hash_type "blake2b") but cannot verify them itself."""
    signature = tmp_path / "model.sig"
    model_signing.signing.Config().use_elliptic_key_signer(
        private_key=keys.private
    ).set_hashing_config(
        model_signing.hashing.Config().use_file_serialization(hashing_algorithm="blake2")
    ).sign(model, signature)
    manifest = keys.verifier().verify_directory(signature.read_bytes(), model)
    assert manifest.hash_type == "blake2b"
    (model / "config.json").write_bytes(b"{}")
    with pytest.raises(SignatureInvalid) as excinfo:
        keys.verifier().verify_directory(signature.read_bytes(), model)
    assert excinfo.value.problems == ["changed: config.json"]


def test_reference_shard_signatures_are_unsupported(
    keys: Keys, model: Path, tmp_path: Path
) -> None:
    signature = tmp_path / "model.sig"
    model_signing.signing.Config().use_elliptic_key_signer(
        private_key=keys.private
    ).set_hashing_config(
        model_signing.hashing.Config().use_shard_serialization(shard_size=1_000_000)
    ).sign(model, signature)
    with pytest.raises(SignatureInvalid) as excinfo:
        keys.verifier().verify_directory(signature.read_bytes(), model)
    assert excinfo.value.code == "signature.unsupported"
    # the float shard_size quirk: the reference cannot verify its own shard signatures
    with pytest.raises(TypeError):
        _ref_verify(model, signature, keys.public)


# -- tampering: both reject ---------------------------------------------------------------------


def _change_byte(model: Path) -> None:
    path = model / "weights" / "layer1.bin"
    data = bytearray(path.read_bytes())
    data[12345] ^= 0x80
    path.write_bytes(bytes(data))


MODEL_MUTANTS: dict[str, Callable[[Path], object]] = {
    "changed byte": _change_byte,
    "renamed file": lambda m: (m / "config.json").rename(m / "config.yaml"),
    "extra file": lambda m: _write(m / "evil.py", b"import os; os.system('id')"),
    "removed file": lambda m: (m / "a" / "b").unlink(),
    "empty file added": lambda m: _write(m / "tokenizer" / "empty", b""),
    "symlink outside": lambda m: (m / "weights" / "extra").symlink_to("/etc/passwd"),
}


@pytest.mark.parametrize("signed_by", ["bastion", "reference"])
@pytest.mark.parametrize("mutant", sorted(MODEL_MUTANTS))
def test_tampered_models_are_rejected_by_both(
    keys: Keys, model: Path, tmp_path: Path, mutant: str, signed_by: str
) -> None:
    signature = tmp_path / "model.sig"
    if signed_by == "bastion":
        _write(signature, keys.signer().sign_directory(model))
    else:
        _ref_sign(model, signature, keys.private)
    MODEL_MUTANTS[mutant](model)
    with pytest.raises(SignatureInvalid) as excinfo:
        keys.verifier().verify_directory(signature.read_bytes(), model)
    assert excinfo.value.code == "signature.invalid"
    with pytest.raises(REFERENCE_REJECTS):
        _ref_verify(model, signature, keys.public)
    assert _cli_verify(model, signature, keys.public).returncode == 1


def _edit(bundle: bytes, edit: Callable[[dict[str, Any]], object]) -> bytes:
    document = json.loads(bundle)
    edit(document)
    return json.dumps(document).encode()


def _flip_sig(document: dict[str, Any]) -> None:
    entry = document["dsseEnvelope"]["signatures"][0]
    sig = bytearray(base64.b64decode(entry["sig"]))
    sig[10] ^= 1
    entry["sig"] = base64.b64encode(bytes(sig)).decode()


def _flip_payload(document: dict[str, Any]) -> None:
    envelope = document["dsseEnvelope"]
    payload = bytearray(base64.b64decode(envelope["payload"]))
    payload[-40] ^= 1
    envelope["payload"] = base64.b64encode(bytes(payload)).decode()


BUNDLE_MUTANTS: dict[str, Callable[[dict[str, Any]], object]] = {
    "corrupted signature": _flip_sig,
    "flipped payload byte": _flip_payload,
    "changed payloadType": lambda d: d["dsseEnvelope"].update(payloadType="text/plain"),
}


@pytest.mark.parametrize("mutant", sorted(BUNDLE_MUTANTS))
def test_tampered_bundles_are_rejected_by_both(
    keys: Keys, model: Path, tmp_path: Path, mutant: str
) -> None:
    bundle = _edit(keys.signer().sign_directory(model), BUNDLE_MUTANTS[mutant])
    signature = _write(tmp_path / "model.sig", bundle)
    with pytest.raises(SignatureInvalid) as excinfo:
        keys.verifier().verify_directory(bundle, model)
    assert "signature does not verify with the given key" in excinfo.value.problems
    with pytest.raises(REFERENCE_REJECTS):
        _ref_verify(model, signature, keys.public)


def test_wrong_public_key_is_rejected_by_both(keys: Keys, model: Path, tmp_path: Path) -> None:
    signature = _write(tmp_path / "model.sig", keys.signer().sign_directory(model))
    other = Keys(tmp_path / "other")
    with pytest.raises(SignatureInvalid) as excinfo:
        other.verifier().verify_directory(signature.read_bytes(), model)
    assert excinfo.value.problems[0].startswith("key hint mismatch")
    with pytest.raises(REFERENCE_REJECTS):
        _ref_verify(model, signature, other.public)
    assert _cli_verify(model, signature, other.public).returncode == 1


def test_two_signatures_bastion_rejects_the_reference_uses_the_first(
    keys: Keys, model: Path, tmp_path: Path
) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    bundle = keys.signer().sign_directory(model)

    def add(document: dict[str, Any]) -> None:
        payload = base64.b64decode(document["dsseEnvelope"]["payload"])
        extra = other.sign(_pae(payload), ec.ECDSA(hashes.SHA256()))
        document["dsseEnvelope"]["signatures"].append(
            {"sig": base64.b64encode(extra).decode(), "keyid": ""}
        )

    doubled = _edit(bundle, add)
    with pytest.raises(SignatureInvalid) as excinfo:
        keys.verifier().verify(doubled)
    assert excinfo.value.problems == ["expected exactly one signature, found 2"]
    _ref_verify(model, _write(tmp_path / "model.sig", doubled), keys.public)  # accepted


def test_duplicated_resource_bastion_rejects_the_reference_collapses_it(
    keys: Keys, model: Path, tmp_path: Path
) -> None:
    resources = _real_resources(model)
    bundle = _sign_statement(keys.key, _statement_for([*resources, resources[0]]))
    with pytest.raises(SignatureInvalid) as excinfo:
        keys.verifier().verify_directory(bundle, model)
    assert excinfo.value.problems == [f"duplicate resource: {resources[0]['name']}"]
    _ref_verify(model, _write(tmp_path / "model.sig", bundle), keys.public)  # accepted


def test_path_escape_in_a_signed_manifest(keys: Keys, model: Path, tmp_path: Path) -> None:
    """A validly signed `../x` resource: the reference reads outside the model when told to
    ignore unsigned files; Bastion refuses the manifest before touching the filesystem."""
    outside = _write(tmp_path / "x", b"outside the model")
    escape = {
        "name": "../x",
        "algorithm": "sha256",
        "digest": hashlib.sha256(outside.read_bytes()).hexdigest(),
    }
    bundle = _sign_statement(keys.key, _statement_for([*_real_resources(model), escape]))
    signature = _write(tmp_path / "model.sig", bundle)
    with pytest.raises(SignatureInvalid) as excinfo:
        keys.verifier().verify_directory(bundle, model)
    assert excinfo.value.problems == ["path escape: ../x"]
    with pytest.raises(REFERENCE_REJECTS):
        _ref_verify(model, signature, keys.public)  # default mode: "../x" is missing
    model_signing.verifying.Config().use_elliptic_key_verifier(
        public_key=keys.public
    ).set_ignore_unsigned_files(True).verify(model, signature)  # the reference's weakness


def test_absolute_path_in_a_signed_manifest(keys: Keys, model: Path, tmp_path: Path) -> None:
    escape = {"name": "/etc/hostname", "algorithm": "sha256", "digest": "00" * 32}
    bundle = _sign_statement(keys.key, _statement_for([*_real_resources(model), escape]))
    with pytest.raises(SignatureInvalid) as excinfo:
        keys.verifier().verify_directory(bundle, model)
    assert excinfo.value.problems == ["path escape: /etc/hostname"]
    with pytest.raises(REFERENCE_REJECTS):
        _ref_verify(model, _write(tmp_path / "model.sig", bundle), keys.public)
