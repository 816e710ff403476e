"""Roles and the permission table: the single source of truth for who may do what.

Every route and service call names one `Permission`; a caller holds it only if one of its
token's roles maps to it here. Roles follow least privilege and keep duties apart: `admin`
runs identities, keys and policy but does not approve, deploy or predict; `approver` approves
but does not build or deploy; `auditor` reads everything, including the audit log, and
changes nothing; `inference-client` may only predict.

Imports nothing from Bastion but `bastion.core`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType


class Role(StrEnum):
    ADMIN = "admin"
    DATA_STEWARD = "data-steward"
    MODEL_DEVELOPER = "model-developer"
    APPROVER = "approver"
    DEPLOYER = "deployer"
    AUDITOR = "auditor"
    INFERENCE_CLIENT = "inference-client"


class Permission(StrEnum):
    # Self-service, held by every role.
    SELF_READ = "self.read"
    TOKEN_SELF = "token.self"  # noqa: S105 - create, list, rotate and revoke one's own tokens
    # Identity administration.
    PRINCIPAL_READ = "principal.read"
    PRINCIPAL_MANAGE = "principal.manage"
    TOKEN_READ = "token.read"  # noqa: S105 - list anyone's token metadata
    TOKEN_MANAGE = "token.manage"  # noqa: S105 - issue and revoke tokens for other principals
    KEY_MANAGE = "key.manage"
    AUDIT_READ = "audit.read"
    # Lifecycle (used by the registry, policy, deploy and serving layers).
    DATASET_READ = "dataset.read"
    DATASET_WRITE = "dataset.write"
    PRIVACY_MANAGE = "privacy.manage"
    MODEL_READ = "model.read"
    MODEL_WRITE = "model.write"
    MODEL_SIGN = "model.sign"
    ARTIFACT_UPLOAD = "artifact.upload"
    ARTIFACT_READ = "artifact.read"  # fetch model bytes: counted and logged (model theft)
    APPROVAL_GRANT = "approval.grant"
    ATTESTATION_WRITE = "attestation.write"
    POLICY_READ = "policy.read"
    POLICY_MANAGE = "policy.manage"
    DEPLOY_READ = "deploy.read"
    DEPLOY_MANAGE = "deploy.manage"
    PREDICT = "predict"
    RECEIPT_READ = "receipt.read"  # own prediction receipts; AUDIT_READ adds everyone's
    MONITOR_READ = "monitor.read"


# Permissions that a resource-scoped token keeps even for calls that name no resource.
SELF_SERVICE: frozenset[Permission] = frozenset({Permission.SELF_READ, Permission.TOKEN_SELF})

_READ_ALL = frozenset(
    {
        Permission.PRINCIPAL_READ,
        Permission.TOKEN_READ,
        Permission.AUDIT_READ,
        Permission.DATASET_READ,
        Permission.MODEL_READ,
        Permission.POLICY_READ,
        Permission.DEPLOY_READ,
        Permission.MONITOR_READ,
        Permission.RECEIPT_READ,
    }
)

_TABLE: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: SELF_SERVICE
    | _READ_ALL
    | {
        Permission.PRINCIPAL_MANAGE,
        Permission.TOKEN_MANAGE,
        Permission.KEY_MANAGE,
        Permission.POLICY_MANAGE,
    },
    Role.DATA_STEWARD: SELF_SERVICE
    | {
        Permission.DATASET_READ,
        Permission.DATASET_WRITE,
        Permission.ARTIFACT_UPLOAD,
        Permission.PRIVACY_MANAGE,
        Permission.MODEL_READ,
        Permission.APPROVAL_GRANT,
        Permission.ATTESTATION_WRITE,
        Permission.POLICY_READ,
    },
    Role.MODEL_DEVELOPER: SELF_SERVICE
    | {
        Permission.DATASET_READ,
        Permission.MODEL_READ,
        Permission.MODEL_WRITE,
        Permission.MODEL_SIGN,
        Permission.ATTESTATION_WRITE,
        Permission.ARTIFACT_UPLOAD,
        Permission.ARTIFACT_READ,
        Permission.POLICY_READ,
        Permission.DEPLOY_READ,
        Permission.MONITOR_READ,
    },
    Role.APPROVER: SELF_SERVICE
    | {
        Permission.DATASET_READ,
        Permission.MODEL_READ,
        Permission.APPROVAL_GRANT,
        Permission.POLICY_READ,
    },
    Role.DEPLOYER: SELF_SERVICE
    | {
        Permission.MODEL_READ,
        Permission.ARTIFACT_READ,
        Permission.DEPLOY_READ,
        Permission.DEPLOY_MANAGE,
        Permission.POLICY_READ,
        Permission.MONITOR_READ,
    },
    Role.AUDITOR: SELF_SERVICE | _READ_ALL,
    Role.INFERENCE_CLIENT: SELF_SERVICE | {Permission.PREDICT, Permission.RECEIPT_READ},
}

PERMISSIONS: Mapping[Role, frozenset[Permission]] = MappingProxyType(_TABLE)


def permissions_of(roles: Iterable[Role]) -> frozenset[Permission]:
    """Union of the permissions of `roles`."""
    result: frozenset[Permission] = frozenset()
    for role in roles:
        result |= PERMISSIONS[role]
    return result


def roles_with(permission: Permission) -> frozenset[Role]:
    """Every role that grants `permission` (for error messages and docs)."""
    return frozenset(role for role, perms in PERMISSIONS.items() if permission in perms)
