"""`bastion.supplychain.signing`: hashing, keys, bundle format and fail-closed verification.

Interop with the reference implementation lives in `test_signing_interop.py`; the CLI in
`test_signing_cli.py`. Every key and file is generated under `tmp_path`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from bastion.core.errors import IntegrityError, InvalidInput
from bastion.supplychain.signing import (
    BUNDLE_MEDIA_TYPE,
    DEFAULT_IGNORE_PATHS,
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    FileDigest,
    SignatureInvalid,
    Signer,
    Verifier,
    hash_directory,
    hash_file,
    is_ignored_path,
    key_fingerprint,
    load_private_key_pem,
    load_public_key_pem,
    model_name_for,
    private_key_from_seed,
)

# -- helpers ------------------------------------------------------------------------------------


def _key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _model(root: Path) -> Path:
    """A nested model whose names exercise the component-wise ordering (a/b before a.b)."""
    _write(root / "weights" / "layer0.bin", os.urandom(100_000))
    _write(root / "weights" / "layer1.bin", os.urandom(5 * 1024 * 1024 + 17))  # > one read
    _write(root / "config.json", b'{"layers": 2}')
    _write(root / "tokenizer" / "deep" / "vocab.txt", b"a\nb\n")
    _write(root / "a" / "b", b"ab")
    _write(root / "a.b", b"a.b")
    _write(root / "empty.dat", b"")
    _write(root / ".gitignore", b"*.pyc\n")
    _write(root / ".git" / "HEAD", b"ref: refs/heads/main\n")
    return root


def _digests(root: Path) -> dict[str, str]:
    """sha256 hex of every file not under the git defaults, computed independently."""
    result = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel.split("/")[0] not in DEFAULT_IGNORE_PATHS:
            result[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def _bundle(data: bytes) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(data)
    return document


def _statement(data: bytes) -> dict[str, Any]:
    statement: dict[str, Any] = json.loads(
        base64.b64decode(_bundle(data)["dsseEnvelope"]["payload"])
    )
    return statement


def _pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _hint(key: ec.EllipticCurvePublicKey) -> str:
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()


def _sign_raw(
    key: ec.EllipticCurvePrivateKey,
    payload: bytes,
    *,
    payload_type: str = PAYLOAD_TYPE,
    signed_type: str | None = None,
    signatures: int = 1,
) -> bytes:
    """A bundle built independently of the code under test, for crafted (valid) payloads."""
    sig = key.sign(_pae(signed_type or payload_type, payload), ec.ECDSA(hashes.SHA256()))
    entry = {"sig": base64.b64encode(sig).decode(), "keyid": ""}
    return json.dumps(
        {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {
                "publicKey": {"hint": _hint(key.public_key())},
                "tlogEntries": [],
            },
            "dsseEnvelope": {
                "payload": base64.b64encode(payload).decode(),
                "payloadType": payload_type,
                "signatures": [entry] * signatures,
            },
        }
    ).encode()


def _resources_statement(
    resources: list[dict[str, str]],
    *,
    name: str = "model",
    hash_type: str = "sha256",
    ignore_paths: list[str] | None = None,
) -> dict[str, Any]:
    subject = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest()
    statement: dict[str, Any] = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": subject}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {"method": "files", "hash_type": hash_type, "allow_symlinks": False},
            "resources": resources,
        },
    }
    if ignore_paths is not None:
        statement["predicate"]["serialization"]["ignore_paths"] = ignore_paths
    return statement


def _encode(statement: dict[str, Any]) -> bytes:
    return json.dumps(statement, indent=2).encode()


def _resource(name: str, data: bytes = b"x") -> dict[str, str]:
    return {"name": name, "algorithm": "sha256", "digest": hashlib.sha256(data).hexdigest()}


def _problems(excinfo: pytest.ExceptionInfo[SignatureInvalid]) -> list[str]:
    return excinfo.value.problems


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return _key()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return _model(tmp_path / "model")


@pytest.fixture
def signed(key: ec.EllipticCurvePrivateKey, model: Path) -> bytes:
    return Signer(key).sign_directory(model)


@pytest.fixture
def verifier(key: ec.EllipticCurvePrivateKey) -> Verifier:
    return Verifier(key.public_key())


# -- hashing ------------------------------------------------------------------------------------


def test_hash_file_matches_hashlib(tmp_path: Path) -> None:
    data = os.urandom(9 * 1024 * 1024 + 3)
    path = _write(tmp_path / "f", data)
    assert hash_file(path) == hashlib.sha256(data).digest()
    assert hash_file(path, "blake2b") == hashlib.blake2b(data).digest()


def test_hash_file_refuses_symlink_fifo_missing_and_unknown_algorithm(tmp_path: Path) -> None:
    target = _write(tmp_path / "target", b"x")
    (tmp_path / "link").symlink_to(target)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(InvalidInput) as link:
        hash_file(tmp_path / "link")
    assert link.value.code == "signature.symlink"
    with pytest.raises(InvalidInput) as fifo:
        hash_file(tmp_path / "fifo")
    assert fifo.value.code == "signature.special_file"
    with pytest.raises(InvalidInput) as missing:
        hash_file(tmp_path / "missing")
    assert missing.value.code == "signature.unreadable"
    with pytest.raises(InvalidInput) as algorithm:
        hash_file(target, "md5")
    assert algorithm.value.code == "signature.unsupported_algorithm"


def test_hash_directory_order_sizes_and_default_ignores(model: Path) -> None:
    files = hash_directory(model)
    paths = [f.path for f in files]
    # PurePosixPath order: by components, so a/b sorts before a.b (string order would not).
    assert paths == [
        "a/b",
        "a.b",
        "config.json",
        "empty.dat",
        "tokenizer/deep/vocab.txt",
        "weights/layer0.bin",
        "weights/layer1.bin",
    ]
    expected = _digests(model)
    for item in files:
        assert item.algorithm == "sha256"
        assert item.digest.hex() == expected[item.path]
        assert item.size == (model / item.path).stat().st_size
    assert hash_directory(model, workers=1) == files


def test_hash_directory_extra_ignores_and_git_paths_optional(model: Path) -> None:
    paths = [f.path for f in hash_directory(model, ignore=["weights/", "./a.b"])]
    assert "weights/layer0.bin" not in paths
    assert "a.b" not in paths
    assert "a/b" in paths
    with_git = [f.path for f in hash_directory(model, ignore_git_paths=False)]
    assert ".gitignore" in with_git
    assert ".git/HEAD" in with_git


def test_hash_directory_single_file_is_named_dot(tmp_path: Path) -> None:
    path = _write(tmp_path / "model.onnx", b"onnx bytes")
    (item,) = hash_directory(path)
    assert item == FileDigest(".", "sha256", hashlib.sha256(b"onnx bytes").digest(), 10)


def test_hash_directory_reports_every_symlink_and_special_file(model: Path) -> None:
    (model / "outside").symlink_to("/etc/passwd")
    (model / "weights" / "loop").symlink_to(model)
    os.mkfifo(model / "pipe")
    with pytest.raises(InvalidInput) as excinfo:
        hash_directory(model)
    assert excinfo.value.code == "signature.symlink"
    assert excinfo.value.details["problems"] == [
        "symlink: outside",
        "special file: pipe",
        "symlink: weights/loop",
    ]


@pytest.mark.parametrize("bad", ["../x", "/etc", "a/../../b", "", "a\\b", "."])
def test_hash_directory_refuses_ignore_paths_outside_root(model: Path, bad: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        hash_directory(model, ignore=[bad])
    assert excinfo.value.code == "signature.bad_ignore_path"


def test_hash_directory_refuses_symlinked_root_and_missing_root(tmp_path: Path) -> None:
    real = _model(tmp_path / "real")
    (tmp_path / "alias").symlink_to(real)
    with pytest.raises(InvalidInput) as link:
        hash_directory(tmp_path / "alias")
    assert link.value.code == "signature.symlink"
    with pytest.raises(InvalidInput) as missing:
        hash_directory(tmp_path / "nope")
    assert missing.value.code == "signature.unreadable"


def test_hash_directory_refuses_bad_worker_count(model: Path) -> None:
    with pytest.raises(InvalidInput):
        hash_directory(model, workers=0)


def test_is_ignored_path() -> None:
    assert is_ignored_path(".gitattributes")
    assert is_ignored_path(".git/objects/ab")
    assert not is_ignored_path(".gitattributes2")
    assert not is_ignored_path("sub/.git/HEAD")  # the defaults apply at the root only
    assert is_ignored_path("logs/x", ["logs"])
    assert not is_ignored_path("logs2", ["logs"])


def test_model_name_for(tmp_path: Path) -> None:
    assert model_name_for(tmp_path / "bert") == "bert"
    assert model_name_for(tmp_path / "bert" / "..") == tmp_path.name


# -- keys ---------------------------------------------------------------------------------------


def test_private_key_from_seed_is_deterministic_and_seed_specific() -> None:
    seed = bytes(range(32))
    first, second = private_key_from_seed(seed), private_key_from_seed(bytearray(seed))
    assert first.private_numbers() == second.private_numbers()
    assert isinstance(first.curve, ec.SECP256R1)
    other = private_key_from_seed(bytes(range(1, 33)))
    assert other.private_numbers().private_value != first.private_numbers().private_value
    assert private_key_from_seed(bytes(64)).private_numbers().private_value != 0
    bundle = Signer(first).sign("m", [FileDigest("f", "sha256", bytes(32))])
    assert Verifier(second.public_key()).verify(bundle).model_name == "m"


@pytest.mark.parametrize("seed", [b"", bytes(31)])
def test_private_key_from_seed_rejects_short_seeds(seed: bytes) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        private_key_from_seed(seed)
    assert excinfo.value.code == "signature.short_seed"


def test_private_key_from_seed_rejects_non_bytes() -> None:
    with pytest.raises(InvalidInput):
        private_key_from_seed("x" * 40)  # type: ignore[arg-type]


def _pem(key: Any, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> bytes:
    data: bytes = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    return data


def _public_pem(key: Any) -> bytes:
    data: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_load_keys_and_round_trip_on_each_curve(curve: ec.EllipticCurve) -> None:
    key = _key(curve)
    # TraditionalOpenSSL is what `openssl ecparam -genkey` writes ("EC PRIVATE KEY").
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        loaded = load_private_key_pem(_pem(key, fmt))
        assert loaded.private_numbers() == key.private_numbers()
    public = load_public_key_pem(_public_pem(key))
    bundle = Signer(key).sign("m", [FileDigest("f", "sha256", bytes(32))])
    assert Verifier(public).verify(bundle).key_fingerprint == key_fingerprint(public)


def test_load_encrypted_private_key() -> None:
    key = _key()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    assert load_private_key_pem(pem, b"pw").private_numbers() == key.private_numbers()
    for password in (None, b"wrong"):
        with pytest.raises(InvalidInput) as excinfo:
            load_private_key_pem(pem, password)
        assert excinfo.value.code == "signature.bad_key"


@pytest.mark.parametrize(
    "make",
    [
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ed25519.Ed25519PrivateKey.generate,
        lambda: ec.generate_private_key(ec.SECP256K1()),
    ],
    ids=["rsa", "ed25519", "secp256k1"],
)
def test_unsupported_keys_are_refused(make: Callable[[], Any]) -> None:
    key = make()
    with pytest.raises(InvalidInput) as private:
        load_private_key_pem(_pem(key))
    assert private.value.code == "signature.unsupported_key"
    with pytest.raises(InvalidInput) as public:
        load_public_key_pem(_public_pem(key))
    assert public.value.code == "signature.unsupported_key"
    with pytest.raises(InvalidInput) as signer:
        Signer(key)
    assert signer.value.code == "signature.unsupported_key"


def test_garbage_keys_are_refused() -> None:
    for load in (load_private_key_pem, load_public_key_pem):
        with pytest.raises(InvalidInput) as excinfo:
            load(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
        assert excinfo.value.code == "signature.bad_key"


def test_key_fingerprint_is_sha256_of_spki_der(key: ec.EllipticCurvePrivateKey) -> None:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key_fingerprint(key.public_key()) == "sha256:" + hashlib.sha256(der).hexdigest()
    assert Signer(key).key_fingerprint == key_fingerprint(key.public_key())
    assert Signer(key).public_key_pem == _public_pem(key)


# -- the bundle format --------------------------------------------------------------------------


def test_bundle_matches_the_reference_format(
    key: ec.EllipticCurvePrivateKey, model: Path, signed: bytes
) -> None:
    bundle = _bundle(signed)
    assert list(bundle) == ["mediaType", "verificationMaterial", "dsseEnvelope"]
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["verificationMaterial"] == {
        "publicKey": {"hint": _hint(key.public_key())},
        "tlogEntries": [],
    }
    envelope = bundle["dsseEnvelope"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    (signature,) = envelope["signatures"]
    assert signature["keyid"] == ""
    der = base64.b64decode(signature["sig"], validate=True)
    decode_dss_signature(der)  # DER ECDSA, as the reference writes
    payload = base64.b64decode(envelope["payload"], validate=True)
    key.public_key().verify(der, _pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))

    statement = json.loads(payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    serialization_args = statement["predicate"]["serialization"]
    assert serialization_args == {
        "method": "files",
        "hash_type": "sha256",
        "allow_symlinks": False,
        "ignore_paths": sorted(DEFAULT_IGNORE_PATHS),
    }
    resources = statement["predicate"]["resources"]
    expected = _digests(model)
    assert [r["name"] for r in resources] == [f.path for f in hash_directory(model)]
    for resource in resources:
        assert resource == {
            "name": resource["name"],
            "algorithm": "sha256",
            "digest": expected[resource["name"]],
        }
    (subject,) = statement["subject"]
    assert subject["name"] == "model"
    joined = b"".join(bytes.fromhex(r["digest"]) for r in resources)
    assert subject["digest"] == {"sha256": hashlib.sha256(joined).hexdigest()}


def test_p384_uses_sha384(tmp_path: Path) -> None:
    key = _key(ec.SECP384R1())
    signed = Signer(key).sign("m", [FileDigest("f", "sha256", bytes(32))])
    envelope = _bundle(signed)["dsseEnvelope"]
    key.public_key().verify(
        base64.b64decode(envelope["signatures"][0]["sig"]),
        _pae(PAYLOAD_TYPE, base64.b64decode(envelope["payload"])),
        ec.ECDSA(hashes.SHA384()),
    )


def test_sign_from_precomputed_digests_equals_sign_directory(
    key: ec.EllipticCurvePrivateKey, model: Path, verifier: Verifier
) -> None:
    files = [FileDigest(p, "sha256", bytes.fromhex(d)) for p, d in _digests(model).items()]
    signed = Signer(key).sign("model", files)
    assert _statement(signed) == _statement(Signer(key).sign_directory(model))
    manifest = verifier.verify_directory(signed, model)
    assert manifest.model_name == "model"
    assert len(manifest.files) == 7
    assert verifier.verify_files(signed, files) == manifest


def test_sign_directory_options(
    key: ec.EllipticCurvePrivateKey, model: Path, verifier: Verifier
) -> None:
    signed = Signer(key).sign_directory(model, model_name="bert-v2", ignore=["weights"])
    statement = _statement(signed)
    assert statement["subject"][0]["name"] == "bert-v2"
    assert "weights" in statement["predicate"]["serialization"]["ignore_paths"]
    manifest = verifier.verify_directory(signed, model)
    assert all(not f.path.startswith("weights/") for f in manifest.files)
    assert manifest.ignore_paths == tuple(sorted([*DEFAULT_IGNORE_PATHS, "weights"]))


def test_single_file_model(key: ec.EllipticCurvePrivateKey, tmp_path: Path) -> None:
    path = _write(tmp_path / "model.onnx", b"weights")
    signed = Signer(key).sign_directory(path)
    statement = _statement(signed)
    assert statement["subject"][0]["name"] == "model.onnx"
    assert [r["name"] for r in statement["predicate"]["resources"]] == ["."]
    verifier = Verifier(key.public_key())
    assert verifier.verify_directory(signed, path).files[0].path == "."
    path.write_bytes(b"weightz")
    with pytest.raises(SignatureInvalid) as excinfo:
        verifier.verify_directory(signed, path)
    assert _problems(excinfo) == ["changed: ."]
    with pytest.raises(SignatureInvalid) as as_directory:
        verifier.verify_directory(signed, tmp_path)
    assert "missing: ." in _problems(as_directory)


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ([], None),
        ([FileDigest("../x", "sha256", bytes(32))], "path escape: ../x"),
        ([FileDigest("/etc/passwd", "sha256", bytes(32))], "path escape: /etc/passwd"),
        ([FileDigest("a", "sha256", bytes(32))] * 2, "duplicate: a"),
        ([FileDigest("a", "sha512", bytes(64))], "unsupported algorithm 'sha512': a"),
        ([FileDigest("a", "sha256", bytes(31))], "bad digest: a"),
        ([FileDigest(".gitignore", "sha256", bytes(32))], "ignored path: .gitignore"),
        ([FileDigest(".git/HEAD", "sha256", bytes(32))], "ignored path: .git/HEAD"),
        (
            [FileDigest(".", "sha256", bytes(32)), FileDigest("a", "sha256", bytes(32))],
            "path escape: .",
        ),
    ],
)
def test_sign_refuses_bad_manifests(
    key: ec.EllipticCurvePrivateKey, files: list[FileDigest], problem: str | None
) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        Signer(key).sign("m", files)
    if problem is None:
        assert excinfo.value.code == "signature.empty"
    else:
        assert excinfo.value.code == "signature.bad_manifest"
        assert problem in excinfo.value.details["problems"]


@pytest.mark.parametrize("name", ["", "a\x00b"])
def test_sign_refuses_bad_model_names(key: ec.EllipticCurvePrivateKey, name: str) -> None:
    with pytest.raises(InvalidInput):
        Signer(key).sign(name, [FileDigest("a", "sha256", bytes(32))])


def test_sign_can_record_custom_ignore_paths(
    key: ec.EllipticCurvePrivateKey, verifier: Verifier
) -> None:
    signed = Signer(key).sign(
        "m", [FileDigest(".gitignore", "sha256", bytes(32))], ignore_paths=["model.sig"]
    )
    assert verifier.verify(signed).ignore_paths == ("model.sig",)


# -- verification: the model --------------------------------------------------------------------


def test_verify_directory_accepts_the_untouched_model(
    verifier: Verifier, model: Path, signed: bytes
) -> None:
    # git paths may change freely: they are ignored, as by the reference
    (model / ".git" / "HEAD").write_bytes(b"changed")
    manifest = verifier.verify_directory(signed, model)
    assert manifest.method == "files"
    assert manifest.hash_type == "sha256"
    assert manifest.key_fingerprint == verifier.key_fingerprint
    assert {f.path: f.digest.hex() for f in manifest.files} == _digests(model)


def _change_byte(model: Path) -> None:
    path = model / "weights" / "layer1.bin"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


MUTANTS: dict[str, tuple[Callable[[Path], object], list[str]]] = {
    "changed byte": (_change_byte, ["changed: weights/layer1.bin"]),
    "renamed": (
        lambda m: (m / "config.json").rename(m / "config.yaml"),
        ["missing: config.json", "extra: config.yaml"],
    ),
    "extra": (lambda m: _write(m / "evil.py", b"import os"), ["extra: evil.py"]),
    "removed": (lambda m: (m / "a" / "b").unlink(), ["missing: a/b"]),
    "empty added": (lambda m: _write(m / "weights" / "new", b""), ["extra: weights/new"]),
    "symlink outside": (
        lambda m: (m / "escape").symlink_to("/etc/passwd"),
        ["symlink: escape"],
    ),
    "file replaced by symlink": (
        lambda m: ((m / "a.b").unlink(), (m / "a.b").symlink_to("/etc/hostname")),
        ["symlink: a.b"],
    ),
    "directory replaced by symlink": (
        lambda m: (
            (m / "tokenizer").rename(m.parent / "elsewhere"),
            (m / "tokenizer").symlink_to(m.parent / "elsewhere"),
        ),
        ["missing: tokenizer/deep/vocab.txt", "symlink: tokenizer"],
    ),
    "fifo": (lambda m: os.mkfifo(m / "pipe"), ["special file: pipe"]),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_verify_directory_rejects_mutants(
    verifier: Verifier, model: Path, signed: bytes, mutant: str
) -> None:
    mutate, expected = MUTANTS[mutant]
    mutate(model)
    with pytest.raises(SignatureInvalid) as excinfo:
        verifier.verify_directory(signed, model)
    assert excinfo.value.code == "signature.invalid"
    assert isinstance(excinfo.value, IntegrityError)
    assert sorted(_problems(excinfo)) == sorted(expected)


def test_verify_directory_reports_every_problem_at_once(
    verifier: Verifier, model: Path, signed: bytes
) -> None:
    _change_byte(model)
    (model / "config.json").write_bytes(b"{}")
    (model / "a.b").unlink()
    _write(model / "evil.py", b"")
    (model / "weights" / "x").symlink_to("../../outside")
    with pytest.raises(SignatureInvalid) as excinfo:
        verifier.verify_directory(signed, model)
    assert _problems(excinfo) == [
        "missing: a.b",
        "changed: config.json",
        "extra: evil.py",
        "changed: weights/layer1.bin",
        "symlink: weights/x",
    ]
    assert excinfo.value.details["problems"] == _problems(excinfo)
    assert "(and 4 more)" in excinfo.value.message


def test_caller_ignore_cannot_hide_a_signed_file(
    verifier: Verifier, model: Path, signed: bytes
) -> None:
    with pytest.raises(SignatureInvalid) as excinfo:
        verifier.verify_directory(signed, model, ignore=["config.json"])
    assert _problems(excinfo) == ["missing: config.json"]
    _write(model / "model.sig", signed)
    assert verifier.verify_directory(signed, model, ignore=["model.sig"])


def test_signed_ignore_paths_are_honoured(
    key: ec.EllipticCurvePrivateKey, model: Path, verifier: Verifier
) -> None:
    signed = Signer(key).sign_directory(model, ignore=["model.sig", "logs"])
    _write(model / "model.sig", signed)
    _write(model / "logs" / "run.txt", b"noise")
    (model / "logs" / "link").symlink_to("/etc")  # inside an ignored directory: not entered
    assert verifier.verify_directory(signed, model)


def test_verify_directory_unusable_root(verifier: Verifier, tmp_path: Path, signed: bytes) -> None:
    with pytest.raises(InvalidInput) as missing:
        verifier.verify_directory(signed, tmp_path / "nope")
    assert missing.value.code == "signature.unreadable"
    (tmp_path / "alias").symlink_to(tmp_path / "model")
    with pytest.raises(InvalidInput) as link:
        verifier.verify_directory(signed, tmp_path / "alias")
    assert link.value.code == "signature.symlink"


def test_verify_files(verifier: Verifier, model: Path, signed: bytes) -> None:
    files = list(hash_directory(model))
    assert verifier.verify_files(signed, files).model_name == "model"
    changed = [FileDigest(f.path, f.algorithm, bytes(32)) if f.path == "a.b" else f for f in files]
    with pytest.raises(SignatureInvalid) as excinfo:
        verifier.verify_files(signed, [*changed[1:], FileDigest("new", "sha256", bytes(32))])
    assert _problems(excinfo) == ["missing: a/b", "changed: a.b", "extra: new"]
    with pytest.raises(SignatureInvalid) as algorithm:
        verifier.verify_files(
            signed,
            [FileDigest(f.path, "blake2b", bytes(64)) if f.path == "a.b" else f for f in files],
        )
    assert _problems(algorithm) == ["cannot compare: a.b (signed sha256, given blake2b)"]
    with pytest.raises(InvalidInput) as twice:
        verifier.verify_files(signed, [*files, files[0]])
    assert twice.value.code == "signature.duplicate_file"


def test_blake2b_manifests_verify(key: ec.EllipticCurvePrivateKey, model: Path) -> None:
    resources = [
        {
            "name": p,
            "algorithm": "blake2b",
            "digest": hashlib.blake2b((model / p).read_bytes()).hexdigest(),
        }
        for p in _digests(model)
    ]
    bundle = _sign_raw(
        key,
        _encode(
            _resources_statement(
                resources, hash_type="blake2b", ignore_paths=list(DEFAULT_IGNORE_PATHS)
            )
        ),
    )
    manifest = Verifier(key.public_key()).verify_directory(bundle, model)
    assert manifest.hash_type == "blake2b"
    _change_byte(model)
    with pytest.raises(SignatureInvalid) as excinfo:
        Verifier(key.public_key()).verify_directory(bundle, model)
    assert _problems(excinfo) == ["changed: weights/layer1.bin"]


# -- verification: the bundle -------------------------------------------------------------------


def _edit_bundle(signed: bytes, edit: Callable[[dict[str, Any]], object]) -> bytes:
    document = _bundle(signed)
    edit(document)
    return json.dumps(document).encode()


def _flip_sig(document: dict[str, Any]) -> None:
    entry = document["dsseEnvelope"]["signatures"][0]
    sig = bytearray(base64.b64decode(entry["sig"]))
    sig[-1] ^= 1
    entry["sig"] = base64.b64encode(bytes(sig)).decode()


def _flip_payload(document: dict[str, Any]) -> None:
    envelope = document["dsseEnvelope"]
    payload = bytearray(base64.b64decode(envelope["payload"]))
    payload[payload.index(b"sha256") + 12] ^= 1  # inside the first digest
    envelope["payload"] = base64.b64encode(bytes(payload)).decode()


BUNDLE_MUTANTS: dict[str, tuple[Callable[[dict[str, Any]], object], list[str]]] = {
    "corrupted signature": (_flip_sig, ["signature does not verify with the given key"]),
    "flipped payload byte": (_flip_payload, ["signature does not verify with the given key"]),
    "changed payloadType": (
        lambda d: d["dsseEnvelope"].update(payloadType="application/json"),
        ["wrong payloadType: 'application/json'", "signature does not verify with the given key"],
    ),
    "two signatures": (
        lambda d: d["dsseEnvelope"]["signatures"].append(d["dsseEnvelope"]["signatures"][0]),
        ["expected exactly one signature, found 2"],
    ),
    "no signatures": (
        lambda d: d["dsseEnvelope"].update(signatures=[]),
        ["expected exactly one signature, found 0"],
    ),
    "signatures not a list": (
        lambda d: d["dsseEnvelope"].update(signatures={"sig": "x"}),
        ["signatures is missing or not a list"],
    ),
    "signature entry not an object": (
        lambda d: d["dsseEnvelope"].update(signatures=["x"]),
        ["signature entry is not an object"],
    ),
    "wrong mediaType": (
        lambda d: d.update(mediaType="application/vnd.dev.sigstore.bundle.v0.2+json"),
        ["wrong mediaType: 'application/vnd.dev.sigstore.bundle.v0.2+json'"],
    ),
    "bad base64 signature": (
        lambda d: d["dsseEnvelope"]["signatures"][0].update(sig="not base64!"),
        ["signature is not valid base64"],
    ),
    "bad base64 payload": (
        lambda d: d["dsseEnvelope"].update(payload="***"),
        ["payload is not valid base64"],
    ),
    "payload not a string": (
        lambda d: d["dsseEnvelope"].update(payload=5),
        ["payload is missing or not a string"],
    ),
    "key hint of another key": (
        lambda d: d["verificationMaterial"]["publicKey"].update(hint="00" * 32),
        [f"key hint mismatch: bundle names key {'00' * 32}, verifying with {{hint}}"],
    ),
    "no verificationMaterial": (
        lambda d: d.pop("verificationMaterial"),
        ["no verificationMaterial"],
    ),
    "publicKey not an object": (
        lambda d: d["verificationMaterial"].update(publicKey="x"),
        ["verificationMaterial.publicKey is not an object"],
    ),
    "no dsseEnvelope": (lambda d: d.pop("dsseEnvelope"), ["no dsseEnvelope"]),
}


@pytest.mark.parametrize("mutant", sorted(BUNDLE_MUTANTS))
def test_verify_rejects_bundle_mutants(
    key: ec.EllipticCurvePrivateKey, verifier: Verifier, model: Path, signed: bytes, mutant: str
) -> None:
    edit, expected = BUNDLE_MUTANTS[mutant]
    bundle = _edit_bundle(signed, edit)
    hint = _hint(key.public_key())
    for check in (
        lambda: verifier.verify(bundle),
        lambda: verifier.verify_directory(bundle, model),
    ):
        with pytest.raises(SignatureInvalid) as excinfo:
            check()
        assert excinfo.value.code == "signature.invalid"
        assert _problems(excinfo) == [p.format(hint=hint) for p in expected]


def test_missing_hint_is_allowed_but_the_signature_still_decides(
    key: ec.EllipticCurvePrivateKey, verifier: Verifier, model: Path, signed: bytes
) -> None:
    """Pre-1.1 reference bundles carry no hint; the signature check is what counts."""
    bundle = _edit_bundle(signed, lambda d: d["verificationMaterial"]["publicKey"].pop("hint"))
    assert verifier.verify_directory(bundle, model)
    with pytest.raises(SignatureInvalid) as excinfo:
        Verifier(_key().public_key()).verify(bundle)
    assert _problems(excinfo) == ["signature does not verify with the given key"]


def test_wrong_public_key(signed: bytes) -> None:
    other = _key()
    with pytest.raises(SignatureInvalid) as excinfo:
        Verifier(other.public_key()).verify(signed)
    problems = _problems(excinfo)
    assert problems[0].startswith("key hint mismatch:")
    assert problems[1] == "signature does not verify with the given key"
    with pytest.raises(SignatureInvalid):
        Verifier(_key(ec.SECP384R1()).public_key()).verify(signed)


def test_certificate_bundles_are_unsupported(verifier: Verifier, signed: bytes) -> None:
    bundle = _edit_bundle(
        signed,
        lambda d: d.update(verificationMaterial={"certificate": {"rawBytes": "AA=="}}),
    )
    with pytest.raises(SignatureInvalid) as excinfo:
        verifier.verify(bundle)
    assert excinfo.value.code == "signature.unsupported"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b"\xff\xfe",
        b'{"mediaType": 1, "mediaType": 2}',
        b'{"x": NaN}',
        b"[" * 100_000,
    ],
    ids=["empty", "text", "array", "binary", "duplicate keys", "nan", "deep"],
)
def test_malformed_bundles(verifier: Verifier, data: bytes) -> None:
    with pytest.raises(SignatureInvalid) as excinfo:
        verifier.verify(data)
    assert excinfo.value.code == "signature.malformed"


def test_non_bytes_bundle(verifier: Verifier) -> None:
    with pytest.raises(SignatureInvalid) as excinfo:
        verifier.verify("{}")  # type: ignore[arg-type]
    assert excinfo.value.code == "signature.malformed"


# -- verification: the statement (validly signed, crafted content) ------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "/etc/passwd",
        "a/../../b",
        "..",
        "./a",
        "a//b",
        "a/",
        "",
        "a\\..\\b",
        "a\x00b",
        "/",
    ],
)
def test_path_escapes_are_rejected_before_touching_the_filesystem(
    key: ec.EllipticCurvePrivateKey, tmp_path: Path, name: str
) -> None:
    bundle = _sign_raw(key, _encode(_resources_statement([_resource("ok"), _resource(name)])))
    verifier = Verifier(key.public_key())
    # A root that does not exist proves no path was used: InvalidInput would mean we looked.
    with pytest.raises(SignatureInvalid) as excinfo:
        verifier.verify_directory(bundle, tmp_path / "does-not-exist")
    problems = _problems(excinfo)
    assert len(problems) == 1
    assert problems[0].startswith("path escape: ")
    with pytest.raises(SignatureInvalid):
        verifier.verify_files(bundle, [])


def test_dot_is_only_valid_as_the_single_resource(key: ec.EllipticCurvePrivateKey) -> None:
    verifier = Verifier(key.public_key())
    alone = _sign_raw(key, _encode(_resources_statement([_resource(".")])))
    assert verifier.verify(alone).files[0].path == "."
    with_other = _sign_raw(key, _encode(_resources_statement([_resource("."), _resource("a")])))
    with pytest.raises(SignatureInvalid) as excinfo:
        verifier.verify(with_other)
    assert _problems(excinfo) == ["path escape: ."]


def test_duplicate_resources_are_rejected(key: ec.EllipticCurvePrivateKey, model: Path) -> None:
    resource = {
        "name": "config.json",
        "algorithm": "sha256",
        "digest": _digests(model)["config.json"],
    }
    bundle = _sign_raw(key, _encode(_resources_statement([resource, resource])))
    with pytest.raises(SignatureInvalid) as excinfo:
        Verifier(key.public_key()).verify_directory(bundle, model)
    assert _problems(excinfo) == ["duplicate resource: config.json"]


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def edit(statement: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = statement
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value

    return edit


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(statement: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = statement
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        del target[last]

    return edit


STATEMENT_MUTANTS: dict[str, tuple[Callable[[dict[str, Any]], None], str, str]] = {
    "not in-toto v1": (
        _set("_type", "https://in-toto.io/Statement/v0.1"),
        "signature.invalid",
        "statement is not in-toto v1: _type='https://in-toto.io/Statement/v0.1'",
    ),
    "predicateType mismatch": (
        _set("predicateType", "https://example.com/other"),
        "signature.invalid",
        "predicateType mismatch: 'https://example.com/other'",
    ),
    "pre-1.0 predicate": (
        _set("predicateType", "https://model_signing/Digests/v0.1"),
        "signature.unsupported",
        "predicateType https://model_signing/Digests/v0.1 (pre-1.0, no subject binding) "
        "is not supported; re-sign the model",
    ),
    "shards": (
        _set("predicate.serialization.method", "shards"),
        "signature.unsupported",
        "serialization method 'shards' is not supported (model_signing 1.1.1 records "
        "shard_size as a float and cannot verify it either); sign with 'files'",
    ),
    "unknown method": (
        _set("predicate.serialization.method", "tensors"),
        "signature.unsupported",
        "unsupported serialization method 'tensors'",
    ),
    "blake3": (
        _set("predicate.serialization.hash_type", "blake3"),
        "signature.unsupported",
        "unsupported hash_type 'blake3'",
    ),
    "subject digest": (
        _set("subject.0.digest.sha256", "00" * 32),
        "signature.invalid",
        "subject digest {zero} does not match the resources ({subject})",
    ),
    "two subjects": (
        lambda s: s["subject"].append(s["subject"][0]),
        "signature.invalid",
        "statement must have exactly one subject",
    ),
    "subject without name": (
        _drop("subject.0.name"),
        "signature.invalid",
        "subject has no name",
    ),
    "subject without sha256": (
        _set("subject.0.digest", {"sha512": "00"}),
        "signature.invalid",
        "subject has no sha256 digest",
    ),
    "resource algorithm": (
        _set("predicate.resources.0.algorithm", "sha512"),
        "signature.invalid",
        "resource a uses 'sha512', not the hash_type 'sha256'",
    ),
    "uppercase digest": (
        _set("predicate.resources.0.digest", hashlib.sha256(b"x").hexdigest().upper()),
        "signature.invalid",
        "bad digest: a",
    ),
    "short digest": (
        _set("predicate.resources.0.digest", "abcd"),
        "signature.invalid",
        "bad digest: a",
    ),
    "resource without name": (
        _drop("predicate.resources.0.name"),
        "signature.invalid",
        "resource without a name",
    ),
    "resources not a list": (
        _set("predicate.resources", {}),
        "signature.invalid",
        "predicate.resources is missing or not a list",
    ),
    "allow_symlinks not bool": (
        _set("predicate.serialization.allow_symlinks", "false"),
        "signature.invalid",
        "serialization.allow_symlinks is missing or not a boolean",
    ),
    "ignore path escape": (
        _set("predicate.serialization.ignore_paths", ["../outside"]),
        "signature.invalid",
        "bad ignore path: ../outside",
    ),
    "ignore everything": (
        _set("predicate.serialization.ignore_paths", ["."]),
        "signature.invalid",
        "bad ignore path: .",
    ),
    "ignore_paths not a list": (
        _set("predicate.serialization.ignore_paths", "model.sig"),
        "signature.invalid",
        "serialization.ignore_paths is not a list",
    ),
    "serialization missing": (
        _drop("predicate.serialization"),
        "signature.invalid",
        "predicate.serialization is missing or not an object",
    ),
    "predicate missing": (
        _drop("predicate"),
        "signature.invalid",
        "predicate is missing or not an object",
    ),
}


@pytest.mark.parametrize("mutant", sorted(STATEMENT_MUTANTS))
def test_statement_mutants(key: ec.EllipticCurvePrivateKey, mutant: str) -> None:
    edit, code, problem = STATEMENT_MUTANTS[mutant]
    statement = _resources_statement([_resource("a"), _resource("b", b"y")])
    subject = statement["subject"][0]["digest"]["sha256"]
    edit(statement)
    with pytest.raises(SignatureInvalid) as excinfo:
        Verifier(key.public_key()).verify(_sign_raw(key, _encode(statement)))
    assert excinfo.value.code == code
    assert problem.format(zero="00" * 32, subject=subject) in _problems(excinfo)


@pytest.mark.parametrize(
    "payload", [b"not json", b"[1]", b'{"_type": 1, "_type": 2}'], ids=["text", "list", "dup"]
)
def test_signed_but_malformed_statements(key: ec.EllipticCurvePrivateKey, payload: bytes) -> None:
    with pytest.raises(SignatureInvalid) as excinfo:
        Verifier(key.public_key()).verify(_sign_raw(key, payload))
    assert excinfo.value.code == "signature.malformed"


def test_unknown_predicate_fields_are_ignored(key: ec.EllipticCurvePrivateKey) -> None:
    """The v1.0 predicate says verifiers ignore fields they do not know."""
    statement = _resources_statement([_resource("a")])
    statement["predicate"]["model_card"] = {"x": 1}
    assert Verifier(key.public_key()).verify(_sign_raw(key, _encode(statement)))


def test_signature_invalid_defaults() -> None:
    error = SignatureInvalid("boom")
    assert error.code == "signature.invalid"
    assert error.problems == ["boom"]
    assert error.to_dict()["details"] == {"problems": ["boom"]}
    assert isinstance(error, IntegrityError)
    assert error.kind == "integrity"


def test_signature_invalid_accepts_base_class_arguments() -> None:
    error = SignatureInvalid("no key verifies", details={"problems": ["a", "b"], "keys": 2})
    assert error.problems == ["a", "b"]
    assert error.details["keys"] == 2
    assert SignatureInvalid("x", details={"keys": 1}).problems == ["x"]
    assert SignatureInvalid("x", problems=["p"], details={"problems": ["q"]}).problems == ["p"]
    assert SignatureInvalid("x", code="signature.unsupported").code == "signature.unsupported"
