"""Merkle tree hashing, proofs and proof planning for the transparency log (RFC 9162 §2.1).

Pure functions over bytes: tree heads (MTH), inclusion and consistency proofs (reference
builders and verifiers), the planning layer that names which perfect subtrees a proof is made
of (so the stored-node service can answer from stored nodes), and `CompactRange`, the
O(log n) right border a sequencer keeps to append leaves and compute new roots.

Hashing is RFC 6962 / RFC 9162 SHA-256: a leaf is SHA-256(0x00 ‖ data), an interior node
SHA-256(0x01 ‖ left ‖ right) and the empty tree SHA-256(""). Ranges are half-open
`[begin, end)`; a node `(level, index)` covers leaves `[index·2^level, (index+1)·2^level)`.

Imports nothing from Bastion except `bastion.ledger.errors`; from the standard library only
`hashlib` (plus `collections.abc` and `typing` for annotations).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple

from bastion.ledger.errors import (
    ConsistencyProofError,
    InclusionProofError,
    MalformedProofError,
    RootMismatchError,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "CompletedNode",
    "consistency_proof",
    "consistency_ranges",
    "hash_from_subtrees",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "parents_to_store",
    "perfect_subtrees",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Size in bytes of every hash in the tree (SHA-256)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() — the root of the empty tree (RFC 9162 §2.1.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


# --------------------------------------------------------------------------- hashing


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 ‖ data): the hash of one log entry (RFC 9162 §2.1.1)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right): the hash of an interior node (RFC 9162 §2.1.1)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the given leaf hashes (RFC 9162 §2.1.1); `EMPTY_ROOT` for none.

    Computed level by level, carrying a lone last node up unchanged, which yields exactly the
    RFC's recursive definition (left part = largest power of two strictly less than n) in
    O(n) time without slicing. Raises ValueError if a leaf hash is not `HASH_SIZE` bytes.
    """
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    for position, h in enumerate(level):
        if len(h) != HASH_SIZE:
            raise ValueError(f"leaf hash {position} is {len(h)} bytes, want {HASH_SIZE}")
    sha256 = hashlib.sha256
    while len(level) > 1:
        paired = [
            sha256(_NODE_PREFIX + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return bytes(level[0])


def hash_from_subtrees(hashes: Sequence[bytes]) -> bytes:
    """Fold perfect-subtree hashes, largest (leftmost) first, into one subtree hash.

    Right to left: h = node_hash(h[k-1], h[k]), then node_hash(h[k-2], h), ... . Given the
    hashes of `perfect_subtrees(begin, end)` this is MTH(leaves[begin:end]); for no hashes
    (the empty range) that is `EMPTY_ROOT`. Raises ValueError for a hash of the wrong size.
    """
    if not hashes:
        return EMPTY_ROOT
    for position, h in enumerate(hashes):
        if len(h) != HASH_SIZE:
            raise ValueError(f"subtree hash {position} is {len(h)} bytes, want {HASH_SIZE}")
    acc = bytes(hashes[-1])
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


# --------------------------------------------------------------------------- validation


def _check_count(name: str, value: int, error: type[Exception]) -> None:
    """Reject anything that is not a non-negative int (bool included: it is a bug here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise error(f"{name} must be non-negative, got {value}")


def _check_hash(name: str, value: bytes) -> None:
    if not isinstance(value, bytes | bytearray):
        raise MalformedProofError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise MalformedProofError(
            f"{name} is {len(value)} bytes, want {HASH_SIZE}",
            details={"field": name, "length": len(value)},
        )


def _check_proof(proof: Sequence[bytes], want: int) -> None:
    if len(proof) != want:
        raise MalformedProofError(
            f"wrong proof length {len(proof)}, want {want}",
            details={"length": len(proof), "want": want},
        )
    for position, h in enumerate(proof):
        _check_hash(f"proof[{position}]", h)


def _split(n: int) -> int:
    """Largest power of two strictly less than n (n >= 2): the RFC's k."""
    return 1 << ((n - 1).bit_length() - 1)


# --------------------------------------------------------------------------- planning


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges `[begin, end)` whose MTHs form PATH(index, D[size]), in proof order.

    Follows RFC 9162 §2.1.3.1: the deepest sibling first, the sibling of the top split last.
    Raises MalformedProofError unless 0 <= index < size.
    """
    _check_count("index", index, MalformedProofError)
    _check_count("size", size, MalformedProofError)
    if index >= size:
        raise MalformedProofError(
            f"index {index} is not below tree size {size}",
            details={"index": index, "size": size},
        )
    ranges: list[tuple[int, int]] = []
    begin, end = 0, size
    while end - begin > 1:
        mid = begin + _split(end - begin)
        if index < mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((begin, mid))
            begin = mid
    ranges.reverse()
    return ranges


def consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """Leaf ranges `[begin, end)` whose MTHs form PROOF(size1, D[size2]), in proof order.

    Follows RFC 9162 §2.1.4.1 (SUBPROOF). Empty when size1 == 0 or size1 == size2 (see
    `verify_consistency`). Raises MalformedProofError unless 0 <= size1 <= size2.
    """
    _check_count("size1", size1, MalformedProofError)
    _check_count("size2", size2, MalformedProofError)
    if size1 > size2:
        raise MalformedProofError(
            f"size1 {size1} is larger than size2 {size2}",
            details={"size1": size1, "size2": size2},
        )
    if size1 == 0 or size1 == size2:
        return []
    ranges: list[tuple[int, int]] = []
    begin, end = 0, size2
    complete = True  # SUBPROOF's b: is [begin, end) still the whole old tree's prefix?
    while True:
        n = end - begin
        m = size1 - begin
        if m == n:
            if not complete:
                ranges.append((begin, end))
            break
        mid = begin + _split(n)
        if m <= mid - begin:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((begin, mid))
            begin = mid
            complete = False
    ranges.reverse()
    return ranges


def perfect_subtrees(begin: int, end: int) -> list[tuple[int, int]]:
    """Decompose `[begin, end)` into aligned perfect subtrees `(level, index)`, largest first.

    `hash_from_subtrees` over their hashes gives MTH(leaves[begin:end]). Every range produced
    by `inclusion_ranges` and `consistency_ranges` decomposes, and so does every tree
    `[0, size)`: `perfect_subtrees(0, size)` names the nodes of `CompactRange.hashes()`. The
    empty range `[b, b)` is no subtrees (its MTH is `EMPTY_ROOT`). Raises ValueError for a
    negative or inverted range, or when `begin` is not a multiple of the largest power of two
    <= end - begin (then the RFC split of the range does not fall on stored node boundaries).
    """
    _check_count("begin", begin, ValueError)
    _check_count("end", end, ValueError)
    if end < begin:
        raise ValueError(f"inverted range [{begin}, {end})")
    if end == begin:
        return []
    n = end - begin
    top = n.bit_length() - 1
    if begin % (1 << top):
        raise ValueError(
            f"range [{begin}, {end}) is not aligned: begin must be a multiple of {1 << top}"
        )
    nodes: list[tuple[int, int]] = []
    position = begin
    for level in range(top, -1, -1):
        if n >> level & 1:
            nodes.append((level, position >> level))
            position += 1 << level
    return nodes


def parents_to_store(index: int) -> list[tuple[int, int]]:
    """Perfect nodes `(level, index)`, level >= 1, that appending leaf `index` completes.

    Bottom-up. Leaf 3 completes (1, 1) and (2, 0); leaf 4 completes nothing. Raises ValueError
    for a negative index.
    """
    _check_count("index", index, ValueError)
    nodes: list[tuple[int, int]] = []
    level, position = 0, index
    while position & 1:
        level += 1
        position >>= 1
        nodes.append((level, position))
    return nodes


# --------------------------------------------------------------------------- reference proofs


def _require_leaves(leaf_hashes: Sequence[bytes], size: int) -> Sequence[bytes]:
    if size > len(leaf_hashes):
        raise MalformedProofError(
            f"tree size {size} exceeds the {len(leaf_hashes)} leaves given",
            details={"size": size, "leaves": len(leaf_hashes)},
        )
    return leaf_hashes


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]) over the first `size` leaf hashes (RFC 9162 §2.1.3.1).

    A reference builder, O(size): one MTH per range of `inclusion_ranges`. Raises
    MalformedProofError unless 0 <= index < size <= len(leaf_hashes).
    """
    ranges = inclusion_ranges(index, size)
    leaves = _require_leaves(leaf_hashes, size)
    return [root(leaves[b:e]) for b, e in ranges]


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int, size2: int) -> list[bytes]:
    """PROOF(size1, D[size2]) over the first `size2` leaf hashes (RFC 9162 §2.1.4.1).

    A reference builder: one MTH per range of `consistency_ranges`; empty when size1 == 0 or
    size1 == size2. Raises MalformedProofError unless 0 <= size1 <= size2 <= len(leaf_hashes).
    """
    ranges = consistency_ranges(size1, size2)
    leaves = _require_leaves(leaf_hashes, size2)
    return [root(leaves[b:e]) for b, e in ranges]


# --------------------------------------------------------------------------- verification


def _inclusion_length(index: int, size: int) -> int:
    """Length of PATH(index, D[size]) in closed form (as transparency-dev `decompInclProof`)."""
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner + border


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf_hash` is leaf `index` of the tree of `size` leaves with head `root`.

    RFC 9162 §2.1.3.2. Returns None or raises:

    - MalformedProofError: negative or non-int index/size, index >= size, a proof of the
      wrong length for (index, size), or any hash (leaf, proof element, root) not 32 bytes;
    - RootMismatchError(expected=root, computed=the root the proof yields);
    - InclusionProofError: the RFC walk did not end at the root (defensive; unreachable once
      the length is checked).

    The size is bound only through `root`: a proof computed for one size may also fold to the
    same hash under another size with the same path shape, so callers must take `size` and
    `root` together from one verified checkpoint.
    """
    _check_count("index", index, MalformedProofError)
    _check_count("size", size, MalformedProofError)
    if index >= size:
        raise MalformedProofError(
            f"index {index} is not below tree size {size}",
            details={"index": index, "size": size},
        )
    _check_hash("leaf_hash", leaf_hash)
    _check_hash("root", root)
    _check_proof(proof, _inclusion_length(index, size))

    fn, sn = index, size - 1
    r = bytes(leaf_hash)
    for p in proof:
        if sn == 0:
            raise InclusionProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InclusionProofError("inclusion proof is shorter than the path to the root")
    if r != root:
        raise RootMismatchError(bytes(root), r)


def _consistency_length(size1: int, size2: int) -> int:
    """Length of PROOF(size1, D[size2]) for 0 < size1 < size2, in closed form."""
    shift = (size1 & -size1).bit_length() - 1  # trailing zeros of size1
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    start = 0 if size1 == 1 << shift else 1
    return start + (inner - shift) + border


def _root_mismatch(which: str, expected: bytes, computed: bytes) -> RootMismatchError:
    return RootMismatchError(
        bytes(expected),
        bytes(computed),
        message=(
            f"consistency proof: {which} root mismatch: expected {bytes(expected).hex()}, "
            f"computed {bytes(computed).hex()}"
        ),
        details={"which": which},
    )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree (size2, root2) extends the tree (size1, root1).

    RFC 9162 §2.1.4.2 for 0 < size1 < size2. The cases the RFC leaves out are decided so:

    - size1 == 0: the proof must be empty and root1 must be `EMPTY_ROOT`; it then verifies
      against any root2 (every tree extends the empty tree), except that size2 == 0 also
      needs root2 == `EMPTY_ROOT` (the next rule).
    - size1 == size2: the proof must be empty and root1 must equal root2.

    Returns None or raises:

    - MalformedProofError: negative or non-int sizes, size1 > size2, a proof of the wrong
      length, or any hash (root or proof element) not 32 bytes;
    - RootMismatchError(expected=the given root, computed=the root the proof yields), with
      `details["which"]` "first" or "second" (also named in the message). When size1 is a
      power of two, root1 is itself the seed of the walk (§2.1.4.2 step 2), so a wrong root1
      is reported as a "second" mismatch;
    - ConsistencyProofError: the RFC walk did not end at the root (defensive; unreachable once
      the length is checked).

    As for inclusion, size2 is bound only through root2 (a proof to an odd size2 also folds
    to the same hash under size2 + 1), so take each (size, root) pair from one checkpoint.
    """
    _check_count("size1", size1, MalformedProofError)
    _check_count("size2", size2, MalformedProofError)
    if size1 > size2:
        raise MalformedProofError(
            f"size1 {size1} is larger than size2 {size2}",
            details={"size1": size1, "size2": size2},
        )
    _check_hash("root1", root1)
    _check_hash("root2", root2)

    if size1 == 0 or size1 == size2:
        _check_proof(proof, 0)
        if size1 == 0 and root1 != EMPTY_ROOT:
            raise _root_mismatch("first", root1, EMPTY_ROOT)
        if size1 == size2 and root2 != root1:
            raise _root_mismatch("second", root2, root1)
        return

    _check_proof(proof, _consistency_length(size1, size2))

    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: the old root is a node of the path
        path.insert(0, bytes(root1))
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = bytes(path[0])
    for c in path[1:]:
        if sn == 0:
            raise ConsistencyProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ConsistencyProofError("consistency proof is shorter than the path to the root")
    if fr != root1:
        raise _root_mismatch("first", root1, fr)
    if sr != root2:
        raise _root_mismatch("second", root2, sr)


# --------------------------------------------------------------------------- compact range


class CompletedNode(NamedTuple):
    """A perfect node an append completed: `(level, index, hash)`; level 0 is the leaf."""

    level: int
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose: (level, index)
    hash: bytes


class CompactRange:
    """The right border of a tree grown from leaf 0, in O(log n) memory.

    Like transparency-dev `compact.Range` starting at 0: one perfect-subtree hash per set bit
    of `size`, largest (leftmost) first. `append` returns every node it completed so a
    sequencer can store them; `root()` folds the border into the tree head. The state is
    `(size, hashes())` and is restored with `from_state`.
    """

    __slots__ = ("_hashes", "_last", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []
        self._last: list[CompletedNode] = []

    @classmethod
    def from_state(cls, size: int, hashes: Sequence[bytes]) -> CompactRange:
        """Restore a range from `size` and its border `hashes` (largest subtree first).

        Raises ValueError for a negative size, len(hashes) != popcount(size) or a hash that
        is not `HASH_SIZE` bytes.
        """
        _check_count("size", size, ValueError)
        want = size.bit_count()
        if len(hashes) != want:
            raise ValueError(f"a range of size {size} has {want} border hashes, got {len(hashes)}")
        for position, h in enumerate(hashes):
            if len(h) != HASH_SIZE:
                raise ValueError(f"border hash {position} is {len(h)} bytes, want {HASH_SIZE}")
        compact = cls()
        compact._size = size
        compact._hashes = [bytes(h) for h in hashes]
        return compact

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def nodes_completed(self) -> list[CompletedNode]:
        """The nodes the most recent `append` completed (empty before the first append)."""
        return list(self._last)

    def hashes(self) -> list[bytes]:
        """The border: hashes of the perfect subtrees covering [0, size), largest first."""
        return list(self._hashes)

    def append(self, leaf_hash: bytes) -> list[CompletedNode]:
        """Append one leaf hash; return the nodes it completed, bottom-up, leaf first.

        The leaf is `(0, size)`; its parents follow as in `parents_to_store(size)`. Raises
        ValueError for a hash that is not `HASH_SIZE` bytes.
        """
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash is {len(leaf_hash)} bytes, want {HASH_SIZE}")
        h = bytes(leaf_hash)
        level, position = 0, self._size
        completed = [CompletedNode(0, position, h)]
        while position & 1:
            h = node_hash(self._hashes.pop(), h)
            level += 1
            position >>= 1
            completed.append(CompletedNode(level, position, h))
        self._hashes.append(h)
        self._size += 1
        self._last = completed
        return list(completed)

    def root(self) -> bytes:
        """MTH of the leaves appended so far; `EMPTY_ROOT` when there are none."""
        if not self._hashes:
            return EMPTY_ROOT
        return hash_from_subtrees(self._hashes)

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"
