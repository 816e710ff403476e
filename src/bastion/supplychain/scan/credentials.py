"""Find credentials in arbitrary bytes fast enough to run on every byte of every upload.

Every credential format we look for is a run of at least 15 printable ASCII characters (the
shortest, a Slack token prefix plus ten characters, is 15). Any such run contains at least one
8-byte word, aligned to the start of the buffer, whose eight bytes are all printable. So the
scan is in two steps:

1. *Candidates*: view the chunk as little-endian 64-bit words and, with numpy and
   preallocated buffers, mark the words whose bytes are all in 0x20..0x7f (one add, one
   invert, two ands, one compare). On random or float data almost no word qualifies
   (0.37**8 ≈ 4e-4), which is what keeps the scan at several GB/s.
2. *Confirmation*: around each run of candidate words (plus a margin) run one precise regex
   whose alternatives each begin with a literal (`-----BEGIN`, `AKIA`, `ghp_`, `eyJ`, ...),
   then validate what needs validating (Bastion token CRC-32 checksum, character mix of
   OpenAI-style keys, a `"private_key"` next to a `"private_key_id"`).

Chunks are scanned as they stream past; a match that straddles chunks is found by also
scanning the seam (the last `OVERLAP` bytes of the stream so far and the first of the next
chunk, whatever the chunk sizes). Every pattern is bounded in length well below `OVERLAP`,
and findings are de-duplicated by (kind, offset). A finding names the kind of secret and its
offset, never the value.

Most patterns refuse to match inside a longer word (`xghp_...`). Pickles glue framing bytes
to their strings, though: protocol 0 writes `V<text>`, protocol 4 a length byte (`L` for 76
characters) after SHORT_BINUNICODE, protocols 1 to 3 a BINPUT `q<index>` after it. Those
neighbours are accepted as boundaries, or a token pickled by joblib or torch.save would go
unseen. The Bastion token needs no boundary at all: its checksum decides.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

OVERLAP = 64 * 1024
_MARGIN = 64
_HIGH = np.uint64(0x8080808080808080)
_BIAS = np.uint64(0x6060606060606060)

# Human names per kind; codes are `secret.<kind>`.
KINDS: dict[str, str] = {
    "private_key": "PEM private key",
    "aws_access_key_id": "AWS access key id",
    "github_token": "GitHub token",
    "slack_token": "Slack token",
    "stripe_live_key": "Stripe live secret key",
    "google_api_key": "Google API key",
    "huggingface_token": "Hugging Face token",
    "openai_api_key": "OpenAI-style API key",
    "jwt": "JSON Web Token",
    "bastion_token": "Bastion API token",
    "gcp_service_account": "GCP service-account key (JSON with private_key_id and private_key)",
}


def _start(word: bytes) -> bytes:
    """Not inside a longer word of `word` characters, unless pickle framing is the neighbour:
    SHORT_BINUNICODE/SHORT_BINBYTES/SHORT_BINSTRING and a length byte, or protocol 0's `V`."""
    return rb"(?:(?<!" + word + rb")|(?<=[\x8cCU][\x00-\xff])|(?<=V))"


def _end(word: bytes) -> bytes:
    """Not followed by more of the word, unless by the BINPUT/LONG_BINPUT that protocols 1 to
    3 write after a string (protocol 4 memoizes with a non-printable byte, protocol 0 ends
    the line first)."""
    return rb"(?:(?!" + word + rb")|(?=[qr][\x00-\xff]))"


_ALNUM = rb"[A-Za-z0-9]"
_WORD = rb"[A-Za-z0-9_]"
_WORD_DASH = rb"[A-Za-z0-9_-]"

# kind -> pattern; each alternative begins with a literal (after its boundary assertion).
_BODIES: tuple[tuple[str, bytes], ...] = (
    ("private_key", rb"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----"),
    ("aws_access_key_id", _start(_ALNUM) + rb"(?:AKIA|ASIA)[A-Z0-9]{16}" + _end(_ALNUM)),
    (
        "github_token",
        _start(_WORD)
        + rb"(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})",
    ),
    ("slack_token", _start(_ALNUM) + rb"xox[abprs]-[0-9A-Za-z]{1,64}-[0-9A-Za-z-]{8,255}"),
    ("stripe_live_key", _start(_WORD) + rb"[sr]k_live_[0-9A-Za-z]{24}"),
    ("google_api_key", _start(_WORD_DASH) + rb"AIza[0-9A-Za-z_-]{35}" + _end(_WORD_DASH)),
    ("huggingface_token", _start(_WORD) + rb"hf_[A-Za-z]{34,40}" + _end(_WORD)),
    (
        "openai_api_key",
        _start(_WORD_DASH) + rb"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{32,255}",
    ),
    (
        "jwt",
        _start(_WORD_DASH)
        + rb"eyJ[A-Za-z0-9_-]{5,8192}\.eyJ[A-Za-z0-9_-]{5,8192}\.[A-Za-z0-9_-]{10}",
    ),
    ("bastion_token", rb"bst_[0-9A-Za-z]{72}"),
    ("gcp_service_account", rb'"private_key_id"\s{0,16}:\s{0,16}"[0-9a-f]{40}"'),
)
_PATTERN = re.compile(
    b"|".join(b"(?P<" + kind.encode() + b">" + body + b")" for kind, body in _BODIES)
)
_PRIVATE_KEY_FIELD = re.compile(rb'"private_key"\s{0,16}:')
_CROCKFORD = re.compile(rb"[0-9A-HJKMNP-TV-Z]{26}")
_BASE62 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

