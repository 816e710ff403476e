"""The policy service: the active bundle, gate decisions and their records, bundle changes.

* **Active bundle**: the highest applied version in `policy_bundles`, or the packaged default
  when none was applied. Each process keeps it compiled and re-checks which version is active
  at most every `cache_seconds`, so replicas converge on a newly applied bundle within that.
* **Decisions**: `decide(session, caller, gate, subject, document)` evaluates and, when the
  gate allows, records the decision (the `policy_decisions` row with the exact input, and a
  `policy.decision` ledger entry with the bundle digest and the input digest) *in the
  caller's transaction*, so the change and the decision that allowed it commit together.
  A denial raises `PolicyDenied`; wrap the transaction in `enforcing(caller)` so the denial
  is recorded in its own transaction after the change rolled back.
* **Bundle changes** (`apply`): admin only; the bundle's own tests must pass and every gate
  must evaluate without killing the engine (both in an isolated child), it must compile
  here, and the *current* bundle's `policy_change` gate must allow it. Then it becomes
  version N+1 in one transaction with its ledger entry; anything failing leaves the old one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bastion.core.clock import Clock
from bastion.core.errors import InvalidInput
from bastion.core.ids import new_id
from bastion.identity import Authorizer, Caller, Permission
from bastion.ledger import AuditLog
from bastion.policy.bundle import GATES, PolicyBundle
from bastion.policy.engine import INPUT_VERSION, CompiledPolicy, Decision
from bastion.policy.errors import PolicyDenied, PolicyError
from bastion.policy.testing import TestReport, check_gates, run_tests
from bastion.store.db import Database
from bastion.store.tables import PolicyBundleRow, PolicyDecisionRow


@dataclass(frozen=True, slots=True)
class BundleInfo:
    version: int  # 0: the packaged default
    digest: str
    files: tuple[str, ...]
    tests: Mapping[str, int]
    applied_at: datetime | None
    applied_by: str | None


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    id: str
    gate: str
    subject: str
    allow: bool
    reasons: tuple[str, ...]
    bundle_digest: str
    bundle_version: int | None
    input_digest: str
    actor: str
    at: datetime


def rfc3339(moment: datetime) -> str:
    """A policy input timestamp: RFC 3339 in UTC with a numeric offset (`+00:00`), which
    `time.parse_rfc3339_ns` reads in both OPA and rego-cpp (rego-cpp 1.5.2 rejects `Z`)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


ENVELOPE_KEYS = frozenset({"input_version", "gate", "time", "actor"})


def actor_of(caller: Caller) -> dict[str, Any]:
    return {
        "id": caller.principal_id,
        "name": caller.name,
        "kind": str(caller.kind),
        "roles": sorted(str(r) for r in caller.roles),
    }


