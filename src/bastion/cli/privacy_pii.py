"""`bastion privacy redact`: a PII filter for text streams, no Bastion home or token needed.

Reads standard input line by line and writes each line redacted to standard output, flushing
after every line, so it works at the end of a pipe (`tail -f app.log | bastion privacy
redact`). Bytes that are not UTF-8 are replaced (U+FFFD) and the line is still redacted. Line
endings are kept. A line longer than `MAX_TEXT_CHARS` bytes is read and redacted in pieces of
that size (an entity cut by a piece boundary may then be only partly redacted; with `--json`
each piece is its own object).

`--json` writes one object per line: `{"text": <redacted>, "findings": [{"entity", "start",
"end", "score"}]}`; offsets are characters of the (decoded) input line without its line
ending, and the matched text is never shown.

Exit 0 at the end of input; 2 for bad options (an unknown entity, a score outside [0, 1]).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, BinaryIO

import typer

from bastion.cli.common import exit_unusable
from bastion.core.errors import InvalidInput


def register(group: typer.Typer) -> None:
    """Add `redact` to the `privacy` group."""
    group.command("redact")(redact)


def _line_ending(line: str) -> tuple[str, str]:
    if line.endswith("\r\n"):
        return line[:-2], "\r\n"
    if line.endswith(("\n", "\r")):
        return line[:-1], line[-1]
    return line, ""


def redact(
    style: Annotated[
        str, typer.Option(help="Replacement: tag (<EMAIL_ADDRESS>) or mask (****).")
    ] = "tag",
    entities: Annotated[
        str | None,
        typer.Option(help="Only these entity types, comma-separated (default: all)."),
    ] = None,
    min_score: Annotated[
        float, typer.Option("--min-score", help="Lowest recognizer score that counts (0-1).")
    ] = 0.5,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line, with the findings.")
    ] = False,
) -> None:
    """Redact PII from standard input, line by line, to standard output.

    A pure text filter: needs no token and no Bastion home.

    Finds e-mails, phones, cards, IBANs, IPs, national ids, API keys, JWTs, URL passwords.
    """
    # Presidio takes a second to import: only this command pays for it, not every `bastion`.
    from bastion.privacy.pii import MAX_TEXT_CHARS, STYLES, PiiDetector

    wanted = [e.strip() for e in entities.split(",") if e.strip()] if entities is not None else None
    try:
        if style not in STYLES:
            raise InvalidInput(
                f"unknown style {style!r}: use {' or '.join(STYLES)}", code="privacy.bad_style"
            )
        detector = PiiDetector(min_score=min_score, entities=wanted)
    except InvalidInput as error:
        exit_unusable(f"[{error.code}] {error.message}")
    source: BinaryIO = sys.stdin.buffer
    sink: BinaryIO = sys.stdout.buffer

    def read() -> bytes:
        # A line longer than the detector's limit is read, and redacted, in pieces of that size.
        return source.readline(MAX_TEXT_CHARS)

    for raw in iter(read, b""):
        body, ending = _line_ending(raw.decode("utf-8", errors="replace"))
        text, found = detector.redact_with_findings(body, style=style)
        if as_json:
            document = {"text": text, "findings": [f.public() for f in found]}
            line = json.dumps(document, ensure_ascii=False) + "\n"
        else:
            line = text + ending
        sink.write(line.encode("utf-8", errors="replace"))
        sink.flush()
