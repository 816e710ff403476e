"""Merkle hashing, proofs, proof planning and CompactRange (RFC 9162 §2.1, RFC 6962 hashing).

Known vectors are the RFC 6962 test tree used by transparency-dev/merkle
(`proof/verify_test.go`). Properties run against an independent, literal transcription of the
RFC's recursive definitions (MTH, PATH, SUBPROOF) below, and every mutant of a good proof must
be rejected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.ledger.errors import (
    ConsistencyProofError,
    InclusionProofError,
    LedgerError,
    MalformedProofError,
    RootMismatchError,
)
from bastion.ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    consistency_proof,
    consistency_ranges,
    hash_from_subtrees,
    inclusion_proof,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    parents_to_store,
    perfect_subtrees,
    root,
    verify_consistency,
    verify_inclusion,
)

MAX_SIZE = 300
LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_SIZE + 2)]
ROOTS = [root(LEAVES[:n]) for n in range(MAX_SIZE + 2)]

PROPERTY = settings(max_examples=200, deadline=None)
REJECTED = (MalformedProofError, RootMismatchError, InclusionProofError, ConsistencyProofError)


def h(hexstr: str) -> bytes:
    return bytes.fromhex(hexstr)


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# ----------------------------------------------------------------- the RFC, transcribed literally


def rfc_mth(d: Sequence[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return d[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(rfc_mth(d[:k]), rfc_mth(d[k:]))


def rfc_path_ranges(m: int, begin: int, end: int) -> list[tuple[int, int]]:
    """RFC 9162 §2.1.3.1 PATH(m, D[begin:end]) as absolute ranges."""
    n = end - begin
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*rfc_path_ranges(m, begin, begin + k), (begin + k, end)]
    return [*rfc_path_ranges(m - k, begin + k, end), (begin, begin + k)]


def rfc_subproof_ranges(m: int, begin: int, end: int, b: bool) -> list[tuple[int, int]]:
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[begin:end], b) as absolute ranges."""
    n = end - begin
    if m == n:
        return [] if b else [(begin, end)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*rfc_subproof_ranges(m, begin, begin + k, b), (begin + k, end)]
    return [*rfc_subproof_ranges(m - k, begin + k, end, False), (begin, begin + k)]


# Every perfect node of the 300-leaf tree, as the node store would hold them.
NODES = {
    (level, index): rfc_mth(LEAVES[index << level : (index + 1) << level])
    for level in range(MAX_SIZE.bit_length())
    for index in range(MAX_SIZE >> level)
}


# ----------------------------------------------------------------- known vectors

