"""Privacy over HTTP: dataset scans, re-identification risk and release checks, privacy
budgets, DP statistics, retention, DP training and membership-inference audits.

Datasets (`{name}` is a dataset name; `version`, where taken, defaults to the newest):

* `POST /v1/datasets/{name}/privacy/scan` (`dataset.write`) — scan for PII and store the
  report; `GET …/privacy/scan` (`dataset.read`) — the last report (404
  `privacy.not_scanned` when there is none).
* `POST /v1/datasets/{name}/privacy/risk` (`dataset.write`) — measure k, l and unique records
  over the declared quasi-identifiers and store the report; `GET …/privacy/risk`
  (`dataset.read`) — the last report (404 `privacy.not_measured`).
* `POST /v1/datasets/{name}/privacy/release-check` (`privacy.manage`) — the `data_release`
  gate for a release at a lower classification (403 `policy.denied` with every reason).
* `GET /v1/datasets/{name}/privacy/budget` (`dataset.read`) — the budget and every spend;
  `PUT …/privacy/budget` (`privacy.manage`) — set the total (ε, δ).
* `POST /v1/datasets/{name}/privacy/statistics` (`dataset.read`) — one DP aggregate of a
  column, paid from the budget.
* `POST /v1/datasets/{name}/legal-hold`, `…/legal-hold/release` (`privacy.manage`).

Retention: `GET /v1/retention/schedule`, `GET /v1/retention/deletions`,
`GET /v1/retention/deletions/{id}`, `POST /v1/retention/deletions/{id}/verify`
(`dataset.read`; the service also accepts `audit.read`, which every role holding it pairs
with `dataset.read`), and `POST /v1/retention/enforce` (`privacy.manage`).

Models: `POST /v1/privacy/train` (`model.write`; the service also needs `attestation.write`
and `dataset.read`) and `POST /v1/models/{name}/versions/{ref}/privacy-audit`
(`attestation.write`; also `model.read`). An audit's row files travel as strings in the JSON
body, so the server's request body limit (`max_request_bytes`, 1 MiB by default) bounds them;
larger audits go through `bastion privacy audit`.

No response holds a value from the data: reports carry column names, entity types, shares and
counts; statistics only the noisy answer. Each route is a plain `def`, so FastAPI runs the
service call (scans, measurements, training and audits are CPU-bound) in its threadpool, off
the event loop. Validation of arguments is the services', with their error codes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from bastion.api.deps import CurrentCaller, PlatformDep, permission
from bastion.api.schemas import Strict
from bastion.core.errors import NotFound, Unavailable
from bastion.identity import Permission
from bastion.privacy import audit as mia
from bastion.privacy.budget import MAX_DELTA, MAX_EPSILON, Budget, Spend
from bastion.privacy.retention import (
    MAX_LIST,
    DeletionCheck,
    EnforcementReport,
    HoldChange,
    RetentionSchedule,
)
from bastion.privacy.retention import MAX_REASON as MAX_HOLD_REASON
from bastion.privacy.retention import Deletion as DeletionRecord
from bastion.privacy.risk import MAX_QUASI_IDENTIFIERS, MAX_SENSITIVE, ReleaseCheck, RiskMeasurement
from bastion.privacy.risk import MAX_REASON as MAX_RELEASE_REASON
from bastion.privacy.scan import DEFAULT_SAMPLE, MAX_SAMPLE, DatasetScan
from bastion.privacy.stats import MAX_BINS, STATISTICS
from bastion.workflows import MAX_AUDIT_FILE_BYTES

router = APIRouter(tags=["privacy"])

AUDIT_TOOL = "bastion api"
"""The `tool` an audit's attestation names when it was run over HTTP."""

Version = Annotated[int | None, Field(ge=1, description="default: the newest")]
Column = Annotated[str, Field(min_length=1, max_length=256)]


class ScanIn(Strict):
    version: Version = None
    sample: int = Field(
        default=DEFAULT_SAMPLE, ge=1, le=MAX_SAMPLE, description="rows to sample (reservoir)"
    )


class RiskIn(Strict):
    version: Version = None
    quasi_identifiers: list[Column] = Field(max_length=MAX_QUASI_IDENTIFIERS)
    sensitive: list[Column] = Field(
        default_factory=list, max_length=MAX_SENSITIVE, description="for l-diversity"
    )


class ReleaseIn(Strict):
    version: Version = None
    to_classification: str = Field(max_length=32, description="the level it is released at")
    reason: str = Field(max_length=MAX_RELEASE_REASON, description="recorded in the ledger")


