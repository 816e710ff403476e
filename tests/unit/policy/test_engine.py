"""The engine fails closed: only an exact `allow: true` with an empty set of deny messages
allows; everything else (undefined, errors, wrong types, bad output) denies with a reason.
Bundles are validated before they compile; a bundle's tests and its first evaluation run in
a child process, so a rego-cpp crash is a reported failure, not a dead server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.core.errors import InvalidInput
from bastion.policy import GATES, CompiledPolicy, PolicyBundle, PolicyError, check_gates, run_tests
from bastion.policy.engine import MAX_INPUT_BYTES

HEAD = "package bastion.gates.deploy\nimport rego.v1\n"


def _policy(source: str, **extra: str) -> CompiledPolicy:
    return CompiledPolicy(PolicyBundle.from_files({"deploy.rego": HEAD + source, **extra}))


STANDARD = """
default allow := false
deny contains "unsigned" if { not input.signed }
deny contains "needs approvals" if { count(input.approvals) < 2 }
allow if { count(deny) == 0 }
"""


def test_allow_only_when_allow_is_true_and_nothing_denies() -> None:
    policy = _policy(STANDARD)
    ok = policy.evaluate("deploy", {"signed": True, "approvals": ["a", "b"]})
    assert ok.allow
    assert ok.reasons == ()
    assert ok.bundle_digest == policy.digest
    assert ok.input_digest.startswith("sha256:")
    denied = policy.evaluate("deploy", {"signed": False, "approvals": []})
    assert not denied.allow
    assert denied.reasons == ("needs approvals", "unsigned")


def test_same_input_same_digest_and_key_order_does_not_matter() -> None:
    policy = _policy(STANDARD)
    a = policy.evaluate("deploy", {"signed": True, "approvals": ["a", "b"]})
    b = policy.evaluate("deploy", {"approvals": ["a", "b"], "signed": True})
    assert a.input_digest == b.input_digest


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("", "no rule allowed it"),  # no allow rule at all: undefined
        ("allow if { input.nope == 1 }\n", "no rule allowed it"),  # undefined allow
        ('allow := "yes"\n', "allow is not a boolean"),
        ("allow := 1\n", "allow is not a boolean"),
        ("allow := true\ndeny := true\n", "deny is a boolean"),
        ('allow := true\ndeny := ["a"]\n', "deny is a array"),
        ("allow := true\ndeny contains 7 if { true }\n", "not all strings"),
        # A deny rule whose built-in fails (1/0) must not vanish and let the gate allow.
        ("allow := true\ndeny contains msg if { msg := input.a / input.b }\n", "failed to"),
        ("allow if { x := input.a / input.b; x > 0 }\n", "failed to evaluate"),
        ('allow := true\ndeny contains "x" if { true }\n', "x"),
    ],
)
def test_everything_else_denies_with_a_reason(source: str, reason: str) -> None:
    decision = _policy(source).evaluate("deploy", {"a": 1, "b": 0})
    assert not decision.allow
    assert any(reason in r for r in decision.reasons), decision.reasons


def test_gates_without_rules_deny() -> None:
    policy = _policy("allow := true\n")
    for gate in GATES:
        if gate != "deploy":
            assert not policy.evaluate(gate, {}).allow


def test_unknown_gate_and_bad_inputs_are_errors() -> None:
    policy = _policy(STANDARD)
    with pytest.raises(PolicyError) as caught:
        policy.evaluate("launch", {})
    assert caught.value.code == "policy.unknown_gate"
    for bad in ({"x": float("nan")}, {"x": {1, 2}}, ["not", "an", "object"]):
        with pytest.raises(InvalidInput) as invalid:
            policy.evaluate("deploy", bad)  # type: ignore[arg-type]
        assert invalid.value.code == "policy.bad_input"
    with pytest.raises(InvalidInput, match="larger than"):
        policy.evaluate("deploy", {"x": "a" * MAX_INPUT_BYTES})


def test_syntax_errors_are_refused() -> None:
    with pytest.raises(PolicyError) as caught:
        _policy("allow if {\n")
    assert caught.value.code == "policy.syntax"


@pytest.mark.parametrize(
    ("files", "needle"),
    [
        ({}, "empty"),
        ({"../x.rego": HEAD}, "bad file name"),
        ({"/abs.rego": HEAD}, "bad file name"),
        ({"a/./b.rego": HEAD}, "bad file name"),
        ({"x.rego": b"\xff\xfe"}, "not UTF-8"),
        ({"x.rego": "allow := true\n"}, "declares no package"),
        ({"x.rego": "package bastion_engine.deploy\nallow := true\n"}, "reserved"),
        ({"x.rego": HEAD, "notes.txt": "hi"}, "only .rego files"),
        ({"data.json": "{}"}, "no .rego modules"),
        ({"x.rego": HEAD, "data.json": "[1]"}, "JSON object"),
        ({"x.rego": HEAD, "data.json": "{nope"}, "not JSON"),
    ],
)
def test_bad_bundles_are_refused(files: dict[str, str | bytes], needle: str) -> None:
    with pytest.raises(PolicyError) as caught:
        PolicyBundle.from_files(files)
    assert caught.value.code == "policy.invalid_bundle"
    assert needle in caught.value.message


def test_bundle_limits() -> None:
    many = {f"m{i}.rego": f"package p{i}\n" for i in range(501)}
    with pytest.raises(PolicyError, match="at most 500"):
        PolicyBundle.from_files(many)
    with pytest.raises(PolicyError, match="larger than"):
        PolicyBundle.from_files({"big.rego": "package big\n" + "#" * (5 * 1024 * 1024)})


def test_load_dir_round_trips_and_refuses_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    (root / "gates").mkdir(parents=True)
    (root / "gates" / "deploy.rego").write_text(HEAD + STANDARD)
    (root / "data.json").write_text(json.dumps({"bastion": {"config": {"x": 1}}}))
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    bundle = PolicyBundle.load_dir(root)
    assert set(bundle.modules) == {"gates/deploy.rego"}
    assert bundle.data == {"bastion": {"config": {"x": 1}}}
    again = PolicyBundle.from_files(bundle.files())
    assert again.digest == bundle.digest
    (root / "link.rego").symlink_to(root / "gates" / "deploy.rego")
    with pytest.raises(PolicyError, match="not a regular file"):
        PolicyBundle.load_dir(root)


def test_data_json_reaches_the_policy() -> None:
    source = """
