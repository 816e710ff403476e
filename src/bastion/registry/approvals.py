"""Approvals, attestations, and the policy checks that read them.

* **Approvals** (`ApprovalService`): one approver approves one version's exact artifact
  digest for one purpose (`deploy`). The `approval_grant` gate decides, in the transaction
  that stores the approval, with the version row locked; the author may never approve their
  own version (checked in code too, whatever the policy says). An approval counts until it is
  revoked or expires (`approval_ttl_days`); approvals of other digests never count. Each is a
  ledger entry naming the approver, the digest and the policy decision.
* **Attestations** (`AttestationService`): signed in-toto statements about a version
  (subject = artifact digest), e.g. validation results produced outside Bastion. Bastion
  signs what it is given with its platform key and records who submitted it; policies read
  the predicate and whether the signature verifies.
* **Gate checks** (`GateChecks`): the input document of any gate for a stored version, a dry
  run of it, and `require` for services that must pass a gate inside their own transaction
  (deployments use it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bastion.core.clock import Clock
from bastion.core.errors import Conflict, InvalidInput, NotFound
from bastion.core.ids import new_id
from bastion.identity import Authorizer, Caller, Permission
from bastion.ledger import AuditLog
from bastion.policy import Decision, PolicyService
from bastion.registry.gates import (
    attestation_docs,
    gate_version,
    valid_approvals,
    version_input,
)
from bastion.registry.models import _find_model, find_version
from bastion.registry.records import check_text
from bastion.store.db import Database
from bastion.store.tables import (
    ApprovalRow,
    AttestationRow,
    ModelRow,
    ModelVersionRow,
    SignerKeyRow,
)
from bastion.supplychain.attestations import Statement, check_predicate_type, sign_statement
from bastion.supplychain.signing import key_fingerprint, private_key_from_seed

APPROVAL_PURPOSES = ("deploy",)


@dataclass(frozen=True, slots=True)
class Approval:
    id: str
    model: str
    version: int
    version_id: str
    artifact_digest: str
    purpose: str
    approver_id: str
    approver_name: str
    approver_roles: tuple[str, ...]
    comment: str
    decision_id: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    revoke_reason: str | None
    state: str  # valid | revoked | expired | superseded (the version's digest differs)


@dataclass(frozen=True, slots=True)
class Attestation:
    id: str
    model: str
    version: int
    version_id: str
    predicate_type: str
    subject_digest: str
    predicate: Mapping[str, Any]
    signer_team: str
    signer_fingerprint: str
    verified: bool
    created_by: str
    created_at: datetime


def _version_ref(
    session: Session, name: str, ref: str | int, *, lock: bool = False
) -> tuple[ModelRow, ModelVersionRow]:
    model = _find_model(session, name)
    return model, find_version(session, model, ref, lock=lock)


class GateChecks:
    """Build gate inputs for stored versions; dry-run or require a gate."""

    def __init__(
        self, *, database: Database, authorizer: Authorizer, policy: PolicyService, clock: Clock
    ) -> None:
        self._db = database
        self._authz = authorizer
        self._policy = policy
        self._clock = clock

    def document(
        self,
        session: Session,
        caller: Caller,
        gate: str,
        model: ModelRow,
        version: ModelVersionRow,
        **fields: Any,
    ) -> dict[str, Any]:
        return version_input(
            self._policy, session, caller, gate, model, version, self._clock.now(), **fields
        )

    def check(
        self, caller: Caller, gate: str, name: str, ref: str | int, **fields: Any
    ) -> tuple[Decision, dict[str, Any]]:
        """A dry run of `gate` for version `ref` of `name` as `caller` (recorded nowhere)."""
        self._authz.authorize(caller, Permission.POLICY_READ)
        with self._db.read() as session:
            model, version = _version_ref(session, name, ref)
            document = self.document(session, caller, gate, model, version, **fields)
        return self._policy.evaluate(gate, document), document

    def require(
        self,
        session: Session,
        caller: Caller,
        gate: str,
        model: ModelRow,
        version: ModelVersionRow,
        **fields: Any,
    ) -> str:
        """Pass `gate` inside the caller's transaction (wrap it in `policy.enforcing`);
        return the decision record's id."""
        return gate_version(
            self._policy, session, caller, gate, model, version, self._clock.now(), **fields
        )


