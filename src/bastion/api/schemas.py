"""Request and response bodies. Requests forbid unknown fields: a typo is an error, not ignored."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from bastion.identity import Principal, TokenInfo
from bastion.ledger import QueuedEntry


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenCreate(Strict):
    principal: str | None = Field(default=None, description="id or name; default: yourself")
    name: str = Field(default="", max_length=128)
    roles: list[str] | None = Field(default=None, max_length=16)
    resources: list[str] = Field(default_factory=list, max_length=64)
    ttl_seconds: int | None = Field(default=None, gt=0)


class TokenRotate(Strict):
    grace_seconds: int | None = Field(default=None, ge=0)


class PrincipalCreate(Strict):
    name: str = Field(max_length=128)
    kind: str = "user"
    roles: list[str] = Field(default_factory=list, max_length=16)
    description: str = Field(default="", max_length=512)


class RolesUpdate(Strict):
    roles: list[str] = Field(max_length=16)


class TokenOut(BaseModel):
    id: str
    principal_id: str
    name: str
    roles: list[str]
    resources: list[str]
    created_at: datetime
    created_by: str
    expires_at: datetime
    revoked_at: datetime | None
    rotated_from: str | None
    replaced_by: str | None
    state: str

    @classmethod
    def of(cls, info: TokenInfo, now: datetime) -> TokenOut:
        return cls(
            id=info.id,
            principal_id=info.principal_id,
            name=info.name,
            roles=[r.value for r in info.roles],
            resources=list(info.resources),
            created_at=info.created_at,
            created_by=info.created_by,
            expires_at=info.expires_at,
            revoked_at=info.revoked_at,
            rotated_from=info.rotated_from,
            replaced_by=info.replaced_by,
            state=info.state(now),
        )


class IssuedTokenOut(BaseModel):
    token: str = Field(description="The secret. Shown once; store it now.")
    info: TokenOut


class PrincipalOut(BaseModel):
    id: str
    name: str
    kind: str
    roles: list[str]
    description: str
    disabled: bool
    created_at: datetime
    created_by: str

    @classmethod
    def of(cls, p: Principal) -> PrincipalOut:
        return cls(
            id=p.id,
            name=p.name,
            kind=p.kind.value,
            roles=[r.value for r in p.roles],
            description=p.description,
            disabled=p.disabled,
            created_at=p.created_at,
            created_by=p.created_by,
        )


class WhoAmI(BaseModel):
    principal_id: str
    name: str
    kind: str
    roles: list[str]
    permissions: list[str]
    resources: list[str]
    token_id: str | None
    expires_at: datetime | None


class AuditEventOut(BaseModel):
    seq: int
    event_id: str
    type: str
    actor: str
    subject: str
    request_id: str | None
    time: datetime
    body: str = Field(description="the RFC 8785 canonical JSON that the log hashes")
    leaf_index: int | None = Field(description="position in the Merkle tree; null while queued")

    @classmethod
    def of(cls, event: QueuedEntry) -> AuditEventOut:
        return cls(
            seq=event.seq,
            event_id=event.event_id,
            type=event.type,
            actor=event.actor,
            subject=event.subject,
            request_id=event.request_id,
            time=event.time,
            body=event.body.decode(),
            leaf_index=event.leaf_index,
        )
