"""Browser tests drive Debian's Chromium (`/usr/bin/chromium`, package `chromium`) headless
through Playwright; no browser is ever downloaded (`playwright install` is never run).

Without Chromium or the `playwright` package these tests skip with the reason, unless
BASTION_REQUIRE_BROWSER=1 (set by .ci/run), where they fail instead. Screenshots go to
$BASTION_TEST_ARTIFACTS/browser when that is set, else to the test's temporary directory.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the `playwright` package is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (Debian package `chromium`)"
    return None


@pytest.fixture(scope="session")
def chromium() -> Path:
    reason = _missing()
    if reason is not None:
        if os.environ.get("BASTION_REQUIRE_BROWSER") == "1":
            pytest.fail(f"BASTION_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = os.environ.get("BASTION_TEST_ARTIFACTS")
    folder = Path(base) / "browser" if base else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
