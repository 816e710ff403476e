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
* One code, several logs: a `LogTables` names the entry, node and checkpoint tables and the
  sequencer's advisory lock. `AUDIT_TABLES` is the governance ledger (audit events appended
  in the caller's transaction); `PREDICTION_TABLES` the prediction log, whose receipts are
  written in batches by `bastion.serving.receipts` and sequenced the same way, under its own
  lock and its own signing key.

May import `bastion.store`, `bastion.crypto` and `bastion.core`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bastion.core.clock import Clock
from bastion.core.errors import BastionError, InvalidInput, NotFound
from bastion.ledger import merkle
from bastion.ledger.errors import MalformedProofError, TamperError
from bastion.ledger.events import QUEUED_MARK, AuditLog, Event, QueuedEntry
from bastion.ledger.note import Checkpoint, NoteSigner, NoteVerifier
from bastion.ledger.verify import LogReplay, VerifyReport, check_trusted, write_bundle
from bastion.store.db import Database
from bastion.store.tables import (
    LedgerCheckpointRow,
    LedgerEntryRow,
    LedgerNodeRow,
    PredictionCheckpointRow,
    PredictionEntryRow,
    PredictionNodeRow,
)

log = logging.getLogger("bastion.ledger")

MAX_PAGE = 1000
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class LogTables:
    """The tables one log lives in and the PostgreSQL advisory lock its sequencer takes.

    `entries` needs the columns `seq`, `body`, `leaf_index`, `leaf_hash`; `nodes` `level`,
    `idx`, `hash`; `checkpoints` `size`, `root`, `note`, `created_at`. The lock is any
    constant, the same for every replica of one log and different between logs. The raw SQL
    of the hot paths is rendered once, here. `expirable`: a retention rule may empty the
    bodies of the oldest entries (`bastion.privacy.retention`); `verify` then takes their
    stored leaf hashes, which must form a prefix of the log. Never for the governance ledger.
    """

    entries: type[Any]
    nodes: type[Any]
    checkpoints: type[Any]
    pg_lock: int
    expirable: bool = False
    max_index_sql: sa.TextClause = field(init=False, repr=False, compare=False)
    queued_sql: sa.TextClause = field(init=False, repr=False, compare=False)
    nodes_sql_head: str = field(init=False, repr=False, compare=False)
    entries_name: str = field(init=False, repr=False, compare=False)
    nodes_name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Names of our own ORM tables, never input; checked anyway before they enter SQL text.
        entries, nodes = self.entries.__table__.name, self.nodes.__table__.name
        if not (_IDENTIFIER.fullmatch(entries) and _IDENTIFIER.fullmatch(nodes)):
            raise ValueError(f"bad table names {entries!r}, {nodes!r}")
        top = f"SELECT max(leaf_index) FROM {entries}"  # noqa: S608 - checked identifier
        queued = f"SELECT count(*) FROM {entries} WHERE leaf_index IS NULL"  # noqa: S608
        head = f"SELECT level, idx, hash, ({top}) FROM {nodes} WHERE "  # noqa: S608
        object.__setattr__(self, "max_index_sql", sa.text(top))
        object.__setattr__(self, "queued_sql", sa.text(queued))
        object.__setattr__(self, "nodes_sql_head", head)
        object.__setattr__(self, "entries_name", entries)
        object.__setattr__(self, "nodes_name", nodes)


AUDIT_TABLES = LogTables(
    LedgerEntryRow, LedgerNodeRow, LedgerCheckpointRow, pg_lock=0x4253_544E_4C4F_47
)
"""The governance ledger: audit events of every change."""