class PolicyService:
    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        authorizer: Authorizer,
        clock: Clock,
        cache_seconds: float = 2.0,
    ) -> None:
        self._db = database
        self._audit = audit
        self._authz = authorizer
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._compiled: dict[str, CompiledPolicy] = {}
        self._active: tuple[CompiledPolicy, float] | None = None
        self._default: PolicyBundle | None = None

    # -- the active bundle ----------------------------------------------------------------

    def default_bundle(self) -> PolicyBundle:
        if self._default is None:
            self._default = PolicyBundle.default()
        return self._default

    def active(self) -> CompiledPolicy:
        """The compiled active bundle (re-checked against the database every few seconds)."""
        now = time.monotonic()
        cached = self._active
        if cached is not None and now - cached[1] < self._cache_seconds:
            return cached[0]
        with self._db.read() as session:
            row = session.scalars(
                sa.select(PolicyBundleRow).order_by(PolicyBundleRow.version.desc()).limit(1)
            ).first()
        with self._lock:
            if row is None:
                compiled = self._compile(self.default_bundle(), 0)
            elif row.digest in self._compiled and self._compiled[row.digest].version == row.version:
                compiled = self._compiled[row.digest]
            else:
                compiled = self._compile(PolicyBundle.from_files(row.files), row.version)
            self._active = (compiled, now)
            return compiled

    def _compile(self, bundle: PolicyBundle, version: int) -> CompiledPolicy:
        found = self._compiled.get(bundle.digest)
        if found is not None and found.version == version:
            return found
        compiled = CompiledPolicy(bundle, version=version)
        self._compiled[bundle.digest] = compiled
        return compiled

    def info(self, caller: Caller) -> BundleInfo:
        self._authz.authorize(caller, Permission.POLICY_READ)
        compiled = self.active()
        with self._db.read() as session:
            row = session.scalars(
                sa.select(PolicyBundleRow).order_by(PolicyBundleRow.version.desc()).limit(1)
            ).first()
        if row is None:
            return BundleInfo(
                0, compiled.digest, tuple(sorted(compiled.bundle.files())), {}, None, None
            )
        return _info(row)

    def history(self, caller: Caller) -> list[BundleInfo]:
        self._authz.authorize(caller, Permission.POLICY_READ)
        with self._db.read() as session:
            rows = session.scalars(
                sa.select(PolicyBundleRow).order_by(PolicyBundleRow.version)
            ).all()
            return [_info(r) for r in rows]

    def bundle_files(self, caller: Caller, version: int | None = None) -> dict[str, str]:
        """The files of bundle `version` (the active one when None; 0 is the default)."""
        self._authz.authorize(caller, Permission.POLICY_READ)
        if version is None:
            return self.active().bundle.files()
        if version == 0:
            return self.default_bundle().files()
        with self._db.read() as session:
            row = session.scalars(
                sa.select(PolicyBundleRow).where(PolicyBundleRow.version == version)
            ).first()
            if row is None:
                raise PolicyError(f"no policy bundle version {version}", code="policy.not_found")
            return dict(row.files)

    # -- decisions ----------------------------------------------------------------------

    def envelope(self, gate: str, caller: Caller, **fields: Any) -> dict[str, Any]:
        """The versioned input document for `gate`: input_version, gate, time, actor, and
        the gate's own fields (which may not replace those four)."""
        clash = sorted(set(fields) & ENVELOPE_KEYS)
        if clash:
            raise InvalidInput(
                f"gate fields may not replace the envelope's {', '.join(clash)}",
                code="policy.input_reserved",
            )
        return {
            "input_version": INPUT_VERSION,
            "gate": gate,
            "time": rfc3339(self._clock.now()),
            "actor": actor_of(caller),
            **fields,
        }

    def evaluate(self, gate: str, document: Mapping[str, Any]) -> Decision:
        """A dry run: the active bundle's decision, recorded nowhere."""
        return self.active().evaluate(gate, document)

    def decide(
        self,
        session: Session,
        caller: Caller,
        gate: str,
        subject: str,
        document: Mapping[str, Any],
    ) -> tuple[Decision, str]:
        """Evaluate `gate`; record an allow in `session` and return it with its record id;
        raise `PolicyDenied` (recorded by `enforcing`) otherwise."""
        decision = self.evaluate(gate, document)
        if not decision.allow:
            raise _Denied(decision, subject, dict(document))
        return decision, self._record(session, caller, subject, decision, document)

    @contextmanager
    def enforcing(self, caller: Caller) -> Iterator[None]:
        """Record any denial raised inside (after its transaction rolled back) and re-raise
        it as `PolicyDenied` carrying the reasons."""
        try:
            yield
        except _Denied as denied:
            with self._db.transaction() as session:
                self._record(session, caller, denied.subject, denied.decision, denied.document)
            raise PolicyDenied(denied.decision) from None

    def _record(
        self,
        session: Session,
        caller: Caller,
        subject: str,
        decision: Decision,
        document: Mapping[str, Any],
    ) -> str:
        record_id = new_id("pdc")
        session.add(
            PolicyDecisionRow(
                id=record_id,
                gate=decision.gate,
                subject=subject[:128],
                allow=decision.allow,
                reasons=list(decision.reasons),
                bundle_digest=decision.bundle_digest,
                bundle_version=decision.bundle_version,
                input_digest=decision.input_digest,
                input=dict(document),
                actor=caller.principal_id,
                at=self._clock.now(),
            )
        )
        self._audit.append(
            session,
            caller.event(
                "policy.decision",
                subject,
                {
                    "decision_id": record_id,
                    **decision.to_dict(),
                    "reasons": list(decision.reasons)[:50],
                },
            ),
        )
        return record_id

    def decisions(
        self,
        caller: Caller,
        *,
        subject: str | None = None,
        gate: str | None = None,
        limit: int = 100,
    ) -> list[DecisionRecord]:
        self._authz.authorize(caller, Permission.POLICY_READ)
        query = sa.select(PolicyDecisionRow).order_by(
            PolicyDecisionRow.at.desc(), PolicyDecisionRow.id.desc()
        )
        if subject is not None:
            query = query.where(PolicyDecisionRow.subject == subject)
        if gate is not None:
            query = query.where(PolicyDecisionRow.gate == gate)
        with self._db.read() as session:
            rows = session.scalars(query.limit(max(1, min(limit, 1000)))).all()
            return [
                DecisionRecord(
                    r.id,
                    r.gate,
                    r.subject,
                    r.allow,
                    tuple(r.reasons),
                    r.bundle_digest,
                    r.bundle_version,
                    r.input_digest,
                    r.actor,
                    r.at,
                )
                for r in rows
            ]

    # -- bundle changes -------------------------------------------------------------------

    def test(self, bundle: PolicyBundle) -> TestReport:
        """Run the bundle's own Rego tests (isolated; see `bastion.policy.testing`)."""
        return run_tests(bundle)

    def apply(self, caller: Caller, bundle: PolicyBundle) -> BundleInfo:
        """Make `bundle` the active policy (see the module docstring)."""
        self._authz.authorize(caller, Permission.POLICY_MANAGE)
        report = run_tests(bundle)
        if not report.ok:
            bad = [r for r in report.results if r.status != "passed"]
            raise PolicyError(
                "the bundle's tests did not pass"
                if report.results
                else "the bundle has no tests (test_* rules); refusing an untested policy",
                code="policy.tests_failed",
                details={
                    **report.summary(),
                    "failures": [
                        {"test": r.name, "status": r.status, "message": r.message[:200]}
                        for r in bad[:50]
                    ],
                },
            )
        check_gates(bundle, [(g, self.envelope(g, caller)) for g in GATES])
        compiled = CompiledPolicy(bundle)
        current = self.active()
        with self.enforcing(caller), self._db.transaction() as session:
            latest = session.scalar(sa.select(sa.func.max(PolicyBundleRow.version))) or 0
            document = self.envelope(
                "policy_change",
                caller,
                bundle={
                    "digest": bundle.digest,
                    "version": latest + 1,
                    "files": sorted(bundle.files()),
                    "tests": report.summary(),
                },
                current={"digest": current.digest, "version": current.version or 0},
            )
            _, decision_id = self.decide(
                session, caller, "policy_change", f"policy:{latest + 1}", document
            )
            row = PolicyBundleRow(
                id=new_id("pol"),
                version=latest + 1,
                digest=bundle.digest,
                files=bundle.files(),
                tests=report.summary(),
                applied_at=self._clock.now(),
                applied_by=caller.principal_id,
            )
            session.add(row)
            session.flush()
            self._audit.append(
                session,
                caller.event(
                    "policy.bundle.applied",
                    f"policy:{row.version}",
                    {
                        "version": row.version,
                        "digest": bundle.digest,
                        "previous_digest": current.digest,
                        "previous_version": current.version or 0,
                        "files": sorted(bundle.files())[:200],
                        "tests": report.summary(),
                        "decision_id": decision_id,
                    },
                ),
            )
            info = _info(row)
        with self._lock:
            compiled.version = info.version
            self._compiled[bundle.digest] = compiled
            self._active = (compiled, time.monotonic())
        return info


class _Denied(PolicyDenied):
    """A denial on its way out of a transaction to `enforcing`, which records it. (Unwrapped,
    it is still a 403 `policy.denied`; only the record would be missing.)"""

    def __init__(self, decision: Decision, subject: str, document: dict[str, Any]) -> None:
        super().__init__(decision)
        self.subject = subject
        self.document = document


def _info(row: PolicyBundleRow) -> BundleInfo:
    return BundleInfo(
        version=row.version,
        digest=row.digest,
        files=tuple(sorted(row.files)),
        tests=dict(row.tests),
        applied_at=row.applied_at,
        applied_by=row.applied_by,
    )
