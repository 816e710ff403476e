"""`bastion privacy budget …`, `bastion privacy train`, `bastion privacy audit`: differential
privacy budgets, DP training that registers an attested model version, and
membership-inference audits that record an attestation the deploy gate can require.

`privacy train` runs, in this order (cheap refusals first, and the budget is spent *before*
training — a crash after the spend never lets the same budget train twice; the cost is that a
crashed run's ε stays spent, which errs on the side of the people in the data):

1. read the stored training CSV (ledgered as `privacy.dataset.read`) and the public bounds:
   a declared contract (`--contract`), else the contract derived from the CSV — whose column
   ranges the registry publishes anyway, but which ε then does not cover (said in the output
   and the attestation);
2. check the caller may register and attest, split off a stratified holdout (`--holdout`,
   `--seed`; the split is not private, the noise is drawn from the OS's secure generator);
3. spend (ε, δ) from the dataset's budget (`privacy_budget` gate, atomic);
4. train the DP model and a non-DP baseline on the same split (accuracies on the holdout are
   computed on private rows and are not covered by ε: they are for the trainer, who has data
   access anyway, and for the attestation);
5. register the version (skops, plain scikit-learn types only) with the training dataset in
   its lineage, and attest it (`https://bastion.dev/attestations/differential-privacy/v1`).

`privacy audit` refuses a version whose training data was deleted (`privacy.data_deleted`):
the rule is that if any dataset in the version's *training* lineage is `deleting` or
`deleted`, the rows offered as "members" claim to be data that retention says must be gone,
and an audit would both process them again and certify a claim nobody can check any more.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
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
from bastion.core.errors import Conflict, InvalidInput
from bastion.identity import Permission
from bastion.privacy import audit as mia
from bastion.privacy import dp
from bastion.privacy.budget import Budget, Spend
from bastion.registry import DatasetRef, LineageRole, ModelSpec, VersionSpec, local_environment
from bastion.registry.contract import FieldType, InputContract, derive_from_csv
from bastion.registry.records import check_name

budget_app = typer.Typer(help="Differential-privacy budgets per dataset.", no_args_is_help=True)

MAX_AUDIT_FILE_BYTES = 512 * 1024 * 1024
_INTEGER = re.compile(r"^[+-]?\d{1,18}$")
_DELETED = frozenset({"deleting", "deleted"})


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
    check_name(name, "model")
    ref = DatasetRef.parse(dataset)
    dp.dp_cost(model, epsilon, delta)  # validates model, ε and δ before anything happens
    declared = _json_file(contract, "contract") if contract is not None else None
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        for permission in (Permission.MODEL_WRITE, Permission.ATTESTATION_WRITE):
            platform.authorizer.authorize(caller, permission)
        data = platform.privacy_budgets.training_data(caller, ref.name, ref.version)
        text = _utf8(data.data, data.ref)
        if declared is not None:
            contract_doc = InputContract.from_json(declared).to_json()
            bounds_source = "declared contract"
        else:
            contract_doc = derive_from_csv(io.StringIO(text), exclude=[target]).to_json()
            bounds_source = (
                "contract derived from the training data: its column ranges are published "
                "by the registry and are not covered by ε"
            )
        names, bounds = dp.bounds_from_contract(contract_doc)
        x, labels = _read_rows(text, names, _kinds(contract_doc), target, data.ref, exact=False)
        y = _label_values(labels)
        train_rows, test_rows = dp.holdout_split(y, holdout, seed)
        cost_epsilon, cost_delta = dp.dp_cost(model, epsilon, delta)
        spend = platform.privacy_budgets.spend(
            caller,
            data.name,
            cost_epsilon,
            cost_delta,
            mechanism=dp.MECHANISMS[model],
            purpose=f"DP training of model {name} on {data.ref}",
            subject=f"model:{name}",
        )
        result = dp.train_dp(
            x[train_rows], y[train_rows], epsilon=cost_epsilon, delta=delta, model=model,
            bounds=bounds,
        )  # fmt: skip
        baseline = dp.train_baseline(
            x[train_rows], y[train_rows], model=model, bounds=bounds, random_state=seed
        )
        scores: dict[str, float] = {}
        if len(test_rows):
            scores["accuracy"] = dp.accuracy(result.estimator, x[test_rows], y[test_rows])
            scores["baseline_accuracy"] = dp.accuracy(baseline, x[test_rows], y[test_rows])
        split = {
            "holdout": holdout,
            "seed": seed,
            "train_rows": len(train_rows),
            "test_rows": len(test_rows),
        }
        version = _register_estimator(
            platform, caller, name, result.estimator,
            VersionSpec(
                datasets=(DatasetRef(data.name, data.version, LineageRole.TRAINING),),
                description=description or f"DP {model} (ε={result.epsilon:g}) on {data.ref}",
                metrics=scores,
                parameters={
                    "dp_model": model,
                    "epsilon": result.epsilon,
                    "delta": result.delta,
                    "spend_id": spend.id,
                    **split,
                },
                environment=local_environment(),
                input_contract=contract_doc,
                task="classification",
                framework="scikit-learn",
                target=target,
            ),
            ModelSpec(purpose=purpose),
        )  # fmt: skip
        predicate = {
            **result.predicate(),
            "spend_id": spend.id,
            "dataset": {"name": data.name, "version": data.version, "digest": data.digest},
            "bounds_source": bounds_source,
            "split": split,
            "accuracy": scores,
        }
        attestation = platform.attestations.attest(
            caller, name, version.version, dp.PREDICATE_TYPE, predicate
        )
        budget = platform.privacy_budgets.status(caller, data.name)
    summary = {
        "model": name,
        "version": version.version,
        "version_id": version.id,
        "artifact_digest": version.artifact_digest,
        "dataset": data.ref,
        "dp_model": model,
        "epsilon": result.epsilon,
        "delta": result.delta,
        "mechanism": result.mechanism,
        "spend_id": spend.id,
        "attestation_id": attestation.id,
        "bounds_source": bounds_source,
        **scores,
        **split,
        "budget": {
            "epsilon_spent": budget.epsilon_spent,
            "epsilon_total": budget.epsilon_total,
            "epsilon_remaining": budget.epsilon_remaining,
            "delta_spent": budget.delta_spent,
            "delta_total": budget.delta_total,
        },
    }
    if as_json:
        print_json(summary)
        return
    out.print(
        f"registered {name}@{version.version}: DP {model}, ε={result.epsilon:g}, "
        f"δ={result.delta:g} ({result.mechanism})"
    )
    if scores:
        out.print(
            f"  holdout accuracy {scores['accuracy']:.3f} (non-private baseline "
            f"{scores['baseline_accuracy']:.3f}, {len(test_rows)} rows)"
        )
    out.print(
        f"  budget of {data.name}: ε {budget.epsilon_spent:g} of {budget.epsilon_total:g} "
        f"spent (spend {spend.id}); attestation {attestation.id}"
    )
    if declared is None:
        err.print(f"note: bounds from the {bounds_source}; give --contract to declare them")


def _register_estimator(
    platform: Any, caller: Any, name: str, estimator: Any, spec: VersionSpec, create: ModelSpec
) -> Any:
    import skops.io as sio

    with tempfile.TemporaryDirectory(prefix="bastion-dp-") as scratch:
        root = Path(scratch) / "model"
        root.mkdir()
        (root / "model.skops").write_bytes(sio.dumps(estimator))
        upload = platform.staging.create(caller)
        try:
            platform.staging.add_tree(caller, upload.id, root)
        except BaseException:
            platform.staging.abort(caller, upload.id)
            raise
        return platform.models.register_version(caller, name, upload.id, spec, create=create)


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
    chosen = [a.strip() for a in attacks.split(",") if a.strip()]
    ref: str | int = int(version) if version.isdigit() else version
    member_bytes, member_digest = _read_file(members, "members")
    non_member_bytes, non_member_digest = _read_file(non_members, "non-members")
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        platform.authorizer.authorize(caller, Permission.ATTESTATION_WRITE)
        found = platform.models.version(caller, model, ref)
        for link in found.lineage:
            if link.role is not LineageRole.TRAINING:
                continue
            used = platform.datasets.get(caller, link.dataset, link.dataset_version)
            if used.status in _DELETED:
                raise Conflict(
                    f"{found.ref} was trained on {used.ref}, which is {used.status} under "
                    "retention; its rows may not be processed again, so the version cannot "
                    "be audited",
                    code="privacy.data_deleted",
                )
        if found.input_contract is None:
            raise InvalidInput(
                f"{found.ref} has no input contract; an audit needs one to read the rows",
                code="privacy.bad_audit_input",
            )
        contract = InputContract.from_json(found.input_contract)
        predictor = _predictor(platform, caller, found.id, contract)
        doc = contract.to_json()
        names = [f["name"] for f in doc["fields"]]
        kinds = _kinds(doc)
        xm, ym = _read_rows(_utf8(member_bytes, str(members)), names, kinds, target, "members")
        xn, yn = _read_rows(
            _utf8(non_member_bytes, str(non_members)), names, kinds, target, "non-members"
        )
        classes = list(predictor.classes)
        report = mia.audit(
            _probabilities(predictor, contract),
            xm,
            mia.label_indices(ym, classes),
            xn,
            mia.label_indices(yn, classes),
            n_classes=len(classes),
            attacks=chosen,
            bootstrap=bootstrap,
            seed=seed,
        )
        attestation = platform.attestations.attest(
            caller,
            model,
            found.version,
            mia.PREDICATE_TYPE,
            mia.predicate(
                report,
                members_sha256=member_digest,
                non_members_sha256=non_member_digest,
                target=target,
                model_kind=predictor.kind,
                tool="bastion privacy audit",
            ),
        )
    if as_json:
        print_json(
            {
                "model": model,
                "version": found.version,
                "attestation_id": attestation.id,
                "members_sha256": member_digest,
                "non_members_sha256": non_member_digest,
                **report.to_json(),
            }
        )
        return
    out.print(
        f"{model}@{found.version}: worst attack {report.worst_attack}, AUC upper bound "
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
    out.print(f"attestation {attestation.id} ({mia.PREDICATE_TYPE})")


def _predictor(platform: Any, caller: Any, version_id: str, contract: InputContract) -> Any:
    """The version's model from its verified bytes, through the gateway's safe loaders."""
    from bastion.serving.loaders import load_predictor

    files = platform.models.read_verified_files(
        caller, version_id, max_bytes=platform.settings.max_serving_bytes
    )
    predictor = load_predictor(
        {f.path: f.data for f in files}, contract, allowlist=platform.models.allowlist
    )
    classes = getattr(predictor, "classes", None)
    if classes is None or len(classes) < 2:
        raise InvalidInput(
            "membership-inference audits need a classifier with class probabilities",
            code="privacy.bad_audit_input",
        )
    return predictor


def _probabilities(predictor: Any, contract: InputContract) -> mia.PredictProba:
    """`predict_proba` over the served model: contract-checked batches of at most
    `max_rows`, exactly as the gateway would answer them."""
    fields = contract.fields

    def predict(x: np.ndarray) -> np.ndarray:
        chunks = []
        for start in range(0, len(x), contract.max_rows):
            block = x[start : start + contract.max_rows]
            columns = {
                spec.name: (block[:, j] != 0) if spec.type is FieldType.BOOLEAN else block[:, j]
                for j, spec in enumerate(fields)
            }
            prediction = predictor.predict(contract.validate_columns(columns))
            probabilities = prediction.outputs.get("probabilities")
            if probabilities is None:
                raise InvalidInput(
                    "the model returns no class probabilities; it cannot be audited",
                    code="privacy.bad_audit_input",
                )
            chunks.append(np.asarray(probabilities, dtype=np.float64))
        return np.concatenate(chunks)

    return predict


# -- reading rows ------------------------------------------------------------------------------


def _kinds(contract_doc: Mapping[str, Any]) -> list[str]:
    return [str(f.get("type")) for f in contract_doc["fields"]]


def _read_rows(
    text: str,
    names: Sequence[str],
    kinds: Sequence[str],
    target: str,
    what: str,
    *,
    exact: bool = True,
) -> tuple[np.ndarray, list[str]]:
    """Features (in contract order, as floats; booleans 0/1) and raw labels from CSV text.

    `exact`: the header must be the contract's fields plus `target`, nothing else
    (`privacy.bad_columns`); otherwise extra columns are ignored. Missing or non-numeric
    values are `privacy.bad_data` with the line number (never the value)."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, None)
        if not header:
            raise InvalidInput(f"{what}: the CSV has no header row", code="privacy.bad_data")
        missing = [n for n in [*names, target] if n not in header]
        unknown = [h for h in header if h not in names and h != target]
        if missing or (exact and unknown):
            raise InvalidInput(
                f"{what}: the CSV's columns do not match the model's contract and label "
                f"(missing: {', '.join(missing[:10]) or '-'}; unknown: "
                f"{', '.join(unknown[:10]) or '-'})",
                code="privacy.bad_columns",
            )
        if len(set(header)) != len(header):
            raise InvalidInput(f"{what}: the CSV header repeats a column", code="privacy.bad_data")
        where = [header.index(n) for n in names]
        label_at = header.index(target)
        rows: list[list[float]] = []
        labels: list[str] = []
        for row in reader:
            if not row:
                continue
            line = reader.line_num
            if len(row) != len(header):
                raise InvalidInput(
                    f"{what}: line {line} has {len(row)} values; the header has {len(header)}",
                    code="privacy.bad_data",
                )
            rows.append(
                [_number(row[i], kind, what, line) for i, kind in zip(where, kinds, strict=True)]
            )
            label = row[label_at].strip()
            if not label:
                raise InvalidInput(f"{what}: line {line} has no label", code="privacy.bad_data")
            labels.append(label)
    except csv.Error as error:
        raise InvalidInput(
            f"{what}: CSV line {reader.line_num}: {error}", code="privacy.bad_data"
        ) from None
    if not rows:
        raise InvalidInput(f"{what}: the CSV has no rows", code="privacy.bad_data")
    return np.asarray(rows, dtype=np.float64), labels


def _number(cell: str, kind: str, what: str, line: int) -> float:
    text = cell.strip()
    if kind == FieldType.BOOLEAN:
        lowered = text.lower()
        if lowered in ("true", "1"):
            return 1.0
        if lowered in ("false", "0"):
            return 0.0
    else:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if np.isfinite(value):
            return value
    raise InvalidInput(
        f"{what}: line {line} has a missing or non-numeric value (DP training and audits take "
        "complete numeric rows)",
        code="privacy.bad_data",
    )


def _label_values(labels: Sequence[str]) -> np.ndarray:
    """Integer labels when every label is an integer, else the text."""
    if all(_INTEGER.match(label) for label in labels):
        return np.asarray([int(label) for label in labels])
    return np.asarray(labels)


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{what} is not UTF-8 CSV", code="privacy.bad_data") from None


def _read_file(path: Path, what: str) -> tuple[bytes, str]:
    """A row file's bytes (bounded) and their SHA-256 (what the attestation names)."""
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
    return data, f"sha256:{hashlib.sha256(data).hexdigest()}"


def _json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidInput(f"cannot read {what} file {path}: {error.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInput(f"{what} file {path} is not JSON: {error}") from None