# transparency-dev/merkle proof/verify_test.go (RFC 6962 test tree).
RFC6962_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
RFC6962_HASHES = [leaf_hash(d) for d in RFC6962_LEAVES]
RFC6962_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
# (index, size, proof); the Go file numbers leaves from 1.
RFC6962_INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
RFC6962_CONSISTENCY = [
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def test_hashing_constants() -> None:
    assert HASH_SIZE == 32
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root([]) == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT


@pytest.mark.parametrize(("size", "expected"), sorted(RFC6962_ROOTS.items()))
def test_rfc6962_roots(size: int, expected: str) -> None:
    assert root(RFC6962_HASHES[:size]).hex() == expected
    compact = CompactRange()
    for leaf in RFC6962_HASHES[:size]:
        compact.append(leaf)
    assert compact.root().hex() == expected


@pytest.mark.parametrize(("index", "size", "proof"), RFC6962_INCLUSION)
def test_rfc6962_inclusion_proofs(index: int, size: int, proof: list[str]) -> None:
    expected = [h(p) for p in proof]
    assert inclusion_proof(RFC6962_HASHES, index, size) == expected
    verify_inclusion(index, size, RFC6962_HASHES[index], expected, h(RFC6962_ROOTS[size]))


@pytest.mark.parametrize(("size1", "size2", "proof"), RFC6962_CONSISTENCY)
def test_rfc6962_consistency_proofs(size1: int, size2: int, proof: list[str]) -> None:
    expected = [h(p) for p in proof]
    assert consistency_proof(RFC6962_HASHES, size1, size2) == expected
    verify_consistency(size1, size2, expected, h(RFC6962_ROOTS[size1]), h(RFC6962_ROOTS[size2]))


def test_hash_domain_separation() -> None:
    # A leaf can never pass for an interior node: the prefixes differ.
    a, b = LEAVES[0], LEAVES[1]
    assert leaf_hash(a + b) != node_hash(a, b)
    assert leaf_hash(b"").hex() == RFC6962_ROOTS[1]


# ----------------------------------------------------------------- agreement with the RFC text


def test_root_matches_rfc_definition_for_every_size() -> None:
    for n in range(MAX_SIZE + 1):
        assert ROOTS[n] == rfc_mth(LEAVES[:n]), n


def test_ranges_match_rfc_recursion_exhaustively() -> None:
    for n in range(1, 100):
        for i in range(n):
            assert inclusion_ranges(i, n) == rfc_path_ranges(i, 0, n), (i, n)
        assert consistency_ranges(0, n) == []
        assert consistency_ranges(n, n) == []
        for m in range(1, n):
            assert consistency_ranges(m, n) == rfc_subproof_ranges(m, 0, n, True), (m, n)


def test_every_small_proof_verifies() -> None:
    for n in range(1, 65):
        for i in range(n):
            verify_inclusion(i, n, LEAVES[i], inclusion_proof(LEAVES, i, n), ROOTS[n])
        for m in range(n + 1):
            verify_consistency(m, n, consistency_proof(LEAVES, m, n), ROOTS[m], ROOTS[n])


# ----------------------------------------------------------------- inclusion properties


@st.composite
def index_in_tree(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(0, size - 1)), size


def expect_rejected(check: Callable[[], object], *errors: type[LedgerError]) -> LedgerError:
    with pytest.raises(errors or REJECTED) as caught:
        check()
    return caught.value


@PROPERTY
@given(index_in_tree(), st.integers(0, HASH_SIZE * 8 - 1))
def test_inclusion_proof_verifies_and_mutants_fail(case: tuple[int, int], bit: int) -> None:
    index, size = case
    leaf, good_root = LEAVES[index], ROOTS[size]
    proof = inclusion_proof(LEAVES, index, size)
    verify_inclusion(index, size, leaf, proof, good_root)

    def verify(**changes: Any) -> Callable[[], None]:
        args: dict[str, Any] = {
            "index": index,
            "size": size,
            "leaf_hash": leaf,
            "proof": proof,
            "root": good_root,
        }
        args.update(changes)
        return lambda: verify_inclusion(**args)

    for j in range(len(proof)):
        flipped = [*proof[:j], flip(proof[j], bit), *proof[j + 1 :]]
        err = expect_rejected(verify(proof=flipped), RootMismatchError)
        assert isinstance(err, RootMismatchError)
        assert err.expected == good_root
        assert err.computed != good_root
        short = [*proof[:j], proof[j][:31], *proof[j + 1 :]]
        expect_rejected(verify(proof=short), MalformedProofError)
    if proof:
        expect_rejected(verify(proof=proof[:-1]), MalformedProofError)
        expect_rejected(verify(proof=proof[1:]), MalformedProofError)
    expect_rejected(verify(proof=[*proof, good_root]), MalformedProofError)
    expect_rejected(verify(proof=[good_root, *proof]), MalformedProofError)
    expect_rejected(verify(proof=[*proof, b""]), MalformedProofError)

    if index > 0:
        expect_rejected(verify(index=index - 1))
    expect_rejected(verify(index=index + 1))
    # Wrong size, with the root of that size (the size is bound through the root).
    expect_rejected(verify(size=size + 1, root=ROOTS[size + 1]))
    if size - 1 > index:
        expect_rejected(verify(size=size - 1, root=ROOTS[size - 1]))

    expect_rejected(verify(leaf_hash=flip(leaf, bit)), RootMismatchError)
    expect_rejected(verify(leaf_hash=LEAVES[index + 1]), RootMismatchError)
    expect_rejected(verify(leaf_hash=leaf[:31]), MalformedProofError)
    err = expect_rejected(verify(root=flip(good_root, bit)), RootMismatchError)
    assert isinstance(err, RootMismatchError)
    assert (err.expected, err.computed) == (flip(good_root, bit), good_root)
    assert err.details["computed"] == good_root.hex()
    expect_rejected(verify(root=EMPTY_ROOT), RootMismatchError)
    expect_rejected(verify(root=good_root + b"\x00"), MalformedProofError)


# ----------------------------------------------------------------- consistency properties


@st.composite
def sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(0, MAX_SIZE))
    return draw(st.integers(0, size2)), size2


