"""Prediction receipts: one signed-log entry per served prediction, written off the hot path.

Every prediction response carries a `Receipt`: the request id, endpoint, model version and
artifact digest, who asked, how many rows, and KEYED digests (HMAC-SHA256 under the key store's
`receipt-hmac-key`) of the input and of the output. The log therefore holds no raw data, and a
digest cannot be brute-forced from guessed inputs by someone without the key; yet whoever holds
the input and the key can show which receipt it belongs to. Digests read
`hmac-sha256:<key id>:<64 hex>`, where the key id (16 hex of HMAC(key, "bastion receipt key
id")) names the key without revealing it; input and output use separate derived keys.

The leaf of the prediction log is the RFC 8785 canonical JSON of `Receipt.to_dict()`. The log
is a second `bastion.ledger.TransparencyLog` over its own tables (`PREDICTION_TABLES`), signed
by its own key, so a compromise of the serving path cannot forge checkpoints of the
governance ledger.

Writing (`ReceiptLog`)
* `submit()` never blocks and never touches the database: it appends to a bounded in-memory
  queue (a lock held for a microsecond). When the queue is full the configured behaviour is
  explicit: `reject` raises `Unavailable` (`serving.receipt_queue_full`, HTTP 503) so the
  prediction is not served without its receipt; `drop` serves it, returns False and calls
  `on_drop(endpoint)` so the loss is counted (never silent).
* One daemon writer thread collects receipts until `flush_max` are waiting or the oldest has
  waited `flush_interval` seconds, inserts the batch in one transaction (one multi-row
  insert), then sequences the log (`sequence_all()`: leaf indices, stored Merkle nodes and a
  signed checkpoint, in one transaction per 5000 entries), then calls each receipt's
  `on_logged(leaf_index)` callback from the writer thread.
* Database errors: logged, retried with exponential back-off; the batch is held by the writer
  and the queue keeps filling (bounded) meanwhile, so nothing is lost silently. Rows already
  inserted when sequencing fails stay queued in the database and are sequenced on the next
  attempt (or by `start()` in the next process). A receipt whose request id is already in the
  log with a different body is dropped and counted; the same body (our own commit whose
  acknowledgement was lost) counts as written. Only `close()` gives up, after its timeout, and
  counts what it could not write as dropped.
* The writer is not started by the constructor (CLI commands build a `Platform` too);
  `start()` starts it, `flush()` waits for everything submitted so far, `close()` drains and
  stops it (a later `start()` starts a new writer: a platform outlives its servers).
  `flush()` and `close()` start the writer if receipts are waiting, so a submitted receipt is
  never left behind.

Reading
* `get()` / `proof()` need `receipt.read` on `endpoint:<endpoint>` and must be the receipt's
  principal unless they hold `audit.read`; an unknown id and someone else's receipt are the
  same `NotFound` (`serving.receipt_not_found`), so ids cannot be probed. A receipt that is not
  yet sequenced is `Conflict` (`serving.receipt_pending`): retry shortly. One older than the
  prediction-log retention (`prediction_retention_days`) is `NotFound`
  (`serving.receipt_expired`): its body is gone, its leaf hash stays in the tree.
* `proof()` returns a self-contained JSON bundle: the receipt, its leaf index and hash, an RFC
  9162 inclusion proof against the newest signed checkpoint, the checkpoint (a C2SP signed
  note), the origin and the log's verifier key (informational only).
* `verify_receipt_bundle(bundle, verifier_key)` checks a bundle offline with the verifier key
  the VERIFIER obtained out of band (the key inside the bundle is never trusted): the shape of
  the receipt, its leaf hash, the checkpoint's signature and origin, the size, the inclusion
  proof against the signed root. Every failure has its own code (`receipt.*`).

May import `bastion.ledger`, `bastion.identity`, `bastion.store` and `bastion.core`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, cast

import orjson
import sqlalchemy as sa

from bastion.core.canonical import canonical_json
from bastion.core.clock import Clock
from bastion.core.errors import (
    BastionError,
    ConfigError,
    Conflict,
    InvalidInput,
    NotFound,
    Unavailable,
)
from bastion.identity import Authorizer, Caller, Permission
from bastion.ledger import merkle
from bastion.ledger.errors import (
    LedgerError,
    MalformedNoteError,
    MalformedProofError,
    RootMismatchError,
    SignatureError,
    TamperError,
)
from bastion.ledger.log import SignedCheckpoint, TransparencyLog
from bastion.ledger.note import NoteVerifier
from bastion.store.db import Database
from bastion.store.tables import PredictionEntryRow

log = logging.getLogger("bastion.serving.receipts")

RECEIPT_TYPE: Final = "bastion.prediction.receipt"
RECEIPT_VERSION: Final = 1
ROUTES: Final = frozenset({"stable", "canary"})
ON_FULL: Final = frozenset({"reject", "drop"})
DIGEST_PURPOSES: Final = ("input", "output")

_MAX_SAFE_INT = 2**53 - 1  # RFC 8785: integers beyond it cannot be canonicalised exactly
_DIGEST_RE = re.compile(r"hmac-sha256:[0-9a-f]{16}:[0-9a-f]{64}")
_KEY_ID_LABEL = b"bastion receipt key id"
_DIGEST_LABEL = b"bastion receipt digest\x00"
_LOOKUP_CHUNK = 500  # request ids per IN (...) query
# A Core executemany: the ORM's bulk-insert bookkeeping cost more than the insert itself.
_INSERT = sa.insert(cast(sa.Table, PredictionEntryRow.__table__))
_COLUMNS: Final = ("request_id", "endpoint", "principal_id", "created_at", "body")

# (limit) of each string field: the column sizes of `prediction_entries` where they apply.
_STR_LIMITS: Final[Mapping[str, int]] = {
    "request_id": 64,
    "endpoint": 64,
    "model": 128,
    "version_id": 40,
    "artifact_digest": 128,
    "principal": 40,
}
_FIELDS: Final = frozenset(
    {
        "v",
        "type",
        "request_id",
        "time",
        "endpoint",
        "model",
        "version",
        "version_id",
        "artifact_digest",
        "route",
        "principal",
        "input_digest",
        "output_digest",
        "rows",
        "client_request_id",
    }
)
_BUNDLE_FIELDS: Final = frozenset(
    {"receipt", "leaf_index", "tree_size", "leaf_hash", "inclusion", "checkpoint", "origin"}
)


# -- errors of offline verification -------------------------------------------------------------


class ReceiptBundleError(MalformedProofError):
    """The bundle, the receipt in it, its proof or checkpoint is malformed, or the verifier key
    is unusable (`receipt.bad_bundle`, `receipt.bad_receipt`, `receipt.bad_proof`,
    `receipt.bad_checkpoint`, `receipt.bad_verifier_key`)."""

    default_code = "receipt.bad_bundle"


class ReceiptSignatureError(SignatureError):
    """The checkpoint is not signed by the verifier's key (`receipt.bad_signature`) or names
    another log (`receipt.wrong_origin`)."""

    default_code = "receipt.bad_signature"


class ReceiptMismatchError(TamperError):
    """Well formed and signed, but the pieces disagree: the receipt's hash is not the leaf
    (`receipt.leaf_mismatch`), the proof does not lead to the signed root
    (`receipt.root_mismatch`), or the checkpoint is of another size (`receipt.size_mismatch`).
    `details` carry the expected and computed values."""

    default_code = "receipt.root_mismatch"


# -- the receipt --------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _bad(message: str) -> InvalidInput:
    return InvalidInput(message, code="serving.bad_receipt")


@dataclass(frozen=True, slots=True)
class Receipt:
    """What one prediction was: the leaf of the prediction log.

    `input_digest`/`output_digest` come from `ReceiptLog.keyed_digest`; `principal` is the
    caller's principal id; `route` is `stable` or `canary`. Raises `InvalidInput`
    (`serving.bad_receipt`) for a field out of shape or too long for the log.
    """

    request_id: str
    time: datetime
    endpoint: str
    model: str
    version: int
    version_id: str
    artifact_digest: str
    route: str
    principal: str
    input_digest: str
    output_digest: str
    rows: int
    client_request_id: str | None = None

    def __post_init__(self) -> None:
        for name, limit in _STR_LIMITS.items():
            value = getattr(self, name)
            if type(value) is not str or not 0 < len(value) <= limit:
                raise _bad(f"receipt field {name} must be a string of 1 to {limit} characters")
        if self.route not in ROUTES:
            raise _bad(f"receipt route must be one of {sorted(ROUTES)}")
        for name in ("version", "rows"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= _MAX_SAFE_INT:
                raise _bad(f"receipt field {name} must be a non-negative integer below 2^53")
        for name in ("input_digest", "output_digest"):
            value = getattr(self, name)
            if type(value) is not str or not _DIGEST_RE.fullmatch(value):
                raise _bad(f"receipt field {name} must be hmac-sha256:<key id>:<64 hex>")
        if not isinstance(self.time, datetime) or self.time.utcoffset() is None:
            raise _bad("receipt time must be a timezone-aware datetime")
        cid = self.client_request_id
        if cid is not None and (type(cid) is not str or not 0 < len(cid) <= 128):
            raise _bad("client_request_id must be a string of 1 to 128 characters")

    def to_dict(self) -> dict[str, Any]:
        """The receipt as JSON (`v`, `type` and every field; `time` RFC 3339 UTC)."""
        return {
            "v": RECEIPT_VERSION,
            "type": RECEIPT_TYPE,
            "request_id": self.request_id,
            "time": _iso(self.time),
            "endpoint": self.endpoint,
            "model": self.model,
            "version": self.version,
            "version_id": self.version_id,
            "artifact_digest": self.artifact_digest,
            "route": self.route,
            "principal": self.principal,
            "input_digest": self.input_digest,
            "output_digest": self.output_digest,
            "rows": self.rows,
            "client_request_id": self.client_request_id,
        }

    def body(self) -> bytes:
        """The leaf: RFC 8785 canonical JSON of `to_dict()`.

        The writer computes one per receipt, so the usual case takes a fast path: with ASCII
        keys and values, safe integers and null, orjson's sorted output is byte for byte the
        RFC 8785 form (tested against `canonical_json`); anything else goes the long way."""
        doc = self.to_dict()
        if all(type(v) is not str or v.isascii() for v in doc.values()):
            return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
        return canonical_json(doc)

    @classmethod
    def from_dict(cls, value: object) -> Receipt:
        """Parse a receipt strictly: a JSON object with exactly the receipt's fields, of the
        right types, `v` 1 and `type` `bastion.prediction.receipt`. Raises `InvalidInput`
        (`serving.bad_receipt`)."""
        if not isinstance(value, Mapping):
            raise _bad("a receipt must be a JSON object")
        keys = set(value)
        if keys != _FIELDS:
            missing, extra = sorted(_FIELDS - keys), sorted(str(k) for k in keys - _FIELDS)
            raise InvalidInput(
                "receipt fields differ from a bastion.prediction.receipt",
                code="serving.bad_receipt",
                details={"missing": missing, "unexpected": extra[:20]},
            )
        if value["v"] != RECEIPT_VERSION or type(value["v"]) is not int:
            raise _bad(f"unsupported receipt version {str(value['v'])[:20]!r}")
        if value["type"] != RECEIPT_TYPE:
            raise _bad(f"receipt type must be {RECEIPT_TYPE}")
        moment = value["time"]
        try:
            if type(moment) is not str or not moment.endswith("Z"):
                raise ValueError(moment)
            parsed = datetime.fromisoformat(moment)
        except ValueError:
            raise _bad("receipt time must be an RFC 3339 UTC timestamp ending in Z") from None
        receipt = cls(
            request_id=value["request_id"],
            time=parsed,
            endpoint=value["endpoint"],
            model=value["model"],
            version=value["version"],
            version_id=value["version_id"],
            artifact_digest=value["artifact_digest"],
            route=value["route"],
            principal=value["principal"],
            input_digest=value["input_digest"],
            output_digest=value["output_digest"],
            rows=value["rows"],
            client_request_id=value["client_request_id"],
        )
        if _iso(parsed) != moment:
            raise _bad("receipt time is not in its canonical form")
        return receipt


@dataclass(frozen=True)
class StoredReceipt:
    """A receipt as the log holds it; `leaf_index` is None while it waits to be sequenced."""

    receipt: dict[str, Any]
    leaf_index: int | None

    @property
    def pending(self) -> bool:
        return self.leaf_index is None


@dataclass(frozen=True)
class VerifiedReceipt:
    """What `verify_receipt_bundle` established: this receipt is leaf `leaf_index` of the log
    `origin` whose checkpoint of `tree_size` entries, with root `root`, the key signed."""

    receipt: Receipt
    leaf_index: int
    tree_size: int
    root: bytes
    origin: str


# -- the writer and the reader ------------------------------------------------------------------

# A queued receipt: (receipt, on_logged, monotonic time of submission).
_Item = tuple[Receipt, Callable[[int], None] | None, float]


class ReceiptLog:
    """The prediction log's front: keyed digests, the bounded queue and its batching writer,
    authorized reads and proof bundles. Thread-safe."""

    def __init__(
        self,
        *,
        database: Database,
        log: TransparencyLog,
        authorizer: Authorizer,
        hmac_key: bytes,
        clock: Clock,
        queue_size: int,
        flush_interval: float,
        flush_max: int,
        on_full: str,
        on_drop: Callable[[str], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
    ) -> None:
        if on_full not in ON_FULL:
            raise ConfigError(f"receipt on_full must be one of {sorted(ON_FULL)}, not {on_full!r}")
        if queue_size < 1 or flush_max < 1 or flush_interval <= 0:
            raise ConfigError("receipt queue_size and flush_max must be >= 1, flush_interval > 0")
        if not isinstance(hmac_key, bytes) or len(hmac_key) < 16:
            raise ConfigError("the receipt HMAC key must be at least 16 bytes")
        self._db = database
        self._log = log
        self._authorizer = authorizer
        self._clock = clock
        self._queue_size = queue_size
        self._flush_interval = flush_interval
        self._flush_max = flush_max
        self._reject = on_full == "reject"
        self.on_full: Literal["reject", "drop"] = "reject" if self._reject else "drop"
        self._on_drop = on_drop
        self._on_depth = on_depth
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self.origin = log.origin
        self.key_id = hmac.new(hmac_key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]
        self._digest_prefix = f"hmac-sha256:{self.key_id}:"
        self._macs = {
            purpose: hmac.new(
                hmac.new(hmac_key, _DIGEST_LABEL + purpose.encode(), hashlib.sha256).digest(),
                digestmod=hashlib.sha256,
            )
            for purpose in DIGEST_PURPOSES
        }
        self._cond = threading.Condition(threading.Lock())
        self._items: deque[_Item] = deque()
        self._pending: dict[str, Receipt] = {}
        self._submitted = 0  # accepted by submit()
        self._taken = 0  # taken by the writer
        self._finished = 0  # written, or given up on (and counted)
        self._flush_upto = 0  # flush() asked the writer not to wait for these
        self._inflight = 0
        self._dropped = 0
        self._thread: threading.Thread | None = None
        self._closing = False
        self._give_up_at = float("inf")

    # -- keyed digests -------------------------------------------------------------------------

    def keyed_digest(self, data: bytes, *, purpose: str) -> str:
        """`hmac-sha256:<key id>:<hex>` of `data` under the key derived for `purpose`
        (`input` or `output`): the same bytes digest differently as input and as output."""
        base = self._macs.get(purpose)
        if base is None:
            raise InvalidInput(
                f"digest purpose must be one of {DIGEST_PURPOSES}", code="serving.bad_receipt"
            )
        mac = base.copy()
        mac.update(data)
        return self._digest_prefix + mac.hexdigest()

    def verifier_key(self) -> str:
        """The prediction log's verifier key (signed-note format)."""
        return self._log.verifier_key()

    @property
    def log(self) -> TransparencyLog:
        """The prediction log itself (size, checkpoints, proofs, `verify()`, `export()`)."""
        return self._log

    # -- the request path ----------------------------------------------------------------------

    def submit(self, receipt: Receipt, on_logged: Callable[[int], None] | None = None) -> bool:
        """Queue `receipt` for the writer; never blocks on I/O.

        True when queued. With the queue full: `reject` raises `Unavailable`
        (`serving.receipt_queue_full`); `drop` calls `on_drop(endpoint)` and returns False.
        `on_logged(leaf_index)` is called from the writer thread once the receipt is sequenced.
        """
        with self._cond:
            depth = len(self._items)
            if depth < self._queue_size:
                self._items.append((receipt, on_logged, time.monotonic()))
                self._pending[receipt.request_id] = receipt
                self._submitted += 1
                depth += 1
                # Wake the writer when the queue starts (its interval clock) or fills a batch
                # (all waiters: flush() callers wait on the same condition).
                if depth == 1 or depth == self._flush_max:
                    self._cond.notify_all()
                return True
            if self._reject:
                raise Unavailable(
                    "the prediction log's queue is full; the request was not served",
                    code="serving.receipt_queue_full",
                    details={"queue_size": self._queue_size},
                )
            self._dropped += 1
        self._notify_drop(receipt.endpoint)
        return False

    @property
    def depth(self) -> int:
        """Receipts submitted but not yet written (queued or in the writer's hands)."""
        with self._cond:
            return len(self._items) + self._inflight

    @property
    def dropped(self) -> int:
        """Receipts counted as dropped by this process (queue full in `drop` mode, duplicates,
        or given up at `close()`)."""
        with self._cond:
            return self._dropped

    # -- lifecycle -----------------------------------------------------------------------------

    def observe(
        self,
        *,
        on_drop: Callable[[str], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        """Set the drop counter and queue-depth callbacks (e.g. a gateway's metrics)."""
        with self._cond:
            if on_drop is not None:
                self._on_drop = on_drop
            if on_depth is not None:
                self._on_depth = on_depth

    def start(self) -> None:
        """Start the writer thread (idempotent). It first sequences what an earlier process
        left inserted but unsequenced."""
        with self._cond:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="bastion-receipt-writer", daemon=True
            )
            self._thread.start()

    def flush(self, timeout: float = 10.0) -> None:
        """Block until every receipt submitted so far is sequenced (or given up and counted).

        Starts the writer if it is not running. Raises `Unavailable`
        (`serving.receipt_flush_timeout`) if that takes longer than `timeout` seconds.
        """
        with self._cond:
            target = self._submitted
            if self._finished >= target:
                return
            self._flush_upto = max(self._flush_upto, target)
            self._start_locked()
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._finished >= target, timeout):
                raise Unavailable(
                    f"receipts not written within {timeout:g}s",
                    code="serving.receipt_flush_timeout",
                    details={"waiting": target - self._finished},
                )

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer.

        If the database stays unusable for `timeout` seconds, the receipts not yet inserted
        are counted as dropped (`on_drop`) and logged as an error; rows already inserted stay
        queued in the database for the next process. Idempotent; `start()` may follow.
        """
        with self._cond:
            if not self._closing:
                self._closing = True
                self._give_up_at = time.monotonic() + timeout
            if self._items or self._inflight:
                self._start_locked()
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout + 1.0)
            if thread.is_alive():
                log.error("the receipt writer did not stop within %.1fs", timeout)
                return
        with self._cond:
            if self._thread is thread:
                self._thread = None
                self._closing = False
                self._give_up_at = float("inf")

    # -- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        self._log.sequence_pending()  # leftovers of a process that stopped mid-batch
        while True:
            try:
                batch = self._next_batch()
                if batch is None:
                    return
                self._write(batch)
            except Exception:  # a bug must not kill the writer; the batch was finished
                log.exception("receipt writer error")

    def _next_batch(self) -> list[_Item] | None:
        with self._cond:
            while True:
                if self._items:
                    if (
                        self._closing
                        or len(self._items) >= self._flush_max
                        or self._flush_upto > self._taken
                    ):
                        break
                    remaining = self._items[0][2] + self._flush_interval - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                elif self._closing:
                    return None
                else:
                    self._cond.wait()
            count = min(self._flush_max, len(self._items))
            batch = [self._items.popleft() for _ in range(count)]
            self._taken += count
            self._inflight = count
            depth = len(self._items) + count
        self._report_depth(depth)
        return batch

    def _write(self, batch: list[_Item]) -> None:
        written: list[_Item] = []
        rows: list[dict[str, Any]] = []
        try:
            seen: set[str] = set()
            for item in batch:
                receipt = item[0]
                if receipt.request_id in seen:
                    self._drop(receipt, "its request id repeats within one batch")
                    continue
                try:
                    body = receipt.body()
                except BastionError:
                    self._drop(receipt, "it cannot be canonicalised")
                    continue
                seen.add(receipt.request_id)
                written.append(item)
                rows.append(
                    {
                        "request_id": receipt.request_id,
                        "endpoint": receipt.endpoint,
                        "principal_id": receipt.principal,
                        "created_at": receipt.time,
                        "body": body,
                    }
                )
            written, indices = self._store(written, rows)
            if indices is None:
                indices = self._leaf_indices(written) if any(i[1] for i in written) else {}
        finally:
            self._finish(batch)
        for receipt, callback, _ in written:
            index = indices.get(receipt.request_id)
            if callback is not None and index is not None:
                try:
                    callback(index)
                except Exception:
                    log.exception("on_logged callback failed")

    def _store(
        self, items: list[_Item], rows: list[dict[str, Any]]
    ) -> tuple[list[_Item], dict[str, int] | None]:
        """Insert and sequence, retrying until done or `close()` gives up. Returns the items
        that are in the log, and their leaf indices when known without a lookup.

        The fast way is one transaction that inserts the batch already sequenced; a clash
        of request ids (a lost commit acknowledgement, or a genuine duplicate) falls back to
        inserting what is new, then sequencing."""
        if rows:
            try:
                first, _ = self._log.append_sequenced(rows, _COLUMNS)
                return items, {item[0].request_id: first + i for i, item in enumerate(items)}
            except Conflict:
                pass
            except Exception:  # noqa: BLE001 - retried below, the slow and careful way
                log.warning("writing %d receipts in one pass failed; retrying", len(items))
        inserted = not rows
        delay = self._retry_initial
        while True:
            try:
                if not inserted:
                    items = self._insert(items, rows)
                    inserted = True
                self._log.sequence_all()
                return items, None
            except Exception as error:  # noqa: BLE001 - every failure is logged and retried
                with self._cond:
                    give_up = self._closing and time.monotonic() >= self._give_up_at
                stage = "sequencing" if inserted else "inserting"
                if give_up:
                    if inserted:
                        log.error(
                            "giving up sequencing %d receipts: they stay queued in the database "
                            "and are sequenced at the next start",
                            len(items),
                        )
                    else:
                        for item in items:
                            self._drop(item[0], "the database stayed unusable until shutdown")
                        self._drop_queued()
                    return [], None
                log.warning(
                    "%s %d receipts failed (%s); retrying in %.2fs",
                    stage,
                    len(items),
                    getattr(error, "code", type(error).__name__),
                    delay,
                )
                with self._cond:  # close() wakes us early; then we wait no past its deadline
                    self._cond.wait(min(delay, max(0.0, self._give_up_at - time.monotonic())))
                delay = min(delay * 2, self._retry_max)

    def _insert(self, items: list[_Item], rows: list[dict[str, Any]]) -> list[_Item]:
        try:
            with self._db.transaction() as session:
                session.execute(_INSERT, rows)
            return items
        except Conflict:
            pass
        # Some request ids are taken: by our own insert whose commit acknowledgement was lost
        # (same body: already written), or by another receipt (a genuine duplicate: dropped).
        existing = self._existing_bodies([r["request_id"] for r in rows])
        kept: list[_Item] = []
        fresh: list[dict[str, Any]] = []
        for item, row in zip(items, rows, strict=True):
            have = existing.get(row["request_id"])
            if have is None:
                kept.append(item)
                fresh.append(row)
            elif have == row["body"]:
                kept.append(item)
            else:
                self._drop(item[0], "another receipt with its request id is already in the log")
        if fresh:
            with self._db.transaction() as session:
                session.execute(_INSERT, fresh)
        return kept

    def _existing_bodies(self, request_ids: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        with self._db.connect() as conn:
            for start in range(0, len(request_ids), _LOOKUP_CHUNK):
                chunk = request_ids[start : start + _LOOKUP_CHUNK]
                query = sa.select(PredictionEntryRow.request_id, PredictionEntryRow.body).where(
                    PredictionEntryRow.request_id.in_(chunk)
                )
                found.update((rid, bytes(body)) for rid, body in conn.execute(query))
        return found

    def _leaf_indices(self, items: list[_Item]) -> dict[str, int]:
        ids = [item[0].request_id for item in items if item[1] is not None]
        found: dict[str, int] = {}
        try:
            with self._db.connect() as conn:
                for start in range(0, len(ids), _LOOKUP_CHUNK):
                    query = sa.select(
                        PredictionEntryRow.request_id, PredictionEntryRow.leaf_index
                    ).where(PredictionEntryRow.request_id.in_(ids[start : start + _LOOKUP_CHUNK]))
                    found.update(
                        (rid, int(index)) for rid, index in conn.execute(query) if index is not None
                    )
        except Exception:
            log.exception("looking up leaf indices failed; on_logged callbacks are skipped")
        return found

    def _finish(self, batch: list[_Item]) -> None:
        with self._cond:
            for receipt, _, _ in batch:
                if self._pending.get(receipt.request_id) is receipt:
                    del self._pending[receipt.request_id]
            self._finished += len(batch)
            self._inflight = 0
            depth = len(self._items)
            self._cond.notify_all()
        self._report_depth(depth)

    def _drop_queued(self) -> None:
        """At shutdown with the database unusable: count everything still queued."""
        with self._cond:
            rest = list(self._items)
            self._items.clear()
            self._taken += len(rest)
        try:
            for receipt, _, _ in rest:
                self._drop(receipt, "the database stayed unusable until shutdown")
        finally:
            self._finish(rest)

    def _drop(self, receipt: Receipt, why: str) -> None:
        log.error("prediction receipt %s dropped: %s", receipt.request_id, why)
        with self._cond:
            self._dropped += 1
        self._notify_drop(receipt.endpoint)

    def _notify_drop(self, endpoint: str) -> None:
        if self._on_drop is not None:
            try:
                self._on_drop(endpoint)
            except Exception:
                log.exception("on_drop callback failed")

    def _report_depth(self, depth: int) -> None:
        if self._on_depth is not None:
            try:
                self._on_depth(depth)
            except Exception:
                log.exception("on_depth callback failed")

    # -- reading -------------------------------------------------------------------------------

    def get(self, caller: Caller, request_id: str) -> StoredReceipt:
        """The receipt of `request_id`, with its leaf index (None while pending).

        Raises `PermissionDenied` without `receipt.read` (on `endpoint:<its endpoint>` for a
        scoped token) and `NotFound` (`serving.receipt_not_found`) for an unknown id or
        another principal's receipt (unless the caller holds `audit.read`); `NotFound`
        (`serving.receipt_expired`) for a receipt the retention emptied (its principal is
        emptied too, so only `audit.read` holders learn that it existed).
        """
        self.require_read(caller)
        with self._cond:
            queued = self._pending.get(request_id)
        if queued is not None:
            self._authorize(caller, queued.endpoint, queued.principal)
            return StoredReceipt(queued.to_dict(), None)
        if not 0 < len(request_id) <= _STR_LIMITS["request_id"]:
            raise _not_found()
        with self._db.connect() as conn:
            row = conn.execute(
                sa.select(
                    PredictionEntryRow.endpoint,
                    PredictionEntryRow.principal_id,
                    PredictionEntryRow.body,
                    PredictionEntryRow.leaf_index,
                ).where(PredictionEntryRow.request_id == request_id)
            ).first()
        if row is None:
            raise _not_found()
        endpoint, principal, body, index = row
        self._authorize(caller, endpoint, principal)
        if not body:
            # Emptied by the prediction-log retention (`bastion.privacy.retention`): the leaf
            # stays in the tree, but there is no receipt left to show or prove.
            raise NotFound(
                "the receipt is past the prediction-log retention: its body was removed (its "
                "leaf hash stays in the log)",
                code="serving.receipt_expired",
            )
        return StoredReceipt(json.loads(bytes(body)), None if index is None else int(index))

    def proof(self, caller: Caller, request_id: str) -> dict[str, Any]:
        """The offline-verifiable bundle of `request_id` against the newest checkpoint.

        Raises as `get`, and `Conflict` (`serving.receipt_pending`) while not yet sequenced.
        """
        stored = self.get(caller, request_id)
        if stored.leaf_index is None:
            raise Conflict(
                "the receipt is not in the log yet; retry shortly",
                code="serving.receipt_pending",
            )
        checkpoint = self._log.latest_checkpoint()
        proof = self._log.inclusion_proof(stored.leaf_index, checkpoint.size)
        leaf = merkle.leaf_hash(canonical_json(stored.receipt))
        if leaf != proof.leaf_hash:  # the stored body no longer matches its leaf
            raise TamperError(
                f"prediction log entry {stored.leaf_index} does not hash to its stored leaf",
                details={
                    "index": stored.leaf_index,
                    "expected": proof.leaf_hash.hex(),
                    "computed": leaf.hex(),
                },
            )
        if proof.root != checkpoint.root:
            raise TamperError(
                f"stored nodes of the prediction log disagree with checkpoint {checkpoint.size}",
                details={
                    "index": checkpoint.size - 1,
                    "expected": checkpoint.root.hex(),
                    "computed": proof.root.hex(),
                },
            )
        return {
            "receipt": stored.receipt,
            "leaf_index": proof.index,
            "tree_size": proof.tree_size,
            "leaf_hash": _b64(proof.leaf_hash),
            "inclusion": [_b64(h) for h in proof.hashes],
            "checkpoint": checkpoint.note,
            "origin": self.origin,
            "verifier_key": self.verifier_key(),
        }

    def latest_checkpoint(self, caller: Caller) -> SignedCheckpoint:
        """The prediction log's newest signed checkpoint (`receipt.read`; resource-scoped
        tokens may read it: it names no receipt). `NotFound` (`ledger.empty`) before the
        first receipt."""
        self.require_read(caller)
        return self._log.latest_checkpoint()

    def require_read(self, caller: Caller) -> None:
        """Raise `PermissionDenied` unless `caller` holds `receipt.read` (any scope)."""
        if Permission.RECEIPT_READ not in caller.permissions:
            self._authorizer.authorize(caller, Permission.RECEIPT_READ)  # raises, counted

    def _authorize(self, caller: Caller, endpoint: str, principal: str) -> None:
        if caller.principal_id != principal and Permission.AUDIT_READ not in caller.permissions:
            raise _not_found()
        self._authorizer.authorize(caller, Permission.RECEIPT_READ, f"endpoint:{endpoint}")


def _not_found() -> NotFound:
    return NotFound("no such receipt", code="serving.receipt_not_found")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise ReceiptBundleError(f"{what} must be a base64 string", code="receipt.bad_proof")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raw = b""
    if len(raw) != merkle.HASH_SIZE or _b64(raw) != text:
        raise ReceiptBundleError(
            f"{what} must be the standard base64 of {merkle.HASH_SIZE} bytes",
            code="receipt.bad_proof",
        )
    return raw


def _count(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise ReceiptBundleError(f"{what} must be a non-negative integer")
    return value


# -- offline verification -----------------------------------------------------------------------


def verify_receipt_bundle(
    bundle: Mapping[str, Any], verifier_key: str, *, origin: str | None = None
) -> VerifiedReceipt:
    """Check a receipt proof bundle with no database and no trust in its sender.

    `verifier_key` is the prediction log's key as the verifier obtained it (`bastion receipt
    pubkey`); the `verifier_key` inside the bundle is ignored. The checkpoint's origin must be
    `origin` (default: the key's name, which is the log's origin). Raises:

    * `ReceiptBundleError`: `receipt.bad_verifier_key`, `receipt.bad_bundle` (not an object,
      fields missing or of the wrong type), `receipt.bad_receipt` (not a receipt),
      `receipt.bad_checkpoint` (not a checkpoint note), `receipt.bad_proof` (wrong length or
      encoding, index beyond the tree);
    * `ReceiptSignatureError`: `receipt.bad_signature` (not signed by this key),
      `receipt.wrong_origin`;
    * `ReceiptMismatchError`: `receipt.size_mismatch` (checkpoint of another size),
      `receipt.leaf_mismatch` (the receipt is not the leaf the proof is for),
      `receipt.root_mismatch` (the proof does not lead to the signed root).
    """
    try:
        verifier = NoteVerifier.from_vkey(verifier_key)
    except MalformedNoteError as error:
        raise ReceiptBundleError(
            f"unusable verifier key: {error.message}", code="receipt.bad_verifier_key"
        ) from None
    if not isinstance(bundle, Mapping):
        raise ReceiptBundleError("a receipt bundle must be a JSON object")
    missing = sorted(_BUNDLE_FIELDS - set(bundle))
    if missing:
        raise ReceiptBundleError(
            f"receipt bundle lacks {', '.join(missing)}", details={"missing": missing}
        )
    leaf_index = _count(bundle["leaf_index"], "leaf_index")
    tree_size = _count(bundle["tree_size"], "tree_size")
    note = bundle["checkpoint"]
    if not isinstance(note, str):
        raise ReceiptBundleError("checkpoint must be a signed note (a string)")
    inclusion = bundle["inclusion"]
    if not isinstance(inclusion, list) or len(inclusion) > 64:
        raise ReceiptBundleError("inclusion must be a list of at most 64 hashes")
    hashes = [_unb64(h, "an inclusion hash") for h in inclusion]
    claimed_leaf = _unb64(bundle["leaf_hash"], "leaf_hash")
    try:
        receipt = Receipt.from_dict(bundle["receipt"])
        body = canonical_json(bundle["receipt"])
    except InvalidInput as error:
        raise ReceiptBundleError(
            f"not a prediction receipt: {error.message}", code="receipt.bad_receipt"
        ) from None

    try:
        checkpoint = verifier.verify(note)
    except SignatureError as error:
        raise ReceiptSignatureError(
            f"checkpoint signature does not verify with the given key: {error.message}",
            details=error.details,
        ) from None
    except MalformedNoteError as error:
        raise ReceiptBundleError(
            f"malformed checkpoint: {error.message}", code="receipt.bad_checkpoint"
        ) from None
    expected_origin = verifier.name if origin is None else origin
    if checkpoint.origin != expected_origin or bundle["origin"] != checkpoint.origin:
        raise ReceiptSignatureError(
            f"checkpoint of log {checkpoint.origin!r}, expected {expected_origin!r}",
            code="receipt.wrong_origin",
            details={"expected": expected_origin, "computed": checkpoint.origin},
        )
    if checkpoint.size != tree_size:
        raise ReceiptMismatchError(
            f"the signed checkpoint is of size {checkpoint.size}, the proof of {tree_size}",
            code="receipt.size_mismatch",
            details={"expected": checkpoint.size, "computed": tree_size},
        )
    leaf = merkle.leaf_hash(body)
    if leaf != claimed_leaf:
        raise ReceiptMismatchError(
            "the receipt does not hash to the leaf the proof is for (the receipt was altered)",
            code="receipt.leaf_mismatch",
            details={"index": leaf_index, "expected": claimed_leaf.hex(), "computed": leaf.hex()},
        )
    try:
        merkle.verify_inclusion(leaf_index, tree_size, leaf, hashes, checkpoint.root)
    except RootMismatchError as error:
        raise ReceiptMismatchError(
            "the inclusion proof does not lead to the signed root",
            code="receipt.root_mismatch",
            details={"index": leaf_index, **error.details},
        ) from None
    except LedgerError as error:  # malformed proof: length, index beyond the tree
        raise ReceiptBundleError(
            f"malformed inclusion proof: {error.message}", code="receipt.bad_proof"
        ) from None
    return VerifiedReceipt(
        receipt=receipt,
        leaf_index=leaf_index,
        tree_size=tree_size,
        root=checkpoint.root,
        origin=checkpoint.origin,
    )


__all__ = [
    "RECEIPT_TYPE",
    "Receipt",
    "ReceiptBundleError",
    "ReceiptLog",
    "ReceiptMismatchError",
    "ReceiptSignatureError",
    "StoredReceipt",
    "VerifiedReceipt",
    "verify_receipt_bundle",
]
