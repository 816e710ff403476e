"""`/v1/audit/…`: the transparency log, read-only, for auditors and admins (`audit.read`).

A client that keeps the checkpoint it saw last can ask for a consistency proof to the newest
one and check it itself (`bastion.ledger.merkle.verify_consistency`): a rollback or fork of
the log then cannot go unnoticed.
"""

from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import BaseModel

from bastion.api.deps import CurrentCaller, PlatformDep, permission
from bastion.api.schemas import AuditEventOut
from bastion.identity import Permission

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class CheckpointOut(BaseModel):
    origin: str
    size: int
    root: str
    note: str
    verifier_key: str


class EntryOut(BaseModel):
    index: int
    leaf_hash: str
    body: str


class InclusionOut(BaseModel):
    index: int
    tree_size: int
    leaf_hash: str
    proof: list[str]
    root: str


class ConsistencyOut(BaseModel):
    first: int
    second: int
    proof: list[str]
    first_root: str
    second_root: str


@router.get("/events", openapi_extra=permission(Permission.AUDIT_READ))
def list_events(
    caller: CurrentCaller,
    platform: PlatformDep,
    start: int = Query(default=0, ge=0),
    limit: int = Query(default=100, ge=1, le=1000),
    subject: str | None = Query(default=None, max_length=256),
) -> list[AuditEventOut]:
    """Audit events in queue order, with their leaf index once sequenced."""
    with platform.database.read() as session:
        events = platform.audit.events(session, start=start, limit=limit, subject=subject)
    return [AuditEventOut.of(e) for e in events]


@router.get("/checkpoint", openapi_extra=permission(Permission.AUDIT_READ))
def checkpoint(caller: CurrentCaller, platform: PlatformDep) -> CheckpointOut:
    """The newest signed checkpoint (C2SP signed note) and the key that verifies it."""
    latest = platform.ledger.latest_checkpoint()
    return CheckpointOut(
        origin=platform.ledger.origin,
        size=latest.size,
        root=latest.root.hex(),
        note=latest.note,
        verifier_key=platform.ledger.verifier_key(),
    )


@router.get("/entries", openapi_extra=permission(Permission.AUDIT_READ))
def entries(
    caller: CurrentCaller,
    platform: PlatformDep,
    start: int = Query(ge=0),
    end: int = Query(ge=0),
) -> list[EntryOut]:
    """Sequenced entries with leaf index in [start, end) (at most 1000)."""
    return [
        EntryOut(index=e.index, leaf_hash=e.leaf_hash.hex(), body=e.body.decode())
        for e in platform.ledger.entries(start, end)
    ]


@router.get("/proofs/inclusion", openapi_extra=permission(Permission.AUDIT_READ))
def inclusion(
    caller: CurrentCaller,
    platform: PlatformDep,
    index: int = Query(ge=0),
    tree_size: int | None = Query(default=None, ge=1),
) -> InclusionOut:
    """RFC 9162 inclusion proof of entry `index` in the tree of `tree_size` (default: newest)."""
    size = tree_size if tree_size is not None else platform.ledger.latest_checkpoint().size
    proof = platform.ledger.inclusion_proof(index, size)
    return InclusionOut(
        index=proof.index,
        tree_size=proof.tree_size,
        leaf_hash=proof.leaf_hash.hex(),
        proof=[h.hex() for h in proof.hashes],
        root=proof.root.hex(),
    )


@router.get("/proofs/consistency", openapi_extra=permission(Permission.AUDIT_READ))
def consistency(
    caller: CurrentCaller,
    platform: PlatformDep,
    first: int = Query(ge=0),
    second: int = Query(ge=0),
) -> ConsistencyOut:
    """RFC 9162 consistency proof that the tree of `second` entries extends that of `first`."""
    proof = platform.ledger.consistency_proof(first, second)
    return ConsistencyOut(
        first=proof.first,
        second=proof.second,
        proof=[h.hex() for h in proof.hashes],
        first_root=proof.first_root.hex(),
        second_root=proof.second_root.hex(),
    )
