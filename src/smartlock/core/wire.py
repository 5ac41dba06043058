"""Bounded binary encoding used by every message (big-endian, length-prefixed strings).

Readers never trust a length they are given: every read is checked against what is left, and a
short or over-long buffer raises :class:`Rejected` with reason ``malformed``.
"""

from __future__ import annotations

import re
import struct

from smartlock.core.errors import Reason, Rejected

IDENTIFIER = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def check_identifier(value: str, what: str = "identifier") -> str:
    """Lock, guest and user ids: 1-32 chars of ``a-z 0-9 _ -``, safe in topics and file names."""
    if not IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"invalid {what} {value!r}: use 1-32 characters a-z, 0-9, '_' or '-', "
            "starting with a letter or digit"
        )
    return value


class Writer:
    """Accumulates fields into bytes."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, value: int) -> Writer:
        self._parts.append(struct.pack(">B", value))
        return self

    def u16(self, value: int) -> Writer:
        self._parts.append(struct.pack(">H", value))
        return self

    def u32(self, value: int) -> Writer:
        self._parts.append(struct.pack(">I", value))
        return self

    def raw(self, value: bytes) -> Writer:
        self._parts.append(value)
        return self

    def short_bytes(self, value: bytes) -> Writer:
        """Up to 255 bytes, prefixed by a one-byte length."""
        if len(value) > 0xFF:
            raise ValueError("field longer than 255 bytes")
        return self.u8(len(value)).raw(value)

    def long_bytes(self, value: bytes) -> Writer:
        """Up to 65535 bytes, prefixed by a two-byte length."""
        if len(value) > 0xFFFF:
            raise ValueError("field longer than 65535 bytes")
        return self.u16(len(value)).raw(value)

    def text(self, value: str) -> Writer:
        return self.short_bytes(value.encode("utf-8"))

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    """Reads fields from bytes; every overrun is a ``malformed`` rejection."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def _take(self, size: int) -> bytes:
        end = self._offset + size
        if end > len(self._data):
            raise Rejected(Reason.MALFORMED, "truncated")
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk

    def u8(self) -> int:
        return int(self._take(1)[0])

    def u16(self) -> int:
        value: int = struct.unpack(">H", self._take(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack(">I", self._take(4))[0]
        return value

    def raw(self, size: int) -> bytes:
        return self._take(size)

    def short_bytes(self) -> bytes:
        return self._take(self.u8())

    def long_bytes(self) -> bytes:
        return self._take(self.u16())

    def rest(self) -> bytes:
        """Everything not read yet (for a trailing ciphertext)."""
        return self._take(len(self._data) - self._offset)

    def text_value(self) -> str:
        """Short UTF-8 text (a reason, a state name); malformed unless valid UTF-8."""
        try:
            return self.short_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected(Reason.MALFORMED, "text is not UTF-8") from None

    def identifier(self) -> str:
        raw = self.short_bytes()
        try:
            value = raw.decode("utf-8")
            return check_identifier(value)
        except (UnicodeDecodeError, ValueError):
            raise Rejected(Reason.MALFORMED, "bad identifier") from None

    def offset(self) -> int:
        return self._offset

    def end(self) -> None:
        """Assert that nothing is left: trailing bytes are as suspicious as missing ones."""
        if self._offset != len(self._data):
            raise Rejected(Reason.MALFORMED, "trailing bytes")
