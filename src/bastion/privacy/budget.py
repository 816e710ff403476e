"""The privacy-budget ledger: each dataset name has a total (ε, δ); every differentially
private training run or statistic computed on it spends from that total.

**Composition.** Basic sequential composition: over all spends on a dataset *name* (across
its versions — a new version of the same people's data is not a fresh population), the ε
values add up and the δ values add up, and their sums may never exceed the totals. It is the
simplest theorem there is (Dwork & Roth, *The Algorithmic Foundations of Differential
Privacy*, Thm 3.16), it holds for any mix of mechanisms, it is conservative (advanced or
Rényi composition give tighter totals for many small spends), and it is what diffprivlib's
own `BudgetAccountant` does by default (slack 0), so a run's accountant and this ledger agree.

**Exact arithmetic.** Sums of floats drift (0.1 + 0.2 > 0.3 in IEEE 754), and a budget that
allows ten spends of 0.1 must allow exactly ten. Amounts are therefore counted in integer
units — ε in micro-ε (`EPSILON_UNIT` = 1e-6), δ in units of 1e-15 — taken from the decimal
the caller wrote (`repr` of the float). A request is rounded *up* to the next unit and a total
*down*, so rounding never gives anyone more privacy loss than they asked for. The float
columns store `units x unit`, which converts back to the same integer exactly.

**Atomicity.** `spend` runs in one write transaction: the budget row is read `FOR UPDATE`
(PostgreSQL row lock; SQLite's `BEGIN IMMEDIATE` write lock serialises every writer), the
`privacy_budget` policy gate decides with the current totals and the request, then the spend
row, the new totals and the `privacy.budget.spent` ledger entry commit together. A denial
raises before anything is written and is recorded on its own (`PolicyService.enforcing`);
concurrent requests queue on the lock, so they can never overdraw together. The gate can be
made stricter by a bundle; it cannot be made looser: after an allow, the service checks the
sum itself and refuses with `privacy.budget_exceeded` (fail closed).

Beside `bastion.supplychain` in the layers: imports `bastion.policy`, `bastion.identity`,
`bastion.ledger`, `bastion.store` and `bastion.core`; never `bastion.registry` or above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bastion.core.clock import Clock
from bastion.core.errors import Conflict, InvalidInput, NotFound
from bastion.core.ids import new_id
from bastion.identity import Authorizer, Caller, Permission
from bastion.ledger import AuditLog
from bastion.policy import PolicyService
from bastion.store.datasets import find_dataset
from bastion.store.db import Database
from bastion.store.sealed import SealedBlobStore
from bastion.store.tables import DatasetRow, PrivacyBudgetRow, PrivacySpendRow

GATE: Final = "privacy_budget"
EPSILON_UNIT: Final = Decimal("1e-6")
DELTA_UNIT: Final = Decimal("1e-15")
MAX_EPSILON: Final = 1000.0  # a total or a spend; far beyond any meaningful guarantee
MAX_DELTA: Final = 0.1  # δ is a failure probability; anything near 1 guarantees nothing
MAX_SPENDS_LISTED: Final = 10_000
_TEXT_LIMITS: Final = {"mechanism": 128, "purpose": 512, "subject": 256}


@dataclass(frozen=True, slots=True)
class Budget:
    """A dataset's budget and what is spent (amounts exact to their units)."""

    dataset: str
    epsilon_total: float
    delta_total: float
    epsilon_spent: float
    delta_spent: float
    epsilon_remaining: float
    delta_remaining: float
    spends: int
    created_at: datetime
    created_by: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Spend:
    """One spend: a DP training run or statistic, what it cost and why."""

    id: str
    dataset: str
    epsilon: float
    delta: float
    mechanism: str
    purpose: str
    subject: str | None
    actor: str
    at: datetime
    decision_id: str | None = None  # the gate decision that allowed it (on new spends)


