"""`bastion policy …`, `bastion approve`, `bastion approvals`, `bastion approval revoke`,
`bastion attest`.

`policy test DIR` and `policy eval --bundle DIR|--default` need no Bastion home. `policy eval`
exits 0 when the gate allows, 1 when it denies (printing every reason), 2 on an error
(unusable bundle or input); `policy test` exits 0 when every test passes, 1 otherwise, 2 when
the bundle cannot be read or compiled.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape

from bastion.cli.common import (
    JsonFlag,
    TokenFile,
    caller_of,
    new_table,
    open_platform,
    out,
    print_json,
)
from bastion.core.errors import BastionError, InvalidInput
from bastion.identity import Permission
from bastion.policy import GATES, CompiledPolicy, Decision, PolicyBundle, run_tests

EXIT_DENY = 1
EXIT_ERROR = 2

policy_app = typer.Typer(
    help="Policy as code: test, apply, evaluate bundles; decisions.", no_args_is_help=True
)
approval_app = typer.Typer(help="Approvals: revoke.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
    app.add_typer(approval_app, name="approval")
    app.command("approve")(approve)
    app.command("approvals")(approvals)
    app.command("attest")(attest)


def _error(error: BastionError) -> NoReturn:
    typer.echo(f"error [{error.code}]: {error.message}", err=True)
    sys.exit(EXIT_ERROR)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as error:
        raise InvalidInput(f"cannot read {what} {path}: {error.strerror}") from error
    except ValueError as error:
        raise InvalidInput(f"{what} {path} is not JSON: {error}") from error


def _print_decision(decision: Decision) -> None:
    verdict = "[green]ALLOW[/]" if decision.allow else "[red]DENY[/]"
    out.print(f"{verdict} gate {decision.gate} (bundle {decision.bundle_digest})", highlight=False)
    for reason in decision.reasons:
        out.print(f"  - {escape(reason)}", highlight=False)


@policy_app.command("test")
def policy_test(
    directory: Annotated[Path, typer.Argument(help="Bundle directory (.rego files, data.json).")],
    as_json: JsonFlag = False,
) -> None:
    """Run the bundle's own Rego tests (`test_*` rules), each isolated from engine crashes."""
    try:
        report = run_tests(PolicyBundle.load_dir(directory))
    except BastionError as error:
        _error(error)
    if as_json:
        print_json(
            {
                **report.summary(),
                "results": [
                    {"test": r.name, "status": r.status, "message": r.message}
                    for r in report.results
                ],
            }
        )
    else:
        for r in report.results:
            mark = "[green]PASS[/]" if r.status == "passed" else f"[red]{r.status.upper()}[/]"
            line = f"{mark} {escape(r.name)}"
            if r.status != "passed" and r.message:
                line += f"  {escape(r.message[:200])}"
            out.print(line, highlight=False)
        s = report.summary()
        out.print(f"{s['passed']} passed, {s['failed']} failed, {s['errors']} errors")
        if not report.results:
            out.print("no tests found (rules named test_*)")
    if not report.ok:
        sys.exit(EXIT_DENY)


@policy_app.command("apply")
def policy_apply(
    directory: Annotated[Path, typer.Argument(help="Bundle directory.")],
    token_file: TokenFile = None,
) -> None:
    """Make a bundle the active policy (admin; its tests must pass; the current bundle's
    policy_change gate must allow it; a broken bundle is refused and the old one stays)."""
    bundle = PolicyBundle.load_dir(directory)
    with open_platform() as platform:
        info = platform.policy.apply(caller_of(platform, token_file), bundle)
    out.print(
        f"applied policy bundle version {info.version} ({info.digest}); tests "
        f"{info.tests.get('passed', 0)} passed"
    )


@policy_app.command("eval")
def policy_eval(
    gate: Annotated[str, typer.Option("--gate", help=f"One of: {', '.join(GATES)}.")],
    input_file: Annotated[Path, typer.Option("--input", help="The input document (JSON).")],
    bundle_dir: Annotated[
        Path | None, typer.Option("--bundle", help="Evaluate this bundle directory instead.")
    ] = None,
    default: Annotated[
        bool, typer.Option("--default", help="Evaluate the packaged default bundle.")
    ] = False,
    as_json: JsonFlag = False,
    token_file: TokenFile = None,
) -> None:
    """Dry-run one gate on an input file: exit 0 allow, 1 deny, 2 error."""
    try:
        document = _read_json(input_file, "input")
        if bundle_dir is not None or default:
            bundle = PolicyBundle.load_dir(bundle_dir) if bundle_dir else PolicyBundle.default()
            decision = CompiledPolicy(bundle).evaluate(gate, document)
        else:
            with open_platform() as platform:
                caller = caller_of(platform, token_file)
                platform.authorizer.authorize(caller, Permission.POLICY_READ)
                decision = platform.policy.evaluate(gate, document)
    except BastionError as error:
        _error(error)
    if as_json:
        print_json(decision.to_dict())
    else:
        _print_decision(decision)
    if not decision.allow:
        sys.exit(EXIT_DENY)


