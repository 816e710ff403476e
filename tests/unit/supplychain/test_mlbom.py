"""The CycloneDX 1.6 ML-BOM: content, strict-schema validity, determinism, and refusals."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from bastion.core.errors import InvalidInput
from bastion.supplychain.mlbom import (
    MAX_MODEL_CARD_BYTES,
    MAX_PACKAGES,
    BomDataset,
    BomFile,
    BomModel,
    BomPackage,
    build_mlbom,
    environment_packages,
    validate_mlbom,
    validate_model_card,
)

D1 = "sha256:" + "11" * 32
D2 = "sha256:" + "22" * 32
D3 = "sha256:" + "33" * 32


def _model(**changes: object) -> BomModel:
    model = BomModel(
        name="fraud",
        version=3,
        version_id="mv_01JABCDEFGHJKMNPQRSTVWXYZ0",
        owner="risk-team",
        format="onnx",
        artifact_digest=D1,
        created_at=datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
        created_by="alice",
        files=(
            BomFile(path="model.onnx", digest=D2, size=1234, format="onnx"),
            BomFile(path="README.md", digest=D3, size=10, format="unknown"),
        ),
        datasets=(
            BomDataset(
                name="loans",
                version=2,
                digest=D3,
                classification="confidential",
                role="training",
                source="s3://bucket/loans.parquet",
                schema=({"name": "age", "type": "int"}, {"name": "income", "type": "float"}),
                purposes=("credit-scoring",),
                owner="data-office",
            ),
            BomDataset(
                name="loans", version=2, digest=D3, classification="confidential", role="evaluation"
            ),
        ),
        description="fraud scorer",
        intended_use="score card transactions",
        metrics={"auc": 0.91, "note": "holdout"},
        parameters={"C": 1.0},
        input_contract={"fields": []},
        code_ref="git+https://example.invalid/repo@abc123",
        task="classification",
        framework="scikit-learn",
    )
    return replace(model, **changes)  # type: ignore[arg-type]


PACKAGES = [BomPackage("numpy", "2.4.6"), BomPackage("scikit-learn", "1.7.2")]


def test_bom_describes_model_files_datasets_and_packages() -> None:
    data = build_mlbom(_model(), PACKAGES)
    validate_mlbom(data)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode()) is None
    bom = json.loads(data)
    assert bom["specVersion"] == "1.6"
    subject = bom["metadata"]["component"]
    assert subject["type"] == "machine-learning-model"
    assert subject["bom-ref"] == "model:fraud@3"
    assert subject["hashes"] == [{"alg": "SHA-256", "content": "11" * 32}]
    assert {c["name"]: c["hashes"][0]["content"] for c in subject["components"]} == {
        "model.onnx": "22" * 32,
        "README.md": "33" * 32,
    }
    card = subject["modelCard"]
    assert card["modelParameters"]["task"] == "classification"
    assert card["modelParameters"]["datasets"] == [{"ref": "dataset:loans@2"}]
    assert {m["type"] for m in card["quantitativeAnalysis"]["performanceMetrics"]} == {
        "auc",
        "note",
    }
    assert card["considerations"]["useCases"] == ["score card transactions"]
    (dataset,) = [c for c in bom["components"] if c["type"] == "data"]
    assert dataset["hashes"][0]["content"] == "33" * 32
    assert dataset["data"][0]["classification"] == "confidential"
    assert dataset["data"][0]["governance"]["owners"] == [{"contact": {"name": "data-office"}}]
    roles = {p["value"] for p in dataset["properties"] if p["name"] == "bastion:lineage_role"}
    assert roles == {"training", "evaluation"}
    libraries = {c["purl"] for c in bom["components"] if c["type"] == "library"}
    assert libraries == {"pkg:pypi/numpy@2.4.6", "pkg:pypi/scikit-learn@1.7.2"}
    (deps,) = [d for d in bom["dependencies"] if d["ref"] == "model:fraud@3"]
    assert set(deps["dependsOn"]) == {"dataset:loans@2", *libraries}


def test_same_version_gives_the_same_bytes_and_any_change_changes_them() -> None:
    first = build_mlbom(_model(), PACKAGES)
    assert build_mlbom(_model(), list(reversed(PACKAGES))) == first
    changed_file = _model(files=(BomFile(path="model.onnx", digest=D1, size=1, format="onnx"),))
    assert build_mlbom(changed_file, PACKAGES) != first
    assert build_mlbom(_model(), [*PACKAGES, BomPackage("scipy", "1.17.1")]) != first
    assert json.loads(first)["serialNumber"].startswith("urn:uuid:")


def test_user_model_card_is_kept_but_lineage_wins() -> None:
    card = {
        "modelParameters": {"task": "fraud detection", "datasets": [{"ref": "dataset:other@9"}]},
        "considerations": {"ethicalConsiderations": [{"name": "bias against new customers"}]},
    }
    bom = json.loads(build_mlbom(_model(model_card=validate_model_card(card)), PACKAGES))
    result = bom["metadata"]["component"]["modelCard"]
    assert result["modelParameters"]["task"] == "fraud detection"
    assert result["modelParameters"]["datasets"] == [{"ref": "dataset:loans@2"}]
    assert result["considerations"]["ethicalConsiderations"][0]["name"].startswith("bias")


@pytest.mark.parametrize(
    ("card", "needle"),
    [
        ({"modelParameters": {"task": 5}}, "not of type"),
        ({"secrets": {}}, "unknown model card sections"),
        ({"considerations": {"users": "everyone"}}, "not of type"),
        ({"quantitativeAnalysis": {"performanceMetrics": [{"value": 1}]}}, "not of type"),
        ({"properties": [{"name": "x", "value": float("nan")}]}, "plain JSON"),
        ({"considerations": {"users": ["x" * MAX_MODEL_CARD_BYTES]}}, "larger than"),
    ],
)
def test_bad_model_cards_are_refused(card: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_model_card(card)
    assert caught.value.code == "registry.bad_model_card"
    assert needle in caught.value.message


def test_model_card_must_be_an_object() -> None:
    with pytest.raises(InvalidInput):
        validate_model_card(["not", "a", "card"])  # type: ignore[arg-type]


def test_validate_mlbom_refuses_what_is_not_cyclonedx() -> None:
    for data in (b"not json", b"\xff\xfe", json.dumps({"bomFormat": "SPDX"}).encode()):
        with pytest.raises(InvalidInput) as caught:
            validate_mlbom(data)
        assert caught.value.code == "mlbom.invalid"
    bom = json.loads(build_mlbom(_model(), PACKAGES))
    bom["metadata"]["component"]["type"] = "robot"
    with pytest.raises(InvalidInput, match=r"not valid CycloneDX 1\.6"):
        validate_mlbom(json.dumps(bom).encode())


def test_bad_digests_and_too_many_packages_are_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        build_mlbom(_model(artifact_digest="md5:abc"), PACKAGES)
    assert caught.value.code == "mlbom.bad_digest"
    many = [BomPackage(f"p{i}", "1") for i in range(MAX_PACKAGES + 1)]
    with pytest.raises(InvalidInput) as caught:
        build_mlbom(_model(), many)
    assert caught.value.code == "mlbom.too_many_packages"


def test_minimal_version_without_lineage_is_valid() -> None:
    bare = _model(
        datasets=(),
        metrics={},
        model_card={},
        intended_use=None,
        task=None,
        framework=None,
        input_contract=None,
        description=None,
        code_ref=None,
    )
    bom = json.loads(build_mlbom(bare, []))
    validate_mlbom(json.dumps(bom).encode())
    assert "modelParameters" in bom["metadata"]["component"]["modelCard"]
    assert [c for c in bom.get("components", []) if c["type"] == "data"] == []


def test_environment_packages_lists_this_interpreter() -> None:
    names = {p.name.lower() for p in environment_packages()}
    assert {"numpy", "cyclonedx-python-lib", "bastion"} <= names
