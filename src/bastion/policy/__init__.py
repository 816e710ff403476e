"""Policy as code: Rego bundles evaluated in-process with regopy at every lifecycle gate.

Decisions fail closed (undefined, errors and non-boolean results deny), carry
human-readable reasons, and are recorded with the bundle digest and input digest in the
ledger. Untrusted Rego work (a bundle's tests, a first evaluation of a new bundle) runs in an
isolated child process. Imports `bastion.identity`, `bastion.ledger`, `bastion.store` and
below; never the registry or above.
"""

from bastion.policy.bundle import GATES, PolicyBundle
from bastion.policy.engine import INPUT_VERSION, CompiledPolicy, Decision
from bastion.policy.errors import PolicyDenied, PolicyError
from bastion.policy.service import BundleInfo, DecisionRecord, PolicyService, actor_of, rfc3339
from bastion.policy.testing import TestReport, TestResult, check_gates, run_tests

__all__ = [
    "GATES",
    "INPUT_VERSION",
    "BundleInfo",
    "CompiledPolicy",
    "Decision",
    "DecisionRecord",
    "PolicyBundle",
    "PolicyDenied",
    "PolicyError",
    "PolicyService",
    "TestReport",
    "TestResult",
    "actor_of",
    "check_gates",
    "rfc3339",
    "run_tests",
]
