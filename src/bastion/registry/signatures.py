"""Signing registered versions (OpenSSF model-signing format) and the trusted signer keys.

What is signed: every file of the version — the uploaded files and the generated ML-BOM —
by path and SHA-256, exactly as the reference `model_signing` tool would sign the directory
`bastion model download` writes. Before signing, every stored file is decrypted and re-hashed,
so a signature never vouches for bytes the store no longer holds.

Trust: a signature counts only if it verifies under a registered, unrevoked signer key. Keys
belong to a team. Bastion's own key (team `bastion`, derived from the key store's
`model-signing-key` secret) is registered on first use; teams that sign in their own pipelines
register their public keys (`bastion signer add`) and attach their bundles.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from sqlalchemy.orm import Session

from bastion.core.clock import Clock
from bastion.core.errors import Conflict, IntegrityError, InvalidInput, NotFound
from bastion.core.ids import new_id
from bastion.identity import Authorizer, Caller, Permission
from bastion.ledger import AuditLog
from bastion.policy import PolicyService
from bastion.registry.gates import gate_version, signature_problems, signatures_of
from bastion.registry.models import ModelService, _find_model, find_version
from bastion.registry.records import (
    SignatureRecord,
    SignerKey,
    VerificationResult,
    check_name,
    check_text,
)
from bastion.store.db import Database
from bastion.store.tables import ArtifactFileRow, ModelSignatureRow, ModelVersionRow, SignerKeyRow
from bastion.supplychain.signing import (
    FileDigest,
    SignatureInvalid,
    Signer,
    Verifier,
    is_ignored_path,
    key_fingerprint,
    load_public_key_pem,
    private_key_from_seed,
)

PLATFORM_TEAM = "bastion"
PLATFORM_KEY_NAME = "platform"
MAX_BUNDLE_BYTES = 16 * 1024 * 1024


class SignatureService:
    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        authorizer: Authorizer,
        models: ModelService,
        clock: Clock,
        signing_seed: bytes,
        policy: PolicyService,
    ) -> None:
        self._policy = policy
        self._db = database
        self._audit = audit
        self._authz = authorizer
        self._models = models
        self._clock = clock
        self._signer = Signer(private_key_from_seed(signing_seed))
        self._platform_pem = self._signer.public_key_pem.decode()
        self.platform_fingerprint = key_fingerprint(
            private_key_from_seed(signing_seed).public_key()
        )

    @property
    def platform_public_key_pem(self) -> str:
        return self._platform_pem

    # -- signer keys --------------------------------------------------------------------

    def add_key(self, caller: Caller, team: str, name: str, public_key_pem: str) -> SignerKey:
        """Trust `public_key_pem` (EC, PEM SubjectPublicKeyInfo) for signatures by `team`."""
        self._authz.authorize(caller, Permission.KEY_MANAGE)
        check_name(team, "team")
        check_text(name, "key name", 128)
        key = load_public_key_pem(public_key_pem.encode())
        fingerprint = key_fingerprint(key)
        pem = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        with self._db.transaction() as session:
            if session.scalar(
                sa.select(SignerKeyRow.id).where(SignerKeyRow.fingerprint == fingerprint)
            ):
                raise Conflict(
                    f"key {fingerprint} is already registered", code="registry.signer_exists"
                )
            row = self._insert_key(session, caller, team, name or team, pem, fingerprint)
            return _key(row)

    def _insert_key(
        self, session: Session, caller: Caller, team: str, name: str, pem: str, fingerprint: str
    ) -> SignerKeyRow:
        row = SignerKeyRow(
            id=new_id("sgk"),
            team=team,
            name=name,
            fingerprint=fingerprint,
            public_key_pem=pem,
            added_at=self._clock.now(),
            added_by=caller.principal_id,
            revoked_at=None,
            revoked_by=None,
        )
        session.add(row)
        session.flush()
        self._audit.append(
            session,
            caller.event(
                "registry.signer_key.added",
                row.id,
                {"team": team, "name": name, "fingerprint": fingerprint},
            ),
        )
        return row

    def revoke_key(self, caller: Caller, key_id: str) -> SignerKey:
        """Stop trusting a key: every signature it made stops verifying from now on."""
        self._authz.authorize(caller, Permission.KEY_MANAGE)
        with self._db.transaction() as session:
            row = session.get(SignerKeyRow, key_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no signer key {key_id}", code="registry.signer_not_found")
            if row.revoked_at is not None:
                raise Conflict(f"signer key {key_id} is already revoked", code="registry.revoked")
            row.revoked_at = self._clock.now()
            row.revoked_by = caller.principal_id
            self._audit.append(
                session,
                caller.event(
                    "registry.signer_key.revoked",
                    row.id,
                    {"team": row.team, "fingerprint": row.fingerprint},
                ),
            )
            return _key(row)

    def list_keys(self, caller: Caller) -> list[SignerKey]:
        self._authz.authorize(caller, Permission.MODEL_READ)
        with self._db.read() as session:
            rows = session.scalars(
                sa.select(SignerKeyRow).order_by(SignerKeyRow.team, SignerKeyRow.added_at)
            ).all()
            return [_key(r) for r in rows]

    def ensure_platform_key(self, caller: Caller) -> SignerKey:
        """Register Bastion's own signing key (idempotent)."""
        with self._db.transaction() as session:
            return _key(self._platform_key(session, caller))

    def _platform_key(self, session: Session, caller: Caller) -> SignerKeyRow:
        row = session.scalars(
            sa.select(SignerKeyRow).where(SignerKeyRow.fingerprint == self.platform_fingerprint)
        ).first()
        if row is None:
            row = self._insert_key(
                session,
                caller,
                PLATFORM_TEAM,
                PLATFORM_KEY_NAME,
                self._platform_pem,
                self.platform_fingerprint,
            )
        return row

    # -- signing ---------------------------------------------------------------------------

    def sign(self, caller: Caller, name: str, ref: str | int) -> SignatureRecord:
        """Sign version `ref` of `name` with Bastion's key, after re-hashing its stored bytes."""
        self._authz.authorize(caller, Permission.MODEL_SIGN)
        version, files = self._load(name, ref)
        digests = self._rehash_all(name, version, files)
        bundle = self._signer.sign(name, digests)
        with self._policy.enforcing(caller), self._db.transaction() as session:
            key = self._platform_key(session, caller)
            if key.revoked_at is not None:
                raise Conflict(
                    "Bastion's signing key has been revoked; rotate it before signing",
                    code="registry.revoked",
                )
            return self._store(session, caller, name, version, bundle, key)

    def attach(self, caller: Caller, name: str, ref: str | int, bundle: bytes) -> SignatureRecord:
        """Store a bundle made elsewhere (a team's pipeline, the reference tool). It must
        verify under a registered, unrevoked key against the version's stored files."""
        self._authz.authorize(caller, Permission.MODEL_SIGN)
        if len(bundle) > MAX_BUNDLE_BYTES:
            raise InvalidInput("signature bundle is too large", code="signature.malformed")
        version, files = self._load(name, ref)
        digests = self._rehash_all(name, version, files)
        with self._db.read() as session:
            keys = _trusted(session)
        key_row, problems = _first_verifying(keys, bundle, digests)
        if key_row is None:
            raise SignatureInvalid(
                "the signature does not verify under any trusted signer key",
                details={"problems": problems[:50]},
            )
        with self._policy.enforcing(caller), self._db.transaction() as session:
            key = session.get(SignerKeyRow, key_row.id)
            assert key is not None
            return self._store(session, caller, name, version, bundle, key)

    def _store(
        self,
        session: Session,
        caller: Caller,
        name: str,
        version: ModelVersionRow,
        bundle: bytes,
        key: SignerKeyRow,
    ) -> SignatureRecord:
        decision_id = gate_version(
            self._policy,
            session,
            caller,
            "model_sign",
            _find_model(session, name),
            version,
            self._clock.now(),
        )
        row = ModelSignatureRow(
            id=new_id("sig"),
            version_id=version.id,
            bundle=bundle,
            key_fingerprint=key.fingerprint,
            signer_key_id=key.id,
            signed_at=self._clock.now(),
            signed_by=caller.principal_id,
        )
        session.add(row)
        session.flush()
        self._audit.append(
            session,
            caller.event(
                "registry.version.signed",
                version.id,
                {
                    "model": name,
                    "version": version.version,
                    "signature_id": row.id,
                    "team": key.team,
                    "key_fingerprint": key.fingerprint,
                    "artifact_digest": version.artifact_digest,
                    "mlbom_digest": version.mlbom_digest,
                    "bundle_sha256": _sha256(bundle),
                    "decision_id": decision_id,
                },
            ),
        )
        return _signature(row, key.team)

    def bundle(self, caller: Caller, name: str, ref: str | int) -> tuple[SignatureRecord, bytes]:
        """The newest signature of a version and its bundle bytes."""
        self._authz.authorize(caller, Permission.MODEL_READ)
        with self._db.read() as session:
            model = _find_model(session, name)
            version = find_version(session, model, ref)
            found = session.execute(
                sa.select(ModelSignatureRow, SignerKeyRow.team)
                .join(SignerKeyRow, SignerKeyRow.id == ModelSignatureRow.signer_key_id)
                .where(ModelSignatureRow.version_id == version.id)
                .order_by(ModelSignatureRow.signed_at.desc(), ModelSignatureRow.id.desc())
                .limit(1)
            ).first()
            if found is None:
                raise NotFound(
                    f"{name}@{version.version} is not signed", code="registry.not_signed"
                )
            return _signature(found[0], found[1]), found[0].bundle

    def verify(self, caller: Caller, name: str, ref: str | int) -> VerificationResult:
        """Re-hash every stored file and check the version's signatures: valid when one of
        them verifies under a registered, unrevoked key. Never raises for an invalid
        signature; the result says what is wrong."""
        self._authz.authorize(caller, Permission.MODEL_READ)
        version, files = self._load(name, ref)
        problems: list[str] = []
        try:
            digests = self._rehash_all(name, version, files)
        except IntegrityError as error:
            return VerificationResult(
                False, name, version.version, None, None, None, len(files), (error.message,)
            )
        with self._db.read() as session:
            rows = signatures_of(session, version.id)
            for sig, key in rows:
                session.expunge(sig)
                session.expunge(key)
        if not rows:
            problems.append("the version has no signature")
        for sig, key in rows:
            found = signature_problems(sig, key, digests)
            if found:
                problems.extend(f"{sig.id}: {p}" for p in found)
                continue
            return VerificationResult(
                True, name, version.version, sig.id, key.team, key.fingerprint, len(files), ()
            )
        return VerificationResult(
            False, name, version.version, None, None, None, len(files), tuple(problems)
        )

    # -- internals ----------------------------------------------------------------------

    def _load(self, name: str, ref: str | int) -> tuple[ModelVersionRow, list[ArtifactFileRow]]:
        with self._db.read() as session:
            model = _find_model(session, name)
            version = find_version(session, model, ref)
            session.expunge(version)
        return version, self._models.file_rows(version.id)

    def _rehash_all(
        self, name: str, version: ModelVersionRow, files: Sequence[ArtifactFileRow]
    ) -> list[FileDigest]:
        digests = []
        for row in files:
            actual = self._models.rehash(row)
            if actual != row.digest:
                raise IntegrityError(
                    f"{name}@{version.version}/{row.path}: stored bytes do not match the "
                    "recorded digest",
                    code="registry.digest_mismatch",
                )
            if is_ignored_path(row.path):
                continue  # `.git*` paths: never signed, as the reference tool ignores them
            digests.append(
                FileDigest(
                    path=row.path,
                    algorithm="sha256",
                    digest=bytes.fromhex(row.digest.removeprefix("sha256:")),
                    size=row.size,
                )
            )
        return digests


