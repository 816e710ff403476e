"""The packaged default bundle: its own Rego tests pass through regopy, and every documented
example input (`docs/examples/`, packaged as `bastion/policy/examples/`) gets the decision
`docs/policy.md` says it gets."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from bastion.policy import GATES, INPUT_VERSION, CompiledPolicy, PolicyBundle, run_tests

EXAMPLES = resources.files("bastion.policy").joinpath("examples")
NAMES = sorted(p.name.removesuffix(".json") for p in EXAMPLES.iterdir() if p.name.endswith(".json"))


def _example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(EXAMPLES.joinpath(f"{name}.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return CompiledPolicy(PolicyBundle.default())


def test_the_default_bundle_passes_its_own_tests() -> None:
    report = run_tests(PolicyBundle.default())
    assert report.ok, [(r.name, r.status, r.message) for r in report.results if r.status != "pass"]
    assert report.summary()["passed"] >= 50
    assert report.summary()["failed"] == report.summary()["errors"] == 0


def test_every_gate_has_an_example() -> None:
    assert set(GATES) <= set(NAMES)
    assert "deploy-denied" in NAMES


def test_the_docs_examples_are_the_packaged_ones() -> None:
    docs = Path(__file__).resolve().parents[3] / "docs" / "examples"
    assert docs.is_dir()
    assert sorted(p.stem for p in docs.glob("*.json")) == NAMES


@pytest.mark.parametrize("name", [n for n in NAMES if n != "deploy-denied"])
def test_each_example_is_allowed_by_the_default_bundle(policy: CompiledPolicy, name: str) -> None:
    document = _example(name)
    assert document["gate"] == name
    assert document["input_version"] == INPUT_VERSION
    decision = policy.evaluate(name, document)
    assert decision.allow, decision.reasons
    assert decision.reasons == ()


def test_the_denied_example_is_denied_for_each_documented_reason(policy: CompiledPolicy) -> None:
    decision = policy.evaluate("deploy", _example("deploy-denied"))
    assert not decision.allow
    text = "\n".join(decision.reasons)
    for needle in (
        "past its retention",
        "no signature that verifies",
        "needs 3 approvals",
        "segregation of duties",
        "needs an approval by a data-steward",
        "validation attestation",
        "purpose limitation",
        "needs a verified membership-inference attestation",
    ):
        assert needle in text
    assert len(decision.reasons) == 7


@pytest.mark.parametrize("name", [n for n in NAMES if n != "deploy-denied"])
def test_removing_any_top_level_object_denies(policy: CompiledPolicy, name: str) -> None:
    """A missing input field is a deny with a reason, never an allow or a crash."""
    document = _example(name)
    if name == "rollout" and document["rollout"]["action"] in {"kill", "rollback", "pause"}:
        pytest.skip("safety actions are always allowed")
    informational = {"current"}  # policy_change: the bundle being replaced, for the record
    for key in [k for k, v in document.items() if isinstance(v, dict) and k not in informational]:
        broken = {k: v for k, v in document.items() if k != key}
        decision = policy.evaluate(name, broken)
        assert not decision.allow, key
        assert decision.reasons, key
