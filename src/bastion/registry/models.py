"""Models, their immutable versions, aliases, tags, lineage, and the artifact bytes.

Registering a version (`register_version`) is one pass over a staged upload:

1. check every piece of metadata (cheap failures first);
2. scan every staged file with the allow-list scanner — any finding refuses the upload, records
   `registry.version.rejected` in the ledger, and stores nothing;
3. seal every file into the blob store under its own data key, checking that the bytes sealed
   are the bytes scanned (same digest);
4. in one transaction: number the version, build and seal the CycloneDX ML-BOM, insert the
   version, its files and lineage, append `registry.version.registered`.

If anything after step 3 fails, the sealed blobs are crypto-shredded: an interrupted
registration leaves no partial version and no readable bytes. Reads decrypt (AES-GCM checks every
chunk) and re-hash: a digest that differs from the recorded one is an `IntegrityError`, never
served.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import platform as python_platform
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

import bastion
from bastion.core.canonical import canonical_json
from bastion.core.clock import Clock
from bastion.core.errors import Conflict, IntegrityError, InvalidInput, NotFound
from bastion.core.ids import new_id
from bastion.identity import Authorizer, Caller, Permission
from bastion.ledger import AuditLog
from bastion.policy import PolicyDenied, PolicyService
from bastion.registry.contract import InputContract, derive_from_csv
from bastion.registry.datasets import _tags
from bastion.registry.gates import gate_version, iso, model_doc, principal_ref
from bastion.registry.openlineage import LineageRun
from bastion.registry.profile import ReferenceProfile
from bastion.registry.records import (
    MLBOM_PATH,
    ArtifactFile,
    Classification,
    DatasetRef,
    LineageLink,
    LineageRole,
    Model,
    ModelVersion,
    VersionStatus,
    check_alias,
    check_json,
    check_metrics,
    check_name,
    check_tags,
    check_text,
)
from bastion.registry.reference import profile_from_csv
from bastion.registry.staging import StagedTree, Staging
from bastion.store.datasets import dataset_doc, find_dataset
from bastion.store.db import Database
from bastion.store.sealed import SealedBlobStore
from bastion.store.tables import (
    ArtifactDownloadRow,
    ArtifactFileRow,
    DatasetRow,
    LineageRow,
    ModelAliasRow,
    ModelRow,
    ModelSignatureRow,
    ModelVersionRow,
    RegistryTagRow,
)
from bastion.supplychain.mlbom import (
    BomDataset,
    BomFile,
    BomModel,
    BomPackage,
    build_mlbom,
    environment_packages,
    validate_model_card,
)
from bastion.supplychain.scan import AllowList, Scanner, ScanReport

PRODUCER = f"urn:bastion:registry:{bastion.__version__}"

log = logging.getLogger("bastion.registry")

_READ_CHUNK = 1024 * 1024
MAX_LINEAGE = 64


@dataclass(frozen=True, slots=True)
class VersionSpec:
    """Everything about a new version except its files."""

    datasets: tuple[DatasetRef, ...] = ()
    description: str = ""
    metrics: Mapping[str, Any] | None = None
    parameters: Mapping[str, Any] | None = None
    code_ref: str | None = None
    environment: Mapping[str, Any] | None = None
    input_contract: Mapping[str, Any] | None = None
    output_contract: Mapping[str, Any] | None = None
    model_card: Mapping[str, Any] | None = None
    tags: Mapping[str, str] | None = None
    task: str | None = None
    framework: str | None = None
    # With no input contract: derive it from the training dataset (a sealed CSV in the
    # lineage), leaving out this label column.
    target: str | None = None


@dataclass(frozen=True, slots=True)
class ModelSpec:
    owner: str | None = None
    custodian: str | None = None
    description: str = ""
    intended_use: str = ""
    purpose: str | None = None


class ModelService:
    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        authorizer: Authorizer,
        blobs: SealedBlobStore,
        staging: Staging,
        clock: Clock,
        allowlist: AllowList,
        scratch: Path,
        policy: PolicyService,
    ) -> None:
        self._policy = policy
        self._db = database
        self._audit = audit
        self._authz = authorizer
        self._blobs = blobs
        self._staging = staging
        self._clock = clock
        self.allowlist = allowlist
        self._scratch = scratch
        self.producer = PRODUCER

    # -- models -------------------------------------------------------------------------

    def create(self, caller: Caller, name: str, spec: ModelSpec | None = None) -> Model:
        self._authz.authorize(caller, Permission.MODEL_WRITE)
        with self._db.transaction() as session:
            if session.scalar(sa.select(ModelRow.id).where(ModelRow.name == name)):
                raise Conflict(f"model {name} already exists", code="registry.model_exists")
            row = self._create(session, caller, name, spec or ModelSpec())
            return _model(session, row)

    def _create(self, session: Session, caller: Caller, name: str, spec: ModelSpec) -> ModelRow:
        check_name(name, "model")
        if spec.purpose is not None:
            check_name(spec.purpose, "purpose")
        now = self._clock.now()
        row = ModelRow(
            id=new_id("mdl"),
            name=name,
            owner=check_text(spec.owner or caller.name, "owner", 128) or caller.name,
            custodian=check_text(spec.custodian, "custodian", 128) or None,
            description=check_text(spec.description, "description"),
            intended_use=check_text(spec.intended_use, "intended use"),
            purpose=spec.purpose,
            created_at=now,
            created_by=caller.principal_id,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        self._audit.append(
            session,
            caller.event(
                "registry.model.created",
                row.id,
                {
                    "name": name,
                    "owner": row.owner,
                    "custodian": row.custodian,
                    "purpose": row.purpose,
                },
            ),
        )
        return row

    def get(self, caller: Caller, name: str) -> Model:
        self._authz.authorize(caller, Permission.MODEL_READ)
        with self._db.read() as session:
            return _model(session, _find_model(session, name))

    # -- versions -------------------------------------------------------------------------

    def register_version(
        self,
        caller: Caller,
        name: str,
        upload_id: str,
        spec: VersionSpec,
        *,
        create: ModelSpec | None = None,
    ) -> ModelVersion:
        """Turn a staged upload into version N+1 of model `name` (see the module docstring).

        `create`: make the model first if it does not exist (else `registry.model_not_found`).
        Raises `InvalidInput` (`registry.scan_rejected`, with every finding in `details`) when
        the scanner finds anything; nothing is stored then.
        """
        self._authz.authorize(caller, Permission.MODEL_WRITE)
        check_name(name, "model")
        clean = _clean_spec(spec)
        with self._db.read() as session:
            lineage = self._resolve_lineage(session, clean.datasets)
            if create is None:
                _find_model(session, name)
        if clean.input_contract is None and clean.target is not None:
            clean = replace(clean, input_contract=self._derive_contract(lineage, clean.target))
        profile = self._reference_profile(lineage, clean)
        tree = self._staging.claim(caller, upload_id)
        report = self._scan(caller, name, tree)
        version_id = new_id("mv")
        sealed: list[ArtifactFileRow] = []
        try:
            sealed = self._seal(version_id, tree, report)
            version = self._insert(
                caller, name, version_id, tree, report, sealed, clean, create, profile
            )
        except BaseException:
            for row in sealed:
                self._shred_quietly(row.blob_key)
            self._shred_quietly(_blob_key(version_id, MLBOM_PATH))
            raise
        self._staging.discard(upload_id)
        return version

    def preflight_register(
        self,
        caller: Caller,
        name: str,
        datasets: Sequence[DatasetRef],
        *,
        create: ModelSpec | None = None,
    ) -> None:
        """Would a clean, unsigned upload with this lineage become version N+1 of `name`?

        A dry run of the `model_register` gate (recorded nowhere, like `bastion policy
        check`) on the version as it would be stored — the model as it is (or as `create`
        would make it), the lineage resolved now, a clean scan, no signature, attestations or
        approvals — for flows that must refuse *before* an irreversible step, such as spending
        a privacy budget. Registration still passes the real gate. Raises `PermissionDenied`,
        `NotFound` (`registry.model_not_found` without `create`, unknown datasets),
        `InvalidInput`, `PolicyDenied` with the gate's reasons.
        """
        self._authz.authorize(caller, Permission.MODEL_WRITE)
        check_name(name, "model")
        now = self._clock.now()
        with self._db.read() as session:
            model = session.scalars(sa.select(ModelRow).where(ModelRow.name == name)).first()
            if model is None:
                if create is None:
                    raise NotFound(f"no model {name}", code="registry.model_not_found")
                if create.purpose is not None:
                    check_name(create.purpose, "purpose")
                model_fields = {
                    "id": None,
                    "name": name,
                    "owner": create.owner or caller.name,
                    "custodian": create.custodian,
                    "purpose": create.purpose,
                    "intended_use": create.intended_use,
                }
                number = 1
            else:
                model_fields = model_doc(model)
                number = _next_number(session, model.id)
            lineage = [
                {"role": role.value, "dataset": dataset_doc(d, now)}
                for d, role in self._resolve_lineage(session, datasets)
            ]
            version = {
                "id": None,
                "number": number,
                "artifact_digest": None,
                "format": None,
                "status": VersionStatus.REGISTERED.value,
                "author": principal_ref(session, caller.principal_id),
                "created_at": iso(now),
                "scan": {"clean": True, "allowlist_version": None, "findings": 0},
                "mlbom_digest": None,
                "signature": {
                    "signed": False,
                    "verified": False,
                    "signers": [],
                    "problems": ["the version is not signed"],
                },
                "attestations": [],
                "approvals": [],
                "lineage": lineage,
            }
        document = self._policy.envelope(
            "model_register", caller, model=model_fields, version=version
        )
        decision = self._policy.evaluate("model_register", document)
        if not decision.allow:
            raise PolicyDenied(decision)

    def _scan(self, caller: Caller, name: str, tree: StagedTree) -> ScanReport:
        report = Scanner(self.allowlist).scan_path(tree.root)
        staged = {f.path: f.digest for f in tree.files}
        scanned = {f.path: f.digest for f in report.files}
        if scanned != staged:
            raise IntegrityError(
                "the staged files changed between upload and scan",
                code="registry.staging_changed",
            )
        if report.clean:
            return report
        findings = [
            {"path": f.path, "code": f.code, "reason": f.reason, "offset": f.offset}
            for f in report.findings
        ]
        with self._db.transaction() as session:
            self._staging.close(session, tree.upload_id, "rejected")
            self._audit.append(
                session,
                caller.event(
                    "registry.version.rejected",
                    f"model:{name}",
                    {
                        "model": name,
                        "upload_id": tree.upload_id,
                        "allowlist_version": report.allowlist_version,
                        "findings": [
                            {"path": f["path"], "code": f["code"], "offset": f["offset"]}
                            for f in findings[:100]
                        ],
                        "finding_count": len(findings),
                    },
                ),
            )
        self._staging.discard(tree.upload_id)
        raise InvalidInput(
            f"the artifact was rejected by the scanner: {len(findings)} finding(s); "
            "nothing was stored",
            code="registry.scan_rejected",
            details={"findings": findings[:100], "allowlist_version": report.allowlist_version},
        )

    def _seal(self, version_id: str, tree: StagedTree, report: ScanReport) -> list[ArtifactFileRow]:
        rows: list[ArtifactFileRow] = []
        for index, scanned in enumerate(report.files):
            key = _blob_key(version_id, str(index))
            with (tree.root / scanned.path).open("rb") as src:
                blob = self._blobs.put(key, src)
            rows.append(
                ArtifactFileRow(
                    version_id=version_id,
                    path=scanned.path,
                    role="model",
                    format=str(scanned.format),
                    size=blob.plaintext_size,
                    digest=str(blob.plaintext_digest),
                    blob_key=key,
                )
            )
            if str(blob.plaintext_digest) != scanned.digest:
                raise IntegrityError(
                    f"{scanned.path} changed between scan and sealing",
                    code="registry.staging_changed",
                )
        return rows

    def _insert(
        self,
        caller: Caller,
        name: str,
        version_id: str,
        tree: StagedTree,
        report: ScanReport,
        files: list[ArtifactFileRow],
        spec: VersionSpec,
        create: ModelSpec | None,
        profile: ReferenceProfile | None = None,
    ) -> ModelVersion:
        now = self._clock.now()
        with self._policy.enforcing(caller), self._db.transaction() as session:
            model = session.scalars(
                sa.select(ModelRow).where(ModelRow.name == name).with_for_update()
            ).first()
            if model is None:
                if create is None:
                    raise NotFound(f"no model {name}", code="registry.model_not_found")
                model = self._create(session, caller, name, create)
            datasets = self._resolve_lineage(session, spec.datasets)
            number = _next_number(session, model.id)
            model_files = files
            formats = {f.format for f in model_files} - {"unknown"}
            fmt = formats.pop() if len(formats) == 1 else ("mixed" if formats else "unknown")
            artifact_digest = artifact_digest_of((f.path, f.digest, f.size) for f in model_files)
            environment = dict(spec.environment or {})
            bom = build_mlbom(
                _bom_model(
                    model,
                    number,
                    version_id,
                    fmt,
                    artifact_digest,
                    model_files,
                    datasets,
                    spec,
                    created_at=now,
                    created_by=caller.name,
                ),
                _packages(environment),
            )
            bom_key = _blob_key(version_id, MLBOM_PATH)
            bom_blob = self._blobs.put(bom_key, bom)
            bom_row = ArtifactFileRow(
                version_id=version_id,
                path=MLBOM_PATH,
                role="mlbom",
                format="cyclonedx-json",
                size=bom_blob.plaintext_size,
                digest=str(bom_blob.plaintext_digest),
                blob_key=bom_key,
            )
            row = ModelVersionRow(
                id=version_id,
                model_id=model.id,
                version=number,
                status=VersionStatus.REGISTERED.value,
                format=fmt,
                artifact_digest=artifact_digest,
                artifact_size=sum(f.size for f in model_files),
                file_count=len(model_files),
                description=spec.description,
                metrics=dict(spec.metrics or {}),
                parameters=dict(spec.parameters or {}),
                code_ref=spec.code_ref,
                environment=environment,
                input_contract=dict(spec.input_contract) if spec.input_contract else None,
                output_contract=dict(spec.output_contract) if spec.output_contract else None,
                model_card=dict(spec.model_card or {}),
                scan=report.to_dict(),
                reference_profile=profile.to_json() if profile is not None else None,
                mlbom_digest=bom_row.digest,
                created_at=now,
                created_by=caller.principal_id,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            session.add_all([*files, bom_row])
            session.add_all(
                LineageRow(
                    version_id=version_id,
                    dataset_id=d.id,
                    role=role.value,
                    dataset_digest=d.digest,
                )
                for d, role in datasets
            )
            session.add_all(
                RegistryTagRow(subject_id=version_id, key=k, value=v)
                for k, v in (spec.tags or {}).items()
            )
            session.flush()
            decision_id = gate_version(
                self._policy, session, caller, "model_register", model, row, now
            )
            self._staging.close(session, tree.upload_id, "committed")
            self._audit.append(
                session,
                caller.event(
                    "registry.version.registered",
                    version_id,
                    {
                        "model": name,
                        "version": number,
                        "format": fmt,
                        "artifact_digest": artifact_digest,
                        "files": [{"path": f.path, "digest": f.digest} for f in model_files][:1000],
                        "file_count": len(model_files),
                        "mlbom_digest": bom_row.digest,
                        "reference_profile": profile.digest() if profile is not None else None,
                        "lineage": [
                            {
                                "dataset": d.name,
                                "version": d.version,
                                "digest": d.digest,
                                "role": role.value,
                            }
                            for d, role in datasets
                        ],
                        "scan": {"clean": True, "allowlist_version": report.allowlist_version},
                        "decision_id": decision_id,
                    },
                ),
            )
            session.flush()
            return _version(session, row, model)

    def _reference_profile(
        self, lineage: list[tuple[DatasetRow, LineageRole]], spec: VersionSpec
    ) -> ReferenceProfile | None:
        """The training data's profile for drift monitoring (`bastion.registry.reference`):
        None without an input contract or without exactly one training CSV stored here. A
        CSV that cannot be profiled leaves the version without one (logged), rather than
        refusing a model whose contract is sound."""
        training = [d for d, role in lineage if role is LineageRole.TRAINING and d.blob_key]
        if spec.input_contract is None or len(training) != 1:
            return None
        try:
            text = self._blobs.get(str(training[0].blob_key)).decode("utf-8")
            return profile_from_csv(
                text, InputContract.from_json(spec.input_contract), target=spec.target
            )
        except (UnicodeDecodeError, InvalidInput) as exc:
            log.warning(
                "no reference profile from %s@%s: %s", training[0].name, training[0].version, exc
            )
            return None

    def _derive_contract(
        self, lineage: list[tuple[DatasetRow, LineageRole]], target: str
    ) -> dict[str, Any]:
        """The input contract of the training data: every column but `target`, with the
        types, ranges and categories seen (a one-pass read of the sealed CSV)."""
        training = [d for d, role in lineage if role is LineageRole.TRAINING and d.blob_key]
        if len(training) != 1:
            raise InvalidInput(
                "deriving the input contract needs exactly one training dataset stored in "
                f"Bastion in the lineage (found {len(training)}); give the contract instead",
                code="registry.no_training_data",
            )
        data = self._blobs.get(str(training[0].blob_key))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(
                f"dataset {training[0].name}@{training[0].version} is not UTF-8 CSV; give the "
                "contract instead",
                code="contract.bad_data",
            ) from None
        return derive_from_csv(io.StringIO(text), exclude=[target]).to_json()

    def _resolve_lineage(
        self, session: Session, refs: Sequence[DatasetRef]
    ) -> list[tuple[DatasetRow, LineageRole]]:
        result: list[tuple[DatasetRow, LineageRole]] = []
        seen: set[tuple[str, str]] = set()
        for ref in refs:
            row = find_dataset(session, ref.name, ref.version)
            if row.status != "active":
                raise Conflict(
                    f"dataset {row.name}@{row.version} is {row.status}",
                    code="registry.dataset_unavailable",
                )
            if (row.id, ref.role.value) in seen:
                continue
            seen.add((row.id, ref.role.value))
            result.append((row, ref.role))
        return result

    def version(self, caller: Caller, name: str, ref: str | int | None = None) -> ModelVersion:
        """A version by number, by alias (`champion`), or the latest when `ref` is None."""
        self._authz.authorize(caller, Permission.MODEL_READ)
        with self._db.read() as session:
            model = _find_model(session, name)
            return _version(session, find_version(session, model, ref), model)

    def versions(self, caller: Caller, name: str) -> list[ModelVersion]:
        self._authz.authorize(caller, Permission.MODEL_READ)
        with self._db.read() as session:
            model = _find_model(session, name)
            rows = session.scalars(
                sa.select(ModelVersionRow)
                .where(ModelVersionRow.model_id == model.id)
                .order_by(ModelVersionRow.version)
            ).all()
            return [_version(session, r, model) for r in rows]

    def set_status(self, caller: Caller, name: str, ref: str | int, status: str) -> ModelVersion:
        self._authz.authorize(caller, Permission.MODEL_WRITE)
        try:
            target = VersionStatus(status)
        except ValueError:
            raise InvalidInput(
                f"status must be one of {', '.join(s.value for s in VersionStatus)}",
                code="registry.bad_status",
            ) from None
        with self._policy.enforcing(caller), self._db.transaction() as session:
            model = _find_model(session, name)
            row = find_version(session, model, ref, lock=True)
            before = row.status
            if before == VersionStatus.ARCHIVED.value and target != VersionStatus.ARCHIVED:
                raise Conflict(
                    f"{name}@{row.version} is archived; archived versions stay archived",
                    code="registry.bad_transition",
                )
            decision_id = gate_version(
                self._policy,
                session,
                caller,
                "version_status",
                model,
                row,
                self._clock.now(),
                change={"before": before, "after": target.value},
            )
            row.status = target.value
            row.updated_at = self._clock.now()
            self._audit.append(
                session,
                caller.event(
                    "registry.version.status_changed",
                    row.id,
                    {
                        "model": name,
                        "version": row.version,
                        "before": before,
                        "after": target.value,
                        "decision_id": decision_id,
                    },
                ),
            )
            return _version(session, row, model)

    # -- aliases and tags ---------------------------------------------------------------

    def set_alias(self, caller: Caller, name: str, alias: str, ref: str | int) -> ModelVersion:
        self._authz.authorize(caller, Permission.MODEL_WRITE)
        check_alias(alias)
        with self._policy.enforcing(caller), self._db.transaction() as session:
            model = _find_model(session, name, lock=True)
            row = find_version(session, model, ref)
            if row.status == VersionStatus.ARCHIVED.value:
                raise Conflict(f"{name}@{row.version} is archived", code="registry.bad_transition")
            existing = session.get(ModelAliasRow, (model.id, alias), with_for_update=True)
            previous = (
                session.scalar(
                    sa.select(ModelVersionRow.version).where(
                        ModelVersionRow.id == existing.version_id
                    )
                )
                if existing is not None
                else None
            )
            decision_id = gate_version(
                self._policy,
                session,
                caller,
                "alias_set",
                model,
                row,
                self._clock.now(),
                alias={"name": alias, "previous_version": previous},
            )
            before = None
            if existing is None:
                session.add(
                    ModelAliasRow(
                        model_id=model.id,
                        alias=alias,
                        version_id=row.id,
                        updated_at=self._clock.now(),
                        updated_by=caller.principal_id,
                    )
                )
            else:
                before = session.scalar(
                    sa.select(ModelVersionRow.version).where(
                        ModelVersionRow.id == existing.version_id
                    )
                )
                existing.version_id = row.id
                existing.updated_at = self._clock.now()
                existing.updated_by = caller.principal_id
            self._audit.append(
                session,
                caller.event(
                    "registry.alias.set",
                    model.id,
                    {
                        "model": name,
                        "alias": alias,
                        "version": row.version,
                        "before": before,
                        "decision_id": decision_id,
                    },
                ),
            )
            session.flush()
            return _version(session, row, model)

    def remove_alias(self, caller: Caller, name: str, alias: str) -> None:
        self._authz.authorize(caller, Permission.MODEL_WRITE)
        with self._db.transaction() as session:
            model = _find_model(session, name, lock=True)
            existing = session.get(ModelAliasRow, (model.id, alias), with_for_update=True)
            if existing is None:
                raise NotFound(f"model {name} has no alias {alias}", code="registry.no_alias")
            session.delete(existing)
            self._audit.append(
                session,
                caller.event("registry.alias.removed", model.id, {"model": name, "alias": alias}),
            )

    def set_tags(
        self,
        caller: Caller,
        name: str,
        ref: str | int | None,
        tags: Mapping[str, str],
        remove: Sequence[str] = (),
    ) -> Mapping[str, str]:
        """Set and remove tags on a model (`ref` None) or one of its versions."""
        self._authz.authorize(caller, Permission.MODEL_WRITE)
        checked = check_tags(tags)
        with self._db.transaction() as session:
            model = _find_model(session, name, lock=True)
            subject = model.id if ref is None else find_version(session, model, ref).id
            for key in remove:
                session.execute(
                    sa.delete(RegistryTagRow).where(
                        RegistryTagRow.subject_id == subject, RegistryTagRow.key == key
                    )
                )
            for key, value in checked.items():
                row = session.get(RegistryTagRow, (subject, key))
                if row is None:
                    session.add(RegistryTagRow(subject_id=subject, key=key, value=value))
                else:
                    row.value = value
            session.flush()
            result = _tags(session, subject)
            if len(result) > 64:
                raise InvalidInput("at most 64 tags", code="registry.bad_tag")
            self._audit.append(
                session,
                caller.event(
                    "registry.tags.changed",
                    subject,
                    {"model": name, "set": checked, "removed": sorted(remove)},
                ),
            )
            return result

    # -- lineage ----------------------------------------------------------------------------

    def consumers(
        self,
        caller: Caller,
        *,
        dataset: str | None = None,
        version: int | None = None,
        digest: str | None = None,
    ) -> list[LineageLink]:
        """Which model versions used dataset `dataset[@version]`, or any dataset whose bytes
        have `digest` (whatever name it was registered under)."""
        self._authz.authorize(caller, Permission.MODEL_READ)
        with self._db.read() as session:
            query = _lineage_query()
            if digest is not None:
                query = query.where(LineageRow.dataset_digest == digest)
            elif dataset is not None:
                query = query.where(DatasetRow.name == dataset)
                if version is not None:
                    query = query.where(DatasetRow.version == version)
                else:
                    find_dataset(session, dataset, None)
            else:
                raise InvalidInput("name a dataset or a digest", code="registry.bad_reference")
            return [_link(r) for r in session.execute(query).all()]

    def lineage(self, caller: Caller, name: str | None = None) -> list[LineageLink]:
        """Every lineage edge (of model `name`, or of all models)."""
        self._authz.authorize(caller, Permission.MODEL_READ)
        with self._db.read() as session:
            query = _lineage_query()
            if name is not None:
                _find_model(session, name)
                query = query.where(ModelRow.name == name)
            return [_link(r) for r in session.execute(query).all()]

    def lineage_runs(
        self, caller: Caller, name: str | None, origin: str | None
    ) -> list[LineageRun]:
        """One OpenLineage training run per model version (of `name`, or of every model)."""
        self._authz.authorize(caller, Permission.MODEL_READ)
        namespace = f"bastion://{origin or 'bastion.local'}"
        runs: list[LineageRun] = []
        with self._db.read() as session:
            query = sa.select(ModelVersionRow, ModelRow).join(
                ModelRow, ModelRow.id == ModelVersionRow.model_id
            )
            if name is not None:
                _find_model(session, name)
                query = query.where(ModelRow.name == name)
            query = query.order_by(ModelRow.name, ModelVersionRow.version)
            for version, model in session.execute(query).all():
                files = session.scalars(
                    sa.select(ArtifactFileRow)
                    .where(
                        ArtifactFileRow.version_id == version.id, ArtifactFileRow.role == "model"
                    )
                    .order_by(ArtifactFileRow.path)
                ).all()
                datasets = [
                    (dataset, LineageRole(link.role))
                    for link, dataset in session.execute(
                        sa.select(LineageRow, DatasetRow)
                        .join(DatasetRow, DatasetRow.id == LineageRow.dataset_id)
                        .where(LineageRow.version_id == version.id)
                        .order_by(DatasetRow.name, LineageRow.role)
                    ).all()
                ]
                spec = VersionSpec(
                    description=version.description,
                    metrics=version.metrics,
                    parameters=version.parameters,
                    code_ref=version.code_ref,
                    input_contract=version.input_contract,
                    output_contract=version.output_contract,
                    model_card=version.model_card,
                )
                bom = _bom_model(
                    model,
                    version.version,
                    version.id,
                    version.format,
                    version.artifact_digest,
                    files,
                    datasets,
                    spec,
                    created_at=version.created_at,
                    created_by=version.created_by,
                )
                runs.append(LineageRun(model=bom, namespace=namespace))
        return runs

    # -- artifact bytes -----------------------------------------------------------------

    @contextmanager
    def open_artifact(
        self, caller: Caller, name: str, ref: str | int, path: str | None = None
    ) -> Iterator[tuple[ArtifactFile, IO[bytes]]]:
        """A verified plaintext copy of one file, for download. The copy lives in a private
        temporary file only while the context is open. Each download is recorded (who, what,
        how many bytes) in the download log and the ledger: the model-theft signal."""
        self._authz.authorize(caller, Permission.ARTIFACT_READ)
        with self._db.read() as session:
            model = _find_model(session, name)
            version = find_version(session, model, ref)
            file_row = _pick_file(session, version, path)
        with self._verified_copy(caller, model.name, version, file_row) as copy:
            with self._db.transaction() as session:
                session.add(
                    ArtifactDownloadRow(
                        id=new_id("dl"),
                        version_id=version.id,
                        path=file_row.path,
                        principal_id=caller.principal_id,
                        size=file_row.size,
                        at=self._clock.now(),
                    )
                )
                self._audit.append(
                    session,
                    caller.event(
                        "registry.artifact.downloaded",
                        version.id,
                        {
                            "model": model.name,
                            "version": version.version,
                            "path": file_row.path,
                            "digest": file_row.digest,
                            "size": file_row.size,
                        },
                    ),
                )
            yield _file(file_row), copy

    def download_count(
        self, *, version_id: str | None = None, principal_id: str | None = None
    ) -> int:
        with self._db.read() as session:
            query = sa.select(sa.func.count()).select_from(ArtifactDownloadRow)
            if version_id is not None:
                query = query.where(ArtifactDownloadRow.version_id == version_id)
            if principal_id is not None:
                query = query.where(ArtifactDownloadRow.principal_id == principal_id)
            return int(session.scalar(query) or 0)

    def download_counts(self) -> list[tuple[str, int, int]]:
        """`(model, version, downloads)` for every version downloaded at least once."""
        with self._db.read() as session:
            rows = session.execute(
                sa.select(ModelRow.name, ModelVersionRow.version, sa.func.count())
                .select_from(ArtifactDownloadRow)
                .join(ModelVersionRow, ModelVersionRow.id == ArtifactDownloadRow.version_id)
                .join(ModelRow, ModelRow.id == ModelVersionRow.model_id)
                .group_by(ModelRow.name, ModelVersionRow.version)
            ).all()
        return [(str(m), int(v), int(n)) for m, v, n in rows]

    def read_mlbom(self, caller: Caller, name: str, ref: str | int) -> bytes:
        self._authz.authorize(caller, Permission.MODEL_READ)
        with self._db.read() as session:
            model = _find_model(session, name)
            version = find_version(session, model, ref)
            row = _pick_file(session, version, MLBOM_PATH)
        data = self._blobs.get(row.blob_key)
        if f"sha256:{hashlib.sha256(data).hexdigest()}" != row.digest:
            raise IntegrityError(
                f"{name}@{version.version}: stored ML-BOM does not match its digest",
                code="registry.digest_mismatch",
            )
        return data

    def rehash(self, file_row: ArtifactFileRow) -> str:
        """Decrypt (verifying every chunk) and hash a stored file; the plaintext is dropped."""
        sink = _HashSink()
        self._blobs.open_verified(file_row.blob_key, sink)  # type: ignore[arg-type]
        return sink.digest()

    @contextmanager
    def _verified_copy(
        self, caller: Caller, model: str, version: ModelVersionRow, row: ArtifactFileRow
    ) -> Iterator[IO[bytes]]:
        self._scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self._scratch) as copy:
            sink = _HashSink(copy)
            self._blobs.open_verified(row.blob_key, sink)  # type: ignore[arg-type]
            if sink.digest() != row.digest:
                with self._db.transaction() as session:
                    self._audit.append(
                        session,
                        caller.event(
                            "registry.artifact.integrity_failed",
                            version.id,
                            {"model": model, "version": version.version, "path": row.path},
                        ),
                    )
                raise IntegrityError(
                    f"{model}@{version.version}/{row.path}: stored bytes do not match the "
                    "recorded digest; refusing to serve them",
                    code="registry.digest_mismatch",
                )
            copy.seek(0)
            yield copy

    def read_verified_files(
        self, caller: Caller, version_id: str, *, max_bytes: int
    ) -> list[VerifiedFile]:
        """Every file of a version (its ML-BOM included), decrypted into memory (AES-GCM
        checks each chunk) and hashed on the way; a digest that differs from the recorded one raises
        `IntegrityError` (`registry.digest_mismatch`) and is ledgered, as for downloads.
        For the gateway: it deserializes exactly these bytes, after checking their
        signature. Not a download (no `artifact.read`): the caller is Bastion's own serving
        runtime."""
        rows = self.file_rows(version_id)  # the ML-BOM too: signatures cover it
        total = sum(r.size for r in rows)
        if total > max_bytes:
            raise InvalidInput(
                f"the version's files hold {total} bytes; the gateway loads at most {max_bytes}",
                code="serving.artifact_too_large",
            )
        out: list[VerifiedFile] = []
        for row in rows:
            buffer = io.BytesIO()
            sink = _HashSink(buffer)
            self._blobs.open_verified(row.blob_key, sink)  # type: ignore[arg-type]
            digest = sink.digest()
            if digest != row.digest:
                with self._db.transaction() as session:
                    version = session.get(ModelVersionRow, version_id)
                    self._audit.append(
                        session,
                        caller.event(
                            "registry.artifact.integrity_failed",
                            version_id,
                            {
                                "version": version.version if version else None,
                                "path": row.path,
                                "expected": row.digest,
                                "computed": digest,
                            },
                        ),
                    )
                raise IntegrityError(
                    f"{row.path}: stored bytes do not match the recorded digest; refusing to "
                    "load them",
                    code="registry.digest_mismatch",
                    details={"path": row.path, "expected": row.digest, "computed": digest},
                )
            out.append(VerifiedFile(path=row.path, data=buffer.getvalue(), digest=digest))
        return out

    def file_rows(self, version_id: str) -> list[ArtifactFileRow]:
        with self._db.read() as session:
            rows = session.scalars(
                sa.select(ArtifactFileRow)
                .where(ArtifactFileRow.version_id == version_id)
                .order_by(ArtifactFileRow.path)
            ).all()
            for row in rows:
                session.expunge(row)
            return list(rows)

    # -- internals ----------------------------------------------------------------------

    def _shred_quietly(self, key: str) -> None:
        with suppress(NotFound):
            self._blobs.shred(key)

    # Last in the class body, so `list` in the annotations above still means the builtin.
    def list(self, caller: Caller) -> list[Model]:
        self._authz.authorize(caller, Permission.MODEL_READ)
        with self._db.read() as session:
            rows = session.scalars(sa.select(ModelRow).order_by(ModelRow.name)).all()
            return [_model(session, r) for r in rows]


@dataclass(frozen=True, slots=True)
class VerifiedFile:
    """A version's file as read and hashed from the blob store (`digest` = `sha256:<hex>`)."""

    path: str
    data: bytes
    digest: str