@policy_app.command("check")
def policy_check(
    gate: Annotated[str, typer.Argument(help="deploy, alias_set, approval_grant, ...")],
    ref: Annotated[str, typer.Argument(help="NAME@VERSION")],
    fields: Annotated[
        Path | None, typer.Option("--fields", help="JSON object of gate-specific fields.")
    ] = None,
    show_input: Annotated[bool, typer.Option("--show-input", help="Print the input.")] = False,
    token_file: TokenFile = None,
) -> None:
    """What a gate would decide for a registered version now (dry run): exit 0/1/2."""
    name, _, version = ref.partition("@")
    if not version:
        _error(InvalidInput(f"name the version: {name}@VERSION", code="cli.version_required"))
    try:
        extra = _read_json(fields, "fields") if fields else {}
        if not isinstance(extra, dict):
            raise InvalidInput("--fields must hold a JSON object")
        with open_platform() as platform:
            decision, document = platform.gates.check(
                caller_of(platform, token_file), gate, name, version, **extra
            )
    except BastionError as error:
        _error(error)
    if show_input:
        print_json(document)
    _print_decision(decision)
    if not decision.allow:
        sys.exit(EXIT_DENY)


@policy_app.command("show")
def policy_show(token_file: TokenFile = None, as_json: JsonFlag = False) -> None:
    """The active bundle and the bundle history."""
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        info = platform.policy.info(caller)
        history = platform.policy.history(caller)
    if as_json:
        print_json({"active": info, "history": history})
        return
    label = "packaged default" if info.version == 0 else f"version {info.version}"
    out.print(f"active: {label} {info.digest} ({len(info.files)} files)")
    for item in history:
        out.print(f"  v{item.version} {item.digest} applied {item.applied_at} by {item.applied_by}")


@policy_app.command("decisions")
def policy_decisions(
    subject: Annotated[str | None, typer.Option(help="A version or dataset id.")] = None,
    gate: Annotated[str | None, typer.Option(help="Only this gate.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Recorded gate decisions, newest first."""
    with open_platform() as platform:
        rows = platform.policy.decisions(
            caller_of(platform, token_file), subject=subject, gate=gate, limit=limit
        )
    if as_json:
        print_json(rows)
        return
    table = new_table("at", "gate", "subject", "decision", "reasons")
    for r in rows:
        table.add_row(
            str(r.at), r.gate, r.subject, "allow" if r.allow else "deny", "; ".join(r.reasons)
        )
    out.print(table)


def approve(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version number or alias.")],
    for_: Annotated[str, typer.Option("--for", help="What the approval is for.")] = "deploy",
    comment: Annotated[str, typer.Option(help="Why you approve.")] = "",
    digest: Annotated[
        str | None, typer.Option(help="The artifact digest you reviewed (must match).")
    ] = None,
    token_file: TokenFile = None,
) -> None:
    """Approve a version's exact bytes (the approval_grant gate decides)."""
    with open_platform() as platform:
        approval = platform.approvals.approve(
            caller_of(platform, token_file),
            model,
            version,
            purpose=for_,
            comment=comment,
            digest=digest,
        )
    out.print(
        f"approved {approval.model}@{approval.version} for {approval.purpose} "
        f"({approval.artifact_digest}) as {approval.approver_name}; id {approval.id}, "
        f"expires {approval.expires_at:%Y-%m-%d}"
    )


def approvals(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version number or alias.")],
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """The version's approvals and whether each still counts."""
    with open_platform() as platform:
        rows = platform.approvals.list(caller_of(platform, token_file), model, version)
    if as_json:
        print_json(rows)
        return
    table = new_table("id", "approver", "roles", "for", "state", "expires", "comment")
    for a in rows:
        table.add_row(
            a.id,
            a.approver_name,
            ",".join(a.approver_roles),
            a.purpose,
            a.state,
            f"{a.expires_at:%Y-%m-%d}",
            a.comment,
        )
    out.print(table)


@approval_app.command("revoke")
def approval_revoke(
    approval_id: Annotated[str, typer.Argument(help="The approval id.")],
    reason: Annotated[str, typer.Option(help="Why.")] = "",
    token_file: TokenFile = None,
) -> None:
    """Withdraw an approval (your own, or any as a policy administrator)."""
    with open_platform() as platform:
        a = platform.approvals.revoke(caller_of(platform, token_file), approval_id, reason)
    out.print(f"revoked {a.id} ({a.approver_name} on {a.model}@{a.version})")


def attest(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version number or alias.")],
    type_: Annotated[str, typer.Option("--type", help="Predicate type URI.")],
    file: Annotated[Path, typer.Option("--file", help="The predicate (JSON object).")],
    token_file: TokenFile = None,
) -> None:
    """Attach a signed attestation (in-toto statement) about the version's bytes."""
    predicate = _read_json(file, "predicate")
    if not isinstance(predicate, dict):
        raise InvalidInput("the predicate must be a JSON object", code="attestation.bad_predicate")
    with open_platform() as platform:
        a = platform.attestations.attest(
            caller_of(platform, token_file), model, version, type_, predicate
        )
    state = "verified" if a.verified else "NOT verified"
    out.print(f"attested {a.model}@{a.version}: {a.predicate_type} ({a.id}, {state})")
