"""ML-BOM: a CycloneDX 1.6 bill of materials for one model version.

The BOM's subject (`metadata.component`) is the model as a `machine-learning-model` component
with the version's artifact digest, its files as nested `file` components (each with its
SHA-256), and a `modelCard`; the datasets it was trained and evaluated on are `data`
components carrying their content digest, classification and owner (`data[].governance`); the
Python environment's packages are `library` components with package URLs; the model depends
on all of them.

cyclonedx-python-lib builds and serializes the typed parts; it has no model for `modelCard` or
component `data` yet, so those are added to the JSON, and every BOM is then validated against
the strict 1.6 schema bundled with the library before it is stored. The output is RFC 8785
canonical JSON with a serial number derived from the version id and the version's creation
time as timestamp, so the same version always yields the same bytes: the registry signs the
BOM's digest with the model files.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from importlib import metadata
from typing import Any

from bastion.core.canonical import canonical_json
from bastion.core.errors import IntegrityError, InvalidInput

MODEL_CARD_SECTIONS = frozenset(
    {"modelParameters", "quantitativeAnalysis", "considerations", "properties"}
)
MAX_MODEL_CARD_BYTES = 256 * 1024
MAX_PACKAGES = 5_000


@dataclass(frozen=True, slots=True)
class BomFile:
    path: str
    digest: str  # sha256:<hex>
    size: int
    format: str


@dataclass(frozen=True, slots=True)
class BomDataset:
    name: str
    version: int
    digest: str
    classification: str
    role: str  # training | evaluation | validation
    source: str | None = None
    schema: tuple[Mapping[str, Any], ...] | None = None
    purposes: tuple[str, ...] = ()
    owner: str | None = None

    @property
    def ref(self) -> str:
        return f"dataset:{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class BomPackage:
    name: str
    version: str


@dataclass(frozen=True, slots=True)
class BomModel:
    """What the BOM says about the model version (also the input of the OpenLineage export)."""

    name: str
    version: int
    version_id: str
    owner: str
    format: str
    artifact_digest: str
    created_at: datetime
    created_by: str
    files: tuple[BomFile, ...] = ()
    datasets: tuple[BomDataset, ...] = ()
    description: str | None = None
    intended_use: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    model_card: Mapping[str, Any] = field(default_factory=dict)
    input_contract: Mapping[str, Any] | None = None
    output_contract: Mapping[str, Any] | None = None
    code_ref: str | None = None
    task: str | None = None
    framework: str | None = None

    @property
    def ref(self) -> str:
        return f"model:{self.name}@{self.version}"


def _hex(digest: str) -> str:
    algorithm, _, value = digest.partition(":")
    if algorithm != "sha256" or len(value) != 64:
        raise InvalidInput(f"not a sha256 digest: {digest[:80]}", code="mlbom.bad_digest")
    return value


def environment_packages() -> list[BomPackage]:
    """Installed distributions of the running interpreter, sorted by name (deduplicated)."""
    seen: dict[str, BomPackage] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name and name.lower() not in seen:
            seen[name.lower()] = BomPackage(name=name, version=dist.version)
    return sorted(seen.values(), key=lambda p: p.name.lower())


@lru_cache(maxsize=1)
def _validator() -> Any:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SchemaVersion.V1_6)


def _errors(document: str) -> str | None:
    error = _validator().validate_str(document)
    if error is None:
        return None
    return str(error).splitlines()[0][:300]


def validate_mlbom(data: bytes) -> None:
    """Raise `InvalidInput` (`mlbom.invalid`) unless `data` is a CycloneDX 1.6 document that
    passes the strict schema."""
    try:
        text = data.decode("utf-8")
        json.loads(text)
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidInput("the ML-BOM is not JSON", code="mlbom.invalid") from error
    problem = _errors(text)
    if problem is not None:
        raise InvalidInput(
            f"the ML-BOM is not valid CycloneDX 1.6: {problem}", code="mlbom.invalid"
        )


def validate_model_card(card: Mapping[str, Any]) -> dict[str, Any]:
    """Check user-supplied CycloneDX `modelCard` sections (`modelParameters`,
    `quantitativeAnalysis`, `considerations`, `properties`) against the 1.6 schema.

    Raises `InvalidInput` (`registry.bad_model_card`) naming the first problem."""
    if not isinstance(card, Mapping):
        raise InvalidInput("the model card must be a JSON object", code="registry.bad_model_card")
    unknown = set(card) - MODEL_CARD_SECTIONS
    if unknown:
        raise InvalidInput(
            f"unknown model card sections {sorted(unknown)}; allowed: "
            + ", ".join(sorted(MODEL_CARD_SECTIONS)),
            code="registry.bad_model_card",
        )
    try:
        size = len(canonical_json(dict(card)))
    except (InvalidInput, TypeError, ValueError) as error:
        raise InvalidInput(
            "the model card is not plain JSON", code="registry.bad_model_card"
        ) from error
    if size > MAX_MODEL_CARD_BYTES:
        raise InvalidInput(
            f"the model card is larger than {MAX_MODEL_CARD_BYTES} bytes",
            code="registry.bad_model_card",
        )
    probe = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": {
            "component": {
                "type": "machine-learning-model",
                "name": "model-card-check",
                "modelCard": dict(card),
            }
        },
    }
    problem = _errors(json.dumps(probe))
    if problem is not None:
        raise InvalidInput(
            f"the model card is not a valid CycloneDX 1.6 modelCard: {problem}",
            code="registry.bad_model_card",
        )
    return dict(card)


def _model_card(model: BomModel) -> dict[str, Any]:
    """The user's sections, completed with what the registry knows (lineage always wins for
    `modelParameters.datasets`: it is the registry's record, not a claim)."""
    card: dict[str, Any] = json.loads(json.dumps(dict(model.model_card)))
    params = card.setdefault("modelParameters", {})
    if model.task and "task" not in params:
        params["task"] = model.task
    if model.framework and "architectureFamily" not in params:
        params["architectureFamily"] = model.framework
    params["datasets"] = [{"ref": d.ref} for d in _unique_datasets(model.datasets)]
    if model.input_contract is not None and "inputs" not in params:
        params["inputs"] = [{"format": "tabular"}]
    if model.output_contract is not None and "outputs" not in params:
        params["outputs"] = [{"format": "tabular"}]
    if not params:
        del card["modelParameters"]
    if model.metrics and "quantitativeAnalysis" not in card:
        card["quantitativeAnalysis"] = {
            "performanceMetrics": [
                {
                    "type": str(name),
                    "value": json.dumps(value) if not isinstance(value, str) else value,
                }
                for name, value in sorted(model.metrics.items())
            ]
        }
    if model.intended_use:
        considerations = card.setdefault("considerations", {})
        considerations.setdefault("useCases", [model.intended_use])
    return card


