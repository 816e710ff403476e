"""`/v1/uploads`, `/v1/datasets`, `/v1/models`, `/v1/lineage`, `/v1/signer-keys`.

Uploading a model is three calls: `POST /v1/uploads` opens a staged upload, `PUT
/v1/uploads/{id}/files/{path}` streams each file (raw body; large bodies allowed only here),
and `POST /v1/models/{name}/versions` with the upload id scans, seals and registers it. An
upload that is never committed holds no version and expires.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from bastion.api.deps import CurrentCaller, PlatformDep, permission
from bastion.api.schemas import Strict
from bastion.core.errors import InvalidInput
from bastion.identity import Permission
from bastion.registry import (
    Dataset,
    DatasetRef,
    LineageLink,
    Model,
    ModelSpec,
    ModelVersion,
    SignatureRecord,
    SignerKey,
    StagedFile,
    Upload,
    VerificationResult,
    VersionSpec,
)
from bastion.registry.openlineage import run_events, to_json_lines

router = APIRouter(tags=["registry"])

_WRITE_BATCH = 1024 * 1024


class DatasetCreate(Strict):
    name: str = Field(max_length=128)
    classification: str
    purposes: list[str] = Field(max_length=32)
    owner: str | None = Field(default=None, max_length=128)
    description: str = Field(default="", max_length=2000)
    retention_days: int | None = None
    schema_: list[dict[str, Any]] | None = Field(default=None, alias="schema", max_length=4096)
    source: str | None = Field(default=None, max_length=1024)
    digest: str | None = Field(default=None, description="sha256:… of bytes kept elsewhere")
    upload_id: str | None = Field(default=None, description="a staged upload of one file")
    tags: dict[str, str] = Field(default_factory=dict)


class ModelCreate(Strict):
    name: str = Field(max_length=128)
    owner: str | None = Field(default=None, max_length=128)
    custodian: str | None = Field(default=None, max_length=128)
    description: str = Field(default="", max_length=2000)
    intended_use: str = Field(default="", max_length=2000)
    purpose: str | None = Field(default=None, max_length=128)

    def spec(self) -> ModelSpec:
        return ModelSpec(
            owner=self.owner,
            custodian=self.custodian,
            description=self.description,
            intended_use=self.intended_use,
            purpose=self.purpose,
        )


class VersionCreate(Strict):
    upload_id: str
    datasets: list[str] = Field(
        default_factory=list, max_length=64, description="name[@version][:role]"
    )
    description: str = Field(default="", max_length=2000)
    metrics: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)
    code_ref: str | None = Field(default=None, max_length=512)
    environment: dict[str, Any] = Field(default_factory=dict)
    input_contract: dict[str, Any] | None = None
    output_contract: dict[str, Any] | None = None
    model_card: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    task: str | None = Field(default=None, max_length=128)
    framework: str | None = Field(default=None, max_length=128)
    create_model: ModelCreate | None = Field(
        default=None, description="create the model with these details if it does not exist"
    )


class StatusUpdate(Strict):
    status: str


class AliasUpdate(Strict):
    version: int = Field(gt=0)


class TagsUpdate(Strict):
    version: str | None = Field(default=None, description="a version or alias; none: the model")
    set: dict[str, str] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list, max_length=64)


class SignatureAttach(Strict):
    bundle: dict[str, Any] = Field(description="the OpenSSF model-signing bundle (JSON)")


class SignerKeyCreate(Strict):
    team: str = Field(max_length=128)
    name: str = Field(default="", max_length=128)
    public_key_pem: str = Field(max_length=16384)


class SignatureOut(BaseModel):
    signature: SignatureRecord
    bundle: dict[str, Any]


# -- uploads ---------------------------------------------------------------------------------


@router.post(
    "/v1/uploads",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=permission(Permission.ARTIFACT_UPLOAD),
)
def create_upload(caller: CurrentCaller, platform: PlatformDep) -> Upload:
    return platform.staging.create(caller)


@router.get("/v1/uploads/{upload_id}", openapi_extra=permission(Permission.ARTIFACT_UPLOAD))
def get_upload(upload_id: str, caller: CurrentCaller, platform: PlatformDep) -> Upload:
    return platform.staging.get(caller, upload_id)


@router.put(
    "/v1/uploads/{upload_id}/files/{path:path}",
    openapi_extra=permission(Permission.ARTIFACT_UPLOAD),
)
async def put_upload_file(
    upload_id: str, path: str, request: Request, caller: CurrentCaller, platform: PlatformDep
) -> StagedFile:
    """Stream one file of the upload (the raw request body). Writing a path again replaces
    it. Refused with 413 as soon as the upload's byte limit is passed."""
    writer = await run_in_threadpool(platform.staging.writer, caller, upload_id, path)
    try:
        pending = bytearray()
        async for chunk in request.stream():
            pending += chunk
            if len(pending) >= _WRITE_BATCH:
                await run_in_threadpool(writer.write, bytes(pending))
                pending.clear()
        if pending:
            await run_in_threadpool(writer.write, bytes(pending))
    except BaseException:
        writer.abort()
        raise
    return await run_in_threadpool(writer.finish)


