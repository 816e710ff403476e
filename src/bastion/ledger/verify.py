"""Replaying a log to check it: the one verification core behind `bastion audit verify`,
both against the database and against an exported bundle with no database at all.

`LogReplay` takes leaves in index order and checkpoints in size order and raises a
`TamperError` (or `SignatureError`) at the first thing that does not add up, naming the
index and the expected and computed values. Consistency between checkpoints follows from
replay: every checkpoint's root must equal the root recomputed over the same prefix of the
same leaves, so two checkpoints can only both pass if the later one extends the earlier.

Imports only `bastion.ledger.merkle`, `.note` and `.errors`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from bastion.ledger.errors import MalformedNoteError, TamperError
from bastion.ledger.merkle import CompactRange, leaf_hash
from bastion.ledger.note import Checkpoint, NoteVerifier

BUNDLE_FORMAT = "bastion-ledger-bundle/v1"


@dataclass(frozen=True)
class VerifyReport:
    """What a successful verification covered."""

    size: int
    root: bytes
    checkpoints: int
    nodes: int = 0
    queued: int = 0
    # Leaves whose body a retention rule removed (prediction log only): their stored leaf
    # hashes, which the signed roots vouch for, stood in for them.
    expired: int = 0

    def summary(self) -> dict[str, int | str]:
        """The figures `bastion audit verify --json` and the dashboards report."""
        return {
            "size": self.size,
            "root": self.root.hex(),
            "checkpoints": self.checkpoints,
            "nodes": self.nodes,
            "queued": self.queued,
        }


@dataclass
class LogReplay:
    """Rebuild the tree leaf by leaf and hold every claim about it to account."""

    verifier: NoteVerifier
    origin: str
    _range: CompactRange = field(default_factory=CompactRange)
    _checkpoints: int = 0
    _last_checkpoint: int = -1
    _expired: int = 0

    @property
    def size(self) -> int:
        return self._range.size

    @property
    def last_checkpoint(self) -> int:
        """Size of the newest checkpoint checked so far (-1 before any)."""
        return self._last_checkpoint

    def root(self) -> bytes:
        return self._range.root()

    def leaf(
        self, index: int, body: bytes, stored_hash: bytes | None = None
    ) -> Sequence[tuple[int, int, bytes]]:
        """Add the leaf at `index`; return the perfect nodes it completes (level 0 included)."""
        if index != self._range.size:
            raise TamperError(
                f"entry index {index} found where {self._range.size} was expected "
                "(an entry was deleted, inserted or reordered)",
                details={"index": self._range.size, "expected": self._range.size, "found": index},
            )
        computed = leaf_hash(body)
        if stored_hash is not None and stored_hash != computed:
            raise TamperError(
                f"entry {index}: stored leaf hash {stored_hash.hex()} but its body hashes to "
                f"{computed.hex()} (the entry was edited)",
                details={"index": index, "expected": stored_hash.hex(), "computed": computed.hex()},
            )
        return self._range.append(computed)

    def expired_leaf(self, index: int, stored_hash: bytes) -> Sequence[tuple[int, int, bytes]]:
        """Add leaf `index` whose body a retention rule removed: its stored hash stands in.

        The hash can no longer be checked against a body, but the signed roots still vouch
        for it. Retention removes the oldest bodies first, so expired leaves must be a prefix
        of the log: one after a leaf that still has its body is a deletion, not expiry.
        """
        if index != self._range.size:
            raise TamperError(
                f"entry index {index} found where {self._range.size} was expected "
                "(an entry was deleted, inserted or reordered)",
                details={"index": self._range.size, "expected": self._range.size, "found": index},
            )
        if self._expired != index:
            raise TamperError(
                f"entry {index} has no body but entry {self._expired} before it does (retention "
                "removes only the oldest bodies; this one was deleted)",
                details={"index": index},
            )
        if len(stored_hash) != 32:
            raise TamperError(
                f"entry {index}: stored leaf hash is {len(stored_hash)} bytes, not 32",
                details={"index": index},
            )
        self._expired += 1
        return self._range.append(stored_hash)

    def checkpoint(self, note: str, *, size: int | None = None, root: bytes | None = None) -> None:
        """Check a signed checkpoint whose size equals the number of leaves replayed so far.

        `size`/`root`, when given, are the values stored beside the note; they must agree
        with the signed text too.
        """
        parsed = self._signed(note)
        if parsed.size != self._range.size:
            raise TamperError(
                f"checkpoint of size {parsed.size} checked at size {self._range.size}",
                details={"index": self._range.size},
            )
        if (size is not None and size != parsed.size) or (root is not None and root != parsed.root):
            raise TamperError(
                f"checkpoint {parsed.size}: stored size/root differ from the signed note",
                details={"index": parsed.size},
            )
        computed = self._range.root()
        if parsed.root != computed:
            raise TamperError(
                f"checkpoint {parsed.size}: signed root {parsed.root.hex()} but the entries "
                f"give {computed.hex()} (the log was altered after this checkpoint was signed)",
                details={
                    "index": parsed.size - 1,
                    "expected": parsed.root.hex(),
                    "computed": computed.hex(),
                },
            )
        self._checkpoints += 1
        self._last_checkpoint = parsed.size

    def _signed(self, note: str) -> Checkpoint:
        parsed = self.verifier.verify(note)
        if parsed.origin != self.origin:
            raise TamperError(
                f"checkpoint from origin {parsed.origin!r}, expected {self.origin!r}",
                details={"expected": self.origin, "computed": parsed.origin},
            )
        return parsed

    def finish(self) -> VerifyReport:
        return VerifyReport(
            size=self.size, root=self.root(), checkpoints=self._checkpoints, expired=self._expired
        )


def check_trusted(
    replay_root_at: Callable[[int], bytes],
    current_size: int,
    trusted_note: str,
    verifier: NoteVerifier,
    origin: str,
) -> Checkpoint:
    """A checkpoint the client saved earlier must still hold: the log may only have grown.

    `replay_root_at(size)` gives the current log's root over its first `size` entries. Raises
    `TamperError` on a rollback (the log is now smaller) or a fork (a different root).
    """
    trusted = verifier.verify(trusted_note)
    if trusted.origin != origin:
        raise TamperError(f"trusted checkpoint is for origin {trusted.origin!r}, not {origin!r}")
    if trusted.size > current_size:
        raise TamperError(
            f"rollback: the log has {current_size} entries but a trusted checkpoint "
            f"signed {trusted.size}",
            details={"index": current_size, "expected": trusted.size, "computed": current_size},
        )
    computed = replay_root_at(trusted.size)
    if computed != trusted.root:
        raise TamperError(
            f"fork: the first {trusted.size} entries now give root {computed.hex()}, "
            f"the trusted checkpoint signed {trusted.root.hex()}",
            details={
                "index": trusted.size - 1,
                "expected": trusted.root.hex(),
                "computed": computed.hex(),
            },
        )
    return trusted


def write_bundle(
    out: IO[str],
    *,
    origin: str,
    vkey: str,
    entries: Iterable[tuple[int, bytes]],
    checkpoints: Iterable[str],
) -> None:
    """Stream a bundle: JSON with origin, verifier key, checkpoints and entries (index, body).

    Bodies are the canonical-JSON bytes as UTF-8 text, so the bundle re-hashes exactly.
    """
    head = {"format": BUNDLE_FORMAT, "origin": origin, "vkey": vkey}
    out.write(json.dumps(head)[:-1])
    out.write(f', "checkpoints": {json.dumps(list(checkpoints))}, "entries": [')
    for n, (index, body) in enumerate(entries):
        out.write(("," if n else "") + json.dumps({"index": index, "body": body.decode()}))
    out.write("]}\n")


def verify_bundle(bundle: dict[str, Any], verifier: NoteVerifier) -> VerifyReport:
    """Verify an exported bundle offline against the log's verifier key (not the bundle's own).

    Raises `MalformedNoteError` for a bundle that is not one, `TamperError` or
    `SignatureError` at the first problem.
    """
    if bundle.get("format") != BUNDLE_FORMAT:
        raise MalformedNoteError(f"not a {BUNDLE_FORMAT} bundle")
    origin = bundle.get("origin")
    entries = bundle.get("entries")
    notes = bundle.get("checkpoints")
    if not isinstance(origin, str) or not isinstance(entries, list) or not isinstance(notes, list):
        raise MalformedNoteError("bundle lacks origin, entries or checkpoints")
    by_size = sorted(((verifier.verify(n).size, n) for n in notes), key=lambda p: p[0])
    replay = LogReplay(verifier=verifier, origin=origin)
    pending: Iterator[tuple[int, str]] = iter(by_size)
    current = next(pending, None)
    while current is not None and current[0] == 0:
        replay.checkpoint(current[1])
        current = next(pending, None)
    for item in entries:
        if not isinstance(item, dict) or not isinstance(item.get("body"), str):
            raise MalformedNoteError("bundle entry must be {index, body}")
        replay.leaf(int(item["index"]), item["body"].encode())
        while current is not None and current[0] == replay.size:
            replay.checkpoint(current[1])
            current = next(pending, None)
    if current is not None:
        raise TamperError(
            f"checkpoint of size {current[0]} but the bundle holds only {replay.size} entries "
            "(entries were removed)",
            details={"index": replay.size},
        )
    return replay.finish()
