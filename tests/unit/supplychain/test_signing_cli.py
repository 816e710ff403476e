"""`bastion signature keygen|sign|verify`: exit codes, messages, and interop with the
reference CLI. No Bastion home is needed; every file lives under `tmp_path`."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from typer.testing import CliRunner, Result

from bastion.cli.main import app
from bastion.supplychain.signing import key_fingerprint, load_public_key_pem

BIN = Path(sys.executable).parent
runner = CliRunner()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _model(root: Path) -> Path:
    _write(root / "weights" / "w.bin", os.urandom(50_000))
    _write(root / "config.json", b"{}")
    _write(root / "a" / "b", b"ab")
    _write(root / ".gitignore", b"*.pyc\n")
    return root


def _run(*args: str | Path) -> Result:
    return runner.invoke(app, ["signature", *map(str, args)])


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return _model(tmp_path / "bert")


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "signing.pem"
    path.parent.mkdir()
    result = _run("keygen", "--out", path)
    assert result.exit_code == 0, result.output
    return path


# -- keygen -------------------------------------------------------------------------------------


def test_keygen_writes_a_p256_pair(tmp_path: Path) -> None:
    out = tmp_path / "k.pem"
    result = _run("keygen", "--out", out)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    private = serialization.load_pem_private_key(out.read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert isinstance(private.curve, ec.SECP256R1)
    assert out.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    public = load_public_key_pem((tmp_path / "k.pub").read_bytes())
    assert public.public_numbers() == private.public_key().public_numbers()
    assert key_fingerprint(public) in result.stdout


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    out = _write(tmp_path / "k.pem", b"precious")
    result = _run("keygen", "--out", out)
    assert result.exit_code == 2
    assert "refusing to overwrite" in result.stderr
    assert out.read_bytes() == b"precious"
    assert not (tmp_path / "k.pub").exists()


def test_keygen_refuses_when_the_public_key_exists(tmp_path: Path) -> None:
    _write(tmp_path / "k.pub", b"old")
    result = _run("keygen", "--out", tmp_path / "k.pem")
    assert result.exit_code == 2
    assert not (tmp_path / "k.pem").exists()
    assert (tmp_path / "k.pub").read_bytes() == b"old"


def test_keygen_refuses_a_pub_name(tmp_path: Path) -> None:
    result = _run("keygen", "--out", tmp_path / "k.pub")
    assert result.exit_code == 2
    assert not (tmp_path / "k.pub").exists()


def test_keygen_unwritable_directory(tmp_path: Path) -> None:
    result = _run("keygen", "--out", tmp_path / "missing" / "k.pem")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot write")


# -- sign and verify ----------------------------------------------------------------------------


def test_sign_and_verify_with_the_signature_inside_the_model(model: Path, key: Path) -> None:
    signature = model / "model.sig"
    signed = _run("sign", model, "--key", key, "--out", signature)
    assert signed.exit_code == 0, signed.output
    assert "Signed bert: 3 files" in signed.stdout
    verified = _run("verify", model, "--signature", signature, "--pubkey", key.with_suffix(".pub"))
    assert verified.exit_code == 0, verified.output
    fingerprint = key_fingerprint(load_public_key_pem(key.with_suffix(".pub").read_bytes()))
    assert verified.stdout.strip() == f"Verified bert: 3 files, signed by key {fingerprint}"
    # re-signing over an existing signature file inside the model works and still verifies
    assert _run("sign", model, "--key", key, "--out", signature).exit_code == 0
    verified = _run("verify", model, "--signature", signature, "--pubkey", key.with_suffix(".pub"))
    assert verified.exit_code == 0, verified.output


def test_sign_with_a_name_and_an_ignored_path(model: Path, key: Path, tmp_path: Path) -> None:
    signature = tmp_path / "out.sig"
    _write(model / "notes.txt", b"unsigned")
    result = _run(
        "sign",
        model,
        "--key",
        key,
        "--out",
        signature,
        "--name",
        "bert-v2",
        "--ignore",
        "notes.txt",
    )
    assert result.exit_code == 0, result.output
    (model / "notes.txt").write_bytes(b"changed freely")
    verified = _run("verify", model, "--signature", signature, "--pubkey", key.with_suffix(".pub"))
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith("Verified bert-v2: 3 files")


def test_sign_and_verify_a_single_file(tmp_path: Path, key: Path) -> None:
    path = _write(tmp_path / "model.onnx", b"onnx")
    signature = tmp_path / "model.sig"
    assert _run("sign", path, "--key", key, "--out", signature).exit_code == 0
    result = _run("verify", path, "--signature", signature, "--pubkey", key.with_suffix(".pub"))
    assert result.exit_code == 0, result.output
    assert "Verified model.onnx: 1 files" in result.stdout


def test_verify_prints_every_problem(model: Path, key: Path, tmp_path: Path) -> None:
    signature = tmp_path / "model.sig"
    assert _run("sign", model, "--key", key, "--out", signature).exit_code == 0
    (model / "config.json").write_bytes(b'{"x": 1}')
    (model / "a" / "b").unlink()
    _write(model / "evil.py", b"")
    (model / "link").symlink_to("/etc/passwd")
    result = _run("verify", model, "--signature", signature, "--pubkey", key.with_suffix(".pub"))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("INVALID [signature.invalid]: model does not match its signature")
    assert [line.strip() for line in lines[1:]] == [
        "missing: a/b",
        "changed: config.json",
        "extra: evil.py",
        "symlink: link",
    ]


def test_verify_with_the_wrong_key(model: Path, key: Path, tmp_path: Path) -> None:
    signature = tmp_path / "model.sig"
    assert _run("sign", model, "--key", key, "--out", signature).exit_code == 0
    assert _run("keygen", "--out", tmp_path / "other.pem").exit_code == 0
    result = _run("verify", model, "--signature", signature, "--pubkey", tmp_path / "other.pub")
    assert result.exit_code == 1
    assert "key hint mismatch" in result.stderr
    assert "signature does not verify with the given key" in result.stderr


def test_verify_a_signature_that_is_not_a_bundle(model: Path, key: Path, tmp_path: Path) -> None:
    signature = _write(tmp_path / "model.sig", b"<html>")
    result = _run("verify", model, "--signature", signature, "--pubkey", key.with_suffix(".pub"))
    assert result.exit_code == 1
    assert "signature.malformed" in result.stderr


def _rsa_pem(tmp_path: Path) -> Path:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _write(
        tmp_path / "rsa.pem",
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("missing key", "signature.unreadable"),
        ("garbage key", "signature.bad_key"),
        ("rsa key", "signature.unsupported_key"),
        ("missing directory", "signature.unreadable"),
        ("symlink in directory", "signature.symlink"),
        ("unwritable output", None),
    ],
)
def test_sign_unusable_input_exits_2_with_one_line(
    model: Path, key: Path, tmp_path: Path, case: str, code: str | None
) -> None:
    directory, key_path, out = model, key, tmp_path / "model.sig"
    if case == "missing key":
        key_path = tmp_path / "nope.pem"
    elif case == "garbage key":
        key_path = _write(tmp_path / "garbage.pem", b"not a key")
    elif case == "rsa key":
        key_path = _rsa_pem(tmp_path)
    elif case == "missing directory":
        directory = tmp_path / "nope"
    elif case == "symlink in directory":
        (model / "weights" / "link").symlink_to("/etc/passwd")
    else:
        out = tmp_path / "no-such-dir" / "model.sig"
    result = _run("sign", directory, "--key", key_path, "--out", out)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ")
    if code:
        assert f"[{code}]" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("case", ["missing pubkey", "garbage pubkey", "missing signature", "dir"])
def test_verify_unusable_input_exits_2(model: Path, key: Path, tmp_path: Path, case: str) -> None:
    signature = tmp_path / "model.sig"
    assert _run("sign", model, "--key", key, "--out", signature).exit_code == 0
    directory, pubkey = model, key.with_suffix(".pub")
    if case == "missing pubkey":
        pubkey = tmp_path / "nope.pub"
    elif case == "garbage pubkey":
        pubkey = _write(tmp_path / "garbage.pub", b"nope")
    elif case == "missing signature":
        signature = tmp_path / "nope.sig"
    else:
        directory = tmp_path / "nope"
    result = _run("verify", directory, "--signature", signature, "--pubkey", pubkey)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: [signature.")


def test_signature_group_help() -> None:
    result = runner.invoke(app, ["signature", "--help"])
    assert result.exit_code == 0
    for command in ("sign", "verify", "keygen"):
        assert command in result.stdout


# -- interop with the reference CLI and the installed `bastion` script --------------------------


def test_reference_cli_and_bastion_cli_interoperate(model: Path, key: Path) -> None:
    pubkey = key.with_suffix(".pub")
    ours = model / "bastion.sig"
    assert _run("sign", model, "--key", key, "--out", ours).exit_code == 0
    reference = subprocess.run(
        [
            BIN / "model_signing",
            "verify",
            "key",
            model,
            "--signature",
            ours,
            "--public_key",
            pubkey,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert reference.returncode == 0, reference.stderr
    ours.unlink()

    theirs = model / "model.sig"
    signed = subprocess.run(
        [BIN / "model_signing", "sign", "key", model, "--private_key", key, "--signature", theirs],
        capture_output=True,
        text=True,
        check=False,
    )
    assert signed.returncode == 0, signed.stderr
    result = _run("verify", model, "--signature", theirs, "--pubkey", pubkey)
    assert result.exit_code == 0, result.output


def test_installed_bastion_script(tmp_path: Path, model: Path) -> None:
    def bastion(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BIN / "bastion", "signature", *map(str, args)],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
            env={**os.environ, "BASTION_HOME": str(tmp_path / "no-home")},
        )

    key = tmp_path / "key.pem"
    assert bastion("keygen", "--out", key).returncode == 0
    signature = model / "model.sig"
    signed = bastion("sign", model, "--key", key, "--out", signature)
    assert signed.returncode == 0, signed.stderr
    verified = bastion("verify", model, "--signature", signature, "--pubkey", tmp_path / "key.pub")
    assert verified.returncode == 0, verified.stderr
    assert "Verified bert: 3 files" in verified.stdout
    (model / "config.json").write_bytes(b"tampered")
    failed = bastion("verify", model, "--signature", signature, "--pubkey", tmp_path / "key.pub")
    assert failed.returncode == 1
    assert "changed: config.json" in failed.stderr
    unusable = bastion("verify", model, "--signature", signature, "--pubkey", tmp_path / "x.pub")
    assert unusable.returncode == 2
    assert not (tmp_path / "no-home").exists()
