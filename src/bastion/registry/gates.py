"""Policy input documents built from registry state (the shapes of `docs/policy.md`, v1).

These functions turn rows into the JSON the Rego gates read: datasets, models, and versions
with their scan result, signature status, attestations, valid approvals and lineage. They
decide nothing; the policy does. What they compute is what a policy cannot know by itself:

* `signature.verified`: some signature of the version verifies, under a registered and
  unrevoked signer key, over exactly the version's recorded files and digests (the stored
  bytes were re-hashed when it was signed and are re-hashed on every read);
* an attestation's `verified`: its DSSE signature checks under its signer key, that key is
  not revoked, and its subject is the version's artifact digest;
* `approvals`: only approvals that count now — not revoked, not expired, and for this exact
  artifact digest (a new version, or changed bytes, needs new approvals);
* a dataset's `expired`: its retention ended before the decision's time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bastion.identity import Caller
from bastion.policy import PolicyService, rfc3339
from bastion.store.datasets import dataset_doc
from bastion.store.tables import (
    ApprovalRow,
    ArtifactFileRow,
    AttestationRow,
    DatasetRow,
    LineageRow,
    ModelRow,
    ModelSignatureRow,
    ModelVersionRow,
    PrincipalRow,
    SignerKeyRow,
)
from bastion.supplychain.attestations import verify_envelope
from bastion.supplychain.signing import (
    FileDigest,
    SignatureInvalid,
    Verifier,
    is_ignored_path,
    load_public_key_pem,
)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)


def model_doc(row: ModelRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "owner": row.owner,
        "custodian": row.custodian,
        "purpose": row.purpose,
        "intended_use": row.intended_use,
    }


def principal_ref(session: Session, principal_id: str) -> dict[str, Any]:
    name = session.scalar(sa.select(PrincipalRow.name).where(PrincipalRow.id == principal_id))
    return {"id": principal_id, "name": name or principal_id}


def lineage_docs(session: Session, version_id: str, now: datetime) -> list[dict[str, Any]]:
    rows = session.execute(
        sa.select(LineageRow.role, DatasetRow)
        .join(DatasetRow, DatasetRow.id == LineageRow.dataset_id)
        .where(LineageRow.version_id == version_id)
        .order_by(DatasetRow.name, LineageRow.role)
    ).all()
    return [{"role": role, "dataset": dataset_doc(d, now)} for role, d in rows]


def signatures_of(
    session: Session, version_id: str
) -> list[tuple[ModelSignatureRow, SignerKeyRow]]:
    """The version's stored signatures with their signer keys, newest first."""
    rows = session.execute(
        sa.select(ModelSignatureRow, SignerKeyRow)
        .join(SignerKeyRow, SignerKeyRow.id == ModelSignatureRow.signer_key_id)
        .where(ModelSignatureRow.version_id == version_id)
        .order_by(ModelSignatureRow.signed_at.desc())
    ).all()
    return [(signature, key) for signature, key in rows]


def signature_problems(
    signature: ModelSignatureRow, key: SignerKeyRow, digests: Sequence[FileDigest]
) -> list[str]:
    """Why `signature` does not vouch for `digests` under `key`: empty when it does."""
    if key.revoked_at is not None:
        return [f"signer key {key.id} ({key.team}/{key.name}) is revoked"]
    try:
        Verifier(load_public_key_pem(key.public_key_pem.encode())).verify_files(
            signature.bundle, digests
        )
    except SignatureInvalid as error:
        return [str(p) for p in (error.details.get("problems") or [error.message])]
    return []


def signature_status(session: Session, version: ModelVersionRow) -> dict[str, Any]:
    files = session.scalars(
        sa.select(ArtifactFileRow).where(ArtifactFileRow.version_id == version.id)
    ).all()
    digests = [
        FileDigest(
            path=f.path,
            algorithm="sha256",
            digest=bytes.fromhex(f.digest.removeprefix("sha256:")),
            size=f.size,
        )
        for f in files
        if not is_ignored_path(f.path)
    ]
    rows = signatures_of(session, version.id)
    signers: list[dict[str, Any]] = []
    problems: list[str] = []
    for signature, key in rows:
        found = signature_problems(signature, key, digests)
        problems.extend(f"{signature.id}: {p}"[:300] for p in found)
        if not found:
            signers.append({"team": key.team, "key_fingerprint": key.fingerprint})
    if not rows:
        problems.append("the version is not signed")
    return {
        "signed": bool(rows),
        "verified": bool(signers),
        "signers": signers,
        "problems": problems[:20],
    }


