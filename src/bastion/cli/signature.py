"""`bastion signature sign|verify|keygen`: standalone OpenSSF model signing with EC keys.

Works on any model directory (or single-file model) with no Bastion home, so operators can
sign before upload and verify after download. Bundles are interchangeable with
`model_signing sign key` / `model_signing verify key` (model-signing 1.1.1).

Exit codes: 0 success; 1 the signature or the model does not check out (every problem is
printed); 2 unusable input (unreadable or unsupported key, missing directory, symlinks or
special files when signing, refusing to overwrite a key).

Failures exit through `sys.exit` rather than `typer.Exit`: `bastion.cli.main.main()` runs the
app with `standalone_mode=False`, where click returns an explicit `Exit`'s code instead of
raising it, so the code would be lost; `SystemExit` passes through unchanged.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.cli.common import exit_unusable
from bastion.core.errors import BastionError, InvalidInput
from bastion.supplychain.signing import (
    DEFAULT_IGNORE_PATHS,
    SignatureInvalid,
    Signer,
    Verifier,
    hash_directory,
    key_fingerprint,
    load_private_key_pem,
    load_public_key_pem,
    model_name_for,
)

EXIT_INVALID = 1

IgnoreOption = Annotated[
    list[str] | None,
    typer.Option("--ignore", help="A path inside the model to leave out (repeatable)."),
]


def register(app: typer.Typer) -> None:
    """Add the `signature` command group to `app`."""
    group = typer.Typer(
        help="Sign and verify models (OpenSSF model signing, EC keys, offline).",
        no_args_is_help=True,
    )
    group.command("sign")(sign)
    group.command("verify")(verify)
    group.command("keygen")(keygen)
    app.add_typer(group, name="signature")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise InvalidInput(
            f"cannot read {what} {path}: {error.strerror}", code="signature.unreadable"
        ) from error


def _inside(path: Path, root: Path) -> list[str]:
    """`path` relative to `root` when the signature file lives inside the model, else []."""
    try:
        relative = path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return []
    return [relative.as_posix()] if relative.parts else []


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file and rename so a crash never leaves a truncated signature."""
    directory = path.parent
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def sign(
    directory: Annotated[Path, typer.Argument(help="Model directory or single model file.")],
    key: Annotated[Path, typer.Option("--key", help="EC private key (PEM).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the signature bundle.")],
    name: Annotated[
        str | None, typer.Option("--name", help="Model name (default: the directory name).")
    ] = None,
    ignore: IgnoreOption = None,
) -> None:
    """Sign a model: hash every file and write a Sigstore bundle (model-signing format).

    The git paths (.git, .gitattributes, .github, .gitignore) and the signature file itself,
    if it lies inside the model, are left out, as the reference tool does.
    """
    try:
        signer = Signer(load_private_key_pem(_read(key, "private key")))
        ignored = [*DEFAULT_IGNORE_PATHS, *(ignore or []), *_inside(out, directory)]
        files = hash_directory(directory, ignore=ignored)
        model_name = name or model_name_for(directory)
        bundle = signer.sign(model_name, files, ignore_paths=ignored)
    except BastionError as error:
        exit_unusable(f"[{error.code}] {error.message}")
    try:
        _write_atomic(out, bundle)
    except OSError as error:
        exit_unusable(f"cannot write {out}: {error.strerror}")
    typer.echo(
        f"Signed {model_name}: {len(files)} files, key {signer.key_fingerprint}, wrote {out}"
    )


def verify(
    directory: Annotated[Path, typer.Argument(help="Model directory or single model file.")],
    signature: Annotated[Path, typer.Option("--signature", help="The signature bundle.")],
    pubkey: Annotated[Path, typer.Option("--pubkey", help="EC public key (SPKI PEM).")],
    ignore: IgnoreOption = None,
) -> None:
    """Verify a model against its signature; print every problem found when it fails."""
    try:
        verifier = Verifier(load_public_key_pem(_read(pubkey, "public key")))
        bundle = _read(signature, "signature")
    except BastionError as error:
        exit_unusable(f"[{error.code}] {error.message}")
    ignored = [*(ignore or []), *_inside(signature, directory)]
    try:
        manifest = verifier.verify_directory(bundle, directory, ignore=ignored)
    except SignatureInvalid as error:
        typer.echo(f"INVALID [{error.code}]: {error.message}", err=True)
        for problem in error.problems:
            typer.echo(f"  {problem}", err=True)
        sys.exit(EXIT_INVALID)
    except BastionError as error:
        exit_unusable(f"[{error.code}] {error.message}")
    typer.echo(
        f"Verified {manifest.model_name}: {len(manifest.files)} files, "
        f"signed by key {manifest.key_fingerprint}"
    )


def keygen(
    out: Annotated[Path, typer.Option("--out", help="Private key file to create (PEM).")],
) -> None:
    """Create a P-256 key pair: OUT (PKCS#8 PEM, mode 0600) and OUT with suffix .pub."""
    public_path = out.with_suffix(".pub")
    if public_path == out:
        exit_unusable(f"{out} ends in .pub; name the private key e.g. key.pem")
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for path in (out, public_path):
        if os.path.lexists(path):
            exit_unusable(f"{path} already exists; refusing to overwrite")
    written: list[Path] = []
    try:
        for path, data, mode in ((out, private_pem, 0o600), (public_path, public_pem, 0o644)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            written.append(path)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(path, mode)  # exact modes whatever the umask
    except OSError as error:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        exit_unusable(f"cannot write {error.filename}: {error.strerror}")
    typer.echo(
        f"Wrote {out} (private, 0600) and {public_path}; "
        f"fingerprint {key_fingerprint(key.public_key())}"
    )
