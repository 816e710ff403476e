"""Command-line edge (typer). No business rules: parse, authenticate, call a service, print.

Management commands run in-process against the local `BASTION_HOME` with the same services,
permission checks and audit records as the API; they authenticate with the token in
`BASTION_TOKEN` or `--token-file`. Exit codes: 0 ok, 1 internal, 2 invalid input or
configuration, 3 not authenticated or denied, 4 not found, 5 conflict, 6 integrity failure,
7 unavailable.
"""

from bastion.cli.main import app, main

__all__ = ["app", "main"]