@PROPERTY
@given(sizes())
def test_every_consistency_proof_verifies(case: tuple[int, int]) -> None:
    size1, size2 = case
    proof = consistency_proof(LEAVES, size1, size2)
    verify_consistency(size1, size2, proof, ROOTS[size1], ROOTS[size2])


@st.composite
def proper_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(2, MAX_SIZE))
    return draw(st.integers(1, size2 - 1)), size2


@PROPERTY
@given(proper_sizes(), st.integers(0, HASH_SIZE * 8 - 1))
def test_consistency_mutants_fail(case: tuple[int, int], bit: int) -> None:
    size1, size2 = case
    root1, root2 = ROOTS[size1], ROOTS[size2]
    proof = consistency_proof(LEAVES, size1, size2)
    assert proof
    verify_consistency(size1, size2, proof, root1, root2)

    def verify(**changes: Any) -> Callable[[], None]:
        args: dict[str, Any] = {
            "size1": size1,
            "size2": size2,
            "proof": proof,
            "root1": root1,
            "root2": root2,
        }
        args.update(changes)
        return lambda: verify_consistency(**args)

    for j in range(len(proof)):
        flipped = [*proof[:j], flip(proof[j], bit), *proof[j + 1 :]]
        expect_rejected(verify(proof=flipped), RootMismatchError)
        short = [*proof[:j], proof[j][:31], *proof[j + 1 :]]
        expect_rejected(verify(proof=short), MalformedProofError)
    expect_rejected(verify(proof=proof[:-1]), MalformedProofError)
    expect_rejected(verify(proof=[]), MalformedProofError)
    expect_rejected(verify(proof=[*proof, root2]), MalformedProofError)
    expect_rejected(verify(proof=[proof[0], *proof]), MalformedProofError)

    for s1 in (size1 - 1, size1 + 1):
        expect_rejected(verify(size1=s1))
        expect_rejected(verify(size1=s1, root1=ROOTS[s1]))
    # size2 is bound only through root2 (an odd size's proof also folds to its root under
    # the next even size), so a wrong size2 is tested with the root of that size.
    for s2 in (size2 - 1, size2 + 1):
        if s2 >= size1:
            expect_rejected(verify(size2=s2, root2=ROOTS[s2]))
    expect_rejected(verify(root1=root2, root2=root1))
    expect_rejected(verify(size1=size2, size2=size1), MalformedProofError)

    err = expect_rejected(verify(root1=flip(root1, bit)), RootMismatchError)
    assert isinstance(err, RootMismatchError)
    if size1 & (size1 - 1):
        assert err.details["which"] == "first"
        assert "first" in err.message
        assert (err.expected, err.computed) == (flip(root1, bit), root1)
    else:
        # A power-of-two size1's root is itself the seed of the proof, so a wrong root1
        # can only show up as a wrong second root.
        assert err.details["which"] == "second"
        assert err.expected == root2
        assert err.computed != root2
    err = expect_rejected(verify(root2=flip(root2, bit)), RootMismatchError)
    assert err.details["which"] == "second"
    assert "second" in err.message
    assert isinstance(err, RootMismatchError)
    assert (err.expected, err.computed) == (flip(root2, bit), root2)
    expect_rejected(verify(root1=root1[:31]), MalformedProofError)
    expect_rejected(verify(root2=root2[:31]), MalformedProofError)


# ----------------------------------------------------------------- edge cases of the contract


def test_consistency_from_the_empty_tree() -> None:
    for size2 in (1, 2, 7, 8, MAX_SIZE):
        assert consistency_proof(LEAVES, 0, size2) == []
        verify_consistency(0, size2, [], EMPTY_ROOT, ROOTS[size2])
        verify_consistency(0, size2, [], EMPTY_ROOT, LEAVES[5])  # any root2: nothing to prove
        with pytest.raises(RootMismatchError) as caught:
            verify_consistency(0, size2, [], ROOTS[size2], ROOTS[size2])
        assert caught.value.details["which"] == "first"
        assert caught.value.computed == EMPTY_ROOT
        with pytest.raises(MalformedProofError):
            verify_consistency(0, size2, [EMPTY_ROOT], EMPTY_ROOT, ROOTS[size2])
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    err = expect_rejected(
        lambda: verify_consistency(0, 0, [], EMPTY_ROOT, ROOTS[1]), RootMismatchError
    )
    assert err.details["which"] == "second"