PREDICTION_TABLES = LogTables(
    PredictionEntryRow,
    PredictionNodeRow,
    PredictionCheckpointRow,
    pg_lock=0x4253_544E_5052_4544,
    expirable=True,
)
"""The prediction log: one receipt per served prediction."""


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
        signer: NoteSigner,
        origin: str,
        clock: Clock,
        audit: AuditLog | None = None,
        tables: LogTables = AUDIT_TABLES,
        batch_size: int = 5000,
    ) -> None:
        self._db = database
        self._audit = audit
        self.tables = tables
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
        """Queue `event` in `session`'s transaction; it is sequenced after the commit.

        Only the audit ledger takes events (a log built without an `AuditLog` raises)."""
        if self._audit is None or self.tables.entries is not LedgerEntryRow:
            raise BastionError(
                "this log does not take audit events", code="ledger.append_unsupported"
            )
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
        t = self.tables
        with self._db.transaction() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(sa.select(sa.func.pg_advisory_xact_lock(t.pg_lock)))
            queued = session.execute(
                sa.select(t.entries.seq, t.entries.body)
                .where(t.entries.leaf_index.is_(None))
                .order_by(t.entries.seq)
                .limit(self._batch_size)
            ).all()
            if not queued:
                return None
            conn = session.connection()
            size = _size(conn, t)
            border = merkle.perfect_subtrees(0, size)
            nodes = _nodes(conn, t, border)
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
            session.execute(sa.update(t.entries), updates)
            session.execute(sa.insert(t.nodes), completed)
            root = tree.root()
            note = self._signer.sign(Checkpoint(origin=self.origin, size=tree.size, root=root))
            now = self._clock.now()
            session.add(t.checkpoints(size=tree.size, root=root, note=note, created_at=now))
            return SignedCheckpoint(size=tree.size, root=root, note=note, created_at=now)

    def append_sequenced(
        self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
    ) -> tuple[int, SignedCheckpoint]:
        """Insert entries already sequenced, with their nodes and a signed checkpoint, in one
        transaction under the writer lock; `(first leaf index, checkpoint)`.

        For a writer that owns its entries (the prediction log's batches): one pass instead of
        insert, then select, update and insert. `columns` name the values each row gives
        (`body` among them); everything goes through the driver's own executemany, since
        SQLAlchemy's per-row bind processing cost more than the database on this path.
        Unique-key clashes raise `Conflict` and write nothing.
        """
        if not rows:
            raise InvalidInput("nothing to append", code="ledger.empty_batch")
        if "body" not in columns or not all(_IDENTIFIER.fullmatch(c) for c in columns):
            raise InvalidInput("bad entry columns", code="ledger.bad_columns")
        t = self.tables
        with self._db.transaction() as session:
            conn = session.connection()
            postgres = conn.dialect.name == "postgresql"
            if postgres:
                session.execute(sa.select(sa.func.pg_advisory_xact_lock(t.pg_lock)))
            size = _size(conn, t)
            border = merkle.perfect_subtrees(0, size)
            nodes = _nodes(conn, t, border)
            tree = merkle.CompactRange.from_state(size, [nodes[c] for c in border])
            first = tree.size
            table = t.entries.__table__
            binds = [table.c[c].type.bind_processor(conn.dialect) for c in columns]
            entries: list[tuple[Any, ...]] = []
            completed: list[tuple[int, int, bytes]] = []
            for row in rows:
                leaf = merkle.leaf_hash(row["body"])
                values = (
                    row[c] if bind is None else bind(row[c])
                    for c, bind in zip(columns, binds, strict=True)
                )
                entries.append((*values, tree.size, leaf))
                completed.extend(tree.append(leaf))
            mark = "%s" if postgres else "?"
            names = ", ".join((*columns, "leaf_index", "leaf_hash"))
            marks = ", ".join([mark] * (len(columns) + 2))
            conn.exec_driver_sql(
                f"INSERT INTO {t.entries_name} ({names}) VALUES ({marks})",  # noqa: S608
                entries,
            )
            conn.exec_driver_sql(
                f"INSERT INTO {t.nodes_name} (level, idx, hash) "  # noqa: S608
                f"VALUES ({mark}, {mark}, {mark})",
                completed,
            )
            root = tree.root()
            note = self._signer.sign(Checkpoint(origin=self.origin, size=tree.size, root=root))
            now = self._clock.now()
            session.add(t.checkpoints(size=tree.size, root=root, note=note, created_at=now))
            return first, SignedCheckpoint(size=tree.size, root=root, note=note, created_at=now)

    # -- reading ------------------------------------------------------------------------------

    def size(self) -> int:
        with self._db.connect() as conn:
            return _size(conn, self.tables)

    def queued(self) -> int:
        """Entries committed but not yet sequenced."""
        with self._db.connect() as conn:
            return _queued(conn, self.tables)

    def latest_checkpoint(self) -> SignedCheckpoint:
        """The newest signed checkpoint. `NotFound` (`ledger.empty`) before the first entry."""
        checkpoints = self.tables.checkpoints
        with self._db.read() as session:
            row = session.scalar(sa.select(checkpoints).order_by(checkpoints.size.desc()).limit(1))
            if row is None:
                raise NotFound("the log has no checkpoint yet", code="ledger.empty")
            return SignedCheckpoint(row.size, row.root, row.note, row.created_at)

    def checkpoints(self) -> list[SignedCheckpoint]:
        checkpoints = self.tables.checkpoints
        with self._db.read() as session:
            rows = session.scalars(sa.select(checkpoints).order_by(checkpoints.size))
            return [SignedCheckpoint(r.size, r.root, r.note, r.created_at) for r in rows]

    def entries(self, start: int, end: int) -> list[LogEntry]:
        """Sequenced entries with leaf index in [start, end), at most 1000."""
        if start < 0 or end < start:
            raise InvalidInput("need 0 <= start <= end", code="ledger.bad_range")
        if end - start > MAX_PAGE:
            raise InvalidInput(f"at most {MAX_PAGE} entries per page", code="ledger.bad_range")
        e = self.tables.entries
        with self._db.read() as session:
            rows = session.execute(
                sa.select(e.leaf_index, e.body, e.leaf_hash)
                .where(e.leaf_index >= start, e.leaf_index < end)
                .order_by(e.leaf_index)
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
                conn,
                self.tables,
                [c for p in plan for c in p] + root_plan + [(0, index)],
                tree_size=tree_size,
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
                conn,
                self.tables,
                [c for p in plan for c in p] + first_plan + second_plan,
                tree_size=second,
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
        t = self.tables
        with self._db.snapshot() as session:
            checkpoints = iter(
                session.execute(
                    sa.select(t.checkpoints.size, t.checkpoints.root, t.checkpoints.note).order_by(
                        t.checkpoints.size
                    )
                ).all()
            )
            pending = next(checkpoints, None)
            stored_nodes = _stream_nodes(session, t)
            entries = session.execute(
                sa.select(t.entries.leaf_index, t.entries.body, t.entries.leaf_hash)
                .where(t.entries.leaf_index.is_not(None))
                .order_by(t.entries.leaf_index),
                execution_options={"yield_per": 2000},
            )
            for index, body, stored_leaf in entries:
                # Whatever the database hands back is evidence, not trusted input: a body that
                # was rewritten as text must fail as an edit, not crash the verifier.
                raw = body if isinstance(body, bytes) else str(body).encode()
                # The query excludes NULL indices; cast for the type checker only.
                if not raw and t.expirable and stored_leaf is not None:
                    completed = replay.expired_leaf(cast(int, index), bytes(stored_leaf))
                else:
                    completed = replay.leaf(cast(int, index), raw, stored_leaf)
                for level, idx, digest in completed:
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
            queued = _queued(session.connection(), t)
            if trusted_checkpoint is not None:
                check_trusted(
                    lambda n: _root(session.connection(), t, n),
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
            expired=report.expired,
        )

    def export(self, out: IO[str]) -> None:
        """Write every sequenced entry and checkpoint, and the verifier key, as a bundle."""
        t = self.tables
        with self._db.snapshot() as session:
            notes = list(
                session.scalars(sa.select(t.checkpoints.note).order_by(t.checkpoints.size))
            )
            rows = session.execute(
                sa.select(t.entries.leaf_index, t.entries.body)
                .where(t.entries.leaf_index.is_not(None))
                .order_by(t.entries.leaf_index),
                execution_options={"yield_per": 2000},
            )
            write_bundle(
                out,
                origin=self.origin,
                vkey=self.verifier_key(),
                entries=((cast(int, i), b) for i, b in rows),
                checkpoints=notes,
            )


def _size(conn: sa.Connection, tables: LogTables) -> int:
    top = conn.execute(tables.max_index_sql).scalar()
    return 0 if top is None else int(top) + 1


def _queued(conn: sa.Connection, tables: LogTables) -> int:
    return int(conn.execute(tables.queued_sql).scalar() or 0)


def _check_size(conn: sa.Connection, tables: LogTables, tree_size: int) -> None:
    size = _size(conn, tables)
    if not 0 <= tree_size <= size:
        raise MalformedProofError(
            f"tree size {tree_size} is beyond the log's {size} entries",
            details={"size": size},
        )


def _root(conn: sa.Connection, tables: LogTables, tree_size: int) -> bytes:
    plan = merkle.perfect_subtrees(0, tree_size)
    nodes = _nodes(conn, tables, plan)
    return merkle.hash_from_subtrees([nodes[c] for c in plan])


def _nodes(
    conn: sa.Connection, tables: LogTables, coords: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """Fetch stored nodes in one query; a missing one means the store was tampered with."""
    return _nodes_and_size(conn, tables, coords, tree_size=None)


def _nodes_and_size(
    conn: sa.Connection,
    tables: LogTables,
    coords: Sequence[tuple[int, int]],
    *,
    tree_size: int | None,
) -> dict[tuple[int, int], bytes]:
    """`_nodes`, and when `tree_size` is given, check it against the log's size in the same
    statement (one round trip on the proof path). Raises `MalformedProofError` for a tree
    larger than the log, `TamperError` for a missing node."""
    wanted = set(coords)
    if not wanted:
        if tree_size is not None:
            _check_size(conn, tables, tree_size)
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
    sql = tables.nodes_sql_head + " OR ".join(clauses)
    found: dict[tuple[int, int], bytes] = {}
    top: int | None = None
    for level, idx, digest, largest in conn.exec_driver_sql(sql, tuple(params)):
        found[(int(level), int(idx))] = bytes(digest)
        top = largest
    if tree_size is not None:
        size = 0 if top is None else int(top) + 1
        if not found:  # no row carried the size: ask for it
            size = _size(conn, tables)
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


def _stream_nodes(session: Session, tables: LogTables) -> Iterator[tuple[int, int, bytes]]:
    """Stored nodes in the order a replay completes them: by the last leaf they cover, then
    bottom-up (node (l, i) completes with leaf (i + 1) * 2**l - 1)."""
    n = tables.nodes
    completes_at = (n.idx + 1).op("<<")(n.level)
    rows = session.execute(
        sa.select(n.level, n.idx, n.hash).order_by(completes_at, n.level),
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