@router.delete(
    "/v1/uploads/{upload_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    openapi_extra=permission(Permission.ARTIFACT_UPLOAD),
)
def abort_upload(upload_id: str, caller: CurrentCaller, platform: PlatformDep) -> Response:
    platform.staging.abort(caller, upload_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- datasets --------------------------------------------------------------------------------


@router.post(
    "/v1/datasets",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=permission(Permission.DATASET_WRITE),
)
def register_dataset(body: DatasetCreate, caller: CurrentCaller, platform: PlatformDep) -> Dataset:
    return platform.datasets.register(
        caller,
        body.name,
        classification_=body.classification,
        purposes=body.purposes,
        owner=body.owner,
        description=body.description,
        retention_days=body.retention_days,
        schema=body.schema_,
        source=body.source,
        digest=body.digest,
        upload_id=body.upload_id,
        tags=body.tags,
    )


@router.get("/v1/datasets", openapi_extra=permission(Permission.DATASET_READ))
def list_datasets(caller: CurrentCaller, platform: PlatformDep) -> list[Dataset]:
    return platform.datasets.list(caller)


@router.get("/v1/datasets/{name}/versions", openapi_extra=permission(Permission.DATASET_READ))
def dataset_versions(name: str, caller: CurrentCaller, platform: PlatformDep) -> list[Dataset]:
    return platform.datasets.list(caller, name=name)


@router.get(
    "/v1/datasets/{name}/versions/{version}", openapi_extra=permission(Permission.DATASET_READ)
)
def get_dataset(name: str, version: int, caller: CurrentCaller, platform: PlatformDep) -> Dataset:
    return platform.datasets.get(caller, name, version)


@router.get(
    "/v1/datasets/{name}/versions/{version}/consumers",
    openapi_extra=permission(Permission.MODEL_READ),
)
def dataset_consumers(
    name: str, version: int, caller: CurrentCaller, platform: PlatformDep
) -> list[LineageLink]:
    """Every model version trained or evaluated on this dataset version."""
    return platform.models.consumers(caller, dataset=name, version=version)


# -- models ----------------------------------------------------------------------------------


@router.post(
    "/v1/models",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=permission(Permission.MODEL_WRITE),
)
def create_model(body: ModelCreate, caller: CurrentCaller, platform: PlatformDep) -> Model:
    return platform.models.create(caller, body.name, body.spec())


@router.get("/v1/models", openapi_extra=permission(Permission.MODEL_READ))
def list_models(caller: CurrentCaller, platform: PlatformDep) -> list[Model]:
    return platform.models.list(caller)


@router.get("/v1/models/{name}", openapi_extra=permission(Permission.MODEL_READ))
def get_model(name: str, caller: CurrentCaller, platform: PlatformDep) -> Model:
    return platform.models.get(caller, name)


@router.post(
    "/v1/models/{name}/versions",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=permission(Permission.MODEL_WRITE),
)
def register_version(
    name: str, body: VersionCreate, caller: CurrentCaller, platform: PlatformDep
) -> ModelVersion:
    """Scan, seal and register the staged upload as the next version. 422
    `registry.scan_rejected` lists every scanner finding; nothing is stored then."""
    spec = VersionSpec(
        datasets=tuple(DatasetRef.parse(d) for d in body.datasets),
        description=body.description,
        metrics=body.metrics,
        parameters=body.parameters,
        code_ref=body.code_ref,
        environment=body.environment,
        input_contract=body.input_contract,
        output_contract=body.output_contract,
        model_card=body.model_card,
        tags=body.tags,
        task=body.task,
        framework=body.framework,
    )
    create = body.create_model.spec() if body.create_model else None
    if body.create_model is not None and body.create_model.name != name:
        raise InvalidInput("create_model.name must match the path", code="registry.bad_name")
    return platform.models.register_version(caller, name, body.upload_id, spec, create=create)


@router.get("/v1/models/{name}/versions", openapi_extra=permission(Permission.MODEL_READ))
def list_versions(name: str, caller: CurrentCaller, platform: PlatformDep) -> list[ModelVersion]:
    return platform.models.versions(caller, name)


@router.get("/v1/models/{name}/versions/{ref}", openapi_extra=permission(Permission.MODEL_READ))
def get_version(name: str, ref: str, caller: CurrentCaller, platform: PlatformDep) -> ModelVersion:
    """A version by number or alias (`champion`)."""
    return platform.models.version(caller, name, ref)


@router.patch("/v1/models/{name}/versions/{ref}", openapi_extra=permission(Permission.MODEL_WRITE))
def update_version(
    name: str, ref: str, body: StatusUpdate, caller: CurrentCaller, platform: PlatformDep
) -> ModelVersion:
    return platform.models.set_status(caller, name, ref, body.status)


@router.get(
    "/v1/models/{name}/versions/{ref}/mlbom", openapi_extra=permission(Permission.MODEL_READ)
)
def get_mlbom(name: str, ref: str, caller: CurrentCaller, platform: PlatformDep) -> Response:
    """The version's CycloneDX 1.6 ML-BOM, exactly the bytes that were signed."""
    data = platform.models.read_mlbom(caller, name, ref)
    return Response(data, media_type="application/vnd.cyclonedx+json")


@router.get(
    "/v1/models/{name}/versions/{ref}/artifact",
    openapi_extra=permission(Permission.ARTIFACT_READ),
    response_class=StreamingResponse,
)
def download_artifact(
    name: str,
    ref: str,
    caller: CurrentCaller,
    platform: PlatformDep,
    path: Annotated[str | None, Query(max_length=1024)] = None,
) -> StreamingResponse:
    """One file of the version (`path` may be omitted for single-file versions). The bytes
    are decrypted and re-hashed before the first byte is sent; a mismatch is a 500
    `registry.digest_mismatch`, never a silent download. Every download is logged."""
    context = platform.models.open_artifact(caller, name, ref, path)
    info, handle = context.__enter__()

    def chunks() -> Iterator[bytes]:
        try:
            while chunk := handle.read(_WRITE_BATCH):
                yield chunk
        finally:
            context.__exit__(None, None, None)

    raw = bytes.fromhex(info.digest.removeprefix("sha256:"))
    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={
            "content-length": str(info.size),
            "content-disposition": f'attachment; filename="{info.path.rsplit("/", 1)[-1]}"',
            "repr-digest": f"sha-256=:{base64.b64encode(raw).decode()}:",
            "x-bastion-digest": info.digest,
        },
    )


