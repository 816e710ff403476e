"""`bastion …` commands."""

from __future__ import annotations

import copy
import json
import logging.config
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

import bastion
from bastion.cli import demo as demo_cli
from bastion.cli import deploy as deploy_cli
from bastion.cli import drift as drift_cli
from bastion.cli import incidents as incidents_cli
from bastion.cli import monitoring as monitoring_cli
from bastion.cli import policy as policy_cli
from bastion.cli import privacy as privacy_cli
from bastion.cli import receipts as receipts_cli
from bastion.cli import registry as registry_cli
from bastion.cli import scan as scan_cli
from bastion.cli import signature as signature_cli
from bastion.cli.common import (
    JsonFlag,
    TokenFile,
    caller_of,
    err,
    fail,
    new_table,
    open_platform,
    out,
    parse_duration,
    print_json,
)
from bastion.core.errors import BastionError, ConfigError, InvalidInput
from bastion.core.settings import Settings
from bastion.identity import Permission, Principal, TokenInfo
from bastion.platform import Platform
from bastion.privacy.logfilter import install_log_redaction

if TYPE_CHECKING:
    from bastion.privacy.pii import PiiDetector

app = typer.Typer(
    name="bastion",
    help="Bastion: secure machine-learning deployment under data governance and privacy controls.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
token_app = typer.Typer(help="API tokens: create, list, revoke, rotate.", no_args_is_help=True)
principal_app = typer.Typer(help="Users and service accounts.", no_args_is_help=True)
app.add_typer(token_app, name="token")
keys_app = typer.Typer(help="Key store: status and KEK rotation.", no_args_is_help=True)
audit_app = typer.Typer(
    help="The transparency log: verify, export, proofs, checkpoints.", no_args_is_help=True
)
app.add_typer(principal_app, name="principal")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
scan_cli.register(app)
registry_cli.register(app)
policy_cli.register(app)
signature_cli.register(app)
deploy_cli.register(app)
drift_cli.register(app)
monitoring_cli.register(app)
incidents_cli.register(app)
privacy_cli.register(app)
receipts_cli.register(app)
demo_cli.register(app)


def main() -> None:
    """Entry point: run the CLI, turning every `BastionError` into a message and exit code."""
    _redact_logs()
    try:
        # Without standalone mode, click returns (not raises) a `typer.Exit`'s code.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except BastionError as error:
        fail(error)
    except typer.Abort:
        err.print("aborted")
        sys.exit(1)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except Exception as error:  # click usage errors carry their own exit code
        import click

        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(error.exit_code)
        raise


def _redact_logs() -> None:
    """Put the PII filter on logging unless BASTION_REDACT_LOGS is false; the detector is
    built on the first record, so a command that logs nothing pays nothing."""
    try:
        settings: Settings | None = Settings.from_env()
    except BastionError:
        settings = None  # the command reports the configuration error; redact meanwhile
    if settings is None or settings.redact_logs:

        def detector() -> PiiDetector:
            # Imported here, on the first record: Presidio takes seconds to import.
            from bastion.privacy.pii import default_detector

            return default_detector(settings)

        install_log_redaction(detector)


# -- init and server ----------------------------------------------------------------------------


@app.command()
def init(
    admin: Annotated[str, typer.Option(help="Name of the first admin.")] = "admin",
    new_admin_token: Annotated[
        bool, typer.Option("--new-admin-token", help="Issue a fresh admin token (break-glass).")
    ] = False,
) -> None:
    """Create BASTION_HOME, the master key, key store and database; print the first admin token.

    Safe to run again: it migrates the schema and changes nothing else, unless
    --new-admin-token is given.
    """
    settings = Settings.from_env()
    with Platform.initialise(settings) as platform:
        first = platform.principals.count() == 0
        if not first and not new_admin_token:
            out.print(f"Bastion is initialised at {settings.home} (schema up to date).")
            return
        principal, issued = platform.bootstrap_admin(admin)
    out.print(f"Initialised Bastion at {settings.home}" if first else "Issued a new admin token.")
    if settings.master_key is None:
        out.print(
            f"Master key: {settings.home / 'master.key'} (mode 0600). Keep a copy offline; "
            "in production set BASTION_MASTER_KEY from a secret manager instead."
        )
    expires = f"{issued.info.expires_at:%Y-%m-%d %H:%M} UTC"
    out.print(f"Admin [bold]{principal.name}[/] token (shown once, expires {expires}):")
    print(issued.secret)
    out.print("Use it with: export BASTION_TOKEN=<token>")


@app.command()
def server(
    listen: Annotated[
        str | None, typer.Option(help="host:port to bind (default from BASTION_LISTEN).")
    ] = None,
) -> None:
    """Run the API server (OpenAPI docs at /docs)."""
    import uvicorn

    from bastion.api import create_app
    from bastion.privacy.pii import default_detector

    overrides: dict[str, Any] = {"listen": listen} if listen else {}
    settings = Settings.from_env(**overrides)
    with Platform.from_settings(settings) as platform:
        url = f"http://{settings.listen}"
        out.print(f"Bastion {bastion.__version__} serving {url} (API docs: {url}/docs)")
        log_config: dict[str, Any] | None = uvicorn.config.LOGGING_CONFIG
        if settings.redact_logs:
            # Configure uvicorn's loggers now, as uvicorn.run would, and put the PII filter on
            # their handlers (and the root's, and lastResort); uvicorn then leaves them alone.
            logging.config.dictConfig(copy.deepcopy(uvicorn.config.LOGGING_CONFIG))
            install_log_redaction(default_detector(settings))
            log_config = None
        uvicorn.run(
            create_app(platform),
            host=settings.listen_host,
            port=settings.listen_port,
            log_level="info",
            log_config=log_config,
            server_header=False,
            # Requests are counted in /metrics and predictions have receipts; a per-request
            # access line costs more than the rest of the gateway's controls together.
            access_log=settings.access_log,
        )


@app.command()
def version() -> None:
    """Print the version."""
    out.print(bastion.__version__)


# -- tokens -------------------------------------------------------------------------------------


def _token_dict(info: TokenInfo, platform: Platform) -> dict[str, Any]:
    return {
        "id": info.id,
        "principal_id": info.principal_id,
        "name": info.name,
        "roles": [r.value for r in info.roles],
        "resources": list(info.resources),
        "expires_at": info.expires_at.isoformat(),
        "state": info.state(platform.clock.now()),
        "replaced_by": info.replaced_by,
    }


def _print_issued(platform: Platform, issued: Any, as_json: bool) -> None:
    if as_json:
        print_json({"token": issued.secret, "info": _token_dict(issued.info, platform)})
        return
    err.print(
        f"Token {issued.info.id} for {issued.info.principal_id}, roles "
        f"{', '.join(r.value for r in issued.info.roles)}, expires "
        f"{issued.info.expires_at:%Y-%m-%d %H:%M} UTC. Shown once:"
    )
    print(issued.secret)


@token_app.command("create")
def token_create(
    token_file: TokenFile = None,
    for_principal: Annotated[
        str | None, typer.Option("--for", help="Principal (name or id); default yourself.")
    ] = None,
    name: Annotated[str, typer.Option(help="A label for the token.")] = "",
    role: Annotated[list[str] | None, typer.Option(help="Limit to these roles.")] = None,
    resource: Annotated[
        list[str] | None, typer.Option(help="Scope to resources, e.g. endpoint:fraud or endpoint:*")
    ] = None,
    ttl: Annotated[str | None, typer.Option(help="Lifetime, e.g. 15m, 8h, 7d.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue a token; the secret is printed once."""
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        target = platform.principals.get(caller, for_principal).id if for_principal else None
        issued = platform.tokens.create(
            caller,
            principal_id=target,
            name=name,
            roles=role or None,
            resources=resource or (),
            ttl=parse_duration(ttl) if ttl else None,
        )
        _print_issued(platform, issued, as_json)


@token_app.command("list")
def token_list(
    token_file: TokenFile = None,
    principal: Annotated[str | None, typer.Option(help="Whose tokens (name or id).")] = None,
    all_principals: Annotated[bool, typer.Option("--all", help="Everyone's tokens.")] = False,
    include_inactive: Annotated[bool, typer.Option(help="Show expired and revoked too.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """List token metadata (never secrets)."""
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        target = platform.principals.get(caller, principal).id if principal else None
        infos = platform.tokens.list(
            caller,
            principal_id=target,
            all_principals=all_principals,
            include_inactive=include_inactive,
        )
        rows = [_token_dict(i, platform) for i in infos]
        if as_json:
            print_json(rows)
            return
        table = new_table("id", "principal", "name", "roles", "resources", "expires", "state")
        for r in rows:
            table.add_row(
                r["id"],
                r["principal_id"],
                r["name"],
                ",".join(r["roles"]),
                ",".join(r["resources"]),
                r["expires_at"][:16],
                r["state"],
            )
        out.print(table)


@token_app.command("revoke")
def token_revoke(token_id: str, token_file: TokenFile = None) -> None:
    """Revoke a token at once."""
    with open_platform() as platform:
        info = platform.tokens.revoke(caller_of(platform, token_file), token_id)
        out.print(f"Revoked {info.id}.")


@token_app.command("rotate")
def token_rotate(
    token_id: str,
    token_file: TokenFile = None,
    grace: Annotated[
        str | None, typer.Option(help="How long the old token keeps working, e.g. 10m.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue a successor token; the old one expires after the grace period."""
    with open_platform() as platform:
        issued = platform.tokens.rotate(
            caller_of(platform, token_file),
            token_id,
            grace=parse_duration(grace) if grace else None,
        )
        _print_issued(platform, issued, as_json)


# -- principals ---------------------------------------------------------------------------------


def _principal_dict(p: Principal) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "kind": p.kind.value,
        "roles": [r.value for r in p.roles],
        "disabled": p.disabled,
        "description": p.description,
    }


@principal_app.command("add")
def principal_add(
    name: str,
    token_file: TokenFile = None,
    kind: Annotated[str, typer.Option(help="user or service")] = "user",
    role: Annotated[list[str] | None, typer.Option(help="A role to grant (repeatable).")] = None,
    description: Annotated[str, typer.Option()] = "",
    as_json: JsonFlag = False,
) -> None:
    """Add a user or service account."""
    with open_platform() as platform:
        p = platform.principals.add(
            caller_of(platform, token_file),
            name=name,
            kind=kind,
            roles=role or (),
            description=description,
        )
        if as_json:
            print_json(_principal_dict(p))
        else:
            roles = ", ".join(p.roles) or "none"
            out.print(f"Added {p.kind.value} {p.name} ({p.id}) with roles: {roles}.")


@principal_app.command("list")
def principal_list(token_file: TokenFile = None, as_json: JsonFlag = False) -> None:
    """List principals and their roles."""
    with open_platform() as platform:
        rows = [
            _principal_dict(p) for p in platform.principals.list(caller_of(platform, token_file))
        ]
        if as_json:
            print_json(rows)
            return
        table = new_table("id", "name", "kind", "roles", "disabled")
        for r in rows:
            table.add_row(r["id"], r["name"], r["kind"], ",".join(r["roles"]), str(r["disabled"]))
        out.print(table)


@principal_app.command("disable")
def principal_disable(name: str, token_file: TokenFile = None) -> None:
    """Disable a principal: every one of its tokens stops working at once."""
    with open_platform() as platform:
        p = platform.principals.set_disabled(caller_of(platform, token_file), name, disabled=True)
        out.print(f"Disabled {p.name}.")


@principal_app.command("enable")
def principal_enable(name: str, token_file: TokenFile = None) -> None:
    """Re-enable a disabled principal."""
    with open_platform() as platform:
        p = platform.principals.set_disabled(caller_of(platform, token_file), name, disabled=False)
        out.print(f"Enabled {p.name}.")


@principal_app.command("roles")
def principal_roles(
    name: str,
    role: Annotated[list[str], typer.Option(help="The full new set of roles (repeatable).")],
    token_file: TokenFile = None,
) -> None:
    """Replace a principal's roles (not your own)."""
    with open_platform() as platform:
        p = platform.principals.set_roles(caller_of(platform, token_file), name, role)
        out.print(f"{p.name} now has roles: {', '.join(p.roles) or 'none'}.")


# -- keys ---------------------------------------------------------------------------------------


@keys_app.command("status")
def keys_status(token_file: TokenFile = None, as_json: JsonFlag = False) -> None:
    """Show the active key-encryption key and how many data keys it wraps."""
    with open_platform() as platform:
        status = platform.keys.status(caller_of(platform, token_file))
        if as_json:
            print_json({"active_kek_id": status.active_kek_id, "data_keys": status.data_keys})
        else:
            out.print(f"Active KEK {status.active_kek_id}, wrapping {status.data_keys} data keys.")


@keys_app.command("rotate")
def keys_rotate(token_file: TokenFile = None) -> None:
    """Re-wrap every data key under a new KEK and destroy the old KEK."""
    with open_platform() as platform:
        report = platform.keys.rotate(caller_of(platform, token_file))
        out.print(
            f"New KEK {report.new_kek_id}; re-wrapped {report.rewrapped_data_keys} data keys "
            f"and {report.rewrapped_named_keys} named keys; destroyed "
            f"{', '.join(report.retired_kek_ids) or 'nothing'}."
        )


# -- audit (transparency log) -------------------------------------------------------------------


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {what} {path}: {error}") from error


@audit_app.command("verify")
def audit_verify(
    token_file: TokenFile = None,
    bundle: Annotated[
        Path | None, typer.Option(help="Verify an exported bundle offline (no database).")
    ] = None,
    pubkey: Annotated[
        Path | None, typer.Option(help="The log's verifier key file (required with --bundle).")
    ] = None,
    trusted_checkpoint: Annotated[
        Path | None,
        typer.Option(help="A signed checkpoint saved earlier: detect rollback and forks."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Recompute the whole tree and check every entry, node and checkpoint signature.

    Exit 0 when intact; 6 with the first bad index and expected/computed values when not.
    """
    from bastion.ledger import verify_bundle
    from bastion.ledger.note import NoteVerifier

    if bundle is not None:
        if pubkey is None:
            raise InvalidInput("--bundle needs --pubkey (the log's key, obtained out of band)")
        verifier = NoteVerifier.from_vkey(_read_text(pubkey, "public key").strip())
        try:
            document = json.loads(_read_text(bundle, "bundle"))
        except json.JSONDecodeError as error:
            raise InvalidInput(f"bundle {bundle} is not JSON: {error}") from error
        report = verify_bundle(document, verifier)
        if trusted_checkpoint is not None:
            raise InvalidInput("--trusted-checkpoint applies to the live log, not a bundle")
    else:
        with open_platform() as platform:
            platform.authorizer.authorize(caller_of(platform, token_file), Permission.AUDIT_READ)
            report = platform.ledger.verify(
                trusted_checkpoint=_read_text(trusted_checkpoint, "checkpoint")
                if trusted_checkpoint
                else None
            )
    result = {"status": "intact", **report.summary()}
    if as_json:
        print_json(result)
    else:
        out.print(
            f"Log intact: {report.size} entries, root {report.root.hex()}, "
            f"{report.checkpoints} signed checkpoints and {report.nodes} tree nodes checked"
            + (f"; {report.queued} entries still queued" if report.queued else "")
            + "."
        )


@audit_app.command("export")
def audit_export(
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the bundle (JSON).")],
    token_file: TokenFile = None,
) -> None:
    """Write every entry, every signed checkpoint and the log's key to a bundle file."""
    with open_platform() as platform:
        platform.authorizer.authorize(caller_of(platform, token_file), Permission.AUDIT_READ)
        try:
            with out_path.open("w", encoding="utf-8") as handle:
                platform.ledger.export(handle)
        except OSError as error:
            raise ConfigError(f"cannot write {out_path}: {error.strerror}") from error
        out.print(
            f"Wrote {out_path}. Verify with: bastion audit verify --bundle {out_path} "
            "--pubkey <key file from `bastion audit pubkey`>"
        )


@audit_app.command("proof")
def audit_proof(
    index: Annotated[int, typer.Option(help="Leaf index of the entry.")],
    token_file: TokenFile = None,
    tree_size: Annotated[int | None, typer.Option(help="Default: the newest checkpoint.")] = None,
) -> None:
    """Print an inclusion proof of entry INDEX against the newest (or a given) checkpoint."""
    with open_platform() as platform:
        platform.authorizer.authorize(caller_of(platform, token_file), Permission.AUDIT_READ)
        latest = platform.ledger.latest_checkpoint()
        proof = platform.ledger.inclusion_proof(index, tree_size or latest.size)
        proof.verify()
        print_json(
            {
                "index": proof.index,
                "tree_size": proof.tree_size,
                "leaf_hash": proof.leaf_hash.hex(),
                "proof": [h.hex() for h in proof.hashes],
                "root": proof.root.hex(),
                "checkpoint": latest.note if proof.tree_size == latest.size else None,
            }
        )


@audit_app.command("checkpoint")
def audit_checkpoint(token_file: TokenFile = None) -> None:
    """Print the newest signed checkpoint (save it to check for rollbacks later)."""
    with open_platform() as platform:
        platform.authorizer.authorize(caller_of(platform, token_file), Permission.AUDIT_READ)
        print(platform.ledger.latest_checkpoint().note, end="")


@audit_app.command("pubkey")
def audit_pubkey(token_file: TokenFile = None) -> None:
    """Print the log's verifier key (signed-note format) for offline verification."""
    with open_platform() as platform:
        platform.authorizer.authorize(caller_of(platform, token_file), Permission.AUDIT_READ)
        print(platform.ledger.verifier_key())
