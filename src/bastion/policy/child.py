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
    from regopy import Interpreter, RegoError

    interpreter = Interpreter()
    interpreter.strict_built_in_errors = True  # the semantics decisions are made with
    for path, source in sorted(request["modules"].items()):
        interpreter.add_module(path, source)
    interpreter.add_data_json(json.dumps(request["data"]))
    for package, rule in request["tests"]:
        try:
            raw = str(interpreter.query(f"x := data.{package}.{rule}"))
        except RegoError as error:
            _emit({"test": [package, rule], "status": "error", "message": str(error)[:500]})
            continue
        try:
            value = json.loads(raw)["bindings"]["x"]
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