class BudgetIn(Strict):
    epsilon: float = Field(gt=0, le=MAX_EPSILON, allow_inf_nan=False, description="total ε")
    delta: float = Field(default=0.0, ge=0, le=MAX_DELTA, allow_inf_nan=False)


class BudgetOut(BaseModel):
    budget: Budget
    spends: list[Spend]


class StatisticIn(Strict):
    version: Version = None
    column: Column
    statistic: str = Field(max_length=16, description=" | ".join(STATISTICS))
    epsilon: float = Field(gt=0, le=MAX_EPSILON, allow_inf_nan=False, description="ε to spend")
    lower: float | None = Field(default=None, description="public lower bound (all but count)")
    upper: float | None = Field(default=None, description="public upper bound (all but count)")
    quantile: float | None = Field(default=None, ge=0, le=1, description="for `quantile`")
    bins: int = Field(default=10, ge=1, le=MAX_BINS, description="for `histogram`")


class HoldIn(Strict):
    version: int | None = Field(default=None, ge=1, description="default: every active version")
    reason: str = Field(max_length=MAX_HOLD_REASON, description="recorded in the ledger")


class EnforceIn(Strict):
    dry_run: bool = Field(default=False, description="say what would be deleted; change nothing")


class TrainIn(Strict):
    dataset: str = Field(max_length=160, description="training data: NAME or NAME@VERSION")
    target: Column = Field(description="the label column")
    epsilon: float = Field(gt=0, le=MAX_EPSILON, allow_inf_nan=False, description="ε to spend")
    delta: float = Field(default=0.0, ge=0, le=MAX_DELTA, allow_inf_nan=False)
    model: str = Field(
        default="logistic_regression",
        max_length=64,
        description="logistic_regression, gaussian_nb or random_forest",
    )
    contract: dict[str, Any] | None = Field(
        default=None,
        description="declared input contract: its min/max are the public bounds (else they "
        "are derived from the data, which ε does not cover)",
    )
    holdout: float = Field(default=0.3, ge=0, lt=1, description="share of rows held out")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="seed of the holdout split")
    name: str = Field(max_length=128, description="model name (created if new)")
    purpose: str | None = Field(default=None, max_length=128, description="for a new model")
    description: str = Field(default="", max_length=2000)


class AuditIn(Strict):
    members_csv: str = Field(
        min_length=1, max_length=MAX_AUDIT_FILE_BYTES, description="CSV of training rows"
    )
    non_members_csv: str = Field(
        min_length=1, max_length=MAX_AUDIT_FILE_BYTES, description="CSV of rows never seen"
    )
    target: Column = Field(description="the label column")
    attacks: list[str] = Field(
        default_factory=lambda: list(mia.ATTACKS),
        min_length=1,
        max_length=len(mia.ATTACKS),
        description="of rf, gb (ART black-box) and loss",
    )
    bootstrap: int = Field(
        default=200, ge=mia.MIN_BOOTSTRAP, le=mia.MAX_BOOTSTRAP, description="resamples"
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1)


# -- scans and re-identification risk ----------------------------------------------------------


@router.post("/v1/datasets/{name}/privacy/scan", openapi_extra=permission(Permission.DATASET_WRITE))
def scan_dataset(
    name: str, body: ScanIn, caller: CurrentCaller, platform: PlatformDep
) -> DatasetScan:
    """Scan the stored CSV's columns for PII over a deterministic sample and store the report
    (per column: entity types and the share of values holding them, never a value)."""
    return platform.privacy_scan.scan(caller, name, body.version, sample=body.sample)


