"""smartlock.core.wire: the bounded big-endian encoding under every message."""

from __future__ import annotations

import pytest

from smartlock.core.errors import Reason, Rejected
from smartlock.core.wire import Reader, Writer, check_identifier


def test_integers_round_trip_big_endian() -> None:
    data = Writer().u8(0xAB).u16(0x1234).u32(0xDEADBEEF).getvalue()
    assert data == bytes.fromhex("ab1234deadbeef")
    reader = Reader(data)
    assert (reader.u8(), reader.u16(), reader.u32()) == (0xAB, 0x1234, 0xDEADBEEF)
    reader.end()


def test_length_prefixed_fields_round_trip() -> None:
    data = Writer().short_bytes(b"abc").long_bytes(b"x" * 300).text("lock-1").raw(b"zz").getvalue()
    assert data[:4] == b"\x03abc"
    assert data[4:6] == (300).to_bytes(2, "big")
    reader = Reader(data)
    assert reader.short_bytes() == b"abc"
    assert reader.long_bytes() == b"x" * 300
    assert reader.identifier() == "lock-1"
    assert reader.raw(2) == b"zz"
    assert reader.offset() == len(data)
    reader.end()


def test_empty_length_prefixed_fields_round_trip() -> None:
    reader = Reader(Writer().short_bytes(b"").long_bytes(b"").getvalue())
    assert reader.short_bytes() == b""
    assert reader.long_bytes() == b""
    reader.end()


@pytest.mark.parametrize(
    ("data", "read"),
    [
        (b"", Reader.u8),
        (b"\x01", Reader.u16),
        (b"\x01\x02\x03", Reader.u32),
        (b"\x05abcd", Reader.short_bytes),
        (b"\x00\x05abcd", Reader.long_bytes),
        (b"\x01", Reader.long_bytes),
        (b"\x06lock", Reader.identifier),
    ],
    ids=["u8", "u16", "u32", "short_bytes", "long_bytes", "long_bytes_length", "identifier"],
)
def test_read_past_the_end_is_malformed(data: bytes, read) -> None:
    with pytest.raises(Rejected) as caught:
        read(Reader(data))
    assert caught.value.reason is Reason.MALFORMED


def test_raw_read_past_the_end_is_malformed() -> None:
    reader = Reader(b"abc")
    with pytest.raises(Rejected) as caught:
        reader.raw(4)
    assert caught.value.reason is Reason.MALFORMED


def test_failed_read_does_not_consume_bytes() -> None:
    reader = Reader(b"\x01\x02\x03")
    with pytest.raises(Rejected):
        reader.u32()
    assert reader.offset() == 0
    assert reader.u16() == 0x0102


def test_trailing_bytes_are_malformed() -> None:
    reader = Reader(b"\x01\x02")
    reader.u8()
    with pytest.raises(Rejected) as caught:
        reader.end()
    assert caught.value.reason is Reason.MALFORMED


def test_end_accepts_fully_read_buffer() -> None:
    reader = Reader(b"\x01")
    reader.u8()
    reader.end()  # must not raise


@pytest.mark.parametrize(
    "value",
    ["a", "0", "lock1", "front-door_2", "a" * 32, "9lives"],
)
def test_valid_identifiers_are_accepted(value: str) -> None:
    assert check_identifier(value) == value
    assert Reader(Writer().text(value).getvalue()).identifier() == value


BAD_IDENTIFIERS = [
    "",
    "a" * 33,
    "Lock1",
    "-lock",
    "_lock",
    "lock 1",
    "lock/1",
    "lock+",
    "lock#",
    "lock.1",
    "lock1\x00",
    "ünïcode",
    pytest.param("lock1\n", id="trailing-newline"),
]


@pytest.mark.parametrize("value", BAD_IDENTIFIERS)
def test_invalid_identifier_is_refused_locally(value: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        check_identifier(value)


@pytest.mark.parametrize("value", BAD_IDENTIFIERS)
def test_invalid_identifier_on_the_wire_is_malformed(value: str) -> None:
    with pytest.raises(Rejected) as caught:
        Reader(Writer().text(value).getvalue()).identifier()
    assert caught.value.reason is Reason.MALFORMED


def test_identifier_that_is_not_utf8_is_malformed() -> None:
    with pytest.raises(Rejected) as caught:
        Reader(b"\x02\xff\xfe").identifier()
    assert caught.value.reason is Reason.MALFORMED


def test_check_identifier_names_what_it_checks() -> None:
    with pytest.raises(ValueError, match="lock id"):
        check_identifier("BAD", "lock id")


def test_short_bytes_longer_than_255_are_refused() -> None:
    Writer().short_bytes(b"x" * 255)  # the limit itself is fine
    with pytest.raises(ValueError, match="255"):
        Writer().short_bytes(b"x" * 256)


def test_long_bytes_longer_than_65535_are_refused() -> None:
    Writer().long_bytes(b"x" * 0xFFFF)
    with pytest.raises(ValueError, match="65535"):
        Writer().long_bytes(b"x" * 0x10000)