@router.post(
    "/v1/models/{name}/versions/{ref}/signature",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=permission(Permission.MODEL_SIGN),
)
def sign_version(
    name: str, ref: str, caller: CurrentCaller, platform: PlatformDep
) -> SignatureRecord:
    """Sign with Bastion's key (OpenSSF model-signing format) after re-hashing the bytes."""
    return platform.signatures.sign(caller, name, ref)


@router.post(
    "/v1/models/{name}/versions/{ref}/signature/attach",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=permission(Permission.MODEL_SIGN),
)
def attach_signature(
    name: str, ref: str, body: SignatureAttach, caller: CurrentCaller, platform: PlatformDep
) -> SignatureRecord:
    """Attach a bundle signed elsewhere by a registered signer key."""
    bundle = json.dumps(body.bundle).encode()
    return platform.signatures.attach(caller, name, ref, bundle)


@router.get(
    "/v1/models/{name}/versions/{ref}/signature", openapi_extra=permission(Permission.MODEL_READ)
)
def get_signature(
    name: str, ref: str, caller: CurrentCaller, platform: PlatformDep
) -> SignatureOut:
    record, bundle = platform.signatures.bundle(caller, name, ref)
    return SignatureOut(signature=record, bundle=json.loads(bundle))


@router.post(
    "/v1/models/{name}/versions/{ref}/verify", openapi_extra=permission(Permission.MODEL_READ)
)
def verify_version(
    name: str, ref: str, caller: CurrentCaller, platform: PlatformDep
) -> VerificationResult:
    """Re-hash the stored bytes and check the signatures against trusted signer keys."""
    return platform.signatures.verify(caller, name, ref)


