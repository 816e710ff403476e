"""Signed attestations: in-toto v1 statements in DSSE envelopes, signed with EC keys.

An attestation says something about exact bytes: its subject is the model version's
artifact digest, its `predicateType` a URI naming what kind of claim it is (a validation
result, a privacy audit, ...), its `predicate` the claim itself. The envelope is DSSE v1
(payload type `application/vnd.in-toto+json`, the signature over the pre-authentication
encoding), the same framing the OpenSSF model-signing bundles use, so any DSSE verifier can
check it. `verify_envelope` refuses anything but exactly one valid signature over a
well-formed statement.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.core.errors import IntegrityError, InvalidInput
from bastion.supplychain.signing import PAYLOAD_TYPE, STATEMENT_TYPE, key_fingerprint

MAX_PREDICATE_BYTES = 256 * 1024
_URI_SCHEMES = ("https://", "http://", "urn:")


@dataclass(frozen=True, slots=True)
class Statement:
    subject_name: str
    subject_digest: str  # sha256:<hex>
    predicate_type: str
    predicate: Mapping[str, Any]


def _pae(payload: bytes) -> bytes:
    kind = PAYLOAD_TYPE.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def check_predicate_type(value: str) -> str:
    if (
        not isinstance(value, str)
        or not value.startswith(_URI_SCHEMES)
        or len(value) > 256
        or any(c.isspace() or ord(c) < 0x20 for c in value)
    ):
        raise InvalidInput(
            "the attestation type must be a URI (https://…, urn:…) of at most 256 characters",
            code="attestation.bad_type",
        )
    return value


def sign_statement(key: ec.EllipticCurvePrivateKey, statement: Statement) -> bytes:
    """The DSSE envelope (JSON bytes) of `statement`, signed with `key` (ECDSA, SHA-256)."""
    algorithm, _, hexdigest = statement.subject_digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64:
        raise InvalidInput("the subject must be a sha256 digest", code="attestation.bad_subject")
    check_predicate_type(statement.predicate_type)
    if not isinstance(statement.predicate, Mapping):
        raise InvalidInput("the predicate must be a JSON object", code="attestation.bad_predicate")
    try:
        predicate = json.loads(json.dumps(dict(statement.predicate), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise InvalidInput(
            "the predicate is not plain JSON", code="attestation.bad_predicate"
        ) from error
    payload = json.dumps(
        {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": statement.subject_name, "digest": {"sha256": hexdigest}}],
            "predicateType": statement.predicate_type,
            "predicate": predicate,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    if len(payload) > MAX_PREDICATE_BYTES:
        raise InvalidInput(
            f"the attestation is larger than {MAX_PREDICATE_BYTES} bytes",
            code="attestation.too_large",
        )
    signature = key.sign(_pae(payload), ec.ECDSA(hashes.SHA256()))
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [
            {
                "keyid": key_fingerprint(key.public_key()),
                "sig": base64.b64encode(signature).decode(),
            }
        ],
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def verify_envelope(key: ec.EllipticCurvePublicKey, envelope: bytes) -> Statement:
    """The statement of a DSSE envelope signed by `key`; `IntegrityError`
    (`attestation.invalid`) for a bad signature, shape, type or subject."""

    def bad(why: str) -> IntegrityError:
        return IntegrityError(f"the attestation does not verify: {why}", code="attestation.invalid")

    try:
        doc = json.loads(envelope)
        payload = base64.b64decode(doc["payload"], validate=True)
        (signature,) = doc["signatures"]
        raw_sig = base64.b64decode(signature["sig"], validate=True)
    except (ValueError, KeyError, TypeError) as error:
        raise bad("malformed envelope") from error
    if doc.get("payloadType") != PAYLOAD_TYPE:
        raise bad("wrong payload type")
    try:
        key.verify(raw_sig, _pae(payload), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as error:
        raise bad("bad signature") from error
    try:
        statement = json.loads(payload)
        (subject,) = statement["subject"]
        hexdigest = subject["digest"]["sha256"]
        predicate = statement["predicate"]
        predicate_type = statement["predicateType"]
        name = subject["name"]
    except (ValueError, KeyError, TypeError) as error:
        raise bad("malformed statement") from error
    if statement.get("_type") != STATEMENT_TYPE or not isinstance(predicate, dict):
        raise bad("not an in-toto v1 statement")
    if not isinstance(hexdigest, str) or len(hexdigest) != 64:
        raise bad("bad subject digest")
    return Statement(str(name), f"sha256:{hexdigest}", str(predicate_type), predicate)