def attestation_docs(session: Session, version: ModelVersionRow) -> list[dict[str, Any]]:
    rows = session.execute(
        sa.select(AttestationRow, SignerKeyRow)
        .join(SignerKeyRow, SignerKeyRow.id == AttestationRow.signer_key_id)
        .where(AttestationRow.version_id == version.id)
        .order_by(AttestationRow.created_at)
    ).all()
    out = []
    for row, key in rows:
        predicate: dict[str, Any] = {}
        verified = False
        if key.revoked_at is None:
            try:
                statement = verify_envelope(
                    load_public_key_pem(key.public_key_pem.encode()), row.envelope
                )
            except Exception:  # noqa: BLE001 - any failure to verify is "not verified"
                statement = None
            if statement is not None:
                predicate = dict(statement.predicate)
                verified = (
                    statement.subject_digest == version.artifact_digest
                    and statement.predicate_type == row.predicate_type
                )
        out.append(
            {
                "id": row.id,
                "type": row.predicate_type,
                "subject_digest": row.subject_digest,
                "predicate": predicate,
                "signer": {"team": key.team, "key_fingerprint": key.fingerprint},
                "verified": verified,
                "created_by": principal_ref(session, row.created_by),
                "created_at": iso(row.created_at),
            }
        )
    return out


def valid_approvals(
    session: Session, version: ModelVersionRow, now: datetime
) -> Sequence[ApprovalRow]:
    return session.scalars(
        sa.select(ApprovalRow)
        .where(
            ApprovalRow.version_id == version.id,
            ApprovalRow.artifact_digest == version.artifact_digest,
            ApprovalRow.revoked_at.is_(None),
            ApprovalRow.expires_at > now,
        )
        .order_by(ApprovalRow.created_at)
    ).all()


def approval_doc(row: ApprovalRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "approver": {
            "id": row.approver_id,
            "name": row.approver_name,
            "roles": list(row.approver_roles),
        },
        "for": row.purpose,
        "artifact_digest": row.artifact_digest,
        "created_at": iso(row.created_at),
        "expires_at": iso(row.expires_at),
    }


def version_doc(
    session: Session,
    version: ModelVersionRow,
    now: datetime,
    *,
    lineage: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A stored version, with everything a gate may weigh."""
    scan = dict(version.scan or {})
    return {
        "id": version.id,
        "number": version.version,
        "artifact_digest": version.artifact_digest,
        "format": version.format,
        "status": version.status,
        "author": principal_ref(session, version.created_by),
        "created_at": iso(version.created_at),
        "scan": scan_doc(scan),
        "mlbom_digest": version.mlbom_digest,
        "signature": signature_status(session, version),
        "attestations": attestation_docs(session, version),
        "approvals": [approval_doc(a) for a in valid_approvals(session, version, now)],
        "lineage": lineage if lineage is not None else lineage_docs(session, version.id, now),
    }


def scan_doc(scan: dict[str, Any]) -> dict[str, Any]:
    files = scan.get("files") or []
    return {
        "clean": scan.get("clean") is True,
        "allowlist_version": scan.get("allowlist_version"),
        "findings": sum(len(f.get("findings") or []) for f in files),
    }


def version_input(
    policy: PolicyService,
    session: Session,
    caller: Caller,
    gate: str,
    model: ModelRow,
    version: ModelVersionRow,
    now: datetime,
    **fields: Any,
) -> dict[str, Any]:
    """The full input document of `gate` for a stored version."""
    return policy.envelope(
        gate, caller, model=model_doc(model), version=version_doc(session, version, now), **fields
    )


def gate_version(
    policy: PolicyService,
    session: Session,
    caller: Caller,
    gate: str,
    model: ModelRow,
    version: ModelVersionRow,
    now: datetime,
    **fields: Any,
) -> str:
    """Pass `gate` for a stored version inside `session` (callers wrap the transaction in
    `policy.enforcing`); the decision record's id."""
    document = version_input(policy, session, caller, gate, model, version, now, **fields)
    _, decision_id = policy.decide(session, caller, gate, version.id, document)
    return decision_id