@dataclass(frozen=True, slots=True)
class TrainingData:
    """The plaintext of a stored dataset version, read for DP training (never logged)."""

    id: str
    name: str
    version: int
    digest: str
    classification: str
    purposes: tuple[str, ...]
    data: bytes

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class PrivacyBudgetService:
    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        authorizer: Authorizer,
        policy: PolicyService,
        clock: Clock,
        blobs: SealedBlobStore | None = None,
    ) -> None:
        self._db = database
        self._audit = audit
        self._authz = authorizer
        self._policy = policy
        self._clock = clock
        self._blobs = blobs

    # -- the budget ---------------------------------------------------------------------

    def set_budget(self, caller: Caller, dataset: str, epsilon: float, delta: float) -> Budget:
        """Set (or change) the total budget of dataset `dataset` (every version of the name).

        Needs `privacy.manage`. A total may not go below what is already spent
        (`privacy.budget_below_spent`). Raises `NotFound` (`registry.dataset_not_found`) for an
        unknown dataset, `InvalidInput` (`privacy.bad_amount`) for an amount out of range.
        """
        self._authz.authorize(caller, Permission.PRIVACY_MANAGE)
        eps_units = _units(epsilon, "epsilon", EPSILON_UNIT, up=False, positive=True)
        delta_units = _units(delta, "delta", DELTA_UNIT, up=False, positive=False)
        now = self._clock.now()
        with self._db.transaction() as session:
            _latest_dataset(session, dataset)
            row = _locked_budget(session, dataset)
            previous = None
            if row is None:
                row = PrivacyBudgetRow(
                    dataset=dataset,
                    epsilon_spent=0.0,
                    delta_spent=0.0,
                    created_at=now,
                    created_by=caller.principal_id,
                )
                session.add(row)
            else:
                previous = {"epsilon_total": row.epsilon_total, "delta_total": row.delta_total}
                spent_eps = _stored_units(row.epsilon_spent, EPSILON_UNIT)
                spent_delta = _stored_units(row.delta_spent, DELTA_UNIT)
                if eps_units < spent_eps or delta_units < spent_delta:
                    raise Conflict(
                        f"dataset {dataset} has already spent ε={row.epsilon_spent:g}, "
                        f"δ={row.delta_spent:g}; a total cannot go below what is spent",
                        code="privacy.budget_below_spent",
                        details={
                            "epsilon_spent": row.epsilon_spent,
                            "delta_spent": row.delta_spent,
                        },
                    )
            row.epsilon_total = _amount(eps_units, EPSILON_UNIT)
            row.delta_total = _amount(delta_units, DELTA_UNIT)
            row.updated_at = now
            session.flush()
            self._audit.append(
                session,
                caller.event(
                    "privacy.budget.set",
                    f"dataset:{dataset}",
                    {
                        "dataset": dataset,
                        "epsilon_total": row.epsilon_total,
                        "delta_total": row.delta_total,
                        "epsilon_spent": row.epsilon_spent,
                        "delta_spent": row.delta_spent,
                        "previous": previous,
                        "composition": "sequential",
                    },
                ),
            )
            return _budget(session, row)

    def status(self, caller: Caller, dataset: str) -> Budget:
        """The budget of `dataset`; `NotFound` (`registry.dataset_not_found` for an unknown
        dataset, `privacy.no_budget` when none is set)."""
        self._authz.authorize(caller, Permission.DATASET_READ)
        with self._db.read() as session:
            row = session.get(PrivacyBudgetRow, dataset)
            if row is None:
                _latest_dataset(session, dataset)
                raise NotFound(
                    f"no privacy budget is set for dataset {dataset}", code="privacy.no_budget"
                )
            return _budget(session, row)

    def spends(self, caller: Caller, dataset: str) -> list[Spend]:
        """Every spend on `dataset`, oldest first (at most `MAX_SPENDS_LISTED`)."""
        self._authz.authorize(caller, Permission.DATASET_READ)
        with self._db.read() as session:
            rows = session.scalars(
                sa.select(PrivacySpendRow)
                .where(PrivacySpendRow.dataset == dataset)
                .order_by(PrivacySpendRow.at, PrivacySpendRow.id)
                .limit(MAX_SPENDS_LISTED)
            ).all()
            return [_spend(r) for r in rows]

    # -- spending ---------------------------------------------------------------------

    def spend(
        self,
        caller: Caller,
        dataset: str,
        epsilon: float,
        delta: float,
        *,
        mechanism: str,
        purpose: str,
        subject: str | None = None,
    ) -> Spend:
        """Spend (ε, δ) from `dataset`'s budget, atomically (see the module docstring).

        Needs `dataset.read` (whoever may compute on the data spends its budget). Raises
        `PolicyDenied` (`policy.denied`, recorded) when the `privacy_budget` gate refuses —
        the default bundle refuses when no budget is set or when the sum would exceed it —,
        `Conflict` (`privacy.budget_exceeded`, `privacy.no_budget`) if a bundle allowed what
        the ledger cannot hold, `NotFound` (`registry.dataset_not_found`), `InvalidInput`
        (`privacy.bad_amount`, `privacy.bad_text`). Nothing is spent unless all of it commits.
        """
        self._authz.authorize(caller, Permission.DATASET_READ)
        eps_units = _units(epsilon, "epsilon", EPSILON_UNIT, up=True, positive=True)
        delta_units = _units(delta, "delta", DELTA_UNIT, up=True, positive=False)
        texts = {
            "mechanism": _text(mechanism, "mechanism", required=True),
            "purpose": _text(purpose, "purpose", required=True),
            "subject": _text(subject, "subject", required=False),
        }
        now = self._clock.now()
        with self._policy.enforcing(caller), self._db.transaction() as session:
            row = _locked_budget(session, dataset)
            latest = _latest_dataset(session, dataset)
            spend_doc: dict[str, Any] = {
                "epsilon": _amount(eps_units, EPSILON_UNIT),
                "delta": _amount(delta_units, DELTA_UNIT),
                **texts,
                "exact": {"epsilon": eps_units, "delta": delta_units},
            }
            document = self._policy.envelope(
                GATE,
                caller,
                dataset={
                    "name": latest.name,
                    "version": latest.version,
                    "classification": latest.classification,
                    "status": latest.status,
                },
                budget=_budget_doc(row),
                spend=spend_doc,
                exact_units={"epsilon": float(EPSILON_UNIT), "delta": float(DELTA_UNIT)},
            )
            _, decision_id = self._policy.decide(
                session, caller, GATE, f"dataset:{dataset}", document
            )
            if row is None:  # a bundle allowed a spend with no budget: the ledger cannot
                raise Conflict(
                    f"no privacy budget is set for dataset {dataset}", code="privacy.no_budget"
                )
            total_eps = _stored_units(row.epsilon_total, EPSILON_UNIT)
            total_delta = _stored_units(row.delta_total, DELTA_UNIT)
            new_eps = _stored_units(row.epsilon_spent, EPSILON_UNIT) + eps_units
            new_delta = _stored_units(row.delta_spent, DELTA_UNIT) + delta_units
            if new_eps > total_eps or new_delta > total_delta:
                raise Conflict(
                    f"spending ε={spend_doc['epsilon']:g}, δ={spend_doc['delta']:g} would exceed "
                    f"the privacy budget of dataset {dataset}",
                    code="privacy.budget_exceeded",
                )
            spend = PrivacySpendRow(
                id=new_id("psp"),
                dataset=dataset,
                epsilon=spend_doc["epsilon"],
                delta=spend_doc["delta"],
                mechanism=texts["mechanism"],
                purpose=texts["purpose"],
                subject=texts["subject"] or None,
                actor=caller.principal_id,
                at=now,
            )
            session.add(spend)
            row.epsilon_spent = _amount(new_eps, EPSILON_UNIT)
            row.delta_spent = _amount(new_delta, DELTA_UNIT)
            row.updated_at = now
            session.flush()
            self._audit.append(
                session,
                caller.event(
                    "privacy.budget.spent",
                    f"dataset:{dataset}",
                    {
                        "spend_id": spend.id,
                        "dataset": dataset,
                        "epsilon": spend.epsilon,
                        "delta": spend.delta,
                        "mechanism": spend.mechanism,
                        "purpose": spend.purpose,
                        "subject": spend.subject,
                        "epsilon_spent": row.epsilon_spent,
                        "delta_spent": row.delta_spent,
                        "epsilon_total": row.epsilon_total,
                        "delta_total": row.delta_total,
                        "composition": "sequential",
                        "decision_id": decision_id,
                    },
                ),
            )
            return _spend(spend, decision_id)

    # -- the data a DP run reads ----------------------------------------------------------

    def training_data(
        self, caller: Caller, dataset: str, version: int | None = None
    ) -> TrainingData:
        """The plaintext of a stored dataset version (the newest when `version` is None), for
        a DP run. Needs `dataset.read`; the read is a ledger entry (`privacy.dataset.read`).

        Raises `NotFound` (`registry.dataset_not_found`), `Conflict` (`privacy.data_deleted`
        for a deleted or otherwise inactive version, `privacy.not_stored` when only a digest
        is registered), and whatever the sealed store raises for a shredded key.
        """
        self._authz.authorize(caller, Permission.DATASET_READ)
        if self._blobs is None:
            raise Conflict("this service has no blob store", code="privacy.not_stored")
        with self._db.read() as session:
            row = _dataset(session, dataset, version)
        if row.status != "active" or row.deleted_at is not None:
            raise Conflict(
                f"dataset {row.name}@{row.version} is {row.status}; its data is gone or may "
                "not be used",
                code="privacy.data_deleted",
            )
        if row.blob_key is None:
            raise Conflict(
                f"dataset {row.name}@{row.version} is registered by digest only; Bastion holds "
                "no copy to train on",
                code="privacy.not_stored",
            )
        data = self._blobs.get(row.blob_key)
        with self._db.transaction() as session:
            self._audit.append(
                session,
                caller.event(
                    "privacy.dataset.read",
                    row.id,
                    {"dataset": row.name, "version": row.version, "digest": row.digest},
                ),
            )
        return TrainingData(
            id=row.id,
            name=row.name,
            version=row.version,
            digest=row.digest,
            classification=row.classification,
            purposes=tuple(row.purposes),
            data=data,
        )


