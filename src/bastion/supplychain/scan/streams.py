"""Read every byte once, in large chunks, and let several consumers see it.

The scanner must hash the file, look for secrets and walk pickle opcodes over the same bytes
without reading the file twice or holding it in memory. `ChunkReader` is the one place bytes
come from: it pulls `chunk_size` blocks from a source and hands each block, exactly once and
in order, to its *sinks* (digest, secret scanner, spool) before parsers see it. Parsers then
`read` small arguments, `skip` large payloads (which still flow through the sinks, so a skipped
500 MB array is hashed and secret-scanned but never copied), or `drain` the rest.

`Tap` does the same for a raw source under a decompressor, so a compressed file's own bytes
are hashed while the decompressed payload is parsed. `DecompressingReader` decompresses in
bounded steps and charges every output byte to a shared `Budget`, which turns zip and
compression bombs into a finding instead of an out-of-memory kill.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable, Sequence
from typing import Protocol

Sink = Callable[[bytes], None]


class Readable(Protocol):
    """Anything with `read(size)`: files, `zipfile.ZipExtFile`, `io.BytesIO`, decompressors."""

    def read(self, size: int = -1, /) -> bytes: ...


class Truncated(Exception):
    """The stream ended before a parser got the bytes it was promised (internal signal)."""

    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


class LimitExceeded(Exception):
    """A decompression budget ran out (internal signal, reported as a finding)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class CorruptStream(Exception):
    """A compressed stream could not be decoded (internal signal, reported as a finding)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class Budget:
    """Decompressed bytes still allowed for one top-level file, shared by nested readers.

    One budget per scanned file (never module-global) so a bomb in one upload cannot starve
    the next, and nested archives cannot multiply the allowance.
    """

    __slots__ = ("remaining",)

    def __init__(self, limit: int) -> None:
        self.remaining = limit

    def charge(self, n: int, what: str) -> None:
        self.remaining -= n
        if self.remaining < 0:
            raise LimitExceeded(what)


class Tap:
    """A `Readable` that shows every block it returns to its sinks (raw-byte digest/secrets)."""

    __slots__ = ("_sinks", "_src")

    def __init__(self, source: Readable, sinks: Sequence[Sink]) -> None:
        self._src = source
        self._sinks = tuple(sinks)

    def read(self, size: int = -1, /) -> bytes:
        data = self._src.read(size)
        if data:
            for sink in self._sinks:
                sink(data)
        return data


class ChunkReader:
    """Sequential reader over a `Readable` with small reads, big skips and sinks.

    Offsets (`tell`) count from the start of this stream. Reads that cross a chunk boundary
    are assembled from pieces, so the big buffers are never concatenated.
    """

    __slots__ = ("_base", "_buf", "_chunk", "_eof", "_pos", "_sinks", "_src")

    def __init__(self, source: Readable, sinks: Sequence[Sink] = (), chunk_size: int = 1 << 23):
        self._src = source
        self._sinks = tuple(sinks)
        self._chunk = chunk_size
        self._buf = b""
        self._pos = 0
        self._base = 0
        self._eof = False

    def tell(self) -> int:
        return self._base + self._pos

    def _next(self) -> bool:
        """Replace the (fully consumed) buffer with the next chunk; False at end of stream."""
        if self._eof:
            return False
        data = self._src.read(self._chunk)
        if not data:
            self._eof = True
            return False
        for sink in self._sinks:
            sink(data)
        self._base += len(self._buf)
        self._buf = data
        self._pos = 0
        return True

    def at_eof(self) -> bool:
        if self._pos < len(self._buf):
            return False
        return not self._next()

    def byte(self) -> int:
        """The next byte, or -1 at end of stream."""
        pos = self._pos
        if pos < len(self._buf):
            self._pos = pos + 1
            return self._buf[pos]
        if not self._next():
            return -1
        self._pos = 1
        return self._buf[0]

    def read(self, n: int) -> bytes:
        """Exactly `n` bytes, or `Truncated`. Only for small `n`: use `skip` for payloads."""
        pos = self._pos
        end = pos + n
        if end <= len(self._buf):
            self._pos = end
            return self._buf[pos:end]
        start = self.tell()
        parts = [self._buf[pos:]]
        need = n - len(parts[0])
        self._pos = len(self._buf)
        while need > 0:
            if not self._next():
                raise Truncated(start)
            piece = self._buf[:need]
            parts.append(piece)
            self._pos = len(piece)
            need -= len(piece)
        return b"".join(parts)

    def peek(self, n: int) -> bytes:
        """Up to `n` bytes without consuming them (may be shorter at end of stream)."""
        avail = len(self._buf) - self._pos
        if avail >= n or self._eof:
            return self._buf[self._pos : self._pos + n]
        # Rare: the peek crosses a chunk. Keep the unread tail and append the next chunk; the
        # new chunk still goes through the sinks exactly once.
        rest = self._buf[self._pos :]
        while len(rest) < n and not self._eof:
            data = self._src.read(self._chunk)
            if not data:
                self._eof = True
                break
            for sink in self._sinks:
                sink(data)
            rest += data
        self._base += self._pos
        self._buf = rest
        self._pos = 0
        return rest[:n]

    def readline(self, limit: int) -> bytes | None:
        """Bytes up to and excluding the next newline; None if longer than `limit`;
        `Truncated` if the stream ends first."""
        buf = self._buf
        pos = self._pos
        nl = buf.find(b"\n", pos, pos + limit + 1)
        if nl >= 0:
            self._pos = nl + 1
            return buf[pos:nl]
        if len(buf) - pos > limit:
            return None
        start = self.tell()
        parts = [buf[pos:]]
        size = len(parts[0])
        self._pos = len(buf)
        while True:
            if not self._next():
                raise Truncated(start)
            buf = self._buf
            nl = buf.find(b"\n", 0, limit - size + 1)
            if nl >= 0:
                parts.append(buf[:nl])
                self._pos = nl + 1
                return b"".join(parts)
            if size + len(buf) > limit:
                return None
            parts.append(buf)
            size += len(buf)
            self._pos = len(buf)

    def read_some(self, n: int = -1, /) -> bytes:
        """Up to `n` bytes (the rest of the current chunk when `n` < 0); b"" only at the end.
        This makes a `ChunkReader` a `Readable` for a decompressor or a spool."""
        if self._pos >= len(self._buf) and not self._next():
            return b""
        end = len(self._buf) if n < 0 else min(len(self._buf), self._pos + n)
        data = self._buf[self._pos : end]
        self._pos = end
        return data

    def skip(self, n: int) -> None:
        """Advance `n` bytes (they still reach the sinks), or `Truncated`."""
        avail = len(self._buf) - self._pos
        if n <= avail:
            self._pos += n
            return
        start = self.tell()
        n -= avail
        self._pos = len(self._buf)
        while n > 0:
            if not self._next():
                raise Truncated(start)
            size = len(self._buf)
            if n < size:
                self._pos = n
                return
            n -= size
            self._pos = size

    def drain(self) -> int:
        """Consume the rest of the stream; return how many bytes that was."""
        count = len(self._buf) - self._pos
        self._pos = len(self._buf)
        while self._next():
            count += len(self._buf)
            self._pos = len(self._buf)
        return count


class _Decoder(Protocol):
    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def feed(self, data: bytes, max_length: int) -> bytes: ...
    @property
    def hungry(self) -> bool: ...


class _ZlibDecoder:
    """zlib/gzip stream decoder with the same interface as the bz2/lzma ones."""

    def __init__(self, wbits: int) -> None:
        self._d = zlib.decompressobj(wbits)

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data

    @property
    def hungry(self) -> bool:
        return not self._d.unconsumed_tail

    def feed(self, data: bytes, max_length: int) -> bytes:
        return self._d.decompress(self._d.unconsumed_tail + data, max_length)


class _BufferedDecoder:
    """bz2/lzma decoders keep unconsumed input internally and report `needs_input`."""

    def __init__(self, make: Callable[[], bz2.BZ2Decompressor | lzma.LZMADecompressor]) -> None:
        self._d = make()

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data

    @property
    def hungry(self) -> bool:
        return self._d.needs_input

    def feed(self, data: bytes, max_length: int) -> bytes:
        return self._d.decompress(data, max_length)


def decoder_factory(codec: str) -> Callable[[], _Decoder]:
    """A fresh decoder per stream member, as joblib's readers do for concatenated streams."""
    if codec == "gzip":
        return lambda: _ZlibDecoder(31)
    if codec == "zlib":
        return lambda: _ZlibDecoder(15)
    if codec == "bz2":
        return lambda: _BufferedDecoder(bz2.BZ2Decompressor)
    if codec == "xz":
        return lambda: _BufferedDecoder(lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ))
    if codec == "lzma":
        return lambda: _BufferedDecoder(lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE))
    raise ValueError(codec)