class _HashSink:
    """A write-only file object that hashes what it receives and optionally passes it on."""

    def __init__(self, target: IO[bytes] | None = None) -> None:
        self._hash = hashlib.sha256()
        self._target = target

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        if self._target is not None:
            self._target.write(data)
        return len(data)

    def flush(self) -> None:
        if self._target is not None:
            self._target.flush()

    def digest(self) -> str:
        return f"sha256:{self._hash.hexdigest()}"


def _next_number(session: Session, model_id: str) -> int:
    """The number the model's next version gets: one past the highest so far."""
    latest = session.scalar(
        sa.select(sa.func.max(ModelVersionRow.version)).where(ModelVersionRow.model_id == model_id)
    )
    return (latest or 0) + 1


def artifact_digest_of(
    files: Iterator[tuple[str, str, int]] | Sequence[tuple[str, str, int]],
) -> str:
    """One digest for a version's files: SHA-256 of the RFC 8785 JSON list of
    {path, digest, size}, sorted by path. Renaming, adding, removing or changing any file
    changes it."""
    entries = sorted(
        ({"path": p, "digest": d, "size": s} for p, d, s in files), key=lambda e: str(e["path"])
    )
    return f"sha256:{hashlib.sha256(canonical_json(entries)).hexdigest()}"


