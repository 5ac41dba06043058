"""How a signed update bundle travels from the backend to a lock over MQTT (README, "Updates").

The backend cuts a bundle (:mod:`smartlock.core.release`) into its *head* -- magic, manifest and
release signature -- and its payload, and publishes, all retained:

* ``updates/{bundle_id}/{index}``: one :class:`UpdateChunk` per ``CHUNK_BYTES`` of payload, once
  per bundle whatever the number of locks (``bundle_id`` is the first 16 bytes of the SHA-256 of
  the whole bundle, in hex);
* ``locks/{lock}/update``: an :class:`UpdateOffer` -- the bundle id, the chunk layout and the
  head -- for each lock the owner pushed it to (an empty retained message withdraws it).

The lock checks the head against the release key it pins *before* it fetches anything (a bundle
it would refuse costs it no download), then subscribes to the chunks it does not hold yet: chunks
already received are kept on disk, so a download cut by a lost connection or a restart resumes
where it stopped.  Once every chunk is there the whole bundle is opened again by
:func:`smartlock.core.release.open_bundle`, which checks the payload against the signed hash and
size: a truncated, reordered or altered download is refused there, whatever the chunks said.

Neither message is signed by the backend: the release signature covers what matters, and the
layout fields can only make a download fail, never make a wrong payload pass.

Pure: no IO, no clock.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import PROTOCOL_VERSION, MessageType, open_frame
from smartlock.core.release import MAGIC, MAX_PAYLOAD, read_manifest_unverified
from smartlock.core.wire import Writer

CHUNK_BYTES = 12 * 1024  # the broker refuses packets above 16 KiB (broker.MAX_PACKET_BYTES)
BUNDLE_ID_BYTES = 16
MAX_CHUNKS = math.ceil(MAX_PAYLOAD / CHUNK_BYTES)
MAX_OFFER_BYTES = 8192
UPDATES_PREFIX = "updates"


def bundle_id(bundle: bytes) -> str:
    """The name a bundle travels under: 32 hex digits of the SHA-256 of the whole file."""
    return hashlib.sha256(bundle).digest()[:BUNDLE_ID_BYTES].hex()


def chunk_topic(bundle: str, index: int) -> str:
    return f"{UPDATES_PREFIX}/{bundle}/{index}"


def _check_bundle_id(value: str) -> str:
    if len(value) != 2 * BUNDLE_ID_BYTES or value.strip("0123456789abcdef"):
        raise ValueError("a bundle id is 32 lowercase hex digits")
    return value


def _header(message_type: MessageType) -> Writer:
    return Writer().u8(PROTOCOL_VERSION).u8(message_type)


@dataclass(frozen=True)
class UpdateOffer:
    """Backend -> lock on ``locks/{lock}/update`` (retained): "install this bundle".

    ``version | type | bundle_id (16) | chunk_bytes u32 | chunk_count u16 | size u32 | head``.
    """

    bundle_id: str
    chunk_bytes: int
    chunk_count: int
    size: int  # of the payload
    head: bytes  # magic | manifest | signature: checked by the lock before anything is fetched

    def __post_init__(self) -> None:
        _check_bundle_id(self.bundle_id)
        if not 1 <= self.chunk_bytes <= CHUNK_BYTES:
            raise ValueError(f"chunks are 1 to {CHUNK_BYTES} bytes")
        if not 1 <= self.size <= MAX_PAYLOAD:
            raise ValueError("the payload size is out of range")
        if self.chunk_count != math.ceil(self.size / self.chunk_bytes):
            raise ValueError("the chunk count does not match the size")
        if self.chunk_count > MAX_CHUNKS:
            raise ValueError(f"more than {MAX_CHUNKS} chunks")
        if not self.head.startswith(MAGIC) or len(self.head) > MAX_OFFER_BYTES - 64:
            raise ValueError("not a bundle head")

    def __bytes__(self) -> bytes:
        return (
            _header(MessageType.UPDATE_OFFER)
            .raw(bytes.fromhex(self.bundle_id))
            .u32(self.chunk_bytes)
            .u16(self.chunk_count)
            .u32(self.size)
            .long_bytes(self.head)
            .getvalue()
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> UpdateOffer:
        reader = open_frame(payload, MessageType.UPDATE_OFFER, max_bytes=MAX_OFFER_BYTES)
        raw_id = reader.raw(BUNDLE_ID_BYTES)
        chunk_bytes, chunk_count, size = reader.u32(), reader.u16(), reader.u32()
        head = reader.long_bytes()
        reader.end()
        try:
            return cls(raw_id.hex(), chunk_bytes, chunk_count, size, head)
        except ValueError as exc:
            raise Rejected(Reason.MALFORMED, f"update offer: {exc}") from None


@dataclass(frozen=True)
class UpdateChunk:
    """Backend -> locks on ``updates/{bundle_id}/{index}`` (retained): one piece of a payload.

    ``version | type | bundle_id (16) | index u16 | data``.
    """

    bundle_id: str
    index: int
    data: bytes

    def __post_init__(self) -> None:
        _check_bundle_id(self.bundle_id)
        if not 0 <= self.index < MAX_CHUNKS:
            raise ValueError("chunk index out of range")
        if not 1 <= len(self.data) <= CHUNK_BYTES:
            raise ValueError(f"a chunk holds 1 to {CHUNK_BYTES} bytes")

    def __bytes__(self) -> bytes:
        return (
            _header(MessageType.UPDATE_CHUNK)
            .raw(bytes.fromhex(self.bundle_id))
            .u16(self.index)
            .raw(self.data)
            .getvalue()
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> UpdateChunk:
        reader = open_frame(payload, MessageType.UPDATE_CHUNK, max_bytes=CHUNK_BYTES + 64)
        raw_id = reader.raw(BUNDLE_ID_BYTES)
        index = reader.u16()
        data = reader.rest()
        try:
            return cls(raw_id.hex(), index, data)
        except ValueError as exc:
            raise Rejected(Reason.MALFORMED, f"update chunk: {exc}") from None


def split_bundle(bundle: bytes) -> tuple[UpdateOffer, list[UpdateChunk]]:
    """What the backend publishes for ``bundle`` (a file ``release sign`` made)."""
    _, _, payload = read_manifest_unverified(bundle)
    head = bundle[: len(bundle) - len(payload)]
    if not payload:
        raise ValueError("the bundle has no payload")
    name = bundle_id(bundle)
    chunks = [
        UpdateChunk(name, index, payload[offset : offset + CHUNK_BYTES])
        for index, offset in enumerate(range(0, len(payload), CHUNK_BYTES))
    ]
    offer = UpdateOffer(name, CHUNK_BYTES, len(chunks), len(payload), head)
    return offer, chunks


@dataclass
class Download:
    """A lock's download of one offered bundle: which chunks it holds, which it still needs.

    The caller keeps each accepted chunk on disk and, after a restart, rebuilds this with the
    indices it holds (``held``).
    """

    offer: UpdateOffer
    held: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if any(not 0 <= index < self.offer.chunk_count for index in self.held):
            raise ValueError("a held chunk index is out of range")

    def expected_length(self, index: int) -> int:
        if index < self.offer.chunk_count - 1:
            return self.offer.chunk_bytes
        return self.offer.size - self.offer.chunk_bytes * (self.offer.chunk_count - 1)

    def missing(self) -> list[int]:
        return [i for i in range(self.offer.chunk_count) if i not in self.held]

    def accept(self, chunk: UpdateChunk) -> bool:
        """True when ``chunk`` is new and belongs here (the caller stores it); False for a chunk
        already held; :class:`Rejected` for one of another bundle or of the wrong length."""
        if chunk.bundle_id != self.offer.bundle_id:
            raise Rejected(Reason.MALFORMED, "a chunk of another bundle")
        if chunk.index >= self.offer.chunk_count:
            raise Rejected(Reason.MALFORMED, f"chunk {chunk.index} of {self.offer.chunk_count}")
        if len(chunk.data) != self.expected_length(chunk.index):
            raise Rejected(Reason.MALFORMED, f"chunk {chunk.index} has the wrong length")
        if chunk.index in self.held:
            return False
        self.held.add(chunk.index)
        return True

    @property
    def complete(self) -> bool:
        return not self.missing()

    def assemble(self, chunks: list[bytes]) -> bytes:
        """The whole bundle from the head and the chunks, in order (to be opened with
        :func:`smartlock.core.release.open_bundle`)."""
        if not self.complete or len(chunks) != self.offer.chunk_count:
            raise ValueError("the download is not complete")
        return self.offer.head + b"".join(chunks)
