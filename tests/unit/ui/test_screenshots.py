"""The README's dashboard screenshots (docs/screenshots) are of the pages the package serves
now: `make screenshots` takes them in the browser test and records the digest of the assets
they picture; when the pages change, this fails until they are taken again."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from bastion.ui import assets

ROOT = Path(__file__).resolve().parents[3]
SHOTS = ROOT / "docs" / "screenshots"
VIEWS = ("executive", "oncall", "debug", "governance")


def test_every_dashboard_has_a_screenshot_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(docs/screenshots/([a-z-]+)\.jpeg\)", readme))
    assert linked == set(VIEWS)
    for view in VIEWS:
        picture = SHOTS / f"{view}.jpeg"
        assert picture.read_bytes()[:3] == b"\xff\xd8\xff", picture  # a JPEG
        assert picture.stat().st_size < 400_000, f"{picture} is too big for the repository"


def test_the_screenshots_picture_the_current_pages() -> None:
    recorded = (SHOTS / "ui-assets.sha256").read_text(encoding="ascii").strip()
    assert recorded == assets.digest(), (
        "the dashboards' files changed since docs/screenshots was taken: run `make screenshots`"
    )


def test_the_digest_changes_with_any_file(monkeypatch: pytest.MonkeyPatch) -> None:
    served = dict(assets.assets())
    before = assets.digest()
    name = sorted(served)[0]
    changed = {**served, name: replace(served[name], body=served[name].body + b" ")}
    monkeypatch.setattr(assets, "assets", lambda: MappingProxyType(changed))
    assert assets.digest() != before
