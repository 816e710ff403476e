"""LocalBlobStore: atomic puts, key validation and path escapes, limits, URL selection."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.core.canonical import sha256_digest
from bastion.core.errors import ConfigError, ErrorKind, NotFound, StoreError, TooLarge
from bastion.store.blobs import LocalBlobStore, open_blob_store


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


@pytest.fixture
def store(root: Path) -> LocalBlobStore:
    return LocalBlobStore(root)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


class _Exploding:
    """A source that yields some bytes, then fails like a dropped connection."""

    def __init__(self, good: int) -> None:
        self._left = good

    def read(self, size: int = -1, /) -> bytes:
        if self._left <= 0:
            raise ConnectionError("upload interrupted")
        n = min(self._left, 1000 if size < 0 else size, 1000)
        self._left -= n
        return b"p" * n


# ------------------------------------------------------------------ basics


def test_put_get_exists_delete(store: LocalBlobStore) -> None:
    info = store.put("models/m1/weights.bin", b"weights")
    assert info.key == "models/m1/weights.bin"
    assert info.size == 7
    assert info.digest == sha256_digest(b"weights")
    assert store.exists("models/m1/weights.bin")
    assert store.get("models/m1/weights.bin") == b"weights"
    with store.open("models/m1/weights.bin") as fh:
        assert fh.read() == b"weights"

    store.delete("models/m1/weights.bin")
    assert not store.exists("models/m1/weights.bin")
    with pytest.raises(NotFound) as err:
        store.get("models/m1/weights.bin")
    assert err.value.code == "store.blob_not_found"


def test_put_from_stream_and_overwrite(store: LocalBlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    info = store.put("big", io.BytesIO(data))
    assert info.size == len(data)
    assert info.digest == sha256_digest(data)
    assert store.get("big") == data
    store.put("big", b"small")
    assert store.get("big") == b"small"


def test_missing_blob_is_not_found_everywhere(store: LocalBlobStore) -> None:
    store.put("dir/file", b"x")
    for key in ("nope", "dir", "dir/nope", "dir/file/deeper"):
        assert not store.exists(key)
        for op in (store.get, store.open, store.delete):
            with pytest.raises(NotFound) as err:
                op(key)
            assert err.value.code == "store.blob_not_found"


def test_keys_are_sorted_and_filtered_by_prefix(store: LocalBlobStore, root: Path) -> None:
    for key in ("b/2", "a/1", "a/2", "ab", "a/sub/3", "c.txt"):
        store.put(key, key.encode())
    (root / "a" / ".#junk.tmp").write_bytes(b"leftover temp")
    assert list(store.keys()) == ["a/1", "a/2", "a/sub/3", "ab", "b/2", "c.txt"]
    assert list(store.keys("a/")) == ["a/1", "a/2", "a/sub/3"]
    assert list(store.keys("a")) == ["a/1", "a/2", "a/sub/3", "ab"]
    assert list(store.keys("a/s")) == ["a/sub/3"]
    assert list(store.keys("zzz")) == []


def test_modes_are_private(store: LocalBlobStore, root: Path) -> None:
    store.put("x/y/z", b"data")
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "x").stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "x" / "y").stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "x" / "y" / "z").stat().st_mode) == 0o600


# ------------------------------------------------------------------ escapes

ESCAPES = [
    "../x",
    "/etc/passwd",
    "a/../../x",
    "a/..",
    "..",
    ".",
    "a\\b",
    "..\\x",
    "a/./b",
    "./a",
    "",
    "a//b",
    "a/",
    "/",
    "x\x00y",
    "a b",
    "a/b?c",
    "~/x",
    "x" * 1025,
]


@pytest.mark.parametrize("key", ESCAPES)
def test_unsafe_keys_are_rejected(store: LocalBlobStore, root: Path, key: str) -> None:
    operations: list[Callable[[], object]] = [
        lambda: store.put(key, b"x"),
        lambda: store.get(key),
        lambda: store.open(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
    ]
    for op in operations:
        with pytest.raises(StoreError) as err:
            op()
        assert err.value.code == "store.path_escape"
        assert err.value.kind is ErrorKind.INVALID
    assert _tree(root) == []


def test_symlink_inside_root_pointing_outside_is_rejected(
    store: LocalBlobStore, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"host secret")
    (root / "evil").symlink_to(outside, target_is_directory=True)
    (root / "leak").symlink_to(outside / "secret")

    for key in ("evil/secret", "evil/new", "leak"):
        for op in (lambda k: store.put(k, b"x"), store.get, store.open, store.exists, store.delete):
            with pytest.raises(StoreError) as err:
                op(key)
            assert err.value.code == "store.path_escape"
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"host secret"
    assert list(store.keys()) == []


def test_symlink_to_root_itself_is_rejected(store: LocalBlobStore, root: Path) -> None:
    (root / "self").symlink_to(root, target_is_directory=True)
    with pytest.raises(StoreError) as err:
        store.get("self")
    assert err.value.code == "store.path_escape"


# ------------------------------------------------------------------ failed writes


def test_failed_put_leaves_nothing(store: LocalBlobStore, root: Path) -> None:
    with pytest.raises(ConnectionError):
        store.put("uploads/model.bin", _Exploding(5000))
    assert _tree(root) == []
    assert not store.exists("uploads/model.bin")


def test_failed_overwrite_keeps_the_previous_blob(store: LocalBlobStore, root: Path) -> None:
    store.put("model", b"version 1")
    with pytest.raises(ConnectionError):
        store.put("model", _Exploding(5000))
    assert store.get("model") == b"version 1"
    assert _tree(root) == ["model"]


@pytest.mark.parametrize("as_stream", [False, True])
def test_max_bytes_per_put(store: LocalBlobStore, root: Path, as_stream: bool) -> None:
    def src(n: int) -> io.BytesIO | bytes:
        return io.BytesIO(b"z" * n) if as_stream else b"z" * n

    assert store.put("exact", src(100), max_bytes=100).size == 100
    with pytest.raises(TooLarge) as err:
        store.put("over", src(101), max_bytes=100)
    assert err.value.code == "store.blob_too_large"
    assert _tree(root) == ["exact"]


def test_max_bytes_on_the_store(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "limited", max_bytes=2 * 1024 * 1024)
    store.put("ok", io.BytesIO(b"a" * 2 * 1024 * 1024))
    with pytest.raises(TooLarge):
        store.put("big", io.BytesIO(b"a" * (2 * 1024 * 1024 + 1)))
    # A per-call limit can only tighten the store's.
    with pytest.raises(TooLarge):
        store.put("big", b"a" * 11, max_bytes=10)
    with pytest.raises(TooLarge):
        store.put("big", b"a" * (2 * 1024 * 1024 + 1), max_bytes=10 * 1024 * 1024)
    assert _tree(tmp_path / "limited") == ["ok"]


# ------------------------------------------------------------------ URL selection


def test_open_blob_store_by_url(tmp_path: Path) -> None:
    root = tmp_path / "with space" / "blobs"
    store = open_blob_store(root.as_uri())
    assert isinstance(store, LocalBlobStore)
    store.put("k", b"v")
    assert (root / "k").read_bytes() == b"v"


@pytest.mark.parametrize(
    "url",
    ["s3://bucket/prefix", "http://example.com/x", "gs://b", "relative/path", "file://host/x"],
)
def test_unsupported_blob_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        open_blob_store(url)


def test_unsupported_scheme_message() -> None:
    with pytest.raises(ConfigError, match="unsupported blob url scheme"):
        open_blob_store("s3://bucket")
