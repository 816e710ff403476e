"""Run a bundle's own Rego tests, and trial-evaluate its gates, in isolated child processes.

Tests follow OPA's convention: every rule named `test_*` in any package; a test passes when
it evaluates to `true`. They run in `bastion.policy.child`; if rego-cpp kills the child, the
test it was on is reported as `crashed` and the run resumes in a fresh child with the next
one, so one bad test cannot hide the rest. A whole run is bounded in time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bastion.policy.bundle import PolicyBundle
from bastion.policy.engine import Decision
from bastion.policy.errors import PolicyError

TIMEOUT_SECONDS = 120.0
_CRASHED = (
    "the policy engine (rego-cpp) died on this test or its module; rego-cpp 1.5.2 cannot "
    "evaluate `with input as {...}` over rules that call rules: override input fields one "
    "by one (`with input.x as v`, with `v` a local variable)"
)


@dataclass(frozen=True, slots=True)
class TestResult:
    package: str
    rule: str
    status: str  # passed | failed | error | crashed
    message: str = ""

    @property
    def name(self) -> str:
        return f"data.{self.package}.{self.rule}"


@dataclass(frozen=True, slots=True)
class TestReport:
    results: tuple[TestResult, ...]

    @property
    def passed(self) -> int:
        return sum(r.status == "passed" for r in self.results)

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.results)

    @property
    def errors(self) -> int:
        return sum(r.status in ("error", "crashed") for r in self.results)

    @property
    def ok(self) -> bool:
        return bool(self.results) and self.failed == 0 and self.errors == 0

    def summary(self) -> dict[str, int]:
        return {"passed": self.passed, "failed": self.failed, "errors": self.errors}


def _child(request: Mapping[str, Any], timeout: float) -> tuple[list[dict[str, Any]], bool, str]:
    """(records, finished normally, stderr tail)."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bastion.policy.child"],
            input=json.dumps(request).encode(),
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        out = error.stdout or b""
        records = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
        return records, False, "timed out"
    records = []
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    done = proc.returncode == 0 and bool(records) and records[-1].get("done") is True
    tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
    return records, done, " ".join(tail)[:300]


def run_tests(bundle: PolicyBundle, *, timeout: float = TIMEOUT_SECONDS) -> TestReport:
    """Every `test_*` rule of `bundle`, each passed, failed, errored or crashed.

    All tests first run in one child. rego-cpp compiles every loaded module on the first
    query, so one module it cannot handle kills the child before any test reports; then
    each test module runs in its own child beside the policy modules, and a module that
    still kills its child has its remaining tests reported as crashed."""
    rules = bundle.test_rules()
    results, done = _run(bundle.modules, bundle.data, rules, timeout)
    if done:
        return TestReport(tuple(results))
    finished = {(r.package, r.rule) for r in results}
    policy = bundle.policy_modules()
    for path, source in sorted(bundle.test_modules().items()):
        todo = [t for t in rules if t[0] == path and (t[1], t[2]) not in finished]
        while todo:
            got, done = _run({**policy, path: source}, bundle.data, todo, timeout)
            results.extend(got)
            todo = todo[len(got) :]
            if done or not todo:
                break
            # Nothing reported: the module killed the engine while compiling, so every one
            # of its tests would; otherwise the test it stopped on did, and the rest resume.
            victims = todo if not got else todo[:1]
            results.extend(
                TestResult(package, rule, "crashed", _CRASHED) for _, package, rule in victims
            )
            todo = todo[len(victims) :]
    order = {(p, r): i for i, (_, p, r) in enumerate(rules)}
    return TestReport(tuple(sorted(results, key=lambda r: order[(r.package, r.rule)])))


def _run(
    modules: Mapping[str, str],
    data: Mapping[str, Any],
    rules: Sequence[tuple[str, str, str]],
    timeout: float,
) -> tuple[list[TestResult], bool]:
    request = {
        "mode": "test",
        "modules": dict(modules),
        "data": dict(data),
        "tests": [[p, r] for _, p, r in rules],
    }
    records, done, _ = _child(request, timeout)
    results = []
    for record in records:
        if "error" in record:
            raise PolicyError(record["error"]["message"], code=record["error"]["code"])
        if "test" in record:
            package, rule = record["test"]
            results.append(TestResult(package, rule, record["status"], record["message"]))
    return results, done


def check_gates(
    bundle: PolicyBundle,
    inputs: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    timeout: float = TIMEOUT_SECONDS,
) -> list[Decision]:
    """Compile `bundle` and evaluate each (gate, input) in a child; `PolicyError`
    (`policy.engine_crashed`) if the engine dies, or the child's own error."""
    records, done, stderr = _child(
        {
            "mode": "check",
            "modules": bundle.policy_modules(),
            "data": dict(bundle.data),
            "inputs": [[g, dict(d)] for g, d in inputs],
        },
        timeout,
    )
    for record in records:
        if "error" in record:
            raise PolicyError(record["error"]["message"], code=record["error"]["code"])
    if not done:
        raise PolicyError(
            f"the policy engine crashed evaluating this bundle ({stderr})",
            code="policy.engine_crashed",
        )
    return [
        Decision(
            gate=r["decision"]["gate"],
            allow=r["decision"]["allow"],
            reasons=tuple(r["decision"]["reasons"]),
            bundle_digest=r["decision"]["bundle_digest"],
            input_digest=r["decision"]["input_digest"],
        )
        for r in records
        if "decision" in r
    ]
