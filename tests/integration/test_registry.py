"""The registry end to end through its services, on SQLite and PostgreSQL: datasets, versions,
scanning at upload, encrypted artifacts re-checked on read, lineage both ways, aliases, tags,
signatures (with the reference model_signing tool), ML-BOM and OpenLineage export."""

from __future__ import annotations

import io
import json
import os
import pickle
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sklearn.linear_model import LogisticRegression

from bastion.core import ManualClock
from bastion.core.errors import (
    Conflict,
    IntegrityError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    TooLarge,
)
from bastion.identity import Caller, Role
from bastion.platform import Platform
from bastion.registry import DatasetRef, ModelSpec, VersionSpec
from bastion.registry.records import MLBOM_PATH
from bastion.store.tables import ArtifactFileRow, ModelVersionRow
from bastion.supplychain.mlbom import validate_mlbom
from support import MakeActor

CSV = b"age,income,city,approved\n34,52000.5,Oslo,true\n51,61000,Bergen,false\n"


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def _model_bytes() -> bytes:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    return pickle.dumps(LogisticRegression().fit(x, y), protocol=5)


@pytest.fixture
def dev(platform: Platform, make_actor: MakeActor) -> Caller:
    return platform.tokens.authenticate(make_actor("dev", Role.MODEL_DEVELOPER).token)


@pytest.fixture
def steward(platform: Platform, make_actor: MakeActor) -> Caller:
    return platform.tokens.authenticate(make_actor("steward", Role.DATA_STEWARD).token)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    (root / "model.pkl").write_bytes(_model_bytes())
    (root / "sub" / "README.md").write_text("a logistic regression\n")
    return root


def _dataset(platform: Platform, steward: Caller, tmp_path: Path, data: bytes = CSV) -> str:
    path = tmp_path / f"data-{len(data)}.csv"
    path.write_bytes(data)
    platform.datasets.register(
        steward,
        "loans",
        classification_="confidential",
        purposes=["credit-scoring"],
        retention_days=30,
        file=path,
    )
    return "loans"


def _register(
    platform: Platform, caller: Caller, source: Path, name: str = "scorer", **spec: object
) -> object:
    upload = platform.staging.create(caller)
    platform.staging.add_tree(caller, upload.id, source)
    return platform.models.register_version(
        caller,
        name,
        upload.id,
        VersionSpec(**spec),  # type: ignore[arg-type]
        create=ModelSpec(purpose="credit-scoring"),
    )


def _events(platform: Platform, kind: str) -> list[dict[str, object]]:
    platform.ledger.sequence_all()
    bodies = [json.loads(e.body) for e in platform.ledger.entries(0, platform.ledger.size())]
    return [b for b in bodies if b["type"] == kind]


# -- datasets --------------------------------------------------------------------------------


def test_dataset_register_seals_infers_schema_and_versions(
    platform: Platform, steward: Caller, tmp_path: Path
) -> None:
    _dataset(platform, steward, tmp_path)
    first = platform.datasets.get(steward, "loans")
    assert first.version == 1
    assert first.stored
    assert first.size == len(CSV)
    assert [c["type"] for c in first.schema] == ["integer", "number", "string", "boolean"]
    assert first.expires_at == first.created_at + timedelta(days=30)
    with pytest.raises(Conflict) as same:
        _dataset(platform, steward, tmp_path)
    assert same.value.code == "registry.dataset_unchanged"
    _dataset(platform, steward, tmp_path, CSV + b"29,1,Oslo,true\n")
    assert [d.version for d in platform.datasets.list(steward, name="loans")] == [1, 2]
    assert _events(platform, "registry.dataset.registered")[0]["data"]["digest"] == first.digest


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"classification_": "secret"}, "registry.bad_classification"),
        ({"purposes": []}, "registry.bad_purpose"),
        ({"purposes": ["Bad Purpose"]}, "registry.bad_purpose"),
        ({"retention_days": 0}, "registry.bad_retention"),
        ({"digest": "md5:abc"}, "registry.bad_digest"),
        ({"digest": None}, "registry.bad_dataset_source"),
        ({"schema": [{"name": "a", "type": "blob"}]}, "registry.bad_schema"),
    ],
)
def test_dataset_bad_input_is_refused(
    platform: Platform, steward: Caller, kwargs: dict[str, object], code: str
) -> None:
    args: dict[str, object] = {
        "classification_": "internal",
        "purposes": ["analytics"],
        "digest": "sha256:" + "ab" * 32,
    }
    args.update(kwargs)
    with pytest.raises(InvalidInput) as caught:
        platform.datasets.register(steward, "ds", **args)  # type: ignore[arg-type]
    assert caught.value.code == code
    assert platform.datasets.list(steward) == []


