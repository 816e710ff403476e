"""`/v1/auth/…`: who am I, API tokens, principals."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Query, status

from bastion.api.deps import CurrentCaller, PlatformDep, permission
from bastion.api.schemas import (
    IssuedTokenOut,
    PrincipalCreate,
    PrincipalOut,
    RolesUpdate,
    TokenCreate,
    TokenOut,
    TokenRotate,
    WhoAmI,
)
from bastion.identity import Permission

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.get("/whoami", openapi_extra=permission(Permission.SELF_READ))
def whoami(caller: CurrentCaller) -> WhoAmI:
    return WhoAmI(
        principal_id=caller.principal_id,
        name=caller.name,
        kind=caller.kind.value,
        roles=sorted(r.value for r in caller.roles),
        permissions=sorted(p.value for p in caller.permissions),
        resources=list(caller.resources),
        token_id=caller.token_id,
        expires_at=caller.expires_at,
    )


@router.post(
    "/tokens",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=permission(Permission.TOKEN_SELF),
)
def create_token(body: TokenCreate, caller: CurrentCaller, platform: PlatformDep) -> IssuedTokenOut:
    """Issue a token (for yourself, or with `token.manage` for another principal)."""
    target = None
    if body.principal is not None:
        target = platform.principals.get(caller, body.principal).id
    issued = platform.tokens.create(
        caller,
        principal_id=target,
        name=body.name,
        roles=body.roles,
        resources=body.resources,
        ttl=None if body.ttl_seconds is None else timedelta(seconds=body.ttl_seconds),
    )
    return IssuedTokenOut(token=issued.secret, info=TokenOut.of(issued.info, platform.clock.now()))


@router.get("/tokens", openapi_extra=permission(Permission.TOKEN_SELF))
def list_tokens(
    caller: CurrentCaller,
    platform: PlatformDep,
    principal: str | None = None,
    all_principals: bool = Query(default=False, alias="all"),
    include_inactive: bool = False,
) -> list[TokenOut]:
    target = None
    if principal is not None:
        target = platform.principals.get(caller, principal).id
    infos = platform.tokens.list(
        caller,
        principal_id=target,
        all_principals=all_principals,
        include_inactive=include_inactive,
    )
    now = platform.clock.now()
    return [TokenOut.of(i, now) for i in infos]


@router.get("/tokens/{token_id}", openapi_extra=permission(Permission.TOKEN_SELF))
def get_token(token_id: str, caller: CurrentCaller, platform: PlatformDep) -> TokenOut:
    return TokenOut.of(platform.tokens.get(caller, token_id), platform.clock.now())


@router.delete("/tokens/{token_id}", openapi_extra=permission(Permission.TOKEN_SELF))
def revoke_token(token_id: str, caller: CurrentCaller, platform: PlatformDep) -> TokenOut:
    return TokenOut.of(platform.tokens.revoke(caller, token_id), platform.clock.now())


@router.post(
    "/tokens/{token_id}/rotate",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=permission(Permission.TOKEN_SELF),
)
def rotate_token(
    token_id: str, caller: CurrentCaller, platform: PlatformDep, body: TokenRotate | None = None
) -> IssuedTokenOut:
    grace = body.grace_seconds if body is not None else None
    issued = platform.tokens.rotate(
        caller, token_id, grace=None if grace is None else timedelta(seconds=grace)
    )
    return IssuedTokenOut(token=issued.secret, info=TokenOut.of(issued.info, platform.clock.now()))


@router.get("/principals", openapi_extra=permission(Permission.PRINCIPAL_READ))
def list_principals(caller: CurrentCaller, platform: PlatformDep) -> list[PrincipalOut]:
    return [PrincipalOut.of(p) for p in platform.principals.list(caller)]


@router.post(
    "/principals",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=permission(Permission.PRINCIPAL_MANAGE),
)
def add_principal(
    body: PrincipalCreate, caller: CurrentCaller, platform: PlatformDep
) -> PrincipalOut:
    return PrincipalOut.of(
        platform.principals.add(
            caller, name=body.name, kind=body.kind, roles=body.roles, description=body.description
        )
    )


@router.get("/principals/{ref}", openapi_extra=permission(Permission.PRINCIPAL_READ))
def get_principal(ref: str, caller: CurrentCaller, platform: PlatformDep) -> PrincipalOut:
    return PrincipalOut.of(platform.principals.get(caller, ref))


@router.put("/principals/{ref}/roles", openapi_extra=permission(Permission.PRINCIPAL_MANAGE))
def set_roles(
    ref: str, body: RolesUpdate, caller: CurrentCaller, platform: PlatformDep
) -> PrincipalOut:
    return PrincipalOut.of(platform.principals.set_roles(caller, ref, body.roles))


@router.post("/principals/{ref}/disable", openapi_extra=permission(Permission.PRINCIPAL_MANAGE))
def disable_principal(ref: str, caller: CurrentCaller, platform: PlatformDep) -> PrincipalOut:
    return PrincipalOut.of(platform.principals.set_disabled(caller, ref, disabled=True))


@router.post("/principals/{ref}/enable", openapi_extra=permission(Permission.PRINCIPAL_MANAGE))
def enable_principal(ref: str, caller: CurrentCaller, platform: PlatformDep) -> PrincipalOut:
    return PrincipalOut.of(platform.principals.set_disabled(caller, ref, disabled=False))
