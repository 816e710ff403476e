"""The isolated child process for untrusted policy work: `python -m bastion.policy.child`.

rego-cpp can kill its process on some inputs (a segfault on `with input as {...}` over rules
that call rules, an uncaught C++ exception elsewhere). Running a bundle's own tests, and a
first evaluation of every gate of a bundle about to be applied, happen here, so a crash is a
reported failure rather than a dead server. Reads one JSON request on stdin and writes one
JSON line per result on stdout, flushed, so the parent knows how far it got.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _tests(request: dict[str, Any]) -> None:
    """Compile every module once, with one entry point per test, then run each test: 50x
    faster than one `query()` per test, which recompiles every module each time."""
    from regopy import Input, Interpreter, RegoError

    from bastion.policy.engine import rego_error_text

    builder = Interpreter()
    points = [f"{package.replace('.', '/')}/{rule}" for package, rule in request["tests"]]
    try:
        for path, source in sorted(request["modules"].items()):
            builder.add_module(path, source)
        builder.add_data_json(json.dumps(request["data"]))
        bundle = builder.build(None, points)
    except RegoError as error:
        why = rego_error_text(str(error))
        for package, rule in request["tests"]:
            _emit({"test": [package, rule], "status": "error", "message": why})
        return
    runner = Interpreter()
    runner.strict_built_in_errors = True  # the semantics decisions are made with
    runner.set_input(Input({}))
    for (package, rule), point in zip(request["tests"], points, strict=True):
        try:
            raw = str(runner.query_bundle_entrypoint(bundle, point))
        except Exception as error:  # noqa: BLE001 - regopy raises RegoError or its own JSON errors
            _emit({"test": [package, rule], "status": "error", "message": str(error)[:500]})
            continue
        try:
            (value,) = json.loads(raw)["expressions"]
        except (ValueError, KeyError, TypeError):
            value = None
        status = "passed" if value is True else "failed"
        _emit(
            {
                "test": [package, rule],
                "status": status,
                "message": "" if value is True else raw[:200],
            }
        )


def _check(request: dict[str, Any]) -> None:
    from bastion.policy.bundle import PolicyBundle
    from bastion.policy.engine import CompiledPolicy

    bundle = PolicyBundle.from_files(
        {**request["modules"], "data.json": json.dumps(request["data"])}
    )
    compiled = CompiledPolicy(bundle)
    for gate, document in request["inputs"]:
        _emit({"gate": gate, "decision": compiled.evaluate(gate, document).to_dict()})


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def main() -> None:
    from bastion.core.errors import BastionError

    request = json.loads(sys.stdin.read())
    try:
        if request["mode"] == "test":
            _tests(request)
        else:
            _check(request)
    except BastionError as error:
        _emit({"error": {"code": error.code, "message": error.message}})
    _emit({"done": True})


if __name__ == "__main__":
    main()
