"""GBK and GB18030 text to UTF-8 at the speed of memory, character for character what Python's codec gives.

What it owns: `Transcoder`, an incremental decoder (blocks in, UTF-8 bytes out, a character cut by a
block's end carried to the next) for the encodings district files come in. The hot loop is C
(`_transcode.c`, built by setup.py); the mapping is not: `_tables` decodes every two-byte code and
every four-byte BMP code once with Python's own codec and hands the C loop those characters' UTF-8. So
the text is the codec's by construction, which glibc's iconv (25 GB18030 codes mapped otherwise)
and DuckDB's `encodings` extension (text corrupted at its buffer boundaries) could not promise.

Guarantee: identical output and identical errors. Whatever the tables do not cover (a byte outside
the GB structure, an unmapped code, a code above the BMP, a sequence at the end of the input) goes
to Python's codec one character at a time, which decodes it or raises the UnicodeDecodeError the
codec raises over the whole text, at the same offset. Where the extension was not built (no C
compiler at install) or the encoding is another one, `Transcoder` is Python's incremental decoder
and `str.encode` (about 100 MB/s of input per core, the C loop 5-10x that).
"""
from __future__ import annotations

import codecs
import functools
import logging
from typing import Any

import numpy as np

from schemas.unicode import utf8_units

log = logging.getLogger(__name__)

try:  # built by setup.py; optional, so an install without a C compiler still works
    from connectors.files import _transcode
except ImportError:  # pragma: no cover - exercised by the fallback test through FAST_ENCODINGS
    _transcode = None

#: Codec names (as codecs.lookup spells them) whose byte structure the C loop knows.
FAST_ENCODINGS = frozenset({"gbk", "gb18030"})
_LEADS = range(0x81, 0xFF)
_TRAILS = range(0x40, 0xFF)       # 191 slots per lead (0x7F is never a trail: left 0)
_QUAD_BMP = 39420                 # four-byte codes 0x81308130-0x8431A439: the BMP part of GB18030


def _packed(text: str) -> int:
    """One character's UTF-8 packed little-endian in a uint32 (the C loop stores 4 bytes and
    advances by the UTF-8 length), or 0 where `text` is not one plain character: not covered,
    Python's codec decides (U+FFFD included, so a replaced error never passes for a character)."""
    if len(text) != 1 or text == "\ufffd" or 0xD800 <= ord(text) <= 0xDFFF:
        return 0
    return int.from_bytes(text.encode("utf-8").ljust(4, b"\0"), "little")


def _pair_codes() -> list[bytes]:
    return [bytes((lead, trail)) for lead in _LEADS for trail in _TRAILS]


def _quad_codes() -> list[bytes]:
    codes = []
    for index in range(_QUAD_BMP):
        a, rest = divmod(index, 12600)
        b, rest = divmod(rest, 1260)
        c, d = divmod(rest, 10)
        codes.append(bytes((0x81 + a, 0x30 + b, 0x81 + c, 0x30 + d)))
    return codes


def _decoded_each(codes: list[bytes], encoding: str) -> np.ndarray:
    """Every code decoded by the codec, in one call: codes joined by newlines (a newline is never
    part of a GB character, so the codec resynchronises at each), errors replaced, then split.
    Should the pieces not line up one per code, each is decoded on its own instead (slow, same
    result). Each piece becomes :func:`_packed`'s uint32, computed for all at once by numpy from
    the pieces' code points (per piece in Python, GB18030's 63k codes cost 0.11 s per process)."""
    pieces = b"\n".join(codes).decode(encoding, errors="replace").split("\n")
    if len(pieces) != len(codes):  # pragma: no cover - a codec that swallowed a newline
        pieces = []
        for code in codes:
            try:
                pieces.append(code.decode(encoding))
            except UnicodeDecodeError:
                pieces.append("")
    return _packed_all(pieces)


