"""Private models: DP training that registers an attested model version, and
membership-inference audits that record an attestation the deploy gate can require.

The one implementation behind `bastion privacy train` / `bastion privacy audit` (thin wrappers
that read files and print), the API and `bastion demo`. It needs the privacy budget, the
registry and the gateway's safe loaders together, which is why it lives here rather than in
`bastion.privacy` (below the registry) or `bastion.registry` (below serving).

`PrivateModels.train` runs, in this order (cheap refusals first, and the budget is spent
*before* training — a crash after the spend never lets the same budget train twice; the cost is
that a crashed run's ε stays spent, which errs on the side of the people in the data):

1. read the stored training CSV (ledgered as `privacy.dataset.read`) and the public bounds:
   a declared contract (`contract`), else the contract derived from the CSV — whose column
   ranges the registry publishes anyway, but which ε then does not cover (said in the result
   and the attestation);
2. check the caller may register and attest, split off a stratified holdout (`holdout`,
   `seed`; the split is not private, the noise is drawn from the OS's secure generator), and
   dry-run the `model_register` gate on the version-to-be (`ModelService.preflight_register`:
   purpose limitation, retention, a bundle's own rules), so what registration would refuse
   is refused before anything is spent;
3. spend (ε, δ) from the dataset's budget (`privacy_budget` gate, atomic);
4. train the DP model and a non-DP baseline on the same split (accuracies on the holdout are
   computed on private rows and are not covered by ε: they are for the trainer, who has data
   access anyway, and for the attestation);
5. register the version (skops, plain scikit-learn types only) with the training dataset in
   its lineage, and attest it (`https://bastion.dev/attestations/differential-privacy/v1`).

`PrivateModels.audit` refuses a version whose training data was deleted
(`privacy.data_deleted`): the rule is that if any dataset in the version's *training* lineage
is `deleting` or `deleted`, the rows offered as "members" claim to be data that retention says
must be gone, and an audit would both process them again and certify a claim nobody can check
any more. Row files larger than `MAX_AUDIT_FILE_BYTES` are refused
(`privacy.bad_audit_input`) before anything else happens.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from bastion.core.errors import Conflict, InvalidInput
from bastion.identity import Authorizer, Caller, Permission
from bastion.privacy import audit as mia
from bastion.privacy import dp
from bastion.privacy.budget import Budget, PrivacyBudgetService
from bastion.registry import (
    AttestationService,
    DatasetRef,
    DatasetService,
    LineageRole,
    ModelService,
    ModelSpec,
    ModelVersion,
    Staging,
    VersionSpec,
    local_environment,
)
from bastion.registry.contract import FieldType, InputContract, derive_from_csv
from bastion.registry.records import check_name
from bastion.serving.loaders import Predictor, load_predictor
from bastion.supplychain.scan import AllowList

__all__ = [
    "MAX_AUDIT_FILE_BYTES",
    "AuditResult",
    "HoldoutSplit",
    "PrivateModels",
    "TrainResult",
    "check_training",
]

MAX_AUDIT_FILE_BYTES: Final = 512 * 1024 * 1024
"""The largest members or non-members CSV an audit reads."""

DERIVED_BOUNDS: Final = (
    "contract derived from the training data: its column ranges are published by the registry "
    "and are not covered by ε"
)
DECLARED_BOUNDS: Final = "declared contract"
AUDIT_TOOL: Final = "bastion privacy audit"

_INTEGER = re.compile(r"^[+-]?\d{1,18}$")
_DELETED = frozenset({"deleting", "deleted"})


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HoldoutSplit:
    """How the training rows were split (not private: the seed is the caller's)."""

    holdout: float
    seed: int
    train_rows: int
    test_rows: int

    def to_json(self) -> dict[str, float | int]:
        return {
            "holdout": self.holdout,
            "seed": self.seed,
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
        }


@dataclass(frozen=True, slots=True)
class TrainResult:
    """A DP training run: the registered version, its guarantee, the spend and the budget."""

    model: str
    version: int
    version_id: str
    artifact_digest: str
    dataset: str  # NAME@VERSION of the training data
    dataset_digest: str
    dp_model: str
    epsilon: float  # what the run's accountant spent
    delta: float
    mechanism: str
    spend_id: str
    attestation_id: str
    bounds_source: str
    bounds_declared: bool  # False: bounds derived from the data, not covered by ε
    scores: Mapping[str, float]  # accuracy and baseline_accuracy on the holdout; {} without one
    split: HoldoutSplit
    budget: Budget  # the dataset's budget after the spend

    def to_json(self) -> dict[str, Any]:
        """The summary `bastion privacy train --json` prints."""
        return {
            "model": self.model,
            "version": self.version,
            "version_id": self.version_id,
            "artifact_digest": self.artifact_digest,
            "dataset": self.dataset,
            "dp_model": self.dp_model,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "mechanism": self.mechanism,
            "spend_id": self.spend_id,
            "attestation_id": self.attestation_id,
            "bounds_source": self.bounds_source,
            **self.scores,
            **self.split.to_json(),
            "budget": {
                "epsilon_spent": self.budget.epsilon_spent,
                "epsilon_total": self.budget.epsilon_total,
                "epsilon_remaining": self.budget.epsilon_remaining,
                "delta_spent": self.budget.delta_spent,
                "delta_total": self.budget.delta_total,
            },
        }


@dataclass(frozen=True, slots=True)
class AuditResult:
    """A membership-inference audit of a version and the attestation that records it."""

    model: str
    version: int
    version_id: str
    model_kind: str  # the loader that served it: onnx, skops, pickle or joblib
    attestation_id: str
    members_sha256: str  # sha256:HEX of the members CSV as given
    non_members_sha256: str
    report: mia.AuditReport

    def to_json(self) -> dict[str, Any]:
        """What `bastion privacy audit --json` prints."""
        return {
            "model": self.model,
            "version": self.version,
            "attestation_id": self.attestation_id,
            "members_sha256": self.members_sha256,
            "non_members_sha256": self.non_members_sha256,
            **self.report.to_json(),
        }


# -- the service -------------------------------------------------------------------------------


def check_training(
    *, name: str, dataset: DatasetRef | str, model: str, epsilon: float, delta: float
) -> DatasetRef:
    """The checks a training request passes before anything is read or spent: the model name,
    the dataset reference (`NAME` or `NAME@VERSION`), the DP model, ε and δ. Raises
    `InvalidInput` (`registry.bad_name`, `registry.bad_reference`, `privacy.unknown_model`,
    `privacy.bad_amount`)."""
    check_name(name, "model")
    ref = dataset if isinstance(dataset, DatasetRef) else DatasetRef.parse(dataset)
    dp.dp_cost(model, epsilon, delta)
    return ref


class PrivateModels:
    """DP training and membership-inference audits over the registry (see the module)."""

    def __init__(
        self,
        *,
        authorizer: Authorizer,
        privacy_budgets: PrivacyBudgetService,
        datasets: DatasetService,
        models: ModelService,
        staging: Staging,
        attestations: AttestationService,
        allowlist: AllowList,
        max_serving_bytes: int,
        max_audit_bytes: int = MAX_AUDIT_FILE_BYTES,
    ) -> None:
        self._authz = authorizer
        self._budgets = privacy_budgets
        self._datasets = datasets
        self._models = models
        self._staging = staging
        self._attestations = attestations
        self._allowlist = allowlist
        self._max_serving_bytes = max_serving_bytes
        self._max_audit_bytes = max_audit_bytes

    # -- DP training ---------------------------------------------------------------------

    def train(
        self,
        caller: Caller,
        *,
        dataset: DatasetRef | str,
        target: str,
        epsilon: float,
        name: str,
        delta: float = 0.0,
        model: str = "logistic_regression",
        contract: Mapping[str, Any] | None = None,
        holdout: float = 0.3,
        seed: int = 0,
        purpose: str | None = None,
        description: str = "",
    ) -> TrainResult:
        """Train `model` (`dp.MODELS`) with ε-DP on a stored dataset version (the newest when
        `dataset` names none), spend (ε, δ) from its budget, register the result as a version
        of model `name` (created with `purpose` if new) and attest its guarantee.

        `contract` is a declared input-contract document whose min/max are the public bounds
        (else they are derived from the data). Needs `model:write`, `attestation:write` and
        `dataset:read`; the spend passes the `privacy_budget` gate (`PolicyDenied`).
        """
        ref = check_training(name=name, dataset=dataset, model=model, epsilon=epsilon, delta=delta)
        for permission in (Permission.MODEL_WRITE, Permission.ATTESTATION_WRITE):
            self._authz.authorize(caller, permission)
        data = self._budgets.training_data(caller, ref.name, ref.version)
        text = _utf8(data.data, data.ref)
        if contract is not None:
            contract_doc = InputContract.from_json(contract).to_json()
            bounds_source = DECLARED_BOUNDS
        else:
            contract_doc = derive_from_csv(io.StringIO(text), exclude=[target]).to_json()
            bounds_source = DERIVED_BOUNDS
        names, bounds = dp.bounds_from_contract(contract_doc)
        x, labels = _read_rows(text, names, _kinds(contract_doc), target, data.ref, exact=False)
        y = _label_values(labels)
        train_rows, test_rows = dp.holdout_split(y, holdout, seed)
        cost_epsilon, cost_delta = dp.dp_cost(model, epsilon, delta)
        lineage = (DatasetRef(data.name, data.version, LineageRole.TRAINING),)
        # The spend cannot be undone: refuse first what registration would refuse (purpose
        # limitation, retention, a custom bundle's rules), by a dry run of its gate.
        self._models.preflight_register(caller, name, lineage, create=ModelSpec(purpose=purpose))
        spend = self._budgets.spend(
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
        split = HoldoutSplit(
            holdout=holdout, seed=seed, train_rows=len(train_rows), test_rows=len(test_rows)
        )
        version = self._register_estimator(
            caller, name, result.estimator,
            VersionSpec(
                datasets=lineage,
                description=description or f"DP {model} (ε={result.epsilon:g}) on {data.ref}",
                metrics=scores,
                parameters={
                    "dp_model": model,
                    "epsilon": result.epsilon,
                    "delta": result.delta,
                    "spend_id": spend.id,
                    **split.to_json(),
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
            "split": split.to_json(),
            "accuracy": scores,
        }
        attestation = self._attestations.attest(
            caller, name, version.version, dp.PREDICATE_TYPE, predicate
        )
        budget = self._budgets.status(caller, data.name)
        return TrainResult(
            model=name,
            version=version.version,
            version_id=version.id,
            artifact_digest=version.artifact_digest,
            dataset=data.ref,
            dataset_digest=data.digest,
            dp_model=model,
            epsilon=result.epsilon,
            delta=result.delta,
            mechanism=result.mechanism,
            spend_id=spend.id,
            attestation_id=attestation.id,
            bounds_source=bounds_source,
            bounds_declared=contract is not None,
            scores=scores,
            split=split,
            budget=budget,
        )

    def _register_estimator(
        self, caller: Caller, name: str, estimator: Any, spec: VersionSpec, create: ModelSpec
    ) -> ModelVersion:
        import skops.io as sio

        with tempfile.TemporaryDirectory(prefix="bastion-dp-") as scratch:
            root = Path(scratch) / "model"
            root.mkdir()
            (root / "model.skops").write_bytes(sio.dumps(estimator))
            upload = self._staging.create(caller)
            try:
                self._staging.add_tree(caller, upload.id, root)
            except BaseException:
                self._staging.abort(caller, upload.id)
                raise
            return self._models.register_version(caller, name, upload.id, spec, create=create)

    # -- membership-inference audits -----------------------------------------------------

    def audit(
        self,
        caller: Caller,
        model: str,
        version_ref: str | int,
        *,
        members_csv: bytes,
        non_members_csv: bytes,
        target: str,
        attacks: str | Sequence[str] = mia.ATTACKS,
        bootstrap: int = 200,
        seed: int = 0,
        tool: str = AUDIT_TOOL,
    ) -> AuditResult:
        """Run membership-inference `attacks` (`rf`, `gb`, `loss`; a list or comma-separated)
        on version `version_ref` (number or alias) of `model`, with `members_csv` rows it was
        trained on and `non_members_csv` rows it never saw (the contract's fields plus
        `target`, nothing else), and attest the report (`mia.PREDICATE_TYPE`, naming `tool`).

        Needs `attestation:write` and `model:read`. Raises `InvalidInput`
        (`privacy.bad_audit_input`, `privacy.bad_columns`, `privacy.bad_data`,
        `privacy.unknown_attack`, the loaders' `serving.*`), `Conflict`
        (`privacy.data_deleted`) and `NotFound`.
        """
        chosen = _attack_list(attacks)
        member_digest = self._digest(members_csv, "members")
        non_member_digest = self._digest(non_members_csv, "non-members")
        self._authz.authorize(caller, Permission.ATTESTATION_WRITE)
        found = self._models.version(caller, model, version_ref)
        self._check_training_data_kept(caller, found)
        if found.input_contract is None:
            raise InvalidInput(
                f"{found.ref} has no input contract; an audit needs one to read the rows",
                code="privacy.bad_audit_input",
            )
        contract = InputContract.from_json(found.input_contract)
        predictor, classes = self._predictor(caller, found.id, contract)
        doc = contract.to_json()
        names = [f["name"] for f in doc["fields"]]
        kinds = _kinds(doc)
        xm, ym = _read_rows(_utf8(members_csv, "the members file"), names, kinds, target, "members")
        xn, yn = _read_rows(
            _utf8(non_members_csv, "the non-members file"), names, kinds, target, "non-members"
        )
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
        attestation = self._attestations.attest(
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
                tool=tool,
            ),
        )
        return AuditResult(
            model=model,
            version=found.version,
            version_id=found.id,
            model_kind=predictor.kind,
            attestation_id=attestation.id,
            members_sha256=member_digest,
            non_members_sha256=non_member_digest,
            report=report,
        )

    def _digest(self, data: bytes, what: str) -> str:
        """A row file's SHA-256 (what the attestation names), once its size is checked."""
        if len(data) > self._max_audit_bytes:
            raise InvalidInput(
                f"the {what} CSV is larger than {self._max_audit_bytes} bytes",
                code="privacy.bad_audit_input",
            )
        return f"sha256:{hashlib.sha256(data).hexdigest()}"

    def _check_training_data_kept(self, caller: Caller, found: ModelVersion) -> None:
        """`privacy.data_deleted` when a dataset of the version's training lineage is
        `deleting` or `deleted` (see the module)."""
        for link in found.lineage:
            if link.role is not LineageRole.TRAINING:
                continue
            used = self._datasets.get(caller, link.dataset, link.dataset_version)
            if used.status in _DELETED:
                raise Conflict(
                    f"{found.ref} was trained on {used.ref}, which is {used.status} under "
                    "retention; its rows may not be processed again, so the version cannot "
                    "be audited",
                    code="privacy.data_deleted",
                )

    def _predictor(
        self, caller: Caller, version_id: str, contract: InputContract
    ) -> tuple[Predictor, list[Any]]:
        """The version's model from its verified bytes, through the gateway's safe loaders,
        and its class labels in probability-column order."""
        files = self._models.read_verified_files(
            caller, version_id, max_bytes=self._max_serving_bytes
        )
        predictor = load_predictor(
            {f.path: f.data for f in files}, contract, allowlist=self._allowlist
        )
        classes = getattr(predictor, "classes", None)
        if classes is None or len(classes) < 2:
            raise InvalidInput(
                "membership-inference audits need a classifier with class probabilities",
                code="privacy.bad_audit_input",
            )
        return predictor, list(classes)


def _attack_list(attacks: str | Sequence[str]) -> list[str]:
    parts = attacks.split(",") if isinstance(attacks, str) else attacks
    return [a.strip() for a in parts if a.strip()]


def _probabilities(predictor: Predictor, contract: InputContract) -> mia.PredictProba:
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
