"""`bastion receipt verify|get|pubkey`: prediction receipts and their proofs.

`verify` works offline with no Bastion home: it checks a proof bundle (from `bastion receipt
get` or `GET /v1/receipts/{id}`) against the prediction log's verifier key, which the verifier
obtained out of band (`bastion receipt pubkey`); the key inside the bundle is never trusted.
Exit codes of `verify`: 0 valid; 1 the bundle does not check out (the reason and its code,
e.g. `receipt.leaf_mismatch`, on stderr); 2 unusable input (unreadable file, not JSON, a
malformed key).

`get` and `pubkey` open the local home with `BASTION_TOKEN` like the other commands; their
errors map to the usual exit codes (404 → 4, pending → 5, ...).

Failures of `verify` exit through `sys.exit` rather than `typer.Exit` (see `cli/signature.py`:
`main()` runs click without standalone mode, which would lose an explicit exit code).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli.common import (
    JsonFlag,
    TokenFile,
    caller_of,
    exit_unusable,
    open_platform,
    print_json,
)
from bastion.core.errors import BastionError, ConfigError
from bastion.ledger.errors import MalformedNoteError
from bastion.ledger.note import NoteVerifier
from bastion.serving.receipts import verify_receipt_bundle

EXIT_INVALID = 1


def register(app: typer.Typer) -> None:
    """Add the `receipt` command group to `app`."""
    group = typer.Typer(
        help="Prediction receipts: fetch a proof, verify it offline, the log's key.",
        no_args_is_help=True,
    )
    group.command("verify")(verify)
    group.command("get")(get)
    group.command("pubkey")(pubkey)
    app.add_typer(group, name="receipt")


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        exit_unusable(f"cannot read {what} {path}: {reason}")


def verify(
    bundle_path: Annotated[Path, typer.Argument(metavar="FILE", help="The proof bundle (JSON).")],
    pubkey: Annotated[
        Path, typer.Option("--pubkey", help="The prediction log's verifier key file.")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Verify a receipt's proof bundle offline: receipt, inclusion proof, signed checkpoint."""
    vkey = _read_text(pubkey, "public key").strip()
    try:
        NoteVerifier.from_vkey(vkey)
    except MalformedNoteError as error:
        exit_unusable(f"{pubkey} is not a verifier key: {error.message}")
    try:
        document: Any = json.loads(_read_text(bundle_path, "bundle"))
    except json.JSONDecodeError as error:
        exit_unusable(f"{bundle_path} is not JSON: {error.msg} (line {error.lineno})")
    try:
        verified = verify_receipt_bundle(document, vkey)
    except BastionError as error:
        typer.echo(f"INVALID [{error.code}]: {error.message}", err=True)
        for key, value in error.details.items():
            typer.echo(f"  {key}: {value}", err=True)
        sys.exit(EXIT_INVALID)
    receipt = verified.receipt
    if as_json:
        print_json(
            {
                "status": "valid",
                "request_id": receipt.request_id,
                "endpoint": receipt.endpoint,
                "model": receipt.model,
                "version": receipt.version,
                "leaf_index": verified.leaf_index,
                "tree_size": verified.tree_size,
                "root": verified.root.hex(),
                "origin": verified.origin,
            }
        )
        return
    typer.echo(
        f"Receipt {receipt.request_id} verified: leaf {verified.leaf_index} of "
        f"{verified.tree_size} in {verified.origin} (endpoint {receipt.endpoint}, "
        f"{receipt.model} v{receipt.version}, {receipt.time:%Y-%m-%d %H:%M:%S} UTC)"
    )


def get(
    request_id: Annotated[str, typer.Argument(help="The prediction's request id.")],
    token_file: TokenFile = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Write the bundle here instead of stdout.")
    ] = None,
) -> None:
    """Fetch a receipt's proof bundle (exit 5 while it waits to be logged)."""
    with open_platform() as platform:
        bundle = platform.receipts.proof(caller_of(platform, token_file), request_id)
    text = json.dumps(bundle, indent=2, sort_keys=True) + "\n"
    if out_path is None:
        sys.stdout.write(text)
        return
    try:
        out_path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot write {out_path}: {error.strerror}") from error
    typer.echo(
        f"Wrote {out_path}. Verify with: bastion receipt verify {out_path} "
        "--pubkey <key file from `bastion receipt pubkey`>",
        err=True,
    )


def pubkey(token_file: TokenFile = None) -> None:
    """Print the prediction log's verifier key (signed-note format)."""
    with open_platform() as platform:
        platform.receipts.require_read(caller_of(platform, token_file))
        print(platform.receipts.verifier_key())
