"""`/v1/audit/events`: the audit log, read-only, for auditors and admins."""

from __future__ import annotations

from fastapi import APIRouter, Query

from bastion.api.deps import CurrentCaller, PlatformDep, permission
from bastion.api.schemas import AuditEventOut
from bastion.identity import Permission

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("/events", openapi_extra=permission(Permission.AUDIT_READ))
def list_events(
    caller: CurrentCaller,
    platform: PlatformDep,
    start: int = Query(default=0, ge=0),
    limit: int = Query(default=100, ge=1, le=1000),
    subject: str | None = Query(default=None, max_length=256),
) -> list[AuditEventOut]:
    with platform.database.read() as session:
        events = platform.audit.events(session, start=start, limit=limit, subject=subject)
    return [AuditEventOut.of(e) for e in events]
