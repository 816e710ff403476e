"""The dashboards' static files, read once from the package and served from memory.

Only files under `static/` whose names match `NAME` are served, each with a content type
fixed by its extension; nothing is looked up on disk per request, so a request path can never
reach outside the package. Every answer carries `HEADERS`: a Content-Security-Policy that
allows scripts, styles, images and API calls from this origin only (no inline script or
style, no `eval`, Trusted Types required so no string can become markup) and no framing;
`EdgeMiddleware` adds `nosniff`, `no-store` and the other edge headers to every response.

Imports nothing from Bastion.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from types import MappingProxyType
from typing import Final

NAME: Final = re.compile(r"^(?:[a-z0-9][a-z0-9_-]*/)*[a-z0-9][a-z0-9_.-]*\.(html|css|js|svg)$")
TYPES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "html": "text/html; charset=utf-8",
        "css": "text/css; charset=utf-8",
        "js": "text/javascript; charset=utf-8",
        "svg": "image/svg+xml",
    }
)
INDEX: Final = "index.html"
CSP: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {"Content-Security-Policy": CSP, "Cross-Origin-Opener-Policy": "same-origin"}
)
_MAX_FILES: Final = 200


@dataclass(frozen=True)
class Asset:
    name: str
    body: bytes
    content_type: str


def _walk(folder: Traversable, prefix: str = "") -> dict[str, Asset]:
    found: dict[str, Asset] = {}
    for item in folder.iterdir():
        name = f"{prefix}{item.name}"
        if item.is_dir():
            found.update(_walk(item, f"{name}/"))
            continue
        match = NAME.match(name)
        if match is None:
            continue
        found[name] = Asset(name, item.read_bytes(), TYPES[match.group(1)])
        if len(found) > _MAX_FILES:
            raise RuntimeError(f"more than {_MAX_FILES} dashboard assets")
    return found


@cache
def assets() -> Mapping[str, Asset]:
    """Every servable file, by its path under `static/` (`index.html`, `views/oncall.js`)."""
    found = _walk(resources.files("bastion.ui").joinpath("static"))
    if INDEX not in found:
        raise RuntimeError("the dashboards' index.html is missing from the package")
    return MappingProxyType(found)


def digest() -> str:
    """SHA-256 over every servable file's name and bytes: what the README's screenshots
    (docs/screenshots, made by `make screenshots`) were taken of, so a test can tell when the
    pages changed and the pictures did not."""
    h = hashlib.sha256()
    for name, asset in sorted(assets().items()):
        h.update(f"{name}\0{len(asset.body)}\0".encode())
        h.update(asset.body)
    return h.hexdigest()