def test_consistency_with_equal_sizes() -> None:
    for size in (1, 2, 5, 8, MAX_SIZE):
        assert consistency_proof(LEAVES, size, size) == []
        verify_consistency(size, size, [], ROOTS[size], ROOTS[size])
        with pytest.raises(RootMismatchError) as caught:
            verify_consistency(size, size, [], ROOTS[size], ROOTS[size - 1])
        assert caught.value.details["which"] == "second"
        with pytest.raises(MalformedProofError):
            verify_consistency(size, size, [ROOTS[size]], ROOTS[size], ROOTS[size])


def test_consistency_size1_above_size2_is_malformed() -> None:
    expect_rejected(lambda: verify_consistency(5, 4, [], ROOTS[5], ROOTS[4]), MalformedProofError)
    expect_rejected(lambda: consistency_ranges(2, 1), MalformedProofError)
    expect_rejected(lambda: consistency_proof(LEAVES, 2, 1), MalformedProofError)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 1), (5, 5), (9, 5)])
def test_index_at_or_beyond_size_is_malformed(index: int, size: int) -> None:
    expect_rejected(lambda: inclusion_ranges(index, size), MalformedProofError)
    expect_rejected(lambda: inclusion_proof(LEAVES, index, size), MalformedProofError)
    err = expect_rejected(
        lambda: verify_inclusion(index, size, LEAVES[0], [], ROOTS[1]), MalformedProofError
    )
    assert err.code == "ledger.malformed_proof"


def test_single_leaf_tree() -> None:
    assert inclusion_proof(LEAVES, 0, 1) == []
    verify_inclusion(0, 1, LEAVES[0], [], LEAVES[0])
    expect_rejected(lambda: verify_inclusion(0, 1, LEAVES[0], [], LEAVES[1]), RootMismatchError)
    expect_rejected(
        lambda: verify_inclusion(0, 1, LEAVES[0], [LEAVES[1]], LEAVES[0]), MalformedProofError
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda: inclusion_ranges(-1, 4),
        lambda: inclusion_ranges(0, -4),
        lambda: consistency_ranges(-1, 4),
        lambda: consistency_ranges(-2, -1),
        lambda: inclusion_proof(LEAVES, -1, 4),
        lambda: consistency_proof(LEAVES, -1, 4),
        lambda: verify_inclusion(-1, 4, LEAVES[0], [], ROOTS[4]),
        lambda: verify_inclusion(0, -4, LEAVES[0], [], ROOTS[4]),
        lambda: verify_consistency(-1, 4, [], ROOTS[1], ROOTS[4]),
        lambda: verify_consistency(1, -4, [], ROOTS[1], ROOTS[4]),
        lambda: verify_inclusion(True, 4, LEAVES[0], [], ROOTS[4]),
        lambda: verify_inclusion(1.0, 4, LEAVES[0], [], ROOTS[4]),  # type: ignore[arg-type]
        lambda: inclusion_proof(LEAVES, 0, len(LEAVES) + 1),
        lambda: consistency_proof(LEAVES, 1, len(LEAVES) + 1),
    ],
)
def test_bad_integers_are_malformed(call: Callable[[], object]) -> None:
    with pytest.raises(MalformedProofError):
        call()


