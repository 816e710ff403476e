"""Evaluate a bundle's gates in-process with regopy (rego-cpp), compiled once and re-used.

Test modules (those defining `test_*` rules) are left out: decisions never depend on them,
and rego-cpp can crash compiling some test constructs. For every gate `G` the engine adds
its own wrapper module (package `bastion_engine.G`, reserved) that reads the bundle's
`data.bastion.gates.G.allow` and `.deny`, and compiles one regopy bundle with an entry point
per gate. A decision **allows only** when `allow` is exactly `true`, `deny` is a set (or
undefined) of strings and it is empty; an undefined result, an error (built-in errors are
strict: a failing built-in fails the evaluation rather than making a deny rule silently
undefined), a non-boolean `allow`,
a `deny` that is not a set of strings, or an output that does not parse as the expected JSON
all **deny** with a reason saying so.

Results are read only through `str(output)` parsed as JSON: regopy's `.expressions()` on an
undefined result aborts the process (an uncaught C++ exception), so it is never called.
regopy interpreters are not thread-safe; one lock per compiled policy serialises
evaluations (about 0.1 ms each).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bastion.core.canonical import canonical_json
from bastion.core.errors import InvalidInput
from bastion.policy.bundle import GATES, RESERVED_PACKAGE, PolicyBundle
from bastion.policy.errors import PolicyError

MAX_INPUT_BYTES = 1024 * 1024
INPUT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Decision:
    """One gate's answer, with what it was based on (recorded in the ledger)."""

    gate: str
    allow: bool
    reasons: tuple[str, ...]
    bundle_digest: str
    input_digest: str
    bundle_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "allow": self.allow,
            "reasons": list(self.reasons),
            "bundle_digest": self.bundle_digest,
            "bundle_version": self.bundle_version,
            "input_digest": self.input_digest,
        }


def _wrapper(gate: str) -> str:
    return f"""package {RESERVED_PACKAGE}.{gate}
import rego.v1

default allow := false
allow := data.bastion.gates.{gate}.allow

default deny_type := "undefined"
deny_type := type_name(data.bastion.gates.{gate}.deny)

deny := [m | some m in data.bastion.gates.{gate}.deny]

decision := {{"allow": allow, "deny": deny, "deny_type": deny_type}}
"""


def input_digest(document: Mapping[str, Any]) -> str:
    return f"sha256:{hashlib.sha256(canonical_json(dict(document))).hexdigest()}"


class CompiledPolicy:
    """A bundle compiled for evaluation. Raises `PolicyError` (`policy.syntax`) when a module
    does not compile."""

    def __init__(self, bundle: PolicyBundle, *, version: int | None = None) -> None:
        from regopy import Interpreter, RegoError

        self.bundle = bundle
        self.version = version
        self._lock = threading.Lock()
        builder = Interpreter()
        try:
            for path, source in sorted(bundle.policy_modules().items()):
                builder.add_module(path, source)
            for gate in GATES:
                builder.add_module(f"{RESERVED_PACKAGE}/{gate}.rego", _wrapper(gate))
            builder.add_data_json(json.dumps(dict(bundle.data)))
            compiled = builder.build(
                None, [f"{RESERVED_PACKAGE}/{gate}/decision" for gate in GATES]
            )
        except RegoError as error:
            raise PolicyError(
                f"the policy bundle does not compile: {rego_error_text(str(error))}",
                code="policy.syntax",
            ) from error
        if not compiled.ok():
            raise PolicyError("the policy bundle does not compile", code="policy.syntax")
        self._compiled = compiled
        self._runner = Interpreter()
        # A built-in that fails (1/0, to_number("x"), ...) is an error, not an undefined value:
        # otherwise a deny rule that errors would silently vanish and the gate would allow.
        self._runner.strict_built_in_errors = True

    @property
    def digest(self) -> str:
        return self.bundle.digest

    def evaluate(self, gate: str, document: Mapping[str, Any]) -> Decision:
        """The decision of `gate` for input `document` (a JSON object)."""
        from regopy import Input, RegoError

        if gate not in GATES:
            raise PolicyError(
                f"unknown gate {gate[:64]!r}; gates: {', '.join(GATES)}",
                code="policy.unknown_gate",
            )
        if not isinstance(document, Mapping):
            raise InvalidInput("a policy input must be a JSON object", code="policy.bad_input")
        try:
            encoded = canonical_json(dict(document))
        except (InvalidInput, TypeError, ValueError) as error:
            raise InvalidInput(
                "the policy input is not plain JSON", code="policy.bad_input"
            ) from error
        if len(encoded) > MAX_INPUT_BYTES:
            raise InvalidInput(
                f"the policy input is larger than {MAX_INPUT_BYTES} bytes", code="policy.bad_input"
            )
        digest = f"sha256:{hashlib.sha256(encoded).hexdigest()}"

        def deny(reason: str) -> Decision:
            return Decision(gate, False, (reason,), self.digest, digest, self.version)

        try:
            with self._lock:
                self._runner.set_input(Input(json.loads(encoded)))
                output = self._runner.query_bundle_entrypoint(
                    self._compiled, f"{RESERVED_PACKAGE}/{gate}/decision"
                )
                failed = not output.ok()
                raw = str(output)
        except RegoError as error:
            return deny(f"the policy failed to evaluate: {rego_error_text(str(error))}")
        except Exception as error:  # noqa: BLE001 - regopy's own output parsing can fail too
            # regopy writes strings into its JSON output unescaped, so a result holding a
            # quote or backslash does not parse (a JSONDecodeError from inside regopy).
            return deny(f"the policy's result could not be read ({type(error).__name__})")
        if failed:
            return deny(f"the policy failed to evaluate (a built-in raised an error): {raw[:200]}")
        try:
            out = json.loads(raw)
            (result,) = out["expressions"]
        except (ValueError, KeyError, TypeError):
            return deny("the policy gave no decision (undefined or an evaluation error)")
        if not isinstance(result, dict):
            return deny("the policy gave no decision")
        allow, reasons, kind = result.get("allow"), result.get("deny"), result.get("deny_type")
        if kind not in ("set", "undefined"):
            return deny(f"the policy's deny is a {kind}, not a set of messages")
        if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
            return deny("the policy's deny messages are not all strings")
        if not isinstance(allow, bool):
            return deny("the policy's allow is not a boolean")
        unique = tuple(sorted(set(reasons)))
        if allow is True and not unique:
            return Decision(gate, True, (), self.digest, digest, self.version)
        if not unique:
            unique = (f"gate {gate}: no rule allowed it",)
        return Decision(gate, False, unique, self.digest, digest, self.version)


_REGO_ERROR = re.compile(r"\(error \d+:([^|\s]*)\|(\d+)\|\d+\s*\(errormsg \d+:([^)]*)\)")


def rego_error_text(text: str) -> str:
    """rego-cpp's error AST (`(rego-errorseq (error 9:file|38|2 (errormsg 16:...)))`) as
    `file (offset 38): message; ...`, or the raw text shortened when it has no such shape."""
    found = [f"{f} (offset {o}): {m.strip()}" for f, o, m in _REGO_ERROR.findall(text)]
    return _short("; ".join(found) if found else text)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 500 else text[:500] + "..."
