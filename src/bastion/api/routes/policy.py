"""`/v1/policy…` (bundles, tests, dry runs, decisions) and the governance records of a
version: `/v1/models/{name}/versions/{v}/approvals`, `…/attestations`, `…/checks/{gate}`.

A denial anywhere is 403 `policy.denied` whose `details` carry the gate, every reason and
the bundle and input digests.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field

from bastion.api.deps import CurrentCaller, PlatformDep, permission
from bastion.api.schemas import Strict
from bastion.identity import Permission
from bastion.policy import GATES, BundleInfo, Decision, DecisionRecord, PolicyBundle, TestReport
from bastion.registry import Approval, Attestation

router = APIRouter(tags=["policy"])


class BundleUpload(Strict):
    files: dict[str, str] = Field(
        description="bundle files: path → text (`.rego` files and an optional `data.json`)",
        max_length=500,
    )


class Evaluation(Strict):
    gate: str = Field(max_length=32, description=f"one of {', '.join(GATES)}")
    input: dict[str, Any]


class GateCheck(Strict):
    fields: dict[str, Any] = Field(
        default_factory=dict,
        description="gate-specific fields, e.g. {'deployment': {'endpoint': 'fraud', "
        "'kind': 'stable', 'weight': 100}}",
    )


class ApprovalCreate(Strict):
    for_: str = Field(default="deploy", alias="for", max_length=32)
    comment: str = Field(default="", max_length=2000)
    digest: str | None = Field(
        default=None, max_length=71, description="the artifact digest you reviewed"
    )


class ApprovalRevoke(Strict):
    reason: str = Field(default="", max_length=2000)


class AttestationCreate(Strict):
    type: str = Field(max_length=256, description="predicate type URI")
    predicate: dict[str, Any]


class DecisionOut(BaseModel):
    decision: dict[str, Any]
    input: dict[str, Any]


class TestReportOut(BaseModel):
    ok: bool
    passed: int
    failed: int
    errors: int
    results: list[dict[str, str]]

    @classmethod
    def of(cls, report: TestReport) -> TestReportOut:
        return cls(
            ok=report.ok,
            passed=report.passed,
            failed=report.failed,
            errors=report.errors,
            results=[
                {"test": r.name, "status": r.status, "message": r.message} for r in report.results
            ],
        )


# -- bundles ---------------------------------------------------------------------------------


@router.get("/v1/policy", openapi_extra=permission(Permission.POLICY_READ))
def active_bundle(caller: CurrentCaller, platform: PlatformDep) -> BundleInfo:
    """The active bundle (version 0 is the packaged default)."""
    return platform.policy.info(caller)


@router.get("/v1/policy/bundles", openapi_extra=permission(Permission.POLICY_READ))
def bundle_history(caller: CurrentCaller, platform: PlatformDep) -> list[BundleInfo]:
    return platform.policy.history(caller)


@router.get("/v1/policy/bundles/{version}/files", openapi_extra=permission(Permission.POLICY_READ))
def bundle_files(version: int, caller: CurrentCaller, platform: PlatformDep) -> dict[str, str]:
    return platform.policy.bundle_files(caller, version)


@router.post(
    "/v1/policy/bundles",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=permission(Permission.POLICY_MANAGE),
)
def apply_bundle(body: BundleUpload, caller: CurrentCaller, platform: PlatformDep) -> BundleInfo:
    """Apply a bundle: its tests must pass, every gate must evaluate, and the current
    bundle's `policy_change` gate must allow it; otherwise the old bundle stays."""
    return platform.policy.apply(caller, PolicyBundle.from_files(body.files))


@router.post("/v1/policy/test", openapi_extra=permission(Permission.POLICY_READ))
def test_bundle(body: BundleUpload, caller: CurrentCaller, platform: PlatformDep) -> TestReportOut:
    """Run a bundle's own Rego tests (isolated; nothing is stored)."""
    return TestReportOut.of(platform.policy.test(PolicyBundle.from_files(body.files)))


