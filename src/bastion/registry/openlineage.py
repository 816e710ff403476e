"""Lineage as OpenLineage run events (openlineage-python, spec 2-0-2).

Each model version is one training *run*: a START and a COMPLETE event at the version's
creation time, job `train.<model>`, the dataset versions it was trained or evaluated on as
inputs (name `<dataset>@v<n>`, `datasetVersion` facet = content digest, schema facet when the
inventory has one) and the version itself as output (`<model>@v<n>`, `datasetVersion` =
artifact digest). Run ids are UUIDv5 of the version id, so exporting twice yields the same
events and a lineage backend deduplicates them. Files are written with the library's own
file transport (`export_to_file`); the API returns the same events as JSON lines.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.core.errors import InvalidInput
from bastion.supplychain.mlbom import BomModel

_RUN_NAMESPACE = uuid.UUID("5f0c2b9e-6d0b-4c49-9a43-3b7f3c0e8a11")


@dataclass(frozen=True, slots=True)
class LineageRun:
    """One model version's training run, in the registry's terms."""

    model: BomModel
    namespace: str


def run_events(run: LineageRun, *, producer: str) -> list[Any]:
    """The START and COMPLETE `RunEvent`s of one run."""
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.facet_v2 import (
        dataset_version_dataset,
        job_type_job,
        schema_dataset,
    )

    model = run.model
    run_id = str(uuid.uuid5(_RUN_NAMESPACE, model.version_id))
    when = model.created_at.isoformat()
    job = Job(
        namespace=run.namespace,
        name=f"train.{model.name}",
        facets={
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH",
                integration="BASTION",
                jobType="TRAINING",
                producer=producer,
            )
        },
    )
    inputs = []
    for dataset in model.datasets:
        facets: dict[str, Any] = {
            "version": dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=dataset.digest, producer=producer
            )
        }
        if dataset.schema:
            facets["schema"] = schema_dataset.SchemaDatasetFacet(
                fields=[
                    schema_dataset.SchemaDatasetFacetFields(
                        name=str(column.get("name", "")),
                        type=str(column["type"]) if column.get("type") else None,
                    )
                    for column in dataset.schema
                ],
                producer=producer,
            )
        inputs.append(
            InputDataset(
                namespace=run.namespace,
                name=f"{dataset.name}@v{dataset.version}:{dataset.role}",
                facets=facets,
            )
        )
    output = OutputDataset(
        namespace=run.namespace,
        name=f"{model.name}@v{model.version}",
        facets={
            "version": dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=model.artifact_digest, producer=producer
            )
        },
    )
    return [
        RunEvent(
            eventType=state,
            eventTime=when,
            producer=producer,
            run=Run(runId=run_id),
            job=job,
            inputs=inputs,
            outputs=[output],
        )
        for state in (RunState.START, RunState.COMPLETE)
    ]


def to_json_lines(events: Sequence[Any]) -> bytes:
    """Events as JSON lines, serialized by the library's `Serde`."""
    from openlineage.client.serde import Serde

    return b"".join(Serde.to_json(event).encode("utf-8") + b"\n" for event in events)


def export_to_file(events: Iterable[Any], path: Path) -> int:
    """Append events to `path` with the library's file transport; return how many."""
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.file import FileConfig, FileTransport

    if path.exists() and not path.is_file():
        raise InvalidInput(f"{path} is not a regular file", code="registry.bad_export_path")
    client = OpenLineageClient(
        transport=FileTransport(FileConfig(log_file_path=str(path), append=True))
    )
    count = 0
    for event in events:
        client.emit(event)
        count += 1
    return count
