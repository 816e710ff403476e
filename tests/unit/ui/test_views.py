"""The dashboards' pure helpers: slot labels for reference bins, the lineage graph."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from bastion.registry.profile import FeatureProfile
from bastion.ui.views import lineage_graph, slot_labels


def test_numeric_slots_are_labelled_by_their_edges() -> None:
    feature = FeatureProfile("age", "numeric", (18.0, 30.5, 65.0), (), (1, 2, 3, 4, 0))
    assert slot_labels(feature) == ["< 18", "[18, 30.5)", "[30.5, 65)", "≥ 65", "missing"]
    assert len(slot_labels(feature)) == feature.slots


def test_categorical_slots_end_with_other_and_missing() -> None:
    feature = FeatureProfile("city", "categorical", (), ("paris", "oslo"), (5, 3, 1, 0))
    assert slot_labels(feature) == ["paris", "oslo", "other", "missing"]
    empty = FeatureProfile("x", "numeric", (), (), (3, 0))
    assert slot_labels(empty) == ["all", "missing"]


def _version(vid: str, ref: str, *links: Any) -> Any:
    return SimpleNamespace(id=vid, ref=ref, status="registered", lineage=links,
                           created_at=datetime.now(UTC))  # fmt: skip


def _link(dataset: str, role: str) -> Any:
    return SimpleNamespace(dataset=dataset, dataset_version=1, dataset_id=f"ds_{dataset}",
                           classification="internal", role=role)  # fmt: skip


def _endpoint(name: str, **refs: str) -> Any:
    ref = {k: SimpleNamespace(id=v, number=0) for k, v in refs.items()}
    return SimpleNamespace(name=name, state="serving", stable=ref.get("stable"),
                           canary=ref.get("canary"), shadow=ref.get("shadow"),
                           previous=ref.get("previous"))  # fmt: skip


def test_the_lineage_runs_from_dataset_to_endpoint() -> None:
    versions = [
        _version("v1", "scorer@1", _link("loans", "training")),
        _version("v2", "scorer@2", _link("loans", "training"), _link("holdout", "evaluation")),
    ]
    graph = lineage_graph(versions, [_endpoint("fraud", stable="v1", canary="v2"),
                                     _endpoint("idle", previous="v1")])  # fmt: skip
    ids = {n["id"]: n["kind"] for n in graph["nodes"]}
    # An endpoint serving none of these versions (only a previous one) is left out.
    assert ids == {
        "version:v1": "version", "version:v2": "version", "dataset:ds_loans": "dataset",
        "dataset:ds_holdout": "dataset", "endpoint:fraud": "endpoint",
    }  # fmt: skip
    edges = {(e["from"], e["to"], e["label"]) for e in graph["edges"]}
    assert ("version:v2", "endpoint:fraud", "canary") in edges
    assert ("dataset:ds_holdout", "version:v2", "evaluation") in edges
    assert len(edges) == 5
