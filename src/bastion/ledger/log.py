"""The transparency log service: sequencing, the stored tree, proofs, signed checkpoints.

* `append(session, event)` queues an entry in the caller's transaction (see `events.py`).
* `sequence()` gives queued entries leaf indices in commit order, under one writer lock
  (`pg_advisory_xact_lock` on PostgreSQL; SQLite writers are serialised by BEGIN IMMEDIATE),
  stores every perfect subtree node the batch completes, and signs a checkpoint (C2SP signed
  note) for the new size — all in one transaction, so a crash leaves either the whole batch or
  none of it, and queued entries are never lost. It runs after every committed transaction
  that queued an entry (a post-commit hook) and at start-up.
* Proofs are built from stored perfect subtrees: an inclusion or consistency proof, and the
  roots it is checked against, need O(log n) nodes, fetched in one query.
* `verify()` replays every entry (`verify.LogReplay`) and checks every stored node and every
  checkpoint signature; `export()` writes a bundle that verifies offline.

May import `bastion.store`, `bastion.crypto` and `bastion.core`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bastion.core.clock import Clock
from bastion.core.errors import InvalidInput, NotFound
from bastion.ledger import merkle
from bastion.ledger.errors import MalformedProofError, TamperError
from bastion.ledger.events import QUEUED_MARK, AuditLog, Event, QueuedEntry
from bastion.ledger.note import Checkpoint, NoteSigner, NoteVerifier
from bastion.ledger.verify import LogReplay, VerifyReport, check_trusted, write_bundle
from bastion.store.db import Database
from bastion.store.tables import LedgerCheckpointRow, LedgerEntryRow, LedgerNodeRow

log = logging.getLogger("bastion.ledger")

# Any constant works; it only has to be the same for every replica of one log.
_PG_SEQUENCER_LOCK = 0x4253_544E_4C4F_47
MAX_PAGE = 1000
_MAX_INDEX = sa.text("SELECT max(leaf_index) FROM ledger_entries")
_QUEUED = sa.text("SELECT count(*) FROM ledger_entries WHERE leaf_index IS NULL")


@dataclass(frozen=True)
class SignedCheckpoint:
    size: int
    root: bytes
    note: str
    created_at: datetime


@dataclass(frozen=True)
class InclusionProof:
    index: int
    tree_size: int
    leaf_hash: bytes
    hashes: tuple[bytes, ...]
    root: bytes

    def verify(self) -> None:
        merkle.verify_inclusion(self.index, self.tree_size, self.leaf_hash, self.hashes, self.root)


@dataclass(frozen=True)
class ConsistencyProof:
    first: int
    second: int
    hashes: tuple[bytes, ...]
    first_root: bytes
    second_root: bytes

    def verify(self) -> None:
        merkle.verify_consistency(
            self.first, self.second, self.hashes, self.first_root, self.second_root
        )


@dataclass(frozen=True)
class LogEntry:
    index: int
    body: bytes
    leaf_hash: bytes


class TransparencyLog:
    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        signer: NoteSigner,
        origin: str,
        clock: Clock,
        batch_size: int = 5000,
    ) -> None:
        self._db = database
        self._audit = audit
        self._signer = signer
        self.origin = origin
        self._clock = clock
        self._batch_size = batch_size
        self.verifier = NoteVerifier.from_vkey(signer.verifier_key())

    def verifier_key(self) -> str:
        """The log's public key as a signed-note verifier key (`name+hash+base64`)."""
        return self._signer.verifier_key()

    # -- writing ------------------------------------------------------------------------------

    def append(self, session: Session, event: Event) -> QueuedEntry:
        """Queue `event` in `session`'s transaction; it is sequenced after the commit."""
        return self._audit.append(session, event)

    def on_commit(self, info: dict[str, Any]) -> None:
        """Post-commit hook: sequence if the transaction queued entries."""
        if info.get(QUEUED_MARK):
            self.sequence_pending()

    def sequence_pending(self) -> None:
        """Sequence what is queued; never raises. After a commit the caller's change stands,
        and at start-up the operator must still be able to open Bastion and run
        `audit verify`: a failed run is logged and leaves the entries queued (verify reports
        them)."""
        try:
            self.sequence_all()
        except Exception:  # logged; the next run picks the entries up
            log.exception("sequencing failed; entries stay queued for the next run")

    def sequence_all(self) -> SignedCheckpoint | None:
        """Sequence until nothing is queued; the last checkpoint signed, if any."""
        last = None
        while (checkpoint := self.sequence()) is not None:
            last = checkpoint
        return last

    def sequence(self) -> SignedCheckpoint | None:
        """Sequence up to one batch of queued entries and sign a checkpoint for the new size.

        Returns None when nothing was queued.
        """
        with self._db.transaction() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_SEQUENCER_LOCK)))
            queued = session.execute(
                sa.select(LedgerEntryRow.seq, LedgerEntryRow.body)
                .where(LedgerEntryRow.leaf_index.is_(None))
                .order_by(LedgerEntryRow.seq)
                .limit(self._batch_size)
            ).all()
            if not queued:
                return None
            conn = session.connection()
            size = _size(conn)
            border = merkle.perfect_subtrees(0, size)
            nodes = _nodes(conn, border)
            tree = merkle.CompactRange.from_state(size, [nodes[c] for c in border])
            updates: list[dict[str, Any]] = []
            completed: list[dict[str, Any]] = []
            for seq, body in queued:
                leaf = merkle.leaf_hash(body)
                updates.append({"seq": seq, "leaf_index": tree.size, "leaf_hash": leaf})
                completed.extend(
                    {"level": level, "idx": idx, "hash": digest}
                    for level, idx, digest in tree.append(leaf)
                )
            session.execute(sa.update(LedgerEntryRow), updates)
            session.execute(sa.insert(LedgerNodeRow), completed)
            root = tree.root()
            note = self._signer.sign(Checkpoint(origin=self.origin, size=tree.size, root=root))
            now = self._clock.now()
            session.add(LedgerCheckpointRow(size=tree.size, root=root, note=note, created_at=now))
            return SignedCheckpoint(size=tree.size, root=root, note=note, created_at=now)

    # -- reading ------------------------------------------------------------------------------

    def size(self) -> int:
        with self._db.connect() as conn:
            return _size(conn)

    def queued(self) -> int:
        """Entries committed but not yet sequenced."""
        with self._db.connect() as conn:
            return _queued(conn)

    def latest_checkpoint(self) -> SignedCheckpoint:
        """The newest signed checkpoint. `NotFound` (`ledger.empty`) before the first entry."""
        with self._db.read() as session:
            row = session.scalar(
                sa.select(LedgerCheckpointRow).order_by(LedgerCheckpointRow.size.desc()).limit(1)
            )
            if row is None:
                raise NotFound("the log has no checkpoint yet", code="ledger.empty")
            return SignedCheckpoint(row.size, row.root, row.note, row.created_at)

    def checkpoints(self) -> list[SignedCheckpoint]:
        with self._db.read() as session:
            rows = session.scalars(
                sa.select(LedgerCheckpointRow).order_by(LedgerCheckpointRow.size)
            )
            return [SignedCheckpoint(r.size, r.root, r.note, r.created_at) for r in rows]

    def entries(self, start: int, end: int) -> list[LogEntry]:
        """Sequenced entries with leaf index in [start, end), at most 1000."""
        if start < 0 or end < start:
            raise InvalidInput("need 0 <= start <= end", code="ledger.bad_range")
        if end - start > MAX_PAGE:
            raise InvalidInput(f"at most {MAX_PAGE} entries per page", code="ledger.bad_range")
        with self._db.read() as session:
            rows = session.execute(
                sa.select(LedgerEntryRow.leaf_index, LedgerEntryRow.body, LedgerEntryRow.leaf_hash)
                .where(LedgerEntryRow.leaf_index >= start, LedgerEntryRow.leaf_index < end)
                .order_by(LedgerEntryRow.leaf_index)
            ).all()
        return [LogEntry(int(i), b, h) for i, b, h in rows if i is not None and h is not None]

    def inclusion_proof(self, index: int, tree_size: int) -> InclusionProof:
        """RFC 9162 inclusion proof of leaf `index` in the tree of `tree_size` entries."""
        if not 0 <= index < tree_size:
            raise MalformedProofError(f"need 0 <= index < tree_size (got {index}, {tree_size})")
        plan = [merkle.perfect_subtrees(b, e) for b, e in merkle.inclusion_ranges(index, tree_size)]
        root_plan = merkle.perfect_subtrees(0, tree_size)
        with self._db.connect() as conn:
            nodes = _nodes_and_size(
                conn, [c for p in plan for c in p] + root_plan + [(0, index)], tree_size=tree_size
            )
        return InclusionProof(
            index=index,
            tree_size=tree_size,
            leaf_hash=nodes[(0, index)],
            hashes=tuple(merkle.hash_from_subtrees([nodes[c] for c in p]) for p in plan),
            root=merkle.hash_from_subtrees([nodes[c] for c in root_plan]),
        )

    def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        """RFC 9162 consistency proof that the tree of `second` entries extends `first`."""
        if not 0 <= first <= second:
            raise MalformedProofError(f"need 0 <= first <= second (got {first}, {second})")
        plan = [merkle.perfect_subtrees(b, e) for b, e in merkle.consistency_ranges(first, second)]
        first_plan = merkle.perfect_subtrees(0, first)
        second_plan = merkle.perfect_subtrees(0, second)
        with self._db.connect() as conn:
            nodes = _nodes_and_size(
                conn, [c for p in plan for c in p] + first_plan + second_plan, tree_size=second
            )
        return ConsistencyProof(
            first=first,
            second=second,
            hashes=tuple(merkle.hash_from_subtrees([nodes[c] for c in p]) for p in plan),
            first_root=merkle.hash_from_subtrees([nodes[c] for c in first_plan]),
            second_root=merkle.hash_from_subtrees([nodes[c] for c in second_plan]),
        )

    # -- verification and export ---------------------------------------------------------------

    def verify(self, *, trusted_checkpoint: str | None = None) -> VerifyReport:
        """Replay the whole log: every entry's hash, index continuity, every stored node, every
        checkpoint's signature and root; optionally a checkpoint the caller trusts (rollback and
        fork detection). Raises `TamperError`/`SignatureError` at the first problem."""
        replay = LogReplay(verifier=self.verifier, origin=self.origin)
        nodes_checked = 0
        with self._db.read() as session:
            checkpoints = iter(
                session.execute(
                    sa.select(
                        LedgerCheckpointRow.size, LedgerCheckpointRow.root, LedgerCheckpointRow.note
                    ).order_by(LedgerCheckpointRow.size)
                ).all()
            )
            pending = next(checkpoints, None)
            stored_nodes = _stream_nodes(session)
            entries = session.execute(
                sa.select(LedgerEntryRow.leaf_index, LedgerEntryRow.body, LedgerEntryRow.leaf_hash)
                .where(LedgerEntryRow.leaf_index.is_not(None))
                .order_by(LedgerEntryRow.leaf_index),
                execution_options={"yield_per": 2000},
            )
            for index, body, stored_leaf in entries:
                # Whatever the database hands back is evidence, not trusted input: a body that
                # was rewritten as text must fail as an edit, not crash the verifier.
                raw = body if isinstance(body, bytes) else str(body).encode()
                # The query excludes NULL indices; cast for the type checker only.
                for level, idx, digest in replay.leaf(cast(int, index), raw, stored_leaf):
                    _check_node(next(stored_nodes, None), level, idx, digest)
                    nodes_checked += 1
                while pending is not None and pending.size == replay.size:
                    replay.checkpoint(pending.note, size=pending.size, root=pending.root)
                    pending = next(checkpoints, None)
            extra = next(stored_nodes, None)
            if extra is not None:
                raise TamperError(
                    f"stored node {extra[:2]} lies beyond the {replay.size} entries",
                    details={"index": replay.size},
                )
            if pending is not None:
                raise TamperError(
                    f"checkpoint of size {pending.size} but only {replay.size} entries remain "
                    "(entries were deleted or the log was rolled back)",
                    details={"index": replay.size, "expected": pending.size},
                )
            if replay.size and replay.last_checkpoint != replay.size:
                # Sequencing signs a checkpoint in the same transaction as the entries, so
                # sequenced entries no signature covers were not put there by the sequencer.
                raise TamperError(
                    f"entries {replay.last_checkpoint}..{replay.size - 1} are covered by no "
                    "signed checkpoint (they were added behind the log's back)",
                    details={"index": max(replay.last_checkpoint, 0)},
                )
            queued = _queued(session.connection())
            if trusted_checkpoint is not None:
                check_trusted(
                    lambda n: _root(session.connection(), n),
                    replay.size,
                    trusted_checkpoint,
                    self.verifier,
                    self.origin,
                )
        report = replay.finish()
        return VerifyReport(
            size=report.size,
            root=report.root,
            checkpoints=report.checkpoints,
            nodes=nodes_checked,
            queued=queued,
        )

    def export(self, out: IO[str]) -> None:
        """Write every sequenced entry and checkpoint, and the verifier key, as a bundle."""
        with self._db.read() as session:
            notes = list(
                session.scalars(
                    sa.select(LedgerCheckpointRow.note).order_by(LedgerCheckpointRow.size)
                )
            )
            rows = session.execute(
                sa.select(LedgerEntryRow.leaf_index, LedgerEntryRow.body)
                .where(LedgerEntryRow.leaf_index.is_not(None))
                .order_by(LedgerEntryRow.leaf_index),
                execution_options={"yield_per": 2000},
            )
            write_bundle(
                out,
                origin=self.origin,
                vkey=self.verifier_key(),
                entries=((cast(int, i), b) for i, b in rows),
                checkpoints=notes,
            )