def _trusted(session: Session) -> list[SignerKeyRow]:
    rows = session.scalars(sa.select(SignerKeyRow).where(SignerKeyRow.revoked_at.is_(None))).all()
    for row in rows:
        session.expunge(row)
    return list(rows)


def _first_verifying(
    keys: Sequence[SignerKeyRow], bundle: bytes, digests: Sequence[FileDigest]
) -> tuple[SignerKeyRow | None, list[str]]:
    problems: list[str] = []
    for key in keys:
        try:
            Verifier(load_public_key_pem(key.public_key_pem.encode())).verify_files(bundle, digests)
        except SignatureInvalid as error:
            found = error.details.get("problems") or [error.message]
            problems.extend(f"{key.team}/{key.name}: {p}" for p in found)
            continue
        return key, []
    if not keys:
        problems.append("no signer keys are registered")
    return None, problems


def _sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _key(row: SignerKeyRow) -> SignerKey:
    return SignerKey(
        id=row.id,
        team=row.team,
        name=row.name,
        fingerprint=row.fingerprint,
        public_key_pem=row.public_key_pem,
        added_at=row.added_at,
        added_by=row.added_by,
        revoked_at=row.revoked_at,
    )


def _signature(row: ModelSignatureRow, team: str) -> SignatureRecord:
    return SignatureRecord(
        id=row.id,
        version_id=row.version_id,
        key_fingerprint=row.key_fingerprint,
        signer_key_id=row.signer_key_id,
        team=team,
        signed_at=row.signed_at,
        signed_by=row.signed_by,
    )
