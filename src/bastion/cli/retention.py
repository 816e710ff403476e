"""`bastion retention enforce|hold|release|list|evidence|verify`: retention by crypto-shredding.

Each runs in-process with the caller's token (BASTION_TOKEN) through `RetentionService`, the
same code the server's scheduler runs every BASTION_RETENTION_CHECK_SECONDS.

Exit codes: errors exit by kind (README, "CLI exit codes"); `enforce` exits 1 when some
deletion failed (reported, and retried by the next run); `verify` exits 6 when a deletion's
checks do not hold.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape

from bastion.cli.common import (
    EXIT_CODES,
    JsonFlag,
    TokenFile,
    caller_of,
    err,
    new_table,
    open_platform,
    out,
    print_json,
)
from bastion.core.errors import ErrorKind
from bastion.privacy.retention import (
    Deletion,
    DeletionCheck,
    EnforcementReport,
    parse_ref,
)

EXIT_FAILED = 1

Reason = Annotated[str, typer.Option("--reason", help="Why (recorded in the ledger).")]
DatasetArg = Annotated[str, typer.Argument(help="NAME@VERSION, or NAME for every active version.")]


def register(group: typer.Typer) -> None:
    """Add this module's commands to `group` (`bastion retention`)."""
    group.command("enforce")(enforce)
    group.command("hold")(hold)
    group.command("release")(release)
    group.command("list")(list_schedule)
    group.command("evidence")(evidence)
    group.command("verify")(verify)


def _say(text: str) -> None:
    out.print(text, markup=False, highlight=False)


def _cells(*values: str) -> list[str]:
    return [escape(v) for v in values]


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(timespec="seconds")


def enforce(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be deleted; change nothing.")
    ] = False,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Delete expired datasets not under legal hold by crypto-shredding their data keys, with
    evidence and a ledger entry each; empty prediction-log entries past their window."""
    with open_platform() as platform:
        report = platform.retention.enforce(caller_of(platform, token_file), dry_run=dry_run)
    if as_json:
        print_json(asdict(report))
    else:
        _print_report(report)
    if report.failed:
        sys.exit(EXIT_FAILED)


def _print_report(report: EnforcementReport) -> None:
    if report.datasets:
        table = new_table("dataset", "expired", "outcome", "deletion", "why")
        for d in report.datasets:
            outcome = d.outcome + (" (resumed)" if d.resumed else "")
            table.add_row(
                *_cells(
                    d.ref, _when(d.expires_at), outcome, d.deletion_id or "-", "; ".join(d.reasons)
                )
            )
        out.print(table)
    verb = "would delete" if report.dry_run else "deleted"
    done = report.count("would_delete" if report.dry_run else "deleted")
    _say(
        f"{'Dry run: ' if report.dry_run else ''}{verb} {done} dataset version(s); "
        f"{report.count('held')} held, {report.count('denied')} refused by policy, "
        f"{report.count('failed')} failed."
    )
    if report.truncated:
        _say("More expired versions remain; run again.")
    p = report.predictions
    if p.error is not None:
        _say(f"Prediction log: failed ({p.error}).")
    elif p.retention_days is None:
        _say("Prediction log: no retention window set (kept forever).")
    else:
        verb = "would empty" if report.dry_run else "emptied"
        _say(
            f"Prediction log ({p.retention_days} days): {verb} {p.count} entries "
            f"[{p.begin}, {p.end}) created before {_when(p.cutoff)}"
            + ("; more remain, run again." if p.more else ".")
        )


def _hold(on: bool, dataset: str, reason: str, token_file: Any, as_json: bool) -> None:
    name, version = parse_ref(dataset)
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        if on:
            changes = platform.retention.hold(caller, name, version, reason=reason)
        else:
            changes = platform.retention.release(caller, name, version, reason=reason)
    if as_json:
        print_json([asdict(c) for c in changes])
        return
    for c in changes:
        state = "under legal hold" if on else "released from legal hold"
        _say(f"{c.name}@{c.version} {state} (decision {c.decision_id}).")


def hold(
    dataset: DatasetArg, reason: Reason, token_file: TokenFile = None, as_json: JsonFlag = False
) -> None:
    """Put a dataset version (or every active version) under legal hold: never deleted
    until released."""
    _hold(True, dataset, reason, token_file, as_json)


def release(
    dataset: DatasetArg, reason: Reason, token_file: TokenFile = None, as_json: JsonFlag = False
) -> None:
    """Lift a legal hold; the next enforcement deletes the version if it has expired."""
    _hold(False, dataset, reason, token_file, as_json)


def list_schedule(
    name: Annotated[str | None, typer.Argument(help="Only this dataset.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Include deleted versions.")] = False,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """What expires when, what is held (by whom and why), and the prediction log's window."""
    with open_platform() as platform:
        schedule = platform.retention.schedule(
            caller_of(platform, token_file), name=name, include_deleted=show_all
        )
    if as_json:
        print_json(asdict(schedule))
        return
    table = new_table("dataset", "class", "status", "retention", "expires", "hold")
    for e in schedule.datasets:
        expires = _when(e.expires_at) + (" (expired)" if e.expired and e.status == "active" else "")
        held = "-"
        if e.legal_hold:
            held = f"{e.hold.reason} ({e.hold.by})" if e.hold is not None else "yes"
        status = e.status if e.deletion_id is None else f"{e.status} ({e.deletion_id})"
        days = "-" if e.retention_days is None else f"{e.retention_days}d"
        table.add_row(
            *_cells(f"{e.name}@{e.version}", e.classification, status, days, expires, held)
        )
    out.print(table)
    p = schedule.predictions
    window = "kept forever" if p.retention_days is None else f"{p.retention_days} days"
    _say(f"Prediction log: {window}; {p.expired_leaves} of {p.log_size} entries emptied.")