class DecompressingReader:
    """Streaming decompression of (possibly concatenated) streams with an output budget.

    Mirrors joblib's readers: when one stream ends and input remains, a new stream starts.
    Corrupt input raises `CorruptStream`; input that ends mid-stream raises `Truncated` with
    the decompressed offset; output past the budget raises `LimitExceeded`.

    `read(size)` returns `size` bytes unless the stream ends first, however many streams
    that takes: a file of thousands of tiny concatenated streams must not turn into as many
    tiny chunks (secrets would straddle them, and each chunk costs a seam scan). An error met
    after some output is raised by the next call, so the output before it is still checked.
    """

    def __init__(
        self, source: Readable, codec: str, budget: Budget, chunk_size: int = 1 << 20
    ) -> None:
        self._src = source
        self._codec = codec
        self._make = decoder_factory(codec)
        self._dec = self._make()
        self._budget = budget
        self._chunk = chunk_size
        self._pending = b""
        self._out = 0
        self._done = False
        self._error: Exception | None = None

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            size = self._chunk
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        parts: list[bytes] = []
        have = 0
        try:
            while have < size:
                out = self._read_some(size - have)
                if not out:
                    break
                parts.append(out)
                have += len(out)
        except (CorruptStream, Truncated, LimitExceeded) as error:
            if not parts:
                raise
            self._error = error
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_some(self, size: int) -> bytes:
        while not self._done:
            if self._dec.eof:
                rest = self._dec.unused_data or self._src.read(self._chunk)
                if not rest:
                    self._done = True
                    break
                self._dec = self._make()
                self._pending = rest
            exhausted = False
            if self._dec.hungry and not self._pending:
                self._pending = self._src.read(self._chunk)
                exhausted = not self._pending
            data, self._pending = self._pending, b""
            try:
                out = self._dec.feed(data, size)
            except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as error:
                raise CorruptStream(f"{self._codec} stream is corrupt: {error}") from error
            if exhausted and not out and not self._dec.eof:
                raise Truncated(self._out)
            if out:
                self._out += len(out)
                self._budget.charge(len(out), "decompressed size")
                return out
        return b""


class CountingReader:
    """Counts bytes read from a source and charges them to a budget (zip members)."""

    __slots__ = ("_budget", "_src", "count")

    def __init__(self, source: Readable, budget: Budget) -> None:
        self._src = source
        self._budget = budget
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._src.read(size)
        if data:
            self.count += len(data)
            self._budget.charge(len(data), "decompressed size")
        return data


class TailKeeper:
    """A sink that remembers the last `size` bytes of a stream (zip end records)."""

    __slots__ = ("_size", "tail")

    def __init__(self, size: int) -> None:
        self._size = size
        self.tail = b""

    def __call__(self, data: bytes) -> None:
        if len(data) >= self._size:
            self.tail = data[-self._size :]
        else:
            self.tail = (self.tail + data)[-self._size :]
