"""UTF-8 of many code points at once, by numpy (one ``chr()`` or ``encode()`` per code point in
Python cost 0.1-0.2 s for the 63k-character tables the normalisers and the GB decoders build)."""

from __future__ import annotations

import numpy as np

__all__ = ["utf8_units"]


def utf8_units(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each code point's UTF-8 encoding: (bytes per code point, an (n, 4) uint8 array of the
    bytes, zero after the last). Surrogates are encoded as three bytes, as ``surrogatepass`` does;
    a caller that needs valid UTF-8 leaves them out."""
    codes = np.asarray(codes, dtype=np.uint32)
    width = 1 + (codes >= 0x80).astype(np.int64) + (codes >= 0x800) + (codes >= 0x10000)
    units = np.zeros((len(codes), 4), dtype=np.uint8)
    units[:, 0] = np.choose(width - 1, [codes, 0xC0 | codes >> 6, 0xE0 | codes >> 12, 0xF0 | codes >> 18])
    for k in range(1, 4):  # continuation byte k of the code points that have one
        has = width > k
        units[has, k] = 0x80 | (codes[has] >> (6 * (width[has] - 1 - k)).astype(np.uint32)) & 0x3F
    return width, units