def evidence(
    deletion_id: Annotated[
        str | None, typer.Argument(help="A deletion id; none lists the latest deletions.")
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only `dataset` or `predictions`.")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many to list (at most 1000).")] = 50,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Deletion records: what was deleted (never the data), when, under which rule, which key
    was shredded, and the evidence that it no longer decrypts."""
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        if deletion_id is not None:
            one = platform.retention.deletion(caller, deletion_id)
            if as_json:
                print_json(asdict(one))
            else:
                _print_deletion(one)
            return
        many = platform.retention.deletions(caller, kind=kind, limit=limit)
    if as_json:
        print_json([asdict(d) for d in many])
        return
    table = new_table("id", "at", "kind", "subject", "rule", "state")
    for d in many:
        table.add_row(*_cells(d.id, _when(d.at), d.subject_kind, d.subject_name, d.rule, d.state))
    out.print(table)


def _print_deletion(d: Deletion) -> None:
    _say(f"Deletion {d.id} ({d.subject_kind}, {d.state})")
    _say(f"  subject: {d.subject_name} [{d.subject_id}]")
    _say(f"  rule:    {d.rule}")
    _say(f"  when:    {_when(d.at)} by {d.actor}")
    if d.key_id:
        _say(f"  shredded data key: {d.key_id}")
    for check in d.evidence.get("checks") or []:
        mark = "ok" if check.get("ok") else "FAILED"
        _say(f"  {check.get('check')}: {check.get('outcome')} [{mark}]")


def verify(
    deletion_id: Annotated[str, typer.Argument(help="The deletion id.")],
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Re-run a deletion's checks now: the blob does not decrypt and the key is shredded (a
    dataset), or the receipts' bodies are still gone and their leaves kept (predictions).
    Exit 0 when they hold, 6 when not."""
    with open_platform() as platform:
        result = platform.retention.verify(caller_of(platform, token_file), deletion_id)
    if as_json:
        print_json(asdict(result))
    else:
        _print_check(result)
    if not result.ok:
        err.print(
            f"error [retention.evidence_failed]: deletion {deletion_id} does not hold",
            markup=False,
            highlight=False,
        )
        sys.exit(EXIT_CODES[ErrorKind.INTEGRITY])


def _print_check(result: DeletionCheck) -> None:
    verdict = "holds" if result.ok else "DOES NOT HOLD"
    _say(f"Deletion {result.deletion_id} ({result.subject_kind} {result.subject_name}) {verdict}:")
    for check in result.checks:
        mark = "ok" if check.ok else "FAILED"
        expected = " or ".join(check.expected)
        _say(f"  {check.name}: {check.outcome} (expected {expected}) [{mark}]")
    for note in result.notes:
        _say(f"  note: {note}")