@router.post("/v1/policy/evaluate", openapi_extra=permission(Permission.POLICY_READ))
def evaluate(body: Evaluation, caller: CurrentCaller, platform: PlatformDep) -> DecisionOut:
    """A dry run of the active bundle on the given input; recorded nowhere."""
    decision: Decision = platform.policy.evaluate(body.gate, body.input)
    return DecisionOut(decision=decision.to_dict(), input=body.input)


@router.get("/v1/policy/decisions", openapi_extra=permission(Permission.POLICY_READ))
def decisions(
    caller: CurrentCaller,
    platform: PlatformDep,
    subject: Annotated[str | None, Query(max_length=128)] = None,
    gate: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DecisionRecord]:
    """Recorded decisions, newest first (each one's input digest is in the ledger)."""
    return platform.policy.decisions(caller, subject=subject, gate=gate, limit=limit)


@router.post(
    "/v1/models/{name}/versions/{ref}/checks/{gate}",
    openapi_extra=permission(Permission.POLICY_READ),
)
def check_gate(
    name: str, ref: str, gate: str, body: GateCheck, caller: CurrentCaller, platform: PlatformDep
) -> DecisionOut:
    """What `gate` would decide for this version now, with you as the actor (dry run)."""
    decision, document = platform.gates.check(caller, gate, name, ref, **body.fields)
    return DecisionOut(decision=decision.to_dict(), input=document)


# -- approvals and attestations --------------------------------------------------------------


@router.get(
    "/v1/models/{name}/versions/{ref}/approvals", openapi_extra=permission(Permission.MODEL_READ)
)
def list_approvals(
    name: str, ref: str, caller: CurrentCaller, platform: PlatformDep
) -> list[Approval]:
    """Every approval of the version with its state (valid, revoked, expired, superseded)."""
    return platform.approvals.list(caller, name, ref)


@router.post(
    "/v1/models/{name}/versions/{ref}/approvals",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=permission(Permission.APPROVAL_GRANT),
)
def approve(
    name: str, ref: str, body: ApprovalCreate, caller: CurrentCaller, platform: PlatformDep
) -> Approval:
    """Approve the version's exact artifact digest (the `approval_grant` gate decides)."""
    return platform.approvals.approve(
        caller, name, ref, purpose=body.for_, comment=body.comment, digest=body.digest
    )


@router.post(
    "/v1/approvals/{approval_id}/revoke", openapi_extra=permission(Permission.APPROVAL_GRANT)
)
def revoke_own_approval(
    approval_id: str, body: ApprovalRevoke, caller: CurrentCaller, platform: PlatformDep
) -> Approval:
    """Withdraw your own approval."""
    return platform.approvals.revoke(caller, approval_id, body.reason)


@router.post(
    "/v1/policy/approvals/{approval_id}/revoke",
    openapi_extra=permission(Permission.POLICY_MANAGE),
)
def revoke_approval(
    approval_id: str, body: ApprovalRevoke, caller: CurrentCaller, platform: PlatformDep
) -> Approval:
    """Withdraw anyone's approval (policy administrators)."""
    return platform.approvals.revoke(caller, approval_id, body.reason)


@router.get(
    "/v1/models/{name}/versions/{ref}/attestations",
    openapi_extra=permission(Permission.MODEL_READ),
)
def list_attestations(
    name: str, ref: str, caller: CurrentCaller, platform: PlatformDep
) -> list[Attestation]:
    return platform.attestations.list(caller, name, ref)


@router.post(
    "/v1/models/{name}/versions/{ref}/attestations",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=permission(Permission.ATTESTATION_WRITE),
)
def attest(
    name: str, ref: str, body: AttestationCreate, caller: CurrentCaller, platform: PlatformDep
) -> Attestation:
    """Record a signed in-toto statement about the version's artifact digest."""
    return platform.attestations.attest(caller, name, ref, body.type, body.predicate)


@router.get(
    "/v1/attestations/{attestation_id}/envelope", openapi_extra=permission(Permission.MODEL_READ)
)
def attestation_envelope(
    attestation_id: str, caller: CurrentCaller, platform: PlatformDep
) -> Response:
    """The DSSE envelope, verifiable with Bastion's platform key (`GET /v1/signer-keys`)."""
    data = platform.attestations.envelope(caller, attestation_id)
    return Response(data, media_type="application/vnd.dsse.envelope.v1+json")