default allow := false
allow if { count(input.approvals) >= data.bastion.config.quorum }
"""
    strict = _policy(source, **{"data.json": '{"bastion": {"config": {"quorum": 3}}}'})
    lax = _policy(source, **{"data.json": '{"bastion": {"config": {"quorum": 1}}}'})
    assert not strict.evaluate("deploy", {"approvals": ["a"]}).allow
    assert lax.evaluate("deploy", {"approvals": ["a"]}).allow
    assert strict.digest != lax.digest


TESTS = """package t
import rego.v1
import data.bastion.gates.deploy
test_ok if { deploy.allow with input.signed as true with input.approvals as ["a", "b"] }
test_fails if { deploy.allow with input.signed as false with input.approvals as [] }
test_reason if { "unsigned" in deploy.deny with input.signed as false with input.approvals as [] }
"""
CRASHING = """package t2
import rego.v1
import data.bastion.gates.deploy
test_whole_input if { deploy.allow with input as {"signed": true, "approvals": ["a", "b"]} }
test_after_it if { true }
"""


def test_bundle_tests_run_isolated_and_a_crash_is_reported() -> None:
    bundle = PolicyBundle.from_files(
        {"deploy.rego": HEAD + STANDARD, "t_test.rego": TESTS, "t2_test.rego": CRASHING}
    )
    report = run_tests(bundle)
    status = {r.name: r.status for r in report.results}
    assert status == {
        "data.t.test_ok": "passed",
        "data.t.test_fails": "failed",
        "data.t.test_reason": "passed",
        "data.t2.test_whole_input": "crashed",
        "data.t2.test_after_it": "crashed",
    }
    assert not report.ok
    assert report.summary() == {"passed": 2, "failed": 1, "errors": 2}
    # Test modules are not part of what decisions are made from, so they cannot crash it.
    assert set(bundle.policy_modules()) == {"deploy.rego"}
    assert CompiledPolicy(bundle).evaluate("deploy", {"signed": True, "approvals": [1, 2]}).allow


def test_a_bundle_without_tests_is_not_ok() -> None:
    report = run_tests(PolicyBundle.from_files({"deploy.rego": HEAD + STANDARD}))
    assert report.results == ()
    assert not report.ok


def test_check_gates_evaluates_in_a_child_and_reports_crashes() -> None:
    bundle = PolicyBundle.from_files({"deploy.rego": HEAD + STANDARD})
    (decision,) = check_gates(bundle, [("deploy", {"signed": True, "approvals": [1, 2]})])
    assert decision.allow
    crashing = PolicyBundle.from_files(
        {
            "deploy.rego": HEAD
            + STANDARD
            + 'probe if { allow with input as {"signed": true, "approvals": [1, 2]} }\n'
        }
    )
    with pytest.raises(PolicyError) as caught:
        check_gates(crashing, [("deploy", {})])
    assert caught.value.code == "policy.engine_crashed"


def test_a_result_regopy_cannot_render_denies() -> None:
    # regopy writes strings unescaped into its JSON output; a deny message echoing a quote
    # from the input makes that output unreadable, which must deny, not crash.
    policy = _policy(
        'allow := true\ndeny contains msg if { msg := concat("", ["bad ", input.name]) }\n'
    )
    decision = policy.evaluate("deploy", {"name": 'quote " and \\ backslash'})
    assert not decision.allow
    assert "could not be read" in decision.reasons[0]
