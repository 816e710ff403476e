"""`/v1/receipts/…`: proofs that a prediction was logged, for its caller (and auditors).

`GET /v1/receipts/{request_id}` returns the receipt's proof bundle — the receipt, an RFC 9162
inclusion proof and the newest signed checkpoint of the prediction log — which verifies
offline (`bastion receipt verify`, `bastion.serving.receipts.verify_receipt_bundle`) with the
log's key obtained out of band from `GET /v1/receipts/log/checkpoint` or `bastion receipt
pubkey`. 409 (`serving.receipt_pending`) while the receipt waits to be sequenced; 404 for an
unknown id and for someone else's receipt alike.

Routes authenticate only (`AuthenticatedCaller`); the service authorizes `receipt.read` on
`endpoint:<the receipt's endpoint>`, which it learns from the receipt, so endpoint-scoped
tokens work.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import BaseModel

from bastion.api.deps import AuthenticatedCaller, PlatformDep, permission
from bastion.identity import Permission

router = APIRouter(prefix="/v1/receipts", tags=["receipts"])


class ReceiptProofOut(BaseModel):
    receipt: dict[str, Any]
    leaf_index: int
    tree_size: int
    leaf_hash: str
    inclusion: list[str]
    checkpoint: str
    origin: str
    verifier_key: str


class ReceiptCheckpointOut(BaseModel):
    origin: str
    size: int
    root: str
    note: str
    verifier_key: str


# Declared before `/{request_id}` so the literal path is matched first.
@router.get("/log/checkpoint", openapi_extra=permission(Permission.RECEIPT_READ))
def log_checkpoint(caller: AuthenticatedCaller, platform: PlatformDep) -> ReceiptCheckpointOut:
    """The prediction log's newest signed checkpoint (C2SP signed note) and its key."""
    latest = platform.receipts.latest_checkpoint(caller)
    return ReceiptCheckpointOut(
        origin=platform.receipts.origin,
        size=latest.size,
        root=latest.root.hex(),
        note=latest.note,
        verifier_key=platform.receipts.verifier_key(),
    )


@router.get("/{request_id}", openapi_extra=permission(Permission.RECEIPT_READ))
def get_receipt(
    caller: AuthenticatedCaller,
    platform: PlatformDep,
    request_id: Annotated[str, PathParam(min_length=1, max_length=64)],
) -> ReceiptProofOut:
    """The receipt of a prediction with its inclusion proof and signed checkpoint."""
    return ReceiptProofOut(**platform.receipts.proof(caller, request_id))