@router.put("/v1/models/{name}/aliases/{alias}", openapi_extra=permission(Permission.MODEL_WRITE))
def set_alias(
    name: str, alias: str, body: AliasUpdate, caller: CurrentCaller, platform: PlatformDep
) -> ModelVersion:
    return platform.models.set_alias(caller, name, alias, body.version)


@router.delete(
    "/v1/models/{name}/aliases/{alias}",
    status_code=status.HTTP_204_NO_CONTENT,
    openapi_extra=permission(Permission.MODEL_WRITE),
)
def remove_alias(name: str, alias: str, caller: CurrentCaller, platform: PlatformDep) -> Response:
    platform.models.remove_alias(caller, name, alias)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.patch("/v1/models/{name}/tags", openapi_extra=permission(Permission.MODEL_WRITE))
def update_tags(
    name: str, body: TagsUpdate, caller: CurrentCaller, platform: PlatformDep
) -> dict[str, str]:
    return dict(platform.models.set_tags(caller, name, body.version, body.set, body.remove))


# -- lineage ---------------------------------------------------------------------------------


@router.get("/v1/lineage", openapi_extra=permission(Permission.MODEL_READ))
def lineage(
    caller: CurrentCaller,
    platform: PlatformDep,
    model: Annotated[str | None, Query(max_length=128)] = None,
    dataset: Annotated[str | None, Query(max_length=128)] = None,
    dataset_version: Annotated[int | None, Query(gt=0)] = None,
    digest: Annotated[str | None, Query(max_length=71)] = None,
) -> list[LineageLink]:
    """Lineage edges, both ways: of a model, or of the versions that used a dataset
    (by name, name and version, or content digest)."""
    if dataset is not None or digest is not None:
        return platform.models.consumers(
            caller, dataset=dataset, version=dataset_version, digest=digest
        )
    return platform.models.lineage(caller, model)


@router.get("/v1/lineage/openlineage", openapi_extra=permission(Permission.MODEL_READ))
def openlineage(
    caller: CurrentCaller,
    platform: PlatformDep,
    model: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    """The lineage as OpenLineage run events (JSON lines), one START/COMPLETE pair per
    model version."""
    events = [
        event
        for run in platform.models.lineage_runs(caller, model, platform.settings.ledger_origin)
        for event in run_events(run, producer=platform.models.producer)
    ]
    return Response(to_json_lines(events), media_type="application/x-ndjson")


# -- signer keys -----------------------------------------------------------------------------


@router.get("/v1/signer-keys", openapi_extra=permission(Permission.MODEL_READ))
def list_signer_keys(caller: CurrentCaller, platform: PlatformDep) -> list[SignerKey]:
    return platform.signatures.list_keys(caller)


@router.post(
    "/v1/signer-keys",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=permission(Permission.KEY_MANAGE),
)
def add_signer_key(
    body: SignerKeyCreate, caller: CurrentCaller, platform: PlatformDep
) -> SignerKey:
    return platform.signatures.add_key(caller, body.team, body.name, body.public_key_pem)


@router.delete("/v1/signer-keys/{key_id}", openapi_extra=permission(Permission.KEY_MANAGE))
def revoke_signer_key(key_id: str, caller: CurrentCaller, platform: PlatformDep) -> SignerKey:
    return platform.signatures.revoke_key(caller, key_id)