Report = Callable[[str, str, int], None]


def _bastion_checksum(head: bytes) -> bytes:
    """The 6-character base62 CRC-32 of `bst_<id><secret>` (the token format's own check)."""
    value = zlib.crc32(head)
    out = bytearray()
    for _ in range(6):
        value, rem = divmod(value, 62)
        out.append(_BASE62[rem])
    return bytes(reversed(out))


def _confirmed(kind: str, match: re.Match[bytes], buf: bytes) -> bool:
    """Second look at kinds whose regex alone would over-report."""
    text = match.group(0)
    if kind == "bastion_token":
        return (
            _CROCKFORD.fullmatch(text[4:30]) is not None
            and _bastion_checksum(text[:-6]) == text[-6:]
        )
    if kind == "openai_api_key":
        tail = text[3:]
        return (
            any(48 <= c <= 57 for c in tail)
            and any(65 <= c <= 90 for c in tail)
            and any(97 <= c <= 122 for c in tail)
        )
    if kind == "gcp_service_account":
        lo = max(0, match.start() - 4096)
        return _PRIVATE_KEY_FIELD.search(buf, lo, match.end() + 4096) is not None
    return True


class SecretScanner:
    """Streaming secret finder: `feed` chunks in order; findings go to `report`.

    One instance per stream; it keeps only the seam tail, the recent findings (to report
    each once) and reusable numpy buffers. Every finding is reported: the caller caps and
    counts them. `max_findings` is accepted for compatibility and unused.
    """

    def __init__(self, report: Report, max_findings: int = 1000) -> None:
        del max_findings
        self._report = report
        self._tail = b""
        self._offset = 0
        self._seen: set[tuple[str, int]] = set()
        self._words = 0
        self._a: npt.NDArray[np.uint64] = np.empty(0, np.uint64)
        self._b: npt.NDArray[np.uint64] = np.empty(0, np.uint64)
        self._m: npt.NDArray[np.bool_] = np.empty(0, np.bool_)

    def __call__(self, chunk: bytes) -> None:
        self.feed(chunk)

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self._tail:
            seam = self._tail + chunk[:OVERLAP]
            self._scan(seam, self._offset - len(self._tail))
        self._scan(chunk, self._offset)
        # The last OVERLAP bytes of the stream, even when chunks are shorter than a secret.
        self._tail = chunk[-OVERLAP:] if len(chunk) >= OVERLAP else (self._tail + chunk)[-OVERLAP:]
        self._offset += len(chunk)
        if len(self._seen) > 4096:
            # A match found again can only start in the seam that is still to be scanned.
            horizon = self._offset - 2 * OVERLAP
            self._seen = {key for key in self._seen if key[1] >= horizon}

    def _buffers(self, words: int) -> None:
        if words > self._words:
            self._a = np.empty(words, np.uint64)
            self._b = np.empty(words, np.uint64)
            self._m = np.empty(words, np.bool_)
            self._words = words

    def _scan(self, buf: bytes, base: int) -> None:
        n = len(buf)
        words = n // 8
        if words == 0:
            self._confirm(buf, 0, n, base)
            return
        self._buffers(words)
        w = np.frombuffer(buf, dtype="<u8", count=words)
        a, b, m = self._a[:words], self._b[:words], self._m[:words]
        # A byte is printable (0x20..0x7f) iff its high bit is clear and adding 0x60 sets it;
        # carries only leave bytes that already failed, so the word test is exact.
        np.add(w, _BIAS, out=a)
        np.invert(w, out=b)
        np.bitwise_and(a, b, out=a)
        np.bitwise_and(a, _HIGH, out=a)
        np.equal(a, _HIGH, out=m)
        idx = np.flatnonzero(m)
        if idx.size == 0:
            return
        gap = (2 * _MARGIN) // 8 + 1
        breaks = np.flatnonzero(np.diff(idx) > gap)
        starts = np.concatenate((idx[:1], idx[breaks + 1]))
        ends = np.concatenate((idx[breaks], idx[-1:]))
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            self._confirm(buf, max(0, s * 8 - _MARGIN), min(n, (e + 1) * 8 + _MARGIN), base)

    def _confirm(self, buf: bytes, lo: int, hi: int, base: int) -> None:
        for match in _PATTERN.finditer(buf, lo, hi):
            kind = match.lastgroup
            if kind is None or not _confirmed(kind, match, buf):
                continue
            key = (kind, base + match.start())
            if key in self._seen:
                continue
            self._seen.add(key)
            self._report(f"secret.{kind}", f"{KINDS[kind]} found", key[1])
