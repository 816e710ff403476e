"""`bastion scan PATH`: standalone artifact scanning, no Bastion home needed.

Scans a file or every file under a directory with the allow-list scanner (the same one the
registry runs on every upload) and prints each finding with its file, offset, code and reason.

Exit codes: 0 clean; 1 at least one finding; 2 the path (or the allow-list file) could not be
scanned at all, including an unexpected error inside the scanner (never mistaken for a verdict).
Like `bastion signature`, failures leave through `sys.exit` so the code survives click's
non-standalone mode.

File names, member names and reasons come from the scanned content: they are printed with
control and other non-printable characters escaped, so an artifact cannot rewrite the
terminal (hide a finding, fake "clean") or crash the output with undecodable names.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from bastion.supplychain.scan import AllowList, ScanError, Scanner

EXIT_FINDINGS = 1
EXIT_UNSCANNABLE = 2


def _shown(text: str) -> str:
    """`text` with every non-printable character (escapes, CR, surrogates) escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def register(app: typer.Typer) -> None:
    """Add the `scan` command to `app`."""
    app.command("scan")(scan)


def scan(
    path: Annotated[Path, typer.Argument(help="A model file or directory.")],
    allowlist: Annotated[
        Path | None,
        typer.Option(
            "--allowlist", help="Operator allow-list (JSON or TOML) added to the packaged one."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
) -> None:
    """Scan model artifacts statically (never unpickles): exit 0 clean, 1 findings, 2 error."""
    try:
        scanner = Scanner(AllowList.load(allowlist))
        report = scanner.scan_path(path)
    except ScanError as error:
        typer.echo(f"error [{error.code}]: {_shown(error.message)}", err=True)
        sys.exit(EXIT_UNSCANNABLE)
    except Exception as error:  # noqa: BLE001 - a scanner bug is "could not scan", not a verdict
        typer.echo(f"error [scan.internal]: {type(error).__name__}: {_shown(str(error))}", err=True)
        sys.exit(EXIT_UNSCANNABLE)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for file in report.files:
            status = "ok" if file.clean else f"{len(file.findings)} finding(s)"
            typer.echo(f"{_shown(file.path)}  [{file.format.value}]  {status}")
            for finding in file.findings:
                where = "" if finding.offset is None else f" @ {finding.offset}"
                member = "" if finding.path == file.path else f" ({_shown(finding.path)})"
                typer.echo(f"  {finding.code}{where}{member}: {_shown(finding.reason)}")
        total = len(report.findings)
        verdict = "clean" if report.clean else f"{total} finding(s): REJECTED"
        typer.echo(
            f"{len(report.files)} file(s) scanned with allow-list {report.allowlist_version}: "
            f"{verdict}"
        )
    if not report.clean:
        sys.exit(EXIT_FINDINGS)