@pytest.mark.parametrize(
    "call",
    [
        lambda: perfect_subtrees(-1, 3),
        lambda: perfect_subtrees(5, 4),
        lambda: perfect_subtrees(1, 3),  # two leaves must start on an even index
        lambda: perfect_subtrees(4, 12),  # eight leaves must start on a multiple of 8
        lambda: parents_to_store(-1),
        lambda: hash_from_subtrees([LEAVES[0][:31]]),
        lambda: root([LEAVES[0], b"short"]),
        lambda: CompactRange().append(b"short"),
        lambda: CompactRange.from_state(-1, []),
        lambda: CompactRange.from_state(3, [LEAVES[0]]),
        lambda: CompactRange.from_state(4, [LEAVES[0], LEAVES[1]]),
        lambda: CompactRange.from_state(0, [LEAVES[0]]),
        lambda: CompactRange.from_state(1, [LEAVES[0][:31]]),
    ],
)
def test_bad_planning_arguments_raise_value_error(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - every case here is a plain ValueError
        call()


# ----------------------------------------------------------------- planning layer


def test_planning_examples() -> None:
    assert parents_to_store(0) == []
    assert parents_to_store(1) == [(1, 0)]
    assert parents_to_store(3) == [(1, 1), (2, 0)]
    assert parents_to_store(4) == []
    assert parents_to_store(7) == [(1, 3), (2, 1), (3, 0)]
    assert perfect_subtrees(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert perfect_subtrees(8, 13) == [(2, 2), (0, 12)]
    assert perfect_subtrees(5, 6) == [(0, 5)]
    assert inclusion_ranges(5, 8) == [(4, 5), (6, 8), (0, 4)]
    assert consistency_ranges(6, 8) == [(4, 6), (6, 8), (0, 4)]


def stored_hash(begin: int, end: int, size: int) -> bytes:
    """MTH(leaves[begin:end]) from stored nodes only, none beyond the tree of `size`."""
    nodes = perfect_subtrees(begin, end)
    covered = begin
    for level, index in nodes:
        assert index << level == covered  # contiguous, left to right
        covered = (index + 1) << level
        assert covered <= size  # the node is complete in this tree, so it is stored
    assert covered == end
    levels = [level for level, _ in nodes]
    assert levels == sorted(levels, reverse=True)
    return hash_from_subtrees([NODES[node] for node in nodes])


@PROPERTY
@given(index_in_tree(), st.integers(0, MAX_SIZE))
def test_proofs_from_stored_nodes_match_reference(case: tuple[int, int], other: int) -> None:
    index, size = case
    ranges = inclusion_ranges(index, size)
    assert [stored_hash(b, e, size) for b, e in ranges] == inclusion_proof(LEAVES, index, size)
    size1, size2 = sorted((other, size))
    ranges = consistency_ranges(size1, size2)
    assert [stored_hash(b, e, size2) for b, e in ranges] == consistency_proof(LEAVES, size1, size2)


def test_hash_from_subtrees_folds_right_to_left() -> None:
    a, b, c = LEAVES[:3]
    assert hash_from_subtrees([a]) == a
    assert hash_from_subtrees([a, b, c]) == node_hash(a, node_hash(b, c))


def test_whole_trees_decompose_into_the_compact_border() -> None:
    # The node service reads a tree head as the fold of perfect_subtrees(0, size).
    assert perfect_subtrees(0, 0) == []
    assert perfect_subtrees(7, 7) == []
    assert hash_from_subtrees([]) == EMPTY_ROOT
    compact = CompactRange()
    for size in range(MAX_SIZE + 1):
        border = perfect_subtrees(0, size)
        assert [NODES[node] for node in border] == compact.hashes()
        assert hash_from_subtrees([NODES[node] for node in border]) == ROOTS[size]
        if size < MAX_SIZE:
            compact.append(LEAVES[size])


# ----------------------------------------------------------------- CompactRange


def test_compact_range_at_every_size() -> None:
    compact = CompactRange()
    for i, leaf in enumerate(LEAVES[:MAX_SIZE]):
        assert compact.size == i
        completed = compact.append(leaf)
        assert compact.nodes_completed == completed
        assert [(n.level, n.index) for n in completed] == [(0, i), *parents_to_store(i)]
        for level, index, node in completed:
            assert node == NODES[(level, index)]
        assert compact.size == i + 1
        assert compact.root() == ROOTS[i + 1]
        border = compact.hashes()
        assert len(border) == (i + 1).bit_count()
        restored = CompactRange.from_state(compact.size, border)
        assert restored.root() == ROOTS[i + 1]
        assert restored.hashes() == border


def test_compact_range_restored_state_keeps_growing() -> None:
    first = CompactRange()
    for leaf in LEAVES[:77]:
        first.append(leaf)
    second = CompactRange.from_state(first.size, first.hashes())
    for leaf in LEAVES[77:200]:
        assert second.append(leaf) == first.append(leaf)
    assert second.root() == first.root() == ROOTS[200]
    assert CompactRange.from_state(0, []).root() == EMPTY_ROOT
    # The returned border is a copy: changing it does not change the range.
    second.hashes().clear()
    assert second.root() == ROOTS[200]


def test_root_and_compact_range_agree_on_100k_leaves() -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(100_000)]
    started = time.perf_counter()
    expected = root(leaves)
    compact = CompactRange()
    for leaf in leaves:
        compact.append(leaf)
    elapsed = time.perf_counter() - started
    assert compact.root() == expected
    assert compact.size == 100_000
    assert len(compact.hashes()) == (100_000).bit_count()
    assert elapsed < 5  # generous bound for slow CI; locally well under a second
