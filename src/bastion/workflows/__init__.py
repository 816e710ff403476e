"""Workflows: flows that span several services of the layers below and that every edge (CLI,
API, `bastion demo`) runs the same way.

`private_models`: differential-privacy training that spends a dataset's budget and registers an
attested version, and membership-inference audits of a registered version. `demo`: the
governed release `bastion demo` (and so `make run`) sets up, as each demo principal.

Sits directly below `bastion.platform` (which builds these services) and above
`bastion.serving`; may import `bastion.serving`, `bastion.registry`, `bastion.privacy` and
everything below them, never the API, CLI or platform.
"""

from bastion.workflows.private_models import (
    MAX_AUDIT_FILE_BYTES,
    AuditResult,
    HoldoutSplit,
    PrivateModels,
    TrainResult,
    check_training,
)

__all__ = [
    "MAX_AUDIT_FILE_BYTES",
    "AuditResult",
    "HoldoutSplit",
    "PrivateModels",
    "TrainResult",
    "check_training",
]
