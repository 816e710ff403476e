"""`bastion privacy budget …`, `bastion privacy train`, `bastion privacy audit`: differential
privacy budgets, DP training that registers an attested model version, and
membership-inference audits that record an attestation the deploy gate can require.

`train` and `audit` are thin wrappers: they parse options, read the files named on the command
line and print what `bastion.workflows.private_models.PrivateModels` (`platform.private_models`)
returns. The order of a training run's steps (and why the budget is spent before training) and
the rule that a version whose training data was deleted is not audited are explained there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli.common import (
    JsonFlag,
    TokenFile,
    caller_of,
    err,
    new_table,
    open_platform,
    out,
    print_json,
)
from bastion.core.errors import InvalidInput
from bastion.privacy import audit as mia
from bastion.privacy.budget import Budget, Spend
from bastion.workflows.private_models import MAX_AUDIT_FILE_BYTES, check_training

budget_app = typer.Typer(help="Differential-privacy budgets per dataset.", no_args_is_help=True)


def register(group: typer.Typer) -> None:
    """Add this module's commands to `group` (`bastion privacy`)."""
    group.add_typer(budget_app, name="budget")
    group.command("train")(train)
    group.command("audit")(audit)


# -- budgets -----------------------------------------------------------------------------------


@budget_app.command("set")
def budget_set(
    dataset: Annotated[str, typer.Argument(help="Dataset name (the budget covers every version).")],
    epsilon: Annotated[float, typer.Option("--epsilon", help="Total ε.")],
    delta: Annotated[float, typer.Option("--delta", help="Total δ.")] = 0.0,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Set a dataset's total (ε, δ) budget (data stewards); never below what is spent."""
    with open_platform() as platform:
        budget = platform.privacy_budgets.set_budget(
            caller_of(platform, token_file), dataset, epsilon, delta
        )
    if as_json:
        print_json(budget)
        return
    out.print(
        f"budget of {budget.dataset}: ε {budget.epsilon_total:g}, δ {budget.delta_total:g} "
        f"(spent ε {budget.epsilon_spent:g}, δ {budget.delta_spent:g}; sequential composition)"
    )


@budget_app.command("show")
def budget_show(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """A dataset's budget, what is spent and every spend."""
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        budget = platform.privacy_budgets.status(caller, dataset)
        spends = platform.privacy_budgets.spends(caller, dataset)
    if as_json:
        print_json({"budget": budget, "spends": spends})
        return
    _print_budget(budget, spends)


def _print_budget(budget: Budget, spends: Sequence[Spend]) -> None:
    out.print(
        f"{budget.dataset}: ε {budget.epsilon_spent:g} of {budget.epsilon_total:g} spent "
        f"({budget.epsilon_remaining:g} left), δ {budget.delta_spent:g} of "
        f"{budget.delta_total:g} ({budget.delta_remaining:g} left); sequential composition"
    )
    if spends:
        table = new_table("at", "ε", "δ", "mechanism", "purpose", "subject", "id")
        for s in spends:
            table.add_row(
                s.at.isoformat(timespec="seconds"),
                f"{s.epsilon:g}",
                f"{s.delta:g}",
                s.mechanism,
                s.purpose,
                s.subject or "-",
                s.id,
            )
        out.print(table)


# -- DP training -------------------------------------------------------------------------------


def train(
    dataset: Annotated[str, typer.Option("--dataset", help="Training data: NAME or NAME@VERSION.")],
    target: Annotated[str, typer.Option("--target", help="The label column.")],
    epsilon: Annotated[float, typer.Option("--epsilon", help="ε to spend on this run.")],
    name: Annotated[str, typer.Option("--name", help="Model name (created if new).")],
    delta: Annotated[
        float, typer.Option("--delta", help="δ allowed (the built-in mechanisms spend none).")
    ] = 0.0,
    model: Annotated[
        str, typer.Option("--model", help="logistic_regression, gaussian_nb or random_forest.")
    ] = "logistic_regression",
    contract: Annotated[
        Path | None,
        typer.Option(help="Declared input contract (JSON): its min/max are the public bounds."),
    ] = None,
    holdout: Annotated[
        float, typer.Option(help="Share of rows held out to measure accuracy (0 to keep all).")
    ] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of the holdout split (not of the noise).")] = 0,
    purpose: Annotated[str | None, typer.Option(help="Declared purpose (new models).")] = None,
    description: Annotated[str, typer.Option()] = "",
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Train a model with differential privacy, spend the budget, register and attest it."""
    ref = check_training(name=name, dataset=dataset, model=model, epsilon=epsilon, delta=delta)
    declared = _json_file(contract, "contract") if contract is not None else None
    with open_platform() as platform:
        result = platform.private_models.train(
            caller_of(platform, token_file),
            dataset=ref,
            target=target,
            epsilon=epsilon,
            delta=delta,
            model=model,
            contract=declared,
            holdout=holdout,
            seed=seed,
            name=name,
            purpose=purpose,
            description=description,
        )
    if as_json:
        print_json(result.to_json())
        return
    out.print(
        f"registered {name}@{result.version}: DP {model}, ε={result.epsilon:g}, "
        f"δ={result.delta:g} ({result.mechanism})"
    )
    scores = result.scores
    if scores:
        out.print(
            f"  holdout accuracy {scores['accuracy']:.3f} (non-private baseline "
            f"{scores['baseline_accuracy']:.3f}, {result.split.test_rows} rows)"
        )
    budget = result.budget
    out.print(
        f"  budget of {budget.dataset}: ε {budget.epsilon_spent:g} of {budget.epsilon_total:g} "
        f"spent (spend {result.spend_id}); attestation {result.attestation_id}"
    )
    if declared is None:
        err.print(f"note: bounds from the {result.bounds_source}; give --contract to declare them")


# -- membership-inference audits ---------------------------------------------------------------


def audit(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version number or alias.")],
    members: Annotated[Path, typer.Option("--members", help="CSV of training rows.")],
    non_members: Annotated[
        Path, typer.Option("--non-members", help="CSV of rows the model never saw.")
    ],
    target: Annotated[str, typer.Option("--target", help="The label column.")],
    attacks: Annotated[
        str, typer.Option(help="Comma-separated: rf, gb (ART black-box), loss.")
    ] = "rf,gb,loss",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the intervals.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the split, attack models, bootstrap.")] = 0,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Run membership-inference attacks on a version and record the result as an attestation."""
    ref: str | int = int(version) if version.isdigit() else version
    member_bytes = _read_file(members, "members")
    non_member_bytes = _read_file(non_members, "non-members")
    with open_platform() as platform:
        result = platform.private_models.audit(
            caller_of(platform, token_file),
            model,
            ref,
            members_csv=member_bytes,
            non_members_csv=non_member_bytes,
            target=target,
            attacks=attacks,
            bootstrap=bootstrap,
            seed=seed,
        )
    if as_json:
        print_json(result.to_json())
        return
    report = result.report
    out.print(
        f"{model}@{result.version}: worst attack {report.worst_attack}, AUC upper bound "
        f"{report.auc_upper:.3f} ({report.members} members, {report.non_members} non-members; "
        f"accuracy {report.target_accuracy_members:.3f} / "
        f"{report.target_accuracy_non_members:.3f})"
    )
    table = new_table("attack", "AUC [95% CI]", "advantage", "TPR@1%FPR", "TPR@0.1%FPR")
    for a in report.attacks:
        table.add_row(
            a.attack,
            f"{a.auc:.3f} [{a.auc_ci.low:.3f}, {a.auc_ci.high:.3f}]",
            f"{a.advantage:.3f}",
            f"{a.tpr_at_1pct_fpr:.3f}",
            f"{a.tpr_at_01pct_fpr:.3f}",
        )
    out.print(table)
    out.print(f"attestation {result.attestation_id} ({mia.PREDICATE_TYPE})")


# -- files -------------------------------------------------------------------------------------


def _read_file(path: Path, what: str) -> bytes:
    """A row file's bytes, refused unread when larger than an audit takes."""
    try:
        size = path.stat().st_size
        if size > MAX_AUDIT_FILE_BYTES:
            raise InvalidInput(
                f"the {what} file is larger than {MAX_AUDIT_FILE_BYTES} bytes",
                code="privacy.bad_audit_input",
            )
        data = path.read_bytes()
    except OSError as error:
        raise InvalidInput(
            f"cannot read the {what} file {path}: {error.strerror}", code="privacy.bad_audit_input"
        ) from None
    return data


def _json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidInput(f"cannot read {what} file {path}: {error.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInput(f"{what} file {path} is not JSON: {error}") from None