class ApprovalService:
    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        authorizer: Authorizer,
        policy: PolicyService,
        gates: GateChecks,
        clock: Clock,
        ttl: timedelta,
    ) -> None:
        self._db = database
        self._audit = audit
        self._authz = authorizer
        self._policy = policy
        self._gates = gates
        self._clock = clock
        self._ttl = ttl

    def approve(
        self,
        caller: Caller,
        name: str,
        ref: str | int,
        *,
        purpose: str = "deploy",
        comment: str = "",
        digest: str | None = None,
    ) -> Approval:
        """Approve version `ref` of `name` for `purpose`. `digest`, when given, must be the
        version's artifact digest (what the approver reviewed); otherwise nothing changes."""
        self._authz.authorize(caller, Permission.APPROVAL_GRANT)
        if purpose not in APPROVAL_PURPOSES:
            raise InvalidInput(
                f"an approval is for one of: {', '.join(APPROVAL_PURPOSES)}",
                code="approval.bad_purpose",
            )
        check_text(comment, "comment")
        with self._policy.enforcing(caller), self._db.transaction() as session:
            model, version = _version_ref(session, name, ref, lock=True)
            if digest is not None and digest != version.artifact_digest:
                raise Conflict(
                    f"{name}@{version.version} has artifact digest {version.artifact_digest}, "
                    f"not {digest}: the approval would be for other bytes",
                    code="approval.digest_mismatch",
                )
            decision_id = self._gates.require(
                session,
                caller,
                "approval_grant",
                model,
                version,
                approval={"for": purpose, "comment": comment},
            )
            # Defence in depth: whatever an operator's policy says, no one approves their own.
            self._authz.require_distinct(caller, "approve", {"author": version.created_by})
            now = self._clock.now()
            if any(
                a.approver_id == caller.principal_id and a.purpose == purpose
                for a in valid_approvals(session, version, now)
            ):
                raise Conflict(
                    f"you already approved {name}@{version.version} for {purpose}",
                    code="approval.duplicate",
                )
            row = ApprovalRow(
                id=new_id("apr"),
                version_id=version.id,
                artifact_digest=version.artifact_digest,
                purpose=purpose,
                approver_id=caller.principal_id,
                approver_name=caller.name,
                approver_roles=sorted(str(r) for r in caller.roles),
                comment=comment,
                decision_id=decision_id,
                created_at=now,
                expires_at=now + self._ttl,
                revoked_at=None,
                revoked_by=None,
                revoke_reason=None,
            )
            session.add(row)
            session.flush()
            self._audit.append(
                session,
                caller.event(
                    "registry.approval.granted",
                    version.id,
                    {
                        "approval_id": row.id,
                        "model": name,
                        "version": version.version,
                        "artifact_digest": version.artifact_digest,
                        "purpose": purpose,
                        "approver": caller.principal_id,
                        "approver_roles": row.approver_roles,
                        "expires_at": row.expires_at.isoformat(),
                        "decision_id": decision_id,
                    },
                ),
            )
            return _approval(row, model, version, now)

    def list(self, caller: Caller, name: str, ref: str | int) -> list[Approval]:
        """Every approval of the version, each with its state now."""
        self._authz.authorize(caller, Permission.MODEL_READ)
        now = self._clock.now()
        with self._db.read() as session:
            model, version = _version_ref(session, name, ref)
            rows = session.scalars(
                sa.select(ApprovalRow)
                .where(ApprovalRow.version_id == version.id)
                .order_by(ApprovalRow.created_at)
            ).all()
            return [_approval(r, model, version, now) for r in rows]

    def revoke(self, caller: Caller, approval_id: str, reason: str = "") -> Approval:
        """Withdraw an approval: its approver may, and so may a policy administrator."""
        check_text(reason, "reason")
        with self._db.transaction() as session:
            row = session.get(ApprovalRow, approval_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no approval {approval_id}", code="approval.not_found")
            own = row.approver_id == caller.principal_id
            if not (own and Permission.APPROVAL_GRANT in caller.permissions):
                self._authz.authorize(caller, Permission.POLICY_MANAGE)
            if row.revoked_at is not None:
                raise Conflict(
                    f"approval {approval_id} is already revoked", code="approval.revoked"
                )
            now = self._clock.now()
            row.revoked_at = now
            row.revoked_by = caller.principal_id
            row.revoke_reason = reason or None
            version = session.get(ModelVersionRow, row.version_id)
            assert version is not None
            model = session.get(ModelRow, version.model_id)
            assert model is not None
            self._audit.append(
                session,
                caller.event(
                    "registry.approval.revoked",
                    version.id,
                    {
                        "approval_id": row.id,
                        "model": model.name,
                        "version": version.version,
                        "artifact_digest": row.artifact_digest,
                        "approver": row.approver_id,
                        "reason": reason,
                    },
                ),
            )
            return _approval(row, model, version, now)


class AttestationService:
    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        authorizer: Authorizer,
        clock: Clock,
        signing_seed: bytes,
    ) -> None:
        self._db = database
        self._audit = audit
        self._authz = authorizer
        self._clock = clock
        self._key = private_key_from_seed(signing_seed)
        self._fingerprint = key_fingerprint(self._key.public_key())

    def attest(
        self,
        caller: Caller,
        name: str,
        ref: str | int,
        predicate_type: str,
        predicate: Mapping[str, Any],
    ) -> Attestation:
        """Record a signed statement `predicate_type`/`predicate` about the version's bytes."""
        self._authz.authorize(caller, Permission.ATTESTATION_WRITE)
        check_predicate_type(predicate_type)
        with self._db.transaction() as session:
            model, version = _version_ref(session, name, ref, lock=True)
            key = session.scalars(
                sa.select(SignerKeyRow).where(SignerKeyRow.fingerprint == self._fingerprint)
            ).first()
            if key is None or key.revoked_at is not None:
                raise Conflict(
                    "Bastion's signing key is not registered or is revoked",
                    code="registry.revoked",
                )
            envelope = sign_statement(
                self._key,
                Statement(
                    subject_name=f"{model.name}@v{version.version}",
                    subject_digest=version.artifact_digest,
                    predicate_type=predicate_type,
                    predicate=predicate,
                ),
            )
            row = AttestationRow(
                id=new_id("att"),
                version_id=version.id,
                subject_digest=version.artifact_digest,
                predicate_type=predicate_type,
                envelope=envelope,
                signer_key_id=key.id,
                created_at=self._clock.now(),
                created_by=caller.principal_id,
            )
            session.add(row)
            session.flush()
            self._audit.append(
                session,
                caller.event(
                    "registry.attestation.added",
                    version.id,
                    {
                        "attestation_id": row.id,
                        "model": name,
                        "version": version.version,
                        "predicate_type": predicate_type,
                        "subject_digest": version.artifact_digest,
                        "key_fingerprint": key.fingerprint,
                    },
                ),
            )
            return self._records(session, model, version, only=row.id)[0]

    def envelope(self, caller: Caller, attestation_id: str) -> bytes:
        """The DSSE envelope as stored (verify it with the platform public key)."""
        self._authz.authorize(caller, Permission.MODEL_READ)
        with self._db.read() as session:
            row = session.get(AttestationRow, attestation_id)
            if row is None:
                raise NotFound(f"no attestation {attestation_id}", code="attestation.not_found")
            return bytes(row.envelope)

    @staticmethod
    def _records(
        session: Session, model: ModelRow, version: ModelVersionRow, only: str | None = None
    ) -> list[Attestation]:
        return [
            Attestation(
                id=doc["id"],
                model=model.name,
                version=version.version,
                version_id=version.id,
                predicate_type=doc["type"],
                subject_digest=doc["subject_digest"],
                predicate=doc["predicate"],
                signer_team=doc["signer"]["team"],
                signer_fingerprint=doc["signer"]["key_fingerprint"],
                verified=doc["verified"],
                created_by=doc["created_by"]["id"],
                created_at=datetime.fromisoformat(doc["created_at"].replace("Z", "+00:00")),
            )
            for doc in attestation_docs(session, version)
            if only is None or doc["id"] == only
        ]

    # Last in the class body, so `list` in the annotations above still means the builtin.
    def list(self, caller: Caller, name: str, ref: str | int) -> list[Attestation]:
        self._authz.authorize(caller, Permission.MODEL_READ)
        with self._db.read() as session:
            model, version = _version_ref(session, name, ref)
            return self._records(session, model, version)


def _approval(
    row: ApprovalRow, model: ModelRow, version: ModelVersionRow, now: datetime
) -> Approval:
    if row.revoked_at is not None:
        state = "revoked"
    elif row.artifact_digest != version.artifact_digest:
        state = "superseded"
    elif row.expires_at <= now:
        state = "expired"
    else:
        state = "valid"
    return Approval(
        id=row.id,
        model=model.name,
        version=version.version,
        version_id=version.id,
        artifact_digest=row.artifact_digest,
        purpose=row.purpose,
        approver_id=row.approver_id,
        approver_name=row.approver_name,
        approver_roles=tuple(row.approver_roles),
        comment=row.comment,
        decision_id=row.decision_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        revoke_reason=row.revoke_reason,
        state=state,
    )