def test_dataset_file_over_the_limit_stores_nothing(
    platform: Platform, steward: Caller, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(platform.datasets, "_max_bytes", 10)
    path = tmp_path / "big.csv"
    path.write_bytes(CSV)
    with pytest.raises(TooLarge):
        platform.datasets.register(
            steward, "big", classification_="public", purposes=["x"], file=path
        )
    assert list((platform.settings.home / "blobs").rglob("ds_*")) == []


# -- versions, scanning, artifacts -----------------------------------------------------------


def test_register_version_records_files_lineage_bom_and_ledger(
    platform: Platform, dev: Caller, steward: Caller, model_dir: Path, tmp_path: Path
) -> None:
    _dataset(platform, steward, tmp_path)
    version = _register(
        platform,
        dev,
        model_dir,
        datasets=(DatasetRef.parse("loans@1"), DatasetRef.parse("loans:evaluation")),
        metrics={"auc": 0.91},
    )
    assert version.version == 1
    assert version.format == "pickle"
    assert [f.path for f in version.files] == [MLBOM_PATH, "model.pkl", "sub/README.md"]
    assert {link.role.value for link in version.lineage} == {"training", "evaluation"}
    dataset = platform.datasets.get(dev, "loans")
    users = platform.models.consumers(dev, dataset="loans", version=1)
    assert {u.version_id for u in users} == {version.id}
    assert platform.models.consumers(dev, digest=dataset.digest)[0].model == "scorer"
    bom = json.loads(platform.models.read_mlbom(dev, "scorer", 1))
    validate_mlbom(json.dumps(bom).encode())
    assert any(c.get("type") == "data" for c in bom["components"])
    (event,) = _events(platform, "registry.version.registered")
    assert event["data"]["artifact_digest"] == version.artifact_digest
    assert event["data"]["scan"]["clean"] is True
    again = _register(platform, dev, model_dir)
    assert again.version == 2


def test_hostile_pickle_is_refused_and_nothing_is_stored(
    platform: Platform, dev: Caller, tmp_path: Path
) -> None:
    root = tmp_path / "evil"
    root.mkdir()
    (root / "model.pkl").write_bytes(pickle.dumps(_Evil()))
    blobs_before = sorted((platform.settings.home / "blobs").rglob("*"))
    with pytest.raises(InvalidInput) as caught:
        _register(platform, dev, root)
    assert caught.value.code == "registry.scan_rejected"
    findings = caught.value.details["findings"]
    assert findings
    assert findings[0]["path"] == "model.pkl"
    assert "posix" in findings[0]["reason"] or "os" in findings[0]["reason"]
    with platform.database.read() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ModelVersionRow)) == 0
    assert sorted((platform.settings.home / "blobs").rglob("*")) == blobs_before
    assert list(platform.settings.staging_dir.iterdir()) == []
    (rejected,) = _events(platform, "registry.version.rejected")
    assert rejected["data"]["finding_count"] >= 1
    with pytest.raises(NotFound):
        platform.models.get(dev, "scorer")


def test_interrupted_upload_leaves_no_version_and_expires(
    platform: Platform, dev: Caller, clock: ManualClock
) -> None:
    upload = platform.staging.create(dev)
    writer = platform.staging.writer(dev, upload.id, "model.onnx")
    writer.write(b"half a model")
    writer.abort()
    assert platform.staging.get(dev, upload.id).files == ()
    platform.staging.add_file(dev, upload.id, "notes.txt", io.BytesIO(b"x"))
    clock.advance(timedelta(seconds=platform.settings.upload_ttl_seconds + 1))
    platform.staging.sweep()
    assert not (platform.settings.staging_dir / upload.id).exists()
    with pytest.raises(Conflict) as closed:
        platform.models.register_version(dev, "m", upload.id, VersionSpec(), create=ModelSpec())
    assert closed.value.code == "registry.upload_closed"


