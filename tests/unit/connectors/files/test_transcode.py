"""The GBK/GB18030 transcoder gives exactly what Python's codec gives: the same text, the same errors."""
from __future__ import annotations

import codecs
import random

import numpy as np
import pytest

from connectors.files import transcode
from connectors.files.transcode import Transcoder


def test_the_extension_was_built() -> None:
    # `pip install -e .` compiles connectors/files/_transcode.c; without it the hub still decodes
    # (Python's codec), but slower, and the tests below would only test the fallback.
    assert transcode._transcode is not None, "connectors/files/_transcode.c was not built: run `make install`"
    assert transcode.fast("gb18030") and transcode.fast("GBK") and not transcode.fast("utf-8")


def _strict_each(codes: list[bytes], encoding: str) -> np.ndarray:
    out = []
    for code in codes:
        try:
            out.append(transcode._packed(code.decode(encoding)))
        except UnicodeDecodeError:
            out.append(0)
    return np.array(out, dtype=np.uint32)


def test_the_tables_pack_every_piece_as_packed_does_one() -> None:
    # the numpy packing of the codec's pieces: one character of every UTF-8 length, and the pieces
    # that are not one plain character (empty, several, U+FFFD, a lone surrogate) packed as 0
    rng = random.Random(3)
    odd = ["", "ab", "\ufffd", "\ud800", "\udfff", "a\ufffd", "\U0001f600", "\x7f", "\x80", "\u07ff", "\u0800",
           "\uffff", "\U00010000", "\U0010ffff", "\x00"]
    pieces = odd + [chr(rng.choice([rng.randint(0, 0xD7FF), rng.randint(0xE000, 0x10FFFF)])) for _ in range(5000)]
    pieces += ["".join(rng.sample(pieces[:40], k=rng.randint(0, 3))) for _ in range(500)]
    for part in (pieces, odd[:1], odd[2:3], [], pieces[5:] + [""]):
        assert transcode._packed_all(part).tolist() == [transcode._packed(p) for p in part]


@pytest.mark.parametrize("encoding", ["gb18030", "gbk"])
def test_tables_hold_what_the_codec_decodes_each_code_to(encoding: str) -> None:
    pairs, quads = transcode._tables(encoding)
    assert (np.frombuffer(pairs, np.uint32) == _strict_each(transcode._pair_codes(), encoding)).all()
    if encoding == "gb18030":
        assert (np.frombuffer(quads, np.uint32) == _strict_each(transcode._quad_codes(), encoding)).all()
    else:
        assert quads == b""


def _feed_all(data: bytes, encoding: str, block: int, offset: int = 0) -> bytes:
    t = Transcoder(encoding, offset)
    assert t.fast
    out = [t.feed(data[i:i + block]) for i in range(0, len(data), block)]
    return b"".join([*out, t.feed(b"", final=True)])


@pytest.mark.parametrize("encoding", ["gb18030", "gbk"])
def test_every_code_decodes_as_the_codec_decodes_it_whatever_the_block_size(encoding: str) -> None:
    # every valid code in one text, with ASCII around: the C loop's tables and the slow path together
    codes = [c for c in transcode._pair_codes() + (transcode._quad_codes() if encoding == "gb18030" else [])
             if _decodes(c, encoding)]
    random.Random(3).shuffle(codes)
    data = b"".join(c + (b"a1," if i % 7 == 0 else b"") for i, c in enumerate(codes))
    expected = data.decode(encoding).encode("utf-8")
    for block in (1, 2, 3, 5, 4096, len(data)):
        assert _feed_all(data, encoding, block) == expected, f"block {block}"


def _decodes(code: bytes, encoding: str) -> bool:
    try:
        code.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def test_characters_beyond_the_tables_go_through_the_codec() -> None:
    # above the BMP (four-byte codes from 0x90308130), the euro sign, U+FFFD's own code, a CJK run
    text = "杨浦区😀𠀀,€,\ufffd,校企合作\r\n" * 50
    data = text.encode("gb18030")
    for block in (1, 3, 7, 64, len(data)):
        assert _feed_all(data, "gb18030", block) == text.encode("utf-8")


@pytest.mark.parametrize("bad", [b"\xff", b"\x80", b"\x81\x7f", b"\x81\x30\x81", b"\x81\x30\x20\x30", b"\xa1\x20"])
@pytest.mark.parametrize("encoding", ["gb18030", "gbk"])
def test_a_bad_sequence_fails_where_the_codec_fails(bad: bytes, encoding: str) -> None:
    head = "项目编号,名称\r\n上海,1\r\n".encode(encoding)
    data = head + b"x," + bad + b",y\r\n" + "完".encode(encoding)
    with pytest.raises(UnicodeDecodeError) as codec:
        codecs.getincrementaldecoder(encoding)().decode(data, final=True)
    for block in (1, 2, 5, len(data)):
        t = Transcoder(encoding, offset=1000)
        with pytest.raises(UnicodeDecodeError):
            for i in range(0, len(data), block):
                t.feed(data[i:i + block])
            t.feed(b"", final=True)
        assert t.error_at == 1000 + codec.value.start, f"block {block}"


@pytest.mark.parametrize("encoding", ["gb18030", "gbk"])
def test_a_text_cut_inside_a_character_fails_only_when_nothing_more_comes(encoding: str) -> None:
    data = "校企".encode(encoding)[:-1]
    t = Transcoder(encoding)
    assert t.feed(data) == "校".encode()
    with pytest.raises(UnicodeDecodeError):
        t.feed(b"", final=True)
    assert t.error_at == 2


def test_random_bytes_give_the_codecs_text_or_its_error() -> None:
    rng = random.Random(11)
    alphabet = [b"\x81", b"\x30", b"\xa1", b"\xfe", b"\x40", b"\x7f", b"\x80", b"\xff", b"a", b",", b"\n", b"9"]
    for _ in range(3000):
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 24)))
        try:
            expected: bytes | int = data.decode("gb18030").encode("utf-8")
        except UnicodeDecodeError as exc:
            expected = exc.start
        t = Transcoder("gb18030")
        try:
            got: bytes | int = b"".join([t.feed(data[:len(data) // 2]), t.feed(data[len(data) // 2:]),
                                         t.feed(b"", final=True)])
        except UnicodeDecodeError:
            got = t.error_at  # type: ignore[assignment]
        assert got == expected, data


def test_other_encodings_and_an_install_without_the_extension_use_the_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "上海,1\r\n".encode("big5", errors="replace")
    assert not Transcoder("big5").fast
    assert Transcoder("big5").feed(text, final=True) == text.decode("big5").encode("utf-8")
    monkeypatch.setattr(transcode, "_transcode", None)
    t = Transcoder("gb18030", offset=10)
    assert not t.fast
    data = "校企合作".encode("gb18030")
    assert t.feed(data[:3]) + t.feed(data[3:], final=True) == "校企合作".encode()
    bad = Transcoder("gb18030", offset=10)
    with pytest.raises(UnicodeDecodeError):
        bad.feed(b"ab\xff", final=True)
    assert bad.error_at == 12
