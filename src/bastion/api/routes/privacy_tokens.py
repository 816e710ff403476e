"""`/v1/privacy/tokens…`, `/v1/privacy/token-keys…`: keyed tokenization over HTTP.

* `POST /v1/privacy/tokens/tokenize` (`dataset.write`) — values to tokens.
* `POST /v1/privacy/tokens/detokenize`, `…/retokenize` (`privacy.manage`) — reversible
  tokens to values (ledgered per call), or to tokens of the active key version.
* `GET /v1/privacy/token-keys` (`dataset.read`), `POST /v1/privacy/token-keys/rotate` and
  `POST /v1/privacy/token-keys/{version}/destroy` (`privacy.manage`),
  `GET /v1/privacy/token-keys/{version}/evidence` (`dataset.read`).

Limits (batch size, value size, context syntax) are the service's, with its error codes; the
request body limit of the edge applies first.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from bastion.api.deps import CurrentCaller, PlatformDep, permission
from bastion.api.schemas import Strict
from bastion.identity import Permission
from bastion.privacy.tokens import DestructionEvidence, TokenKey

router = APIRouter(prefix="/v1/privacy", tags=["privacy"])


class TokenizeIn(Strict):
    values: list[str | None]
    context: str = Field(max_length=128)
    reversible: bool = False
    key_version: int | None = Field(default=None, ge=1)


class TokensIn(Strict):
    tokens: list[str | None]
    context: str = Field(max_length=128)


class TokensOut(BaseModel):
    tokens: list[str | None]


class ValuesOut(BaseModel):
    values: list[str | None]


class TokenKeyOut(BaseModel):
    version: int
    key_id: str
    state: str
    created_at: datetime
    created_by: str
    retired_at: datetime | None
    destroyed_at: datetime | None


class EvidenceOut(BaseModel):
    version: int
    key_id: str
    destroyed_at: datetime
    keystore_answer: str


@router.post("/tokens/tokenize", openapi_extra=permission(Permission.DATASET_WRITE))
def tokenize(body: TokenizeIn, caller: CurrentCaller, platform: PlatformDep) -> TokensOut:
    tokens = platform.tokenizer.tokenize(
        caller,
        body.values,
        context=body.context,
        reversible=body.reversible,
        version=body.key_version,
    )
    return TokensOut(tokens=tokens)


@router.post("/tokens/detokenize", openapi_extra=permission(Permission.PRIVACY_MANAGE))
def detokenize(body: TokensIn, caller: CurrentCaller, platform: PlatformDep) -> ValuesOut:
    return ValuesOut(
        values=platform.tokenizer.detokenize(caller, body.tokens, context=body.context)
    )


@router.post("/tokens/retokenize", openapi_extra=permission(Permission.PRIVACY_MANAGE))
def retokenize(body: TokensIn, caller: CurrentCaller, platform: PlatformDep) -> TokensOut:
    return TokensOut(
        tokens=platform.tokenizer.retokenize(caller, body.tokens, context=body.context)
    )


@router.get("/token-keys", openapi_extra=permission(Permission.DATASET_READ))
def list_keys(caller: CurrentCaller, platform: PlatformDep) -> list[TokenKeyOut]:
    return [_key(key) for key in platform.tokenizer.keys(caller)]


@router.post("/token-keys/rotate", openapi_extra=permission(Permission.PRIVACY_MANAGE))
def rotate(caller: CurrentCaller, platform: PlatformDep) -> TokenKeyOut:
    return _key(platform.tokenizer.rotate(caller))


@router.post("/token-keys/{version}/destroy", openapi_extra=permission(Permission.PRIVACY_MANAGE))
def destroy(version: int, caller: CurrentCaller, platform: PlatformDep) -> EvidenceOut:
    return _evidence(platform.tokenizer.destroy(caller, version))


@router.get("/token-keys/{version}/evidence", openapi_extra=permission(Permission.DATASET_READ))
def evidence(version: int, caller: CurrentCaller, platform: PlatformDep) -> EvidenceOut:
    return _evidence(platform.tokenizer.evidence(caller, version))


def _key(key: TokenKey) -> TokenKeyOut:
    return TokenKeyOut(
        version=key.version,
        key_id=key.key_id,
        state=key.state.value,
        created_at=key.created_at,
        created_by=key.created_by,
        retired_at=key.retired_at,
        destroyed_at=key.destroyed_at,
    )


def _evidence(evidence: DestructionEvidence) -> EvidenceOut:
    return EvidenceOut(
        version=evidence.version,
        key_id=evidence.key_id,
        destroyed_at=evidence.destroyed_at,
        keystore_answer=evidence.keystore_answer,
    )