def _packed_all(pieces: list[str]) -> np.ndarray:
    """:func:`_packed` of every piece, as a uint32 array."""
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    points = np.frombuffer("".join(pieces).encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
    first = np.minimum(np.cumsum(lengths) - lengths, max(len(points) - 1, 0))
    cp = points[first].astype(np.uint32) if len(points) else np.zeros(len(pieces), np.uint32)
    one = (lengths == 1) & (cp != 0xFFFD) & ~((cp >= 0xD800) & (cp <= 0xDFFF))
    packed = utf8_units(cp)[1].view("<u4").ravel()  # the bytes, first in the lowest
    return np.where(one, packed, 0).astype(np.uint32)


@functools.cache
def _tables(encoding: str) -> tuple[bytes, bytes]:
    """(two-byte table, four-byte table) of `encoding`, every code decoded by Python's codec (GBK
    15 ms, GB18030 45 ms, once per process). Slots that are no code (trail 0x7F or 0xFF) decode to no one character: 0."""
    pairs = _decoded_each(_pair_codes(), encoding)
    quads = _decoded_each(_quad_codes(), encoding) if encoding == "gb18030" else np.zeros(0, np.uint32)
    return pairs.tobytes(), quads.tobytes()


def prepare(encoding: str) -> None:
    """Build `encoding`'s tables now (before forking: the children inherit them)."""
    if fast(encoding):
        _tables(codecs.lookup(encoding).name)


def fast(encoding: str) -> bool:
    """Whether `encoding` is decoded by the C loop here (else by Python's codec alone)."""
    return _transcode is not None and codecs.lookup(encoding).name in FAST_ENCODINGS


class Transcoder:
    """Incremental `encoding` → UTF-8: `feed(block)` returns the UTF-8 of every whole character so far.

    `offset` is where the first block starts in its file: after a UnicodeDecodeError (raised as
    Python's codec raises it), `error_at` is the file offset of the first byte it refused."""

    def __init__(self, encoding: str, offset: int = 0) -> None:
        self.encoding = codecs.lookup(encoding).name
        self.fast = fast(encoding)
        self._tables: tuple[bytes, bytes] = _tables(self.encoding) if self.fast else (b"", b"")
        self._decoder: Any = None if self.fast else codecs.getincrementaldecoder(encoding)()
        self._carry = b""     # a character's first bytes, cut by the last block's end
        self._next = offset   # file offset of the next byte fed
        self.error_at: int | None = None

    def feed(self, block: bytes, final: bool = False) -> bytes:
        """The UTF-8 of `block`'s whole characters (and of a character the last block cut)."""
        if self._decoder is not None:
            try:
                text = self._decoder.decode(block, final=final)
            except UnicodeDecodeError as exc:
                self.error_at = self._next + exc.start
                raise
            self._next += len(block)
            return text.encode("utf-8")
        data = self._carry + block if self._carry else block
        first = self._next - len(self._carry)  # file offset of data[0]
        pairs, quads = self._tables
        parts: list[bytes] = []
        at = 0
        while at < len(data):
            utf8, used = _transcode.decode(memoryview(data)[at:], pairs, quads)
            parts.append(utf8)
            at += used
            if at >= len(data):
                break
            try:
                text, width = self._slow(data, at, final)
            except UnicodeDecodeError as exc:
                self.error_at = first + exc.start
                raise
            if not width:  # the input ends inside a character: the next block completes it
                break
            parts.append(text.encode("utf-8"))
            at += width
        self._carry = bytes(data[at:])
        self._next += len(block)
        return b"".join(parts)

    def _slow(self, data: bytes, at: int, final: bool) -> tuple[str, int]:
        """The character at `at` through Python's codec: (its text, its width), or ("", 0) when the
        input ends inside it and more may come. A character is 1, 2 or 4 bytes; where none of those
        decodes, the codec decoding the whole text fails here too, and its error is raised (offsets
        into `data`)."""
        left = len(data) - at
        error: UnicodeDecodeError | None = None
        for width in (1, 2, 4):
            if width > left:
                break
            try:
                return data[at:at + width].decode(self.encoding), width
            except UnicodeDecodeError as exc:
                error = exc
        assert error is not None  # width 1 is always tried
        if not final and left < 4 and error.reason.startswith("incomplete"):
            return "", 0
        raise UnicodeDecodeError(self.encoding, bytes(data), at + error.start, at + error.end, error.reason)


__all__ = ["FAST_ENCODINGS", "Transcoder", "fast", "prepare"]
