"""`/v1/keys`: key-store status and KEK rotation (admin, `key.manage`)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from bastion.api.deps import CurrentCaller, PlatformDep, permission
from bastion.identity import Permission

router = APIRouter(prefix="/v1/keys", tags=["keys"])


class KeyStatusOut(BaseModel):
    active_kek_id: str
    data_keys: int


class RotationOut(BaseModel):
    new_kek_id: str
    retired_kek_ids: list[str]
    rewrapped_data_keys: int
    rewrapped_named_keys: int


@router.get("", openapi_extra=permission(Permission.KEY_MANAGE))
def key_status(caller: CurrentCaller, platform: PlatformDep) -> KeyStatusOut:
    status = platform.keys.status(caller)
    return KeyStatusOut(active_kek_id=status.active_kek_id, data_keys=status.data_keys)


@router.post("/rotate", openapi_extra=permission(Permission.KEY_MANAGE))
def rotate_kek(caller: CurrentCaller, platform: PlatformDep) -> RotationOut:
    """Re-wrap every data key under a new KEK and destroy the old one."""
    report = platform.keys.rotate(caller)
    return RotationOut(
        new_kek_id=report.new_kek_id,
        retired_kek_ids=list(report.retired_kek_ids),
        rewrapped_data_keys=report.rewrapped_data_keys,
        rewrapped_named_keys=report.rewrapped_named_keys,
    )
