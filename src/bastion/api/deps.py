"""Request dependencies: the platform, and the authenticated, authorized caller.

Each route declares the one permission it needs with `permission(Permission.X)` in its
`openapi_extra`; `CurrentCaller` reads it from the matched route. A route that declares
none is refused (fail closed), and the app factory refuses to build such a route.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from bastion.core.errors import AuthenticationError, PermissionDenied
from bastion.identity import Caller, Permission
from bastion.platform import Platform

PERMISSION_KEY = "x-bastion-permission"


def permission(perm: Permission) -> dict[str, Any]:
    """`openapi_extra` declaring the permission a route requires."""
    return {PERMISSION_KEY: perm.value}


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def bearer_token(request: Request) -> str | None:
    return parse_bearer(request.headers.get("authorization"))


def parse_bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (None when absent)."""
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationError(
            "Authorization header must be `Bearer <token>`", code="auth.token_malformed"
        )
    return value.strip()


def _authenticate(request: Request) -> tuple[Platform, Caller, Permission]:
    platform = get_platform(request)
    caller = platform.tokens.authenticate(
        bearer_token(request), request_id=getattr(request.state, "request_id", None)
    )
    route = request.scope.get("route")
    declared = (getattr(route, "openapi_extra", None) or {}).get(PERMISSION_KEY)
    if declared is None:
        raise PermissionDenied("route declares no permission", code="auth.denied")
    return platform, caller, Permission(declared)


def current_caller(request: Request) -> Caller:
    platform, caller, declared = _authenticate(request)
    platform.authorizer.authorize(caller, declared)
    return caller


def endpoint_caller(request: Request) -> Caller:
    """`current_caller` for routes on one endpoint (`{name}` in the path): the permission is
    checked on the resource `endpoint:<name>`, so tokens scoped to that endpoint work."""
    platform, caller, declared = _authenticate(request)
    name = str(request.path_params.get("name", ""))
    platform.authorizer.authorize(caller, declared, f"endpoint:{name}")
    return caller


def authenticated_caller(request: Request) -> Caller:
    """Authenticate only: for routes whose service authorizes on a resource it must look up
    first (a receipt names its endpoint). The route still declares its permission."""
    return _authenticate(request)[1]


CurrentCaller = Annotated[Caller, Depends(current_caller)]
EndpointCaller = Annotated[Caller, Depends(endpoint_caller)]
AuthenticatedCaller = Annotated[Caller, Depends(authenticated_caller)]
PlatformDep = Annotated[Platform, Depends(get_platform)]