# -- helpers ----------------------------------------------------------------------------------


def _units(value: float, what: str, unit: Decimal, *, up: bool, positive: bool) -> int:
    """`value` in integer `unit`s, from the decimal the caller wrote; rounded up (requests) or
    down (totals). `InvalidInput` (`privacy.bad_amount`) when not a finite number in range."""
    limit = MAX_EPSILON if what == "epsilon" else MAX_DELTA
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{what} must be a finite number", code="privacy.bad_amount")
    if value < 0 or value > limit or (positive and value <= 0):
        low = "greater than 0" if positive else "at least 0"
        raise InvalidInput(f"{what} must be {low} and at most {limit:g}", code="privacy.bad_amount")
    try:
        exact = Decimal(repr(float(value))) / unit
    except InvalidOperation:  # pragma: no cover - finite floats always convert
        raise InvalidInput(f"{what} is not a number", code="privacy.bad_amount") from None
    units = int(exact.to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR))
    if positive and units <= 0:
        raise InvalidInput(
            f"{what} is below the ledger's resolution ({unit:g})", code="privacy.bad_amount"
        )
    return units


def _amount(units: int, unit: Decimal) -> float:
    return float(Decimal(units) * unit)


def _stored_units(value: float, unit: Decimal) -> int:
    """The integer count a stored float stands for (stored values are `units x unit`)."""
    return int((Decimal(repr(float(value))) / unit).to_integral_value())