@router.get("/v1/datasets/{name}/privacy/scan", openapi_extra=permission(Permission.DATASET_READ))
def scan_report(
    name: str,
    caller: CurrentCaller,
    platform: PlatformDep,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> DatasetScan:
    """The last stored scan; 404 `privacy.not_scanned` if the version was never scanned."""
    found = platform.privacy_scan.report(caller, name, version)
    if found is None:
        raise NotFound(
            f"dataset {_ref(name, version)} was never scanned", code="privacy.not_scanned"
        )
    return found


@router.post("/v1/datasets/{name}/privacy/risk", openapi_extra=permission(Permission.DATASET_WRITE))
def measure_risk(
    name: str, body: RiskIn, caller: CurrentCaller, platform: PlatformDep
) -> RiskMeasurement:
    """Measure k-anonymity, l-diversity and unique records exactly and store the report."""
    return platform.privacy_risk.measure(
        caller,
        name,
        body.version,
        quasi_identifiers=body.quasi_identifiers,
        sensitive=body.sensitive,
    )


@router.get("/v1/datasets/{name}/privacy/risk", openapi_extra=permission(Permission.DATASET_READ))
def risk_report(
    name: str,
    caller: CurrentCaller,
    platform: PlatformDep,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> RiskMeasurement:
    """The last stored measurement; 404 `privacy.not_measured` if there is none."""
    found = platform.privacy_risk.report(caller, name, version)
    if found is None:
        raise NotFound(
            f"the re-identification risk of dataset {_ref(name, version)} was never measured",
            code="privacy.not_measured",
        )
    return found


@router.post(
    "/v1/datasets/{name}/privacy/release-check",
    openapi_extra=permission(Permission.PRIVACY_MANAGE),
)
def release_check(
    name: str, body: ReleaseIn, caller: CurrentCaller, platform: PlatformDep
) -> ReleaseCheck:
    """May the version be released at `to_classification`? The `data_release` gate decides
    (a lower level needs a stored measurement with k >= the bundle's `release.k_min`); the
    decision is recorded either way. Only the check: copying the data out is not Bastion's."""
    return platform.privacy_risk.release_check(
        caller, name, body.to_classification, body.reason, version=body.version
    )


# -- budgets and DP statistics -----------------------------------------------------------------


@router.get("/v1/datasets/{name}/privacy/budget", openapi_extra=permission(Permission.DATASET_READ))
def get_budget(name: str, caller: CurrentCaller, platform: PlatformDep) -> BudgetOut:
    """The dataset's (ε, δ) budget, what is spent, and every spend (404 `privacy.no_budget`
    when none is set)."""
    budget = platform.privacy_budgets.status(caller, name)
    return BudgetOut(budget=budget, spends=platform.privacy_budgets.spends(caller, name))


@router.put(
    "/v1/datasets/{name}/privacy/budget", openapi_extra=permission(Permission.PRIVACY_MANAGE)
)
def set_budget(name: str, body: BudgetIn, caller: CurrentCaller, platform: PlatformDep) -> Budget:
    """Set the total budget of every version of the dataset; never below what is spent
    (409 `privacy.budget_below_spent`)."""
    return platform.privacy_budgets.set_budget(caller, name, body.epsilon, body.delta)


@router.post(
    "/v1/datasets/{name}/privacy/statistics", openapi_extra=permission(Permission.DATASET_READ)
)
def dp_statistic(
    name: str, body: StatisticIn, caller: CurrentCaller, platform: PlatformDep
) -> dict[str, Any]:
    """One aggregate of one column with ε-DP, spent from the budget first (403
    `policy.denied` when it would overdraw). Only the noisy answer is returned."""
    answer = platform.privacy_stats.compute(
        caller,
        name,
        body.column,
        body.statistic,
        epsilon=body.epsilon,
        version=body.version,
        lower=body.lower,
        upper=body.upper,
        quantile=body.quantile,
        bins=body.bins,
    )
    return answer.to_json()


# -- retention ---------------------------------------------------------------------------------


@router.post("/v1/datasets/{name}/legal-hold", openapi_extra=permission(Permission.PRIVACY_MANAGE))
def legal_hold(
    name: str, body: HoldIn, caller: CurrentCaller, platform: PlatformDep
) -> list[HoldChange]:
    """Put the version (every active version without one) under legal hold: never deleted
    until released. Passes the `retention` gate; ledgered with the reason."""
    return platform.retention.hold(caller, name, body.version, reason=body.reason)


@router.post(
    "/v1/datasets/{name}/legal-hold/release", openapi_extra=permission(Permission.PRIVACY_MANAGE)
)
def release_legal_hold(
    name: str, body: HoldIn, caller: CurrentCaller, platform: PlatformDep
) -> list[HoldChange]:
    """Lift the legal hold; the next enforcement deletes the version if it has expired."""
    return platform.retention.release(caller, name, body.version, reason=body.reason)


@router.get("/v1/retention/schedule", openapi_extra=permission(Permission.DATASET_READ))
def retention_schedule(
    caller: CurrentCaller,
    platform: PlatformDep,
    name: Annotated[str | None, Query(max_length=128)] = None,
    include_deleted: bool = False,
) -> RetentionSchedule:
    """What expires when and what is held (by whom, why), soonest first (at most 1000
    versions), and the prediction log's window."""
    return platform.retention.schedule(caller, name=name, include_deleted=include_deleted)


@router.post("/v1/retention/enforce", openapi_extra=permission(Permission.PRIVACY_MANAGE))
def enforce_retention(
    body: EnforceIn, caller: CurrentCaller, platform: PlatformDep
) -> EnforcementReport:
    """Delete expired datasets not under legal hold now (crypto-shredding, with evidence) and
    empty prediction-log entries past their window, as the server's scheduler does. A failure
    on one dataset is reported in its outcome (`failed`) and retried by the next run."""
    return platform.retention.enforce(caller, dry_run=body.dry_run)


@router.get("/v1/retention/deletions", openapi_extra=permission(Permission.DATASET_READ))
def list_deletions(
    caller: CurrentCaller,
    platform: PlatformDep,
    kind: Annotated[str | None, Query(max_length=16, description="dataset | predictions")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> list[DeletionRecord]:
    """Deletion records, newest first: what was deleted (never the data), when, under which
    rule, which key was shredded, and the evidence."""
    return platform.retention.deletions(caller, kind=kind, limit=limit)


@router.get(
    "/v1/retention/deletions/{deletion_id}", openapi_extra=permission(Permission.DATASET_READ)
)
def get_deletion(deletion_id: str, caller: CurrentCaller, platform: PlatformDep) -> DeletionRecord:
    return platform.retention.deletion(caller, deletion_id)


@router.post(
    "/v1/retention/deletions/{deletion_id}/verify",
    openapi_extra=permission(Permission.DATASET_READ),
)
def verify_deletion(
    deletion_id: str, caller: CurrentCaller, platform: PlatformDep
) -> DeletionCheck:
    """Re-run a deletion's checks now (the blob does not decrypt and the key is shredded, or
    the prediction entries are still emptied). `ok` says whether every one holds."""
    return platform.retention.verify(caller, deletion_id)


# -- DP training and membership-inference audits -----------------------------------------------

# Training and audits hold a threadpool worker for seconds; at most this many run at once in a
# process, so they can never take every worker from the other synchronous routes.
MAX_CONCURRENT_JOBS = 2
_jobs = threading.BoundedSemaphore(MAX_CONCURRENT_JOBS)


@contextmanager
def _job_slot() -> Iterator[None]:
    if not _jobs.acquire(blocking=False):
        raise Unavailable(
            f"{MAX_CONCURRENT_JOBS} DP trainings or audits are already running on this server; "
            "retry when one has finished",
            code="privacy.busy",
        )
    try:
        yield
    finally:
        _jobs.release()


@router.post(
    "/v1/privacy/train",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=permission(Permission.MODEL_WRITE),
)
def train_private_model(
    body: TrainIn, caller: CurrentCaller, platform: PlatformDep
) -> dict[str, Any]:
    """Train a model with ε-DP on a stored dataset, spend (ε, δ) from its budget first,
    register the result as the next version of `name` with the dataset in its lineage, and
    attest its guarantee. Needs `attestation.write` and `dataset.read` too. At most
    `MAX_CONCURRENT_JOBS` trainings and audits run at once (503 `privacy.busy` beyond)."""
    with _job_slot():
        result = platform.private_models.train(
            caller,
            dataset=body.dataset,
            target=body.target,
            epsilon=body.epsilon,
            delta=body.delta,
            model=body.model,
            contract=body.contract,
            holdout=body.holdout,
            seed=body.seed,
            name=body.name,
            purpose=body.purpose,
            description=body.description,
        )
    return result.to_json()


@router.post(
    "/v1/models/{name}/versions/{ref}/privacy-audit",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=permission(Permission.ATTESTATION_WRITE),
)
def audit_private_model(
    name: str, ref: str, body: AuditIn, caller: CurrentCaller, platform: PlatformDep
) -> dict[str, Any]:
    """Run membership-inference attacks on the version (number or alias) with rows it was
    trained on (`members_csv`) and rows it never saw (`non_members_csv`): the contract's
    fields plus `target`, nothing else. The report is attested (with the SHA-256 of both
    CSVs, never rows). Needs `model.read` too.

    The CSVs are strings in this JSON body, so the server's request body limit bounds them
    (413 `input.too_large`); audit larger row files with `bastion privacy audit`. Shares
    `MAX_CONCURRENT_JOBS` with training (503 `privacy.busy` beyond)."""
    with _job_slot():
        result = platform.private_models.audit(
            caller,
            name,
            ref,
            members_csv=body.members_csv.encode(),
            non_members_csv=body.non_members_csv.encode(),
            target=body.target,
            attacks=body.attacks,
            bootstrap=body.bootstrap,
            seed=body.seed,
            tool=AUDIT_TOOL,
        )
    return result.to_json()


def _ref(name: str, version: int | None) -> str:
    return name if version is None else f"{name}@{version}"