@pytest.mark.parametrize(
    "path", ["../x", "/etc/passwd", "a/../b", "a//b", "a\\b", "C:x", "a/\x00", MLBOM_PATH, ""]
)
def test_upload_refuses_escaping_or_reserved_paths(
    platform: Platform, dev: Caller, path: str
) -> None:
    upload = platform.staging.create(dev)
    with pytest.raises(InvalidInput) as caught:
        platform.staging.add_file(dev, upload.id, path, io.BytesIO(b"x"))
    assert caught.value.code == "registry.bad_path"


def test_upload_limits_hold_while_writing(
    platform: Platform, dev: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(platform.staging, "max_bytes", 1000)
    monkeypatch.setattr(platform.staging, "max_files", 2)
    upload = platform.staging.create(dev)
    platform.staging.add_file(dev, upload.id, "a", io.BytesIO(b"x" * 600))
    with pytest.raises(TooLarge) as too_big:
        platform.staging.add_file(dev, upload.id, "b", io.BytesIO(b"x" * 600))
    assert too_big.value.code == "registry.upload_too_large"
    platform.staging.add_file(dev, upload.id, "b", io.BytesIO(b"x"))
    with pytest.raises(TooLarge) as too_many:
        platform.staging.add_file(dev, upload.id, "c", io.BytesIO(b"x"))
    assert too_many.value.code == "registry.too_many_files"
    assert [f.path for f in platform.staging.get(dev, upload.id).files] == ["a", "b"]


def test_someone_elses_upload_is_invisible(
    platform: Platform, dev: Caller, make_actor: MakeActor
) -> None:
    other = platform.tokens.authenticate(make_actor("dev2", Role.MODEL_DEVELOPER).token)
    upload = platform.staging.create(dev)
    with pytest.raises(NotFound):
        platform.staging.add_file(other, upload.id, "x", io.BytesIO(b"x"))


def test_symlinks_in_a_local_model_directory_are_refused(
    platform: Platform, dev: Caller, model_dir: Path
) -> None:
    (model_dir / "link").symlink_to("/etc/passwd")
    upload = platform.staging.create(dev)
    with pytest.raises(InvalidInput) as caught:
        platform.staging.add_tree(dev, upload.id, model_dir)
    assert caught.value.code == "registry.bad_source"


def test_download_is_verified_counted_and_denied_without_the_permission(
    platform: Platform, dev: Caller, make_actor: MakeActor, model_dir: Path
) -> None:
    version = _register(platform, dev, model_dir)
    with platform.models.open_artifact(dev, "scorer", 1, "model.pkl") as (info, handle):
        assert handle.read() == (model_dir / "model.pkl").read_bytes()
        assert info.digest in {f.digest for f in version.files}
    assert platform.models.download_count(version_id=version.id) == 1
    approver = platform.tokens.authenticate(make_actor("ann", Role.APPROVER).token)
    with pytest.raises(PermissionDenied):
        platform.models.open_artifact(approver, "scorer", 1, "model.pkl").__enter__()
    with pytest.raises(InvalidInput) as which:
        platform.models.open_artifact(dev, "scorer", 1).__enter__()
    assert which.value.code == "registry.path_required"
    (event,) = _events(platform, "registry.artifact.downloaded")
    assert event["data"]["path"] == "model.pkl"


def test_a_digest_mismatch_on_read_is_an_integrity_error(
    platform: Platform, dev: Caller, model_dir: Path
) -> None:
    version = _register(platform, dev, model_dir)
    with platform.database.transaction() as session:
        session.execute(
            sa.update(ArtifactFileRow)
            .where(ArtifactFileRow.version_id == version.id, ArtifactFileRow.path == "model.pkl")
            .values(digest="sha256:" + "0" * 64)
        )
    with pytest.raises(IntegrityError) as caught:
        platform.models.open_artifact(dev, "scorer", 1, "model.pkl").__enter__()
    assert caught.value.code == "registry.digest_mismatch"
    assert _events(platform, "registry.artifact.integrity_failed")
    assert platform.models.download_count(version_id=version.id) == 0


def test_tampered_ciphertext_is_never_served(
    platform: Platform, dev: Caller, model_dir: Path
) -> None:
    version = _register(platform, dev, model_dir)
    (row,) = [r for r in platform.models.file_rows(version.id) if r.path == "model.pkl"]
    blob = platform.settings.home / "blobs" / row.blob_key
    data = bytearray(blob.read_bytes())
    data[-40] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        platform.models.open_artifact(dev, "scorer", 1, "model.pkl").__enter__()


# -- aliases, tags, status -------------------------------------------------------------------


def test_aliases_tags_and_status(platform: Platform, dev: Caller, model_dir: Path) -> None:
    _register(platform, dev, model_dir)
    _register(platform, dev, model_dir)
    # `candidate` is not a promotion alias (the default bundle gates only `champion`).
    platform.models.set_alias(dev, "scorer", "candidate", 1)
    platform.models.set_alias(dev, "scorer", "candidate", 2)
    assert platform.models.version(dev, "scorer", "candidate").version == 2
    assert platform.models.get(dev, "scorer").aliases == {"candidate": 2}
    with pytest.raises(InvalidInput):
        platform.models.set_alias(dev, "scorer", "7", 1)
    platform.models.remove_alias(dev, "scorer", "candidate")
    with pytest.raises(NotFound):
        platform.models.version(dev, "scorer", "candidate")
    tags = platform.models.set_tags(dev, "scorer", "1", {"team": "risk"})
    assert tags == {"team": "risk"}
    assert platform.models.set_tags(dev, "scorer", "1", {}, remove=["team"]) == {}
    platform.models.set_status(dev, "scorer", 1, "archived")
    with pytest.raises(Conflict):
        platform.models.set_status(dev, "scorer", 1, "registered")
    with pytest.raises(Conflict):
        platform.models.set_alias(dev, "scorer", "candidate", 1)
    kinds = {e["type"] for e in _events(platform, "registry.alias.set")}
    assert kinds == {"registry.alias.set"}


# -- signatures ------------------------------------------------------------------------------


def test_sign_and_verify_then_revoke_and_tamper(
    platform: Platform, dev: Caller, admin: object, model_dir: Path
) -> None:
    _register(platform, dev, model_dir)
    record = platform.signatures.sign(dev, "scorer", 1)
    assert record.team == "bastion"
    result = platform.signatures.verify(dev, "scorer", 1)
    assert result.valid
    assert result.files_checked == 3
    assert platform.models.version(dev, "scorer", 1).signed
    version = platform.models.version(dev, "scorer", 1)
    with platform.database.transaction() as session:
        session.execute(
            sa.update(ArtifactFileRow)
            .where(ArtifactFileRow.version_id == version.id, ArtifactFileRow.path == "model.pkl")
            .values(digest="sha256:" + "1" * 64)
        )
    tampered = platform.signatures.verify(dev, "scorer", 1)
    assert not tampered.valid
    assert "do not match" in tampered.problems[0]


def test_revoked_signer_key_stops_verifying(
    platform: Platform, dev: Caller, admin: object, model_dir: Path
) -> None:
    from support import Actor

    assert isinstance(admin, Actor)
    root = platform.tokens.authenticate(admin.token)
    _register(platform, dev, model_dir)
    record = platform.signatures.sign(dev, "scorer", 1)
    platform.signatures.revoke_key(root, record.signer_key_id)
    result = platform.signatures.verify(dev, "scorer", 1)
    assert not result.valid
    assert "revoked" in result.problems[0]


def test_unsigned_version_does_not_verify(platform: Platform, dev: Caller, model_dir: Path) -> None:
    _register(platform, dev, model_dir)
    result = platform.signatures.verify(dev, "scorer", 1)
    assert not result.valid
    assert result.problems == ("the version has no signature",)


# -- OpenLineage -----------------------------------------------------------------------------


def test_openlineage_export(
    platform: Platform, dev: Caller, steward: Caller, model_dir: Path, tmp_path: Path
) -> None:
    from bastion.registry.openlineage import export_to_file, run_events

    _dataset(platform, steward, tmp_path)
    _register(platform, dev, model_dir, datasets=(DatasetRef.parse("loans"),))
    runs = platform.models.lineage_runs(dev, None, None)
    events = [e for run in runs for e in run_events(run, producer=platform.models.producer)]
    out = tmp_path / "lineage.jsonl"
    assert export_to_file(events, out) == len(events) == 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    complete = lines[-1]
    assert complete["eventType"] == "COMPLETE"
    assert complete["inputs"][0]["name"].startswith("loans@v1")
    assert complete["outputs"][0]["name"] == "scorer@v1"