def _size(conn: sa.Connection) -> int:
    top = conn.execute(_MAX_INDEX).scalar()
    return 0 if top is None else int(top) + 1


def _queued(conn: sa.Connection) -> int:
    return int(conn.execute(_QUEUED).scalar() or 0)


def _check_size(conn: sa.Connection, tree_size: int) -> None:
    size = _size(conn)
    if not 0 <= tree_size <= size:
        raise MalformedProofError(
            f"tree size {tree_size} is beyond the log's {size} entries",
            details={"size": size},
        )


def _root(conn: sa.Connection, tree_size: int) -> bytes:
    plan = merkle.perfect_subtrees(0, tree_size)
    nodes = _nodes(conn, plan)
    return merkle.hash_from_subtrees([nodes[c] for c in plan])


def _nodes(conn: sa.Connection, coords: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Fetch stored nodes in one query; a missing one means the store was tampered with."""
    return _nodes_and_size(conn, coords, tree_size=None)


def _nodes_and_size(
    conn: sa.Connection, coords: Sequence[tuple[int, int]], *, tree_size: int | None
) -> dict[tuple[int, int], bytes]:
    """`_nodes`, and when `tree_size` is given, check it against the log's size in the same
    statement (one round trip on the proof path). Raises `MalformedProofError` for a tree
    larger than the log, `TamperError` for a missing node."""
    wanted = set(coords)
    if not wanted:
        if tree_size is not None:
            _check_size(conn, tree_size)
        return {}
    by_level: dict[int, list[int]] = {}
    for level, idx in wanted:
        by_level.setdefault(level, []).append(idx)
    # One primary-key probe per level (`level = ? AND idx IN (?, ...)`), sent with the driver's
    # own placeholders: this is the hot path of every proof, and building it through SQLAlchemy
    # expressions cost more than running it. Every value is a bound parameter.
    clauses: list[str] = []
    params: list[Any] = []
    if conn.dialect.name == "postgresql":
        # `= ANY(array)` keeps the text the same for every proof of a given depth, so
        # psycopg's automatic prepared statements skip planning after a few calls.
        for level, indices in sorted(by_level.items()):
            clauses.append("(level = %s AND idx = ANY(%s))")
            params.extend((level, indices))
    else:
        for level, indices in sorted(by_level.items()):
            clauses.append(f"(level = ? AND idx IN ({', '.join('?' * len(indices))}))")
            params.append(level)
            params.extend(indices)
    head = "SELECT level, idx, hash, (SELECT max(leaf_index) FROM ledger_entries) FROM "
    sql = head + "ledger_nodes WHERE " + " OR ".join(clauses)
    found: dict[tuple[int, int], bytes] = {}
    top: int | None = None
    for level, idx, digest, largest in conn.exec_driver_sql(sql, tuple(params)):
        found[(int(level), int(idx))] = bytes(digest)
        top = largest
    if tree_size is not None:
        size = 0 if top is None else int(top) + 1
        if not found:  # no row carried the size: ask for it
            size = _size(conn)
        if tree_size > size:
            raise MalformedProofError(
                f"tree size {tree_size} is beyond the log's {size} entries",
                details={"size": size},
            )
    missing = wanted - found.keys()
    if missing:
        level, idx = min(missing)
        raise TamperError(
            f"stored tree node ({level}, {idx}) is missing",
            details={"index": idx << level},
        )
    return found


def _stream_nodes(session: Session) -> Iterator[tuple[int, int, bytes]]:
    """Stored nodes in the order a replay completes them: by the last leaf they cover, then
    bottom-up (node (l, i) completes with leaf (i + 1) * 2**l - 1)."""
    completes_at = (LedgerNodeRow.idx + 1).op("<<")(LedgerNodeRow.level)
    rows = session.execute(
        sa.select(LedgerNodeRow.level, LedgerNodeRow.idx, LedgerNodeRow.hash).order_by(
            completes_at, LedgerNodeRow.level
        ),
        execution_options={"yield_per": 4000},
    )
    for level, idx, digest in rows:
        yield int(level), int(idx), digest


def _check_node(
    stored: tuple[int, int, bytes] | None, level: int, idx: int, computed: bytes
) -> None:
    if stored is None or stored[:2] != (level, idx):
        raise TamperError(
            f"stored tree node ({level}, {idx}) is missing or out of place",
            details={"index": ((idx + 1) << level) - 1},
        )
    if stored[2] != computed:
        raise TamperError(
            f"stored tree node ({level}, {idx}) is {stored[2].hex()} but the entries give "
            f"{computed.hex()}",
            details={
                "index": ((idx + 1) << level) - 1,
                "expected": stored[2].hex(),
                "computed": computed.hex(),
            },
        )
