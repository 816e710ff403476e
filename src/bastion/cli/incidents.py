"""`bastion incident snapshot|list|show|report|verify|pubkey`: signed incident snapshots.

`snapshot` runs in-process with the caller's token (`deploy.manage` on the endpoint); it reads
the windows the gateway replicas published to the database (a running server's own API,
`POST /v1/endpoints/{name}/incidents`, adds its live windows). `verify` works offline: the
bundle (from `show --json`) against the incident verifier key from `pubkey`; exit 0 valid,
1 invalid, 2 unusable input.
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
    out,
    print_json,
)
from bastion.core.errors import BastionError
from bastion.monitoring.incidents import Incident, render_markdown, verify_bundle
from bastion.monitoring.monitor import published_windows

EXIT_INVALID = 1

incident_app = typer.Typer(
    help="Incident snapshots: take one, list, show, render as Markdown, verify offline.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(incident_app, name="incident")


@incident_app.command("snapshot")
def snapshot(
    endpoint: Annotated[str, typer.Argument(help="The endpoint.")],
    note: Annotated[str, typer.Option(help="Why the snapshot is taken.")] = "",
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Take a signed snapshot of an endpoint's evidence now (versions, windows, drift,
    deployment events, the ledger checkpoint)."""
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        incident = platform.incidents.snapshot(
            caller,
            endpoint,
            trigger="manual",
            live=published_windows(platform.database, endpoint),
            note=note,
        )
    if as_json:
        print_json(incident.to_json())
        return
    out.print(
        f"Incident {incident.id} for {endpoint}: digest {incident.digest}\n"
        f"Read it with: bastion incident report {incident.id}",
        highlight=False,
    )


@incident_app.command("list")
def list_incidents(
    endpoint: Annotated[str | None, typer.Argument(help="Only this endpoint.")] = None,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Incident snapshots, newest first."""
    with open_platform() as platform:
        incidents = platform.incidents.list(caller_of(platform, token_file), endpoint)
    rows = [{k: v for k, v in i.to_json().items() if k != "bundle"} for i in incidents]
    if as_json:
        print_json(rows)
        return
    for i in incidents:
        out.print(
            f"{i.id}  {i.created_at:%Y-%m-%d %H:%M:%S}  {i.endpoint}  {i.trigger}  "
            f"by {i.created_by}",
            highlight=False,
        )


def _get(incident_id: str, token_file: Path | None) -> Incident:
    with open_platform() as platform:
        return platform.incidents.get(caller_of(platform, token_file), incident_id)


@incident_app.command("show")
def show(
    incident_id: Annotated[str, typer.Argument(help="The incident id.")],
    token_file: TokenFile = None,
) -> None:
    """The full snapshot (bundle, digest, signature) as JSON — what `verify` checks."""
    sys.stdout.write(json.dumps(_get(incident_id, token_file).to_json(), indent=2) + "\n")


@incident_app.command("report")
def report(
    incident_id: Annotated[str, typer.Argument(help="The incident id.")],
    token_file: TokenFile = None,
) -> None:
    """The snapshot as Markdown for the post-incident review."""
    sys.stdout.write(render_markdown(_get(incident_id, token_file)))


@incident_app.command("pubkey")
def pubkey(token_file: TokenFile = None) -> None:
    """The incident signing key's verifier key (signed-note format)."""
    with open_platform() as platform:
        caller_of(platform, token_file)
        print(platform.incidents.verifier_key())


@incident_app.command("verify")
def verify(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="Output of `incident show`.")],
    pubkey_file: Annotated[Path, typer.Option("--pubkey", help="The verifier key file.")],
) -> None:
    """Verify a snapshot offline against the incident verifier key."""
    try:
        vkey = pubkey_file.read_text(encoding="utf-8").strip()
        doc: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        exit_unusable(f"cannot read the input: {error}")
    except json.JSONDecodeError as error:
        exit_unusable(f"{path} is not JSON: {error.msg} (line {error.lineno})")
    if not isinstance(doc, dict) or not isinstance(doc.get("bundle"), dict):
        exit_unusable(f"{path} is not an incident (no bundle)")
    try:
        digest = verify_bundle(doc["bundle"], str(doc.get("signature", "")), vkey)
    except BastionError as error:
        typer.echo(f"INVALID [{error.code}]: {error.message}", err=True)
        sys.exit(EXIT_INVALID)
    typer.echo(f"Incident {doc['bundle'].get('id')} verified: {digest}")
