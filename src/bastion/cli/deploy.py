"""`bastion deploy …`, `bastion rollout …`, `bastion endpoint …`.

These change deployments in-process with the caller's token (BASTION_TOKEN), through the same
service, gates and ledger as the API; a running server sees the change within
BASTION_DEPLOY_POLL_SECONDS (at once when the change is made through its own API).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli.common import (
    JsonFlag,
    TokenFile,
    caller_of,
    new_table,
    open_platform,
    out,
    print_json,
)
from bastion.core.errors import InvalidInput
from bastion.deploy import Endpoint, PlanKind, RolloutPlan

rollout_app = typer.Typer(help="Rollouts: promote, pause, resume, rollback.", no_args_is_help=True)
endpoint_app = typer.Typer(
    help="Endpoints: list, show, history, the kill switch, shadows.", no_args_is_help=True
)

Reason = Annotated[str, typer.Option(help="Why (recorded in the ledger).")]


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy)
    app.add_typer(rollout_app, name="rollout")
    app.add_typer(endpoint_app, name="endpoint")


def _version_ref(text: str) -> tuple[str, str]:
    name, _, ref = text.partition("@")
    if not name or not ref:
        raise InvalidInput(
            f"name the version: MODEL@VERSION or MODEL@ALIAS, not {text!r}",
            code="cli.version_required",
        )
    return name, ref


def _show(endpoint: Endpoint, as_json: bool) -> None:
    if as_json:
        print_json(asdict(endpoint))
        return
    stable = f"v{endpoint.stable.number}" if endpoint.stable else "-"
    line = f"{endpoint.name}: {endpoint.model} {stable} [{endpoint.state}]"
    if endpoint.canary is not None:
        line += f", canary v{endpoint.canary.number} at {endpoint.canary_weight:g}%"
    if endpoint.shadow is not None:
        line += f", shadow v{endpoint.shadow.number} ({endpoint.shadow_share:g}% mirrored)"
    if endpoint.rollout is not None:
        line += f"; rollout {endpoint.rollout.kind} {endpoint.rollout.state}"
    out.print(line, highlight=False)


def deploy(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name (created on first deploy).")],
    version: Annotated[str, typer.Argument(help="MODEL@VERSION or MODEL@ALIAS.")],
    canary: Annotated[
        float | None, typer.Option(help="Start a canary at this % of requests.")
    ] = None,
    linear: Annotated[
        str | None, typer.Option(help="Linear steps, e.g. 10,25,50 (100 is added).")
    ] = None,
    interval: Annotated[int, typer.Option(help="Seconds between linear steps.")] = 60,
    bake: Annotated[int, typer.Option(help="Seconds at 100 % before completion.")] = 0,
    auto_promote: Annotated[
        bool, typer.Option("--auto-promote", help="Canary: promote after --bake seconds.")
    ] = False,
    limits: Annotated[
        Path | None, typer.Option(help="JSON file of rate/row limit overrides.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="What the endpoint is for.")] = None,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Deploy a version to an endpoint: all at once (default), --canary W, or --linear STEPS."""
    if canary is not None and linear is not None:
        raise InvalidInput("choose --canary or --linear, not both", code="cli.bad_option")
    if canary is not None:
        plan = RolloutPlan(
            kind=PlanKind.CANARY, weight=canary, bake=bake, auto_promote=auto_promote
        )
    elif linear is not None:
        try:
            steps = tuple(float(s) for s in linear.split(",") if s.strip())
        except ValueError:
            raise InvalidInput(
                f"--linear takes weights like 10,25,50, not {linear!r}", code="deploy.bad_plan"
            ) from None
        plan = RolloutPlan(kind=PlanKind.LINEAR, steps=steps, interval=interval, bake=bake)
    else:
        plan = RolloutPlan(bake=bake, auto_promote=auto_promote)
    limit_doc: dict[str, Any] | None = None
    if limits is not None:
        try:
            limit_doc = json.loads(limits.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise InvalidInput(f"cannot read limits file {limits}: {error}") from None
    model, ref = _version_ref(version)
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        result = platform.deployments.deploy(
            caller, endpoint, model, ref, plan=plan, description=description, limits=limit_doc
        )
    _show(result, as_json)


def _action(name: str, endpoint: str, reason: str, token_file: Path | None, as_json: bool) -> None:
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        act = getattr(platform.deployments, name)
        result = act(caller, endpoint, reason=reason)
    _show(result, as_json)


def _command(action: str, doc: str) -> Callable[..., None]:
    def command(
        endpoint: str, reason: Reason = "", token_file: TokenFile = None, as_json: JsonFlag = False
    ) -> None:
        _action(action, endpoint, reason, token_file, as_json)

    command.__doc__ = doc
    return command


for _app, _name, _doc in (
    (rollout_app, "promote", "Give the new version 100 % now."),
    (rollout_app, "pause", "Hold the rollout at its current weight."),
    (rollout_app, "resume", "Let a paused rollout go on."),
    (rollout_app, "rollback", "All traffic back to the version that served before."),
    (endpoint_app, "kill", "The kill switch: stop the endpoint serving (503) in every gateway."),
    (endpoint_app, "revive", "Undo the kill switch."),
):
    _app.command(_name)(_command(_name, _doc))


@endpoint_app.command("shadow")
def endpoint_shadow(
    endpoint: str,
    version: Annotated[
        str | None, typer.Argument(help="Version number or alias; omit with --off.")
    ] = None,
    share: Annotated[float, typer.Option(help="% of requests mirrored.")] = 100.0,
    off: Annotated[bool, typer.Option("--off", help="Stop shadowing.")] = False,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Mirror requests to a version that answers nobody; its divergence is measured."""
    if (version is None) != off:
        raise InvalidInput("give a VERSION, or --off", code="cli.bad_option")
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        result = platform.deployments.set_shadow(caller, endpoint, version, share=share)
    _show(result, as_json)


@endpoint_app.command("list")
def endpoint_list(token_file: TokenFile = None, as_json: JsonFlag = False) -> None:
    with open_platform() as platform:
        endpoints = platform.deployments.endpoints(caller_of(platform, token_file))
    if as_json:
        print_json([asdict(e) for e in endpoints])
        return
    table = new_table("endpoint", "model", "stable", "canary", "state", "rollout")
    for e in endpoints:
        table.add_row(
            e.name,
            e.model,
            f"v{e.stable.number}" if e.stable else "-",
            f"v{e.canary.number} {e.canary_weight:g}%" if e.canary else "-",
            e.state,
            f"{e.rollout.kind} {e.rollout.state}" if e.rollout else "-",
        )
    out.print(table)


@endpoint_app.command("show")
def endpoint_show(endpoint: str, token_file: TokenFile = None, as_json: JsonFlag = False) -> None:
    with open_platform() as platform:
        result = platform.deployments.get(caller_of(platform, token_file), endpoint)
    _show(result, as_json)


@endpoint_app.command("history")
def endpoint_history(
    endpoint: str,
    limit: Annotated[int, typer.Option(help="Most recent N events.")] = 50,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    with open_platform() as platform:
        events = platform.deployments.history(
            caller_of(platform, token_file), endpoint, limit=limit
        )
    if as_json:
        print_json([asdict(e) for e in events])
        return
    table = new_table("at", "action", "version", "weight", "actor", "reason")
    for e in events:
        table.add_row(
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            e.action,
            f"v{e.version}" if e.version else "-",
            f"{e.weight:g}" if e.weight is not None else "-",
            e.actor,
            e.reason,
        )
    out.print(table)