def _bom_model(
    model: ModelRow,
    number: int,
    version_id: str,
    fmt: str,
    artifact_digest: str,
    files: Sequence[ArtifactFileRow],
    datasets: Sequence[tuple[DatasetRow, LineageRole]],
    spec: VersionSpec,
    *,
    created_at: datetime,
    created_by: str,
) -> BomModel:
    return BomModel(
        name=model.name,
        version=number,
        version_id=version_id,
        description=spec.description or None,
        intended_use=model.intended_use or None,
        owner=model.owner,
        format=fmt,
        artifact_digest=artifact_digest,
        files=tuple(
            BomFile(path=f.path, digest=f.digest, size=f.size, format=f.format) for f in files
        ),
        datasets=tuple(
            BomDataset(
                name=d.name,
                version=d.version,
                digest=d.digest,
                classification=d.classification,
                role=role.value,
                source=d.source,
                schema=tuple(d.schema) or None,
                purposes=tuple(d.purposes),
                owner=d.owner,
            )
            for d, role in datasets
        ),
        metrics=dict(spec.metrics or {}),
        parameters=dict(spec.parameters or {}),
        model_card=dict(spec.model_card or {}),
        input_contract=spec.input_contract,
        output_contract=spec.output_contract,
        code_ref=spec.code_ref,
        created_at=created_at,
        created_by=created_by,
        task=spec.task,
        framework=spec.framework,
    )


