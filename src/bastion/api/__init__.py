"""HTTP edge: the FastAPI app factory and routers. No business rules live here.

Routes authenticate the bearer token, authorize against the permission each route declares
(`x-bastion-permission` in the OpenAPI document), call a service, and map `BastionError`s to
`{"error": {"code", "message"}}` with the status for their kind. May import every layer below.
"""

from bastion.api.app import create_app

__all__ = ["create_app"]
