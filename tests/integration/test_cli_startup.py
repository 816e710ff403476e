"""Every `bastion` command imports the CLI; the heavy optional parts (Presidio with spaCy, about
2 s; scipy.stats, about 0.5 s) are imported only by the commands and code paths that use them,
so `bastion --help` or `bastion token list` do not pay for them."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("presidio_analyzer", "spacy", "scipy.stats")


def test_the_cli_imports_no_heavy_module_until_a_command_needs_it() -> None:
    probe = (
        "import importlib, json, sys\n"
        "m = importlib.import_module('bastion.cli.main')\n"
        "m._redact_logs()\n"  # what main() does first: the filter is installed, not built
        f"print(json.dumps({{k: k in sys.modules for k in {HEAVY!r}}}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == dict.fromkeys(HEAVY, False)
