"""Latency of a deploy-gate decision with the packaged default bundle.

    .venv/bin/python bench/policy.py [--n 5000]

Compiles the default bundle once, then times `CompiledPolicy.evaluate("deploy", doc)` on the
allowed example input (`src/bastion/policy/examples/deploy.json`) and on the denied one: each
call canonicalizes and hashes the input (its digest is what the ledger records), sets it on
the interpreter, runs the compiled entry point and checks the result's shape. Baselines in the
same run: the bare regopy call on the same compiled bundle and input (set_input +
query_bundle_entrypoint + str), and a one-rule `allow := true` bundle through the same
engine. Reports the median and p99 of single decisions and the wall time of 1,000 decisions
in a row (median of 5 batches). Target: deploy decision <= 200 us median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from regopy import Input

from bastion.policy import CompiledPolicy, PolicyBundle


def _example(name: str) -> dict[str, Any]:
    text = resources.files("bastion.policy").joinpath("examples", f"{name}.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _times(run: Callable[[], object], n: int) -> list[float]:
    for _ in range(200):
        run()
    out = []
    for _ in range(n):
        start = time.perf_counter_ns()
        run()
        out.append((time.perf_counter_ns() - start) / 1000)
    return out


def _report(label: str, samples: list[float]) -> float:
    ordered = sorted(samples)
    median = statistics.median(ordered)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    print(f"  {label:<44} median {median:7.1f} us   p99 {p99:7.1f} us")
    return median


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    policy = CompiledPolicy(PolicyBundle.default())
    allowed, denied = _example("deploy"), _example("deploy-denied")
    assert policy.evaluate("deploy", allowed).allow, policy.evaluate("deploy", allowed)
    assert not policy.evaluate("deploy", denied).allow
    trivial = CompiledPolicy(
        PolicyBundle.from_files(
            {"t.rego": "package bastion.gates.deploy\nimport rego.v1\nallow := true\n"}
        )
    )
    raw = policy._runner
    compiled = policy._compiled

    def bare() -> str:
        raw.set_input(Input(allowed))
        return str(raw.query_bundle_entrypoint(compiled, "bastion_engine/deploy/decision"))

    def query_only() -> str:
        return str(raw.query_bundle_entrypoint(compiled, "bastion_engine/deploy/decision"))

    size = len(json.dumps(allowed, separators=(",", ":")))
    print(f"deploy gate, default bundle {policy.digest[:19]}…, {args.n} decisions each")
    print(f"  example input: {size} bytes of JSON")
    base = _report("baseline: bare regopy set_input + query", _times(bare, args.n))
    _report("  of which regopy Input() conversion", _times(lambda: Input(allowed), args.n))
    raw.set_input(Input(allowed))
    _report("  of which the query (input already set)", _times(query_only, args.n))
    _report(
        "baseline: allow := true through the engine",
        _times(lambda: trivial.evaluate("deploy", allowed), args.n),
    )
    ours = _report(
        "deploy decision, allowed input", _times(lambda: policy.evaluate("deploy", allowed), args.n)
    )
    _report(
        "deploy decision, denied input (4+ reasons)",
        _times(lambda: policy.evaluate("deploy", denied), args.n),
    )
    batches = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(1000):
            policy.evaluate("deploy", allowed)
        batches.append(time.perf_counter() - start)
    print(f"  1,000 decisions in a row: median {statistics.median(batches) * 1000:.1f} ms")
    print(
        f"  ratio engine / bare regopy: {ours / base:.2f}x; target <= 200 us: "
        f"{'met' if ours <= 200 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