def _unique_datasets(datasets: Iterable[BomDataset]) -> list[BomDataset]:
    seen: dict[str, BomDataset] = {}
    for d in datasets:
        seen.setdefault(d.ref, d)
    return [seen[k] for k in sorted(seen)]


def build_mlbom(model: BomModel, packages: Sequence[BomPackage]) -> bytes:
    """The version's CycloneDX 1.6 ML-BOM as canonical JSON bytes, schema-validated.

    Raises `InvalidInput` for unusable input (bad digests, too many packages) and
    `IntegrityError` (`mlbom.invalid`) if the result fails the schema (a bug, never stored)."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    if len(packages) > MAX_PACKAGES:
        raise InvalidInput(f"more than {MAX_PACKAGES} packages", code="mlbom.too_many_packages")

    def sha256(digest: str) -> list[HashType]:
        return [HashType(alg=HashAlgorithm.SHA_256, content=_hex(digest))]

    properties = [
        Property(name="bastion:version_id", value=model.version_id),
        Property(name="bastion:format", value=model.format),
        Property(name="bastion:created_by", value=model.created_by),
        Property(name="bastion:owner", value=model.owner),
    ]
    if model.code_ref:
        properties.append(Property(name="bastion:code_ref", value=model.code_ref))
    for name, value in sorted(model.parameters.items()):
        properties.append(Property(name=f"bastion:parameter:{name}", value=json.dumps(value)))
    files = [
        Component(
            type=ComponentType.FILE,
            name=f.path,
            bom_ref=f"file:{model.name}@{model.version}/{f.path}",
            hashes=sha256(f.digest),
            properties=[
                Property(name="bastion:format", value=f.format),
                Property(name="bastion:size", value=str(f.size)),
            ],
        )
        for f in sorted(model.files, key=lambda f: f.path)
    ]
    subject = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=model.name,
        version=f"v{model.version}",
        bom_ref=model.ref,
        description=model.description or None,
        hashes=sha256(model.artifact_digest),
        properties=properties,
        components=files,
    )
    datasets = _unique_datasets(model.datasets)
    roles: dict[str, list[str]] = {}
    for d in model.datasets:
        roles.setdefault(d.ref, []).append(d.role)
    data_components = [
        Component(
            type=ComponentType.DATA,
            name=d.name,
            version=str(d.version),
            bom_ref=d.ref,
            hashes=sha256(d.digest),
            properties=[
                Property(name="bastion:lineage_role", value=role) for role in sorted(roles[d.ref])
            ]
            + [Property(name="bastion:purpose", value=p) for p in sorted(d.purposes)],
        )
        for d in datasets
    ]
    libraries = [
        Component(
            type=ComponentType.LIBRARY,
            name=p.name,
            version=p.version,
            bom_ref=f"pkg:pypi/{p.name.lower()}@{p.version}",
            purl=PackageURL(type="pypi", name=p.name.lower(), version=p.version),
        )
        for p in {(p.name.lower(), p.version): p for p in packages}.values()
    ]
    bom = Bom(
        serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"urn:bastion:mlbom:{model.version_id}"),
        metadata=BomMetaData(component=subject, timestamp=model.created_at),
    )
    for component in (*data_components, *libraries):
        bom.components.add(component)
    bom.register_dependency(subject, [*data_components, *libraries])
    document = json.loads(JsonV1Dot6(bom).output_as_string())
    document["metadata"]["component"]["modelCard"] = _model_card(model)
    by_ref = {d.ref: d for d in datasets}
    for component in document.get("components", []):
        found = by_ref.get(component.get("bom-ref", ""))
        if found is None:
            continue
        d = found
        entry: dict[str, Any] = {
            "type": "dataset",
            "name": f"{d.name}@{d.version}",
            "classification": d.classification,
        }
        if d.source:
            entry["contents"] = (
                {"url": d.source}
                if "://" in d.source
                else {"properties": [{"name": "bastion:source", "value": d.source}]}
            )
        if d.owner:
            entry["governance"] = {"owners": [{"contact": {"name": d.owner}}]}
        if d.schema:
            entry["description"] = (
                "columns: " + ", ".join(str(c.get("name", "?")) for c in d.schema)[:2000]
            )
        component["data"] = [entry]
    data = canonical_json(document)
    problem = _errors(data.decode("utf-8"))
    if problem is not None:
        raise IntegrityError(f"generated ML-BOM fails the schema: {problem}", code="mlbom.invalid")
    return data
