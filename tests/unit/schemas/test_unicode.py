"""schemas.unicode.utf8_units: numpy's UTF-8 of many code points, against Python's encoder."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.unicode import utf8_units


def _expected(code: int) -> bytes:
    return chr(code).encode("utf-8", errors="surrogatepass")


def test_every_code_point_is_encoded_as_python_encodes_it() -> None:
    codes = np.arange(0, 0x110000, dtype=np.uint32)
    width, units = utf8_units(codes)
    assert units.shape == (0x110000, 4) and units.dtype == np.uint8
    # the widths' boundaries, then every code point's bytes (zero after the last)
    assert width[[0, 0x7F, 0x80, 0x7FF, 0x800, 0xFFFF, 0x10000, 0x10FFFF]].tolist() == [1, 1, 2, 2, 3, 3, 4, 4]
    got = units.tobytes()
    for code in range(0x110000):
        want = _expected(code)
        assert got[4 * code:4 * code + 4] == want.ljust(4, b"\0"), hex(code)
        assert width[code] == len(want)


@pytest.mark.parametrize("codes", [[], [0x41], [0xD800, 0xDFFF], [0x10FFFF, 0, 0x4E2D]])
def test_any_length_and_order(codes: list[int]) -> None:
    width, units = utf8_units(np.array(codes, dtype=np.int64))
    assert [units[i, :width[i]].tobytes() for i in range(len(codes))] == [_expected(c) for c in codes]


def test_packed_little_endian_view_is_the_bytes_in_order() -> None:
    width, units = utf8_units(np.array([0x4E2D, 0x1F600], dtype=np.uint32))
    assert units.view("<u4").ravel().tolist() == [int.from_bytes(_expected(c).ljust(4, b"\0"), "little")
                                                   for c in (0x4E2D, 0x1F600)]