def _text(value: str | None, what: str, *, required: bool) -> str:
    if value is None:
        value = ""
    limit = _TEXT_LIMITS[what]
    if not isinstance(value, str) or len(value) > limit or (required and not value.strip()):
        need = "a non-empty string" if required else "a string"
        raise InvalidInput(
            f"{what} must be {need} of at most {limit} characters", code="privacy.bad_text"
        )
    if any(ord(c) < 32 for c in value):
        raise InvalidInput(f"{what} may not hold control characters", code="privacy.bad_text")
    return value


def _locked_budget(session: Session, dataset: str) -> PrivacyBudgetRow | None:
    return session.scalars(
        sa.select(PrivacyBudgetRow).where(PrivacyBudgetRow.dataset == dataset).with_for_update()
    ).first()


def _latest_dataset(session: Session, name: str) -> DatasetRow:
    return _dataset(session, name, None)


def _dataset(session: Session, name: str, version: int | None) -> DatasetRow:
    return find_dataset(session, name, version)


def _budget_doc(row: PrivacyBudgetRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "epsilon_total": row.epsilon_total,
        "delta_total": row.delta_total,
        "epsilon_spent": row.epsilon_spent,
        "delta_spent": row.delta_spent,
        "exact": {
            "epsilon_total": _stored_units(row.epsilon_total, EPSILON_UNIT),
            "delta_total": _stored_units(row.delta_total, DELTA_UNIT),
            "epsilon_spent": _stored_units(row.epsilon_spent, EPSILON_UNIT),
            "delta_spent": _stored_units(row.delta_spent, DELTA_UNIT),
        },
    }


def _budget(session: Session, row: PrivacyBudgetRow) -> Budget:
    count = session.scalar(
        sa.select(sa.func.count())
        .select_from(PrivacySpendRow)
        .where(PrivacySpendRow.dataset == row.dataset)
    )
    eps_left = _stored_units(row.epsilon_total, EPSILON_UNIT) - _stored_units(
        row.epsilon_spent, EPSILON_UNIT
    )
    delta_left = _stored_units(row.delta_total, DELTA_UNIT) - _stored_units(
        row.delta_spent, DELTA_UNIT
    )
    return Budget(
        dataset=row.dataset,
        epsilon_total=row.epsilon_total,
        delta_total=row.delta_total,
        epsilon_spent=row.epsilon_spent,
        delta_spent=row.delta_spent,
        epsilon_remaining=_amount(eps_left, EPSILON_UNIT),
        delta_remaining=_amount(delta_left, DELTA_UNIT),
        spends=int(count or 0),
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
    )


def _spend(row: PrivacySpendRow, decision_id: str | None = None) -> Spend:
    return Spend(
        id=row.id,
        dataset=row.dataset,
        epsilon=row.epsilon,
        delta=row.delta,
        mechanism=row.mechanism,
        purpose=row.purpose,
        subject=row.subject,
        actor=row.actor,
        at=row.at,
        decision_id=decision_id,
    )


__all__ = [
    "DELTA_UNIT",
    "EPSILON_UNIT",
    "GATE",
    "MAX_DELTA",
    "MAX_EPSILON",
    "Budget",
    "PrivacyBudgetService",
    "Spend",
    "TrainingData",
]