def _blob_key(version_id: str, name: str) -> str:
    suffix = "mlbom" if name == MLBOM_PATH else f"f{name}"
    return f"models/{version_id}/{suffix}"


def _packages(environment: Mapping[str, Any]) -> list[BomPackage]:
    """The packages the version's recorded environment names. None are invented: the
    server's own packages say nothing about where a model was trained."""
    packages = environment.get("packages")
    if isinstance(packages, Mapping):
        return sorted(
            (BomPackage(name=str(k), version=str(v)) for k, v in packages.items()),
            key=lambda p: p.name,
        )
    return []


def local_environment() -> dict[str, Any]:
    """The running interpreter and its installed distributions (what the CLI records as a
    version's environment unless told otherwise)."""
    return {
        "python": python_platform.python_version(),
        "implementation": python_platform.python_implementation(),
        "platform": f"{os.uname().sysname}-{os.uname().machine}",
        "packages": {p.name: p.version for p in environment_packages()},
    }


def _clean_spec(spec: VersionSpec) -> VersionSpec:
    if len(spec.datasets) > MAX_LINEAGE:
        raise InvalidInput(
            f"at most {MAX_LINEAGE} datasets per version", code="registry.bad_reference"
        )
    card = validate_model_card(spec.model_card or {})
    check_text(spec.description, "description")
    check_text(spec.code_ref, "code reference", 512)
    check_text(spec.task, "task", 128)
    check_text(spec.framework, "framework", 128)
    return VersionSpec(
        datasets=spec.datasets,
        description=spec.description,
        metrics=check_metrics(spec.metrics),
        parameters=check_json(spec.parameters, "parameters") or {},
        code_ref=spec.code_ref or None,
        environment=check_json(spec.environment, "environment") or {},
        input_contract=_contract(spec.input_contract),
        output_contract=check_json(spec.output_contract, "output contract"),
        model_card=card,
        tags=check_tags(spec.tags or {}),
        task=spec.task,
        framework=spec.framework,
        target=check_text(spec.target, "target", 128) or None,
    )


