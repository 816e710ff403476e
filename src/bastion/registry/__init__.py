"""The registry: the dataset inventory, models and their immutable versions, encrypted
artifacts, lineage, aliases, tags, signatures and trusted signer keys.

Every change is a ledger entry written in the same transaction as the change. Imports
`bastion.supplychain` (scanner, signing, ML-BOM), `bastion.identity`, `bastion.ledger`,
`bastion.store` and below; never the API, CLI or platform.
"""

from bastion.registry.approvals import (
    Approval,
    ApprovalService,
    Attestation,
    AttestationService,
    GateChecks,
)
from bastion.registry.datasets import DatasetService
from bastion.registry.models import ModelService, ModelSpec, VersionSpec, local_environment
from bastion.registry.records import (
    ArtifactFile,
    Classification,
    Dataset,
    DatasetRef,
    LineageLink,
    LineageRole,
    Model,
    ModelVersion,
    SignatureRecord,
    SignerKey,
    VerificationResult,
    VersionStatus,
)
from bastion.registry.signatures import SignatureService
from bastion.registry.staging import StagedFile, Staging, Upload

__all__ = [
    "Approval",
    "ApprovalService",
    "ArtifactFile",
    "Attestation",
    "AttestationService",
    "Classification",
    "Dataset",
    "DatasetRef",
    "DatasetService",
    "GateChecks",
    "LineageLink",
    "LineageRole",
    "Model",
    "ModelService",
    "ModelSpec",
    "ModelVersion",
    "SignatureRecord",
    "SignatureService",
    "SignerKey",
    "StagedFile",
    "Staging",
    "Upload",
    "VerificationResult",
    "VersionSpec",
    "VersionStatus",
    "local_environment",
]
