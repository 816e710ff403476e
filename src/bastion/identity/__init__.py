"""Governance: principals, roles and permissions, API tokens, segregation of duties.

May import `bastion.ledger`, `bastion.store`, `bastion.crypto` and `bastion.core`.
"""

from bastion.identity.access import AccessCounters, Authorizer, Caller, PrincipalKind
from bastion.identity.keys import KeyAdmin, KeyStatus
from bastion.identity.principals import Principal, PrincipalService
from bastion.identity.roles import PERMISSIONS, Permission, Role, permissions_of
from bastion.identity.tokens import IssuedToken, TokenInfo, TokenService, parse_token

__all__ = [
    "PERMISSIONS",
    "AccessCounters",
    "Authorizer",
    "Caller",
    "IssuedToken",
    "KeyAdmin",
    "KeyStatus",
    "Permission",
    "Principal",
    "PrincipalKind",
    "PrincipalService",
    "Role",
    "TokenInfo",
    "TokenService",
    "parse_token",
    "permissions_of",
]
