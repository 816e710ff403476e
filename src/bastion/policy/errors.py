"""Policy errors. A denial is `PolicyDenied` (403, `policy.denied`) carrying the decision and
its reasons; a bundle that cannot be used is `PolicyError` with a stable code:
`policy.syntax` (does not compile), `policy.invalid_bundle` (layout, size, names, data),
`policy.tests_failed`, `policy.engine_crashed` (rego-cpp died in the isolated child),
`policy.unknown_gate`, `policy.bad_input`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.core.errors import BastionError, ErrorKind, PermissionDenied

if TYPE_CHECKING:
    from bastion.policy.engine import Decision


class PolicyError(BastionError):
    default_code = "policy.error"
    default_kind = ErrorKind.INVALID


class PolicyDenied(PermissionDenied):
    """The policy said no. `details` has the gate, every reason and the bundle digest."""

    default_code = "policy.denied"

    def __init__(self, decision: Decision) -> None:
        reasons = list(decision.reasons) or ["the policy did not allow it"]
        super().__init__(
            f"policy gate {decision.gate} denied: " + "; ".join(reasons),
            details={
                "gate": decision.gate,
                "reasons": reasons,
                "bundle_digest": decision.bundle_digest,
                "input_digest": decision.input_digest,
            },
        )
        self.decision = decision
