"""Verified loading: the gateway deserializes only bytes it has just proven are the ones the
registry recorded and a trusted key signed.

For one version, `VerifiedLoader.load`:

1. decrypts every uploaded file into memory through the registry (AES-GCM authenticates each
   chunk; the SHA-256 computed on the way must equal the recorded digest);
2. checks that some stored OpenSSF model-signing signature, under a registered and unrevoked
   signer key, verifies over exactly those digests — computed from the bytes in hand, not read
   from the database;
3. parses the version's input contract (a version without one is not served: the gateway
   could not check what it is sent);
4. hands the same in-memory bytes to a loader (ONNX Runtime, skops with allow-listed types,
   or pickle/joblib after the allow-list scanner passed them).

There is no file between check and load, so nothing can be swapped in between. A refusal
raises and is ledgered (`serving.version.refused`); a load is ledgered too
(`serving.version.loaded`: which process loaded which bytes under which signer).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bastion.core.clock import Clock
from bastion.core.errors import BastionError, IntegrityError, InvalidInput, NotFound
from bastion.identity import Caller, Role
from bastion.ledger import AuditLog
from bastion.registry.contract import InputContract
from bastion.registry.gates import signature_problems, signatures_of
from bastion.registry.models import ModelService, VerifiedFile
from bastion.registry.profile import ReferenceProfile
from bastion.serving.loaders import Predictor, load_predictor
from bastion.store.db import Database
from bastion.store.tables import ModelRow, ModelSignatureRow, ModelVersionRow, SignerKeyRow
from bastion.supplychain.scan import AllowList
from bastion.supplychain.signing import FileDigest, is_ignored_path

log = logging.getLogger("bastion.serving")

GATEWAY = "gateway"


@dataclass(frozen=True)
class LoadedVersion:
    """A version ready to predict: what was verified, and the predictor built from it."""

    version_id: str
    model: str
    number: int
    artifact_digest: str
    contract: InputContract
    predictor: Predictor
    signers: tuple[str, ...]
    # The training data's bins and label distribution, for drift; None: not monitored for drift.
    profile: ReferenceProfile | None = None

    @property
    def label(self) -> str:
        return str(self.number)


class VerifiedLoader:
    def __init__(
        self,
        *,
        database: Database,
        models: ModelService,
        audit: AuditLog,
        allowlist: AllowList,
        clock: Clock,
        max_bytes: int,
    ) -> None:
        self._db = database
        self._models = models
        self._audit = audit
        self._allowlist = allowlist
        self._clock = clock
        self._max_bytes = max_bytes
        self.caller = Caller.system(GATEWAY, [Role.DEPLOYER])
        self._process = f"{socket.gethostname()}:{os.getpid()}"

    def load(self, version_id: str) -> LoadedVersion:
        """Verify and load one version; raises (and ledgers the refusal) on any failure."""
        try:
            return self._load(version_id)
        except BastionError as error:
            self._record_refusal(version_id, error)
            raise

    def _load(self, version_id: str) -> LoadedVersion:
        with self._db.read() as session:
            version = session.get(ModelVersionRow, version_id)
            if version is None:
                raise NotFound(f"no model version {version_id}", code="serving.version_not_found")
            model = session.get(ModelRow, version.model_id)
            assert model is not None
            signed = signatures_of(session, version_id)
            contract_doc = version.input_contract
            profile_doc = version.reference_profile
            number, artifact_digest, model_name = (
                version.version,
                version.artifact_digest,
                model.name,
            )
            status = version.status
        label = f"{model_name}@{number}"
        if status == "archived":
            raise InvalidInput(f"{label} is archived", code="serving.version_archived")
        if not contract_doc:
            raise InvalidInput(
                f"{label} declares no input contract; the gateway serves only versions whose "
                "inputs it can check",
                code="serving.no_contract",
            )
        contract = InputContract.from_json(contract_doc)
        profile, profile_state = _profile(label, profile_doc)
        files = self._models.read_verified_files(self.caller, version_id, max_bytes=self._max_bytes)
        signers = self._check_signature(label, signed, files)
        predictor = load_predictor(
            {f.path: f.data for f in files}, contract, allowlist=self._allowlist
        )
        with self._db.transaction() as session:
            self._audit.append(
                session,
                self.caller.event(
                    "serving.version.loaded",
                    version_id,
                    {
                        "model": model_name,
                        "version": number,
                        "artifact_digest": artifact_digest,
                        "loader": predictor.kind,
                        "signers": list(signers),
                        "process": self._process,
                        "profile": profile_state,
                    },
                ),
            )
        return LoadedVersion(
            version_id=version_id,
            model=model_name,
            number=number,
            artifact_digest=artifact_digest,
            contract=contract,
            predictor=predictor,
            signers=signers,
            profile=profile,
        )

    @staticmethod
    def _check_signature(
        label: str,
        signed: list[tuple[ModelSignatureRow, SignerKeyRow]],
        files: list[VerifiedFile],
    ) -> tuple[str, ...]:
        digests = [
            FileDigest(
                path=f.path,
                algorithm="sha256",
                digest=hashlib.sha256(f.data).digest(),
                size=len(f.data),
            )
            for f in files
            if not is_ignored_path(f.path)
        ]
        problems: list[str] = []
        for signature, key in signed:
            found = signature_problems(signature, key, digests)
            if not found:
                return (f"{key.team}/{key.fingerprint}",)
            problems.extend(found)
        raise IntegrityError(
            f"{label}: no signature verifies over the bytes read; refusing to load it",
            code="serving.signature_invalid",
            details={"problems": (problems or ["the version is not signed"])[:20]},
        )

    def _record_refusal(self, version_id: str, error: BastionError) -> None:
        try:
            with self._db.transaction() as session:
                self._audit.append(
                    session,
                    self.caller.event(
                        "serving.version.refused",
                        version_id,
                        {
                            "code": error.code,
                            "reason": error.message[:500],
                            "process": self._process,
                        },
                    ),
                )
        except BastionError:  # the refusal stands even if it cannot be recorded
            log.exception("could not record the refusal to load %s", version_id)


def _profile(label: str, doc: Mapping[str, Any] | None) -> tuple[ReferenceProfile | None, str]:
    """The version's reference profile, and what the load event records about it. A profile
    that does not parse leaves the version served without drift monitoring (the profile is
    evidence about inputs, not a control on them) and is recorded as `invalid`."""
    if doc is None:
        return None, "none"
    try:
        return ReferenceProfile.from_json(doc), "ok"
    except BastionError:
        log.warning("%s: its reference profile does not parse; no drift monitoring", label)
        return None, "invalid"