def _contract(doc: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A contract is parsed strictly at registration (`contract.invalid` says what is
    wrong), and stored in its normal form."""
    checked = check_json(doc, "input contract")
    return None if checked is None else InputContract.from_json(checked).to_json()


def _find_model(session: Session, name: str, *, lock: bool = False) -> ModelRow:
    query = sa.select(ModelRow).where(ModelRow.name == name)
    if lock:
        query = query.with_for_update()
    row = session.scalars(query).first()
    if row is None:
        raise NotFound(f"no model {name}", code="registry.model_not_found")
    return row


def find_version(
    session: Session, model: ModelRow, ref: str | int | None, *, lock: bool = False
) -> ModelVersionRow:
    query = sa.select(ModelVersionRow).where(ModelVersionRow.model_id == model.id)
    if ref is None:
        query = query.order_by(ModelVersionRow.version.desc()).limit(1)
    elif isinstance(ref, int) or str(ref).isdigit():
        query = query.where(ModelVersionRow.version == int(ref))
    else:
        alias = session.get(ModelAliasRow, (model.id, str(ref)))
        if alias is None:
            raise NotFound(
                f"model {model.name} has no version or alias {ref}",
                code="registry.version_not_found",
            )
        query = query.where(ModelVersionRow.id == alias.version_id)
    if lock:
        query = query.with_for_update()
    row = session.scalars(query).first()
    if row is None:
        what = "versions" if ref is None else f"version {ref}"
        raise NotFound(f"model {model.name} has no {what}", code="registry.version_not_found")
    return row


def _pick_file(session: Session, version: ModelVersionRow, path: str | None) -> ArtifactFileRow:
    rows = session.scalars(
        sa.select(ArtifactFileRow).where(ArtifactFileRow.version_id == version.id)
    ).all()
    if path is None:
        model_files = [r for r in rows if r.role == "model"]
        if len(model_files) != 1:
            raise InvalidInput(
                f"this version has {len(model_files)} files; name one with path",
                code="registry.path_required",
                details={"files": [r.path for r in model_files][:100]},
            )
        return model_files[0]
    for row in rows:
        if row.path == path:
            return row
    raise NotFound(f"no file {path!r} in this version", code="registry.file_not_found")


def _model(session: Session, row: ModelRow) -> Model:
    aliases = session.execute(
        sa.select(ModelAliasRow.alias, ModelVersionRow.version)
        .join(ModelVersionRow, ModelVersionRow.id == ModelAliasRow.version_id)
        .where(ModelAliasRow.model_id == row.id)
        .order_by(ModelAliasRow.alias)
    ).all()
    return Model(
        id=row.id,
        name=row.name,
        owner=row.owner,
        custodian=row.custodian,
        description=row.description,
        intended_use=row.intended_use,
        purpose=row.purpose,
        created_at=row.created_at,
        created_by=row.created_by,
        aliases={a: int(v) for a, v in aliases},
        tags=_tags(session, row.id),
    )


def _file(row: ArtifactFileRow) -> ArtifactFile:
    return ArtifactFile(
        path=row.path, role=row.role, format=row.format, size=row.size, digest=row.digest
    )


def _lineage_query() -> Any:  # a 9-column Select
    return (
        sa.select(
            ModelRow.name,
            ModelVersionRow.version,
            ModelVersionRow.id,
            DatasetRow.name,
            DatasetRow.version,
            DatasetRow.id,
            LineageRow.dataset_digest,
            LineageRow.role,
            DatasetRow.classification,
        )
        .join(ModelVersionRow, ModelVersionRow.id == LineageRow.version_id)
        .join(ModelRow, ModelRow.id == ModelVersionRow.model_id)
        .join(DatasetRow, DatasetRow.id == LineageRow.dataset_id)
        .order_by(ModelRow.name, ModelVersionRow.version, DatasetRow.name, LineageRow.role)
    )


def _link(r: Any) -> LineageLink:
    return LineageLink(
        model=r[0],
        model_version=int(r[1]),
        version_id=r[2],
        dataset=r[3],
        dataset_version=int(r[4]),
        dataset_id=r[5],
        dataset_digest=r[6],
        role=LineageRole(r[7]),
        classification=Classification(r[8]),
    )


def _version(session: Session, row: ModelVersionRow, model: ModelRow) -> ModelVersion:
    files = session.scalars(
        sa.select(ArtifactFileRow)
        .where(ArtifactFileRow.version_id == row.id)
        .order_by(ArtifactFileRow.path)
    ).all()
    links = session.execute(_lineage_query().where(LineageRow.version_id == row.id)).all()
    aliases = session.scalars(
        sa.select(ModelAliasRow.alias)
        .where(ModelAliasRow.version_id == row.id)
        .order_by(ModelAliasRow.alias)
    ).all()
    signed = session.scalar(
        sa.select(sa.func.count())
        .select_from(ModelSignatureRow)
        .where(ModelSignatureRow.version_id == row.id)
    )
    return ModelVersion(
        id=row.id,
        model=model.name,
        model_id=model.id,
        version=row.version,
        status=VersionStatus(row.status),
        format=row.format,
        artifact_digest=row.artifact_digest,
        artifact_size=row.artifact_size,
        files=tuple(_file(f) for f in files),
        description=row.description,
        metrics=dict(row.metrics),
        parameters=dict(row.parameters),
        code_ref=row.code_ref,
        environment=dict(row.environment),
        input_contract=row.input_contract,
        output_contract=row.output_contract,
        reference_profile=row.reference_profile,
        model_card=dict(row.model_card),
        scan=dict(row.scan),
        mlbom_digest=row.mlbom_digest,
        lineage=tuple(_link(r) for r in links),
        aliases=tuple(aliases),
        tags=_tags(session, row.id),
        signed=bool(signed),
        created_at=row.created_at,
        created_by=row.created_by,
    )
