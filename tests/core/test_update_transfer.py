"""smartlock.core.update_transfer: a signed bundle cut into an offer and chunks, and a lock's
download of it -- the chunks rebuild the exact bundle, the offer's head is checked before any
chunk is fetched, and whatever the chunks say, a wrong payload never opens."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from collections.abc import Callable

import pytest

from pure_fixtures import DeterministicRandom
from smartlock import crypto
from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import PROTOCOL_VERSION, MessageType
from smartlock.core.release import (
    MAGIC,
    Manifest,
    UpdateRefused,
    check_head,
    make_bundle,
    open_bundle,
)
from smartlock.core.update_transfer import (
    CHUNK_BYTES,
    MAX_CHUNKS,
    MAX_OFFER_BYTES,
    Download,
    UpdateChunk,
    UpdateOffer,
    bundle_id,
    chunk_topic,
    split_bundle,
)
from smartlock.core.wire import Writer

VERSION = (1, 1, 0)
INSTALLED = (1, 0, 0)
SEVERAL = 3 * CHUNK_BYTES + 17  # four chunks, the last one short
PAYLOAD_SIZES = [1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, SEVERAL]
SIZE_IDS = ["one-byte", "just-under-a-chunk", "one-full-chunk", "a-chunk-and-a-byte", "several"]


@pytest.fixture(scope="module")
def release_key(backend_key: crypto.PrivateKey) -> crypto.PrivateKey:
    return backend_key  # any RSA key of the session; what matters is which one signed


def _payload(size: int, seed: bytes = b"wheel") -> bytes:
    return DeterministicRandom(seed)(size)


def _bundle(key: crypto.PrivateKey, size: int = SEVERAL, *, seed: bytes = b"wheel") -> bytes:
    return make_bundle(_payload(size, seed), release_key=key, version=VERSION)


def _check_head(head: bytes, key: crypto.PrivateKey) -> Manifest:
    return check_head(
        head, release_public=key.public_key(), running=INSTALLED, highest_installed=INSTALLED
    )


def _open_bundle(data: bytes, key: crypto.PrivateKey) -> bytes:
    return open_bundle(
        data, release_public=key.public_key(), running=INSTALLED, highest_installed=INSTALLED
    ).payload


@pytest.fixture(scope="module")
def bundle(release_key: crypto.PrivateKey) -> bytes:
    """A signed bundle of four chunks, the last one 17 bytes."""
    return _bundle(release_key)


@pytest.fixture(scope="module")
def split(bundle: bytes) -> tuple[UpdateOffer, list[UpdateChunk]]:
    return split_bundle(bundle)


@pytest.fixture
def offer(split: tuple[UpdateOffer, list[UpdateChunk]]) -> UpdateOffer:
    return split[0]


@pytest.fixture
def chunks(split: tuple[UpdateOffer, list[UpdateChunk]]) -> list[UpdateChunk]:
    return list(split[1])


def _rejection(call: Callable[..., object], *args: object) -> Rejected:
    with pytest.raises(Rejected) as refused:
        call(*args)
    return refused.value


# --- cutting a bundle ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", PAYLOAD_SIZES, ids=SIZE_IDS)
def test_chunks_after_the_head_are_exactly_the_bundle(
    release_key: crypto.PrivateKey, size: int
) -> None:
    data = _bundle(release_key, size)
    offer, chunks = split_bundle(data)
    assert offer.head + b"".join(chunk.data for chunk in chunks) == data
    assert len(data) - len(offer.head) == offer.size == size
    assert offer.chunk_bytes == CHUNK_BYTES
    assert offer.chunk_count == len(chunks) == math.ceil(size / CHUNK_BYTES)
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    assert {chunk.bundle_id for chunk in chunks} == {offer.bundle_id}
    assert all(len(chunk.data) == CHUNK_BYTES for chunk in chunks[:-1])
    assert len(chunks[-1].data) == size - CHUNK_BYTES * (len(chunks) - 1)


@pytest.mark.parametrize("size", PAYLOAD_SIZES, ids=SIZE_IDS)
def test_a_download_of_every_chunk_opens_to_the_signed_payload(
    release_key: crypto.PrivateKey, size: int
) -> None:
    data = _bundle(release_key, size)
    offer, chunks = split_bundle(data)
    download = Download(UpdateOffer.from_bytes(bytes(offer)))
    for chunk in chunks:
        assert download.accept(UpdateChunk.from_bytes(bytes(chunk)))
    assert download.complete
    assembled = download.assemble([chunk.data for chunk in chunks])
    assert assembled == data
    assert _open_bundle(assembled, release_key) == _payload(size)


@pytest.mark.parametrize("size", PAYLOAD_SIZES, ids=SIZE_IDS)
def test_the_offer_head_alone_passes_check_head(release_key: crypto.PrivateKey, size: int) -> None:
    offer, _ = split_bundle(_bundle(release_key, size))
    assert offer.head.startswith(MAGIC)
    manifest = _check_head(offer.head, release_key)
    assert manifest.version == VERSION
    assert manifest.size == size
    assert manifest.sha256 == hashlib.sha256(_payload(size)).hexdigest()


def test_a_bundle_travels_under_the_first_16_bytes_of_its_sha256(
    bundle: bytes, offer: UpdateOffer
) -> None:
    assert bundle_id(bundle) == hashlib.sha256(bundle).hexdigest()[:32] == offer.bundle_id
    assert chunk_topic(offer.bundle_id, 3) == f"updates/{offer.bundle_id}/3"


def test_two_bundles_of_the_same_payload_size_travel_under_different_ids(
    release_key: crypto.PrivateKey, bundle: bytes
) -> None:
    other = _bundle(release_key, seed=b"another wheel")
    assert bundle_id(other) != bundle_id(bundle)


def test_a_file_that_is_not_a_bundle_is_not_split() -> None:
    with pytest.raises(UpdateRefused) as refused:
        split_bundle(b"PK\x03\x04 a plain wheel")
    assert refused.value.reason == "malformed"


def test_a_bundle_without_a_payload_is_not_split(offer: UpdateOffer) -> None:
    with pytest.raises(ValueError, match="no payload"):
        split_bundle(offer.head)


# --- the offer on the wire -----------------------------------------------------------------------


def _offer_bytes(
    offer: UpdateOffer,
    *,
    version: int = PROTOCOL_VERSION,
    message_type: int = MessageType.UPDATE_OFFER,
    raw_id: bytes | None = None,
    chunk_bytes: int | None = None,
    chunk_count: int | None = None,
    size: int | None = None,
    head: bytes | None = None,
) -> bytes:
    """An offer assembled field by field as the module docstring lays it out, any field changed."""
    return (
        Writer()
        .u8(version)
        .u8(message_type)
        .raw(bytes.fromhex(offer.bundle_id) if raw_id is None else raw_id)
        .u32(offer.chunk_bytes if chunk_bytes is None else chunk_bytes)
        .u16(offer.chunk_count if chunk_count is None else chunk_count)
        .u32(offer.size if size is None else size)
        .long_bytes(offer.head if head is None else head)
        .getvalue()
    )


def test_an_offer_is_laid_out_as_documented_and_round_trips(offer: UpdateOffer) -> None:
    payload = bytes(offer)
    assert payload == _offer_bytes(offer)
    assert len(payload) == 2 + 16 + 4 + 2 + 4 + 2 + len(offer.head) <= MAX_OFFER_BYTES
    assert UpdateOffer.from_bytes(payload) == offer


def test_a_chunk_is_laid_out_as_documented_and_round_trips(chunks: list[UpdateChunk]) -> None:
    for chunk in chunks:
        payload = bytes(chunk)
        assert payload == (
            bytes([PROTOCOL_VERSION, MessageType.UPDATE_CHUNK])
            + bytes.fromhex(chunk.bundle_id)
            + chunk.index.to_bytes(2, "big")
            + chunk.data
        )
        assert UpdateChunk.from_bytes(payload) == chunk


def test_an_offer_of_another_protocol_version_is_refused(offer: UpdateOffer) -> None:
    payload = _offer_bytes(offer, version=PROTOCOL_VERSION + 1)
    assert _rejection(UpdateOffer.from_bytes, payload).reason is Reason.WRONG_VERSION


@pytest.mark.parametrize("message_type", [MessageType.UPDATE_CHUNK, MessageType.LOCK_REPORT])
def test_an_offer_of_another_message_type_is_refused(
    offer: UpdateOffer, message_type: MessageType
) -> None:
    payload = _offer_bytes(offer, message_type=message_type)
    assert _rejection(UpdateOffer.from_bytes, payload).reason is Reason.WRONG_TYPE


def test_an_offer_above_its_size_limit_is_refused_before_it_is_read(offer: UpdateOffer) -> None:
    at_limit = bytes(offer).ljust(MAX_OFFER_BYTES, b"\x00")
    assert _rejection(UpdateOffer.from_bytes, at_limit).reason is Reason.MALFORMED  # trailing
    over = at_limit + b"\x00"
    assert _rejection(UpdateOffer.from_bytes, over).reason is Reason.OVERSIZED
    wrong_version = bytes([PROTOCOL_VERSION + 1]) + over[1:]  # the size is checked first
    assert _rejection(UpdateOffer.from_bytes, wrong_version).reason is Reason.OVERSIZED


@pytest.mark.parametrize("keep", [0, 1, 2, 17, 18, 25, 30, -1])
def test_a_truncated_offer_is_malformed(offer: UpdateOffer, keep: int) -> None:
    payload = bytes(offer)[:keep]
    assert _rejection(UpdateOffer.from_bytes, payload).reason is Reason.MALFORMED


def test_an_offer_with_trailing_bytes_is_malformed(offer: UpdateOffer) -> None:
    refused = _rejection(UpdateOffer.from_bytes, bytes(offer) + b"\x00")
    assert refused.reason is Reason.MALFORMED
    assert "trailing" in str(refused)


@pytest.mark.parametrize("delta", [-1, 1])
def test_an_offer_whose_chunk_count_does_not_match_its_size_is_malformed(
    offer: UpdateOffer, delta: int
) -> None:
    payload = _offer_bytes(offer, chunk_count=offer.chunk_count + delta)
    refused = _rejection(UpdateOffer.from_bytes, payload)
    assert refused.reason is Reason.MALFORMED
    assert "chunk count" in str(refused)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("chunk_bytes", 0, "chunks are"),
        ("chunk_bytes", CHUNK_BYTES + 1, "chunks are"),
        ("size", 0, "payload size"),
    ],
)
def test_an_offer_with_a_layout_out_of_range_is_malformed(
    offer: UpdateOffer, field: str, value: int, says: str
) -> None:
    payload = _offer_bytes(offer, **{field: value})  # type: ignore[arg-type]
    refused = _rejection(UpdateOffer.from_bytes, payload)
    assert refused.reason is Reason.MALFORMED
    assert says in str(refused)


def test_an_offer_whose_bundle_id_is_cut_short_is_malformed(offer: UpdateOffer) -> None:
    payload = (
        bytes([PROTOCOL_VERSION, MessageType.UPDATE_OFFER]) + bytes.fromhex(offer.bundle_id)[:15]
    )
    assert _rejection(UpdateOffer.from_bytes, payload).reason is Reason.MALFORMED


@pytest.mark.parametrize(
    "bad_id",
    [
        pytest.param("", id="empty"),
        pytest.param("ab" * 15, id="30-digits"),
        pytest.param("ab" * 17, id="34-digits"),
        pytest.param("AB" * 16, id="uppercase"),
        pytest.param("zz" * 16, id="not-hex"),
        pytest.param("../" * 10 + "ab", id="a-topic-path"),
    ],
)
def test_an_offer_or_chunk_with_a_bad_bundle_id_is_not_made(
    offer: UpdateOffer, chunks: list[UpdateChunk], bad_id: str
) -> None:
    with pytest.raises(ValueError, match="bundle id"):
        dataclasses.replace(offer, bundle_id=bad_id)
    with pytest.raises(ValueError, match="bundle id"):
        dataclasses.replace(chunks[0], bundle_id=bad_id)


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"SLU2" + b"\x00" * 40, id="another-magic"),
        pytest.param(b"PK\x03\x04" + b"\x00" * 40, id="a-wheel"),
        pytest.param(b"SLU", id="magic-cut-short"),
        pytest.param(b"", id="empty"),
    ],
)
def test_an_offer_whose_head_does_not_start_with_the_magic_is_malformed(
    offer: UpdateOffer, head: bytes
) -> None:
    refused = _rejection(UpdateOffer.from_bytes, _offer_bytes(offer, head=head))
    assert refused.reason is Reason.MALFORMED
    assert "not a bundle head" in str(refused)


# --- a chunk on the wire -------------------------------------------------------------------------


def _chunk_bytes(
    *,
    version: int = PROTOCOL_VERSION,
    message_type: int = MessageType.UPDATE_CHUNK,
    index: int = 0,
    data: bytes = b"\xaa" * 10,
) -> bytes:
    return Writer().u8(version).u8(message_type).raw(b"\x11" * 16).u16(index).raw(data).getvalue()


_LONG_DATA = b"\xaa" * (CHUNK_BYTES + 1)  # within the size limit, longer than any chunk
_TOO_BIG = b"\xaa" * (CHUNK_BYTES + 45)  # above the size limit of a chunk message


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(
            _chunk_bytes(version=PROTOCOL_VERSION + 1), Reason.WRONG_VERSION, id="version"
        ),
        pytest.param(
            _chunk_bytes(message_type=MessageType.UPDATE_OFFER), Reason.WRONG_TYPE, id="type"
        ),
        pytest.param(_chunk_bytes(data=_TOO_BIG), Reason.OVERSIZED, id="oversized"),
        pytest.param(_chunk_bytes(data=_LONG_DATA), Reason.MALFORMED, id="data-too-long"),
        pytest.param(_chunk_bytes(data=b""), Reason.MALFORMED, id="no-data"),
        pytest.param(_chunk_bytes(index=MAX_CHUNKS), Reason.MALFORMED, id="index-too-high"),
        pytest.param(_chunk_bytes()[:19], Reason.MALFORMED, id="index-cut-short"),
        pytest.param(_chunk_bytes()[:1], Reason.MALFORMED, id="header-cut-short"),
    ],
)
def test_a_chunk_that_no_bundle_could_hold_is_refused(payload: bytes, reason: Reason) -> None:
    assert _rejection(UpdateChunk.from_bytes, payload).reason is reason


@pytest.mark.parametrize(
    ("index", "length"), [(0, CHUNK_BYTES), (MAX_CHUNKS - 1, 1)], ids=["full", "last-index"]
)
def test_a_chunk_at_the_bounds_is_accepted(index: int, length: int) -> None:
    payload = _chunk_bytes(index=index, data=b"\xaa" * length)
    assert bytes(UpdateChunk.from_bytes(payload)) == payload


# --- a lock's download ---------------------------------------------------------------------------


def test_each_chunk_is_accepted_once(offer: UpdateOffer, chunks: list[UpdateChunk]) -> None:
    download = Download(offer)
    assert [download.accept(chunk) for chunk in chunks] == [True] * len(chunks)
    assert [download.accept(chunk) for chunk in chunks] == [False] * len(chunks)
    assert download.held == set(range(offer.chunk_count))


def test_a_chunk_of_another_bundle_is_refused(
    release_key: crypto.PrivateKey, offer: UpdateOffer
) -> None:
    _, other_chunks = split_bundle(_bundle(release_key, seed=b"another wheel"))
    download = Download(offer)
    for chunk in other_chunks:  # the same layout, another bundle id
        refused = _rejection(download.accept, chunk)
        assert refused.reason is Reason.MALFORMED
        assert "another bundle" in str(refused)
    assert download.missing() == list(range(offer.chunk_count))


@pytest.mark.parametrize("beyond", [0, 1, 100])
def test_a_chunk_beyond_the_offered_count_is_refused(offer: UpdateOffer, beyond: int) -> None:
    download = Download(offer)
    chunk = UpdateChunk(offer.bundle_id, offer.chunk_count + beyond, b"\xaa" * 17)
    assert _rejection(download.accept, chunk).reason is Reason.MALFORMED
    assert not download.held


@pytest.mark.parametrize(
    ("which", "change"),
    [("last", -1), ("last", +1), ("middle", -1), ("first", -1)],
    ids=["short-last", "long-last", "short-middle", "short-first"],
)
def test_a_chunk_of_the_wrong_length_is_refused(
    offer: UpdateOffer, chunks: list[UpdateChunk], which: str, change: int
) -> None:
    chunk = {"first": chunks[0], "middle": chunks[1], "last": chunks[-1]}[which]
    data = chunk.data[:-1] if change < 0 else chunk.data + b"\x00"
    download = Download(offer)
    refused = _rejection(download.accept, dataclasses.replace(chunk, data=data))
    assert refused.reason is Reason.MALFORMED
    assert "wrong length" in str(refused)
    assert not download.held
    assert download.accept(chunk)  # the genuine chunk still is what was missing


def test_a_middle_chunk_longer_than_the_offered_chunk_size_is_refused(
    offer: UpdateOffer, bundle: bytes
) -> None:
    small = 1000  # a layout of smaller chunks, so that a longer one can still be made
    layout = dataclasses.replace(
        offer, chunk_bytes=small, chunk_count=math.ceil(offer.size / small)
    )
    payload = bundle[len(offer.head) :]
    download = Download(layout)
    long_middle = UpdateChunk(offer.bundle_id, 1, payload[small : 2 * small + 1])
    assert _rejection(download.accept, long_middle).reason is Reason.MALFORMED
    assert download.accept(UpdateChunk(offer.bundle_id, 1, payload[small : 2 * small]))


@pytest.mark.parametrize("seed", range(5))
def test_missing_shrinks_as_chunks_arrive_in_any_order(
    release_key: crypto.PrivateKey, seed: int
) -> None:
    offer, chunks = split_bundle(_bundle(release_key, 7 * CHUNK_BYTES + 5))
    random.Random(seed).shuffle(chunks)
    download = Download(offer)
    remaining = set(range(offer.chunk_count))
    for chunk in chunks:
        assert not download.complete
        assert download.missing() == sorted(remaining)
        assert download.accept(chunk)
        remaining.discard(chunk.index)
        assert download.missing() == sorted(remaining)
    assert download.missing() == []
    assert download.complete


def test_assemble_only_once_every_chunk_is_held(
    bundle: bytes, offer: UpdateOffer, chunks: list[UpdateChunk]
) -> None:
    download = Download(offer)
    data = [chunk.data for chunk in chunks]
    for chunk in chunks[:-1]:
        download.accept(chunk)
        with pytest.raises(ValueError, match="not complete"):
            download.assemble(data)
    download.accept(chunks[-1])
    with pytest.raises(ValueError, match="not complete"):
        download.assemble(data[:-1])  # the caller lost one on its way
    assert download.assemble(data) == bundle


def test_a_resumed_download_needs_only_the_rest(
    release_key: crypto.PrivateKey, bundle: bytes, offer: UpdateOffer, chunks: list[UpdateChunk]
) -> None:
    download = Download(UpdateOffer.from_bytes(bytes(offer)), held={0, 2})  # kept on disk
    assert download.missing() == [1, 3]
    assert not download.accept(chunks[0])
    assert not download.accept(chunks[2])
    assert download.accept(chunks[3])
    assert download.missing() == [1]
    assert not download.complete
    assert download.accept(chunks[1])
    assembled = download.assemble([chunk.data for chunk in chunks])
    assert assembled == bundle
    assert _open_bundle(assembled, release_key) == bundle[len(offer.head) :]


@pytest.mark.parametrize("which", [0, 1, -1], ids=["first", "middle", "last"])
@pytest.mark.parametrize("where", [0, -1], ids=["first-byte", "last-byte"])
def test_a_download_with_an_altered_byte_is_refused_as_bad_hash(
    release_key: crypto.PrivateKey,
    offer: UpdateOffer,
    chunks: list[UpdateChunk],
    which: int,
    where: int,
) -> None:
    altered = bytearray(chunks[which].data)
    altered[where] ^= 0x01
    chunks[which] = dataclasses.replace(chunks[which], data=bytes(altered))
    download = Download(offer)
    assert all(download.accept(chunk) for chunk in chunks)  # the layout cannot tell
    assembled = download.assemble([chunk.data for chunk in chunks])
    with pytest.raises(UpdateRefused) as refused:
        _open_bundle(assembled, release_key)
    assert refused.value.reason == "bad_hash"


def test_a_download_assembled_out_of_order_is_refused_as_bad_hash(
    release_key: crypto.PrivateKey, offer: UpdateOffer, chunks: list[UpdateChunk]
) -> None:
    download = Download(offer)
    for chunk in chunks:
        download.accept(chunk)
    data = [chunk.data for chunk in chunks]
    data[0], data[1] = data[1], data[0]  # two full chunks: the same lengths, swapped
    with pytest.raises(UpdateRefused) as refused:
        _open_bundle(download.assemble(data), release_key)
    assert refused.value.reason == "bad_hash"


def test_a_bundle_of_another_release_key_is_refused_from_the_offer_alone(
    release_key: crypto.PrivateKey, lock_key: crypto.PrivateKey
) -> None:
    forged_offer, _ = split_bundle(_bundle(lock_key))
    received = UpdateOffer.from_bytes(bytes(forged_offer))  # the offer, not one chunk fetched
    with pytest.raises(UpdateRefused) as refused:
        _check_head(received.head, release_key)
    assert refused.value.reason == "bad_signature"
    assert _check_head(received.head, lock_key).version == VERSION  # it is only the key


def test_an_offer_for_an_older_release_is_refused_from_the_head_alone(
    release_key: crypto.PrivateKey,
) -> None:
    offer, _ = split_bundle(make_bundle(b"old", release_key=release_key, version=(0, 9, 0)))
    with pytest.raises(UpdateRefused) as refused:
        _check_head(offer.head, release_key)
    assert refused.value.reason == "not_newer"


def test_an_offer_of_more_chunks_than_a_payload_may_have_is_malformed(offer: UpdateOffer) -> None:
    count = MAX_CHUNKS + 1
    with pytest.raises(Rejected) as refused:
        UpdateOffer.from_bytes(_offer_bytes(offer, chunk_bytes=1, chunk_count=count, size=count))
    assert refused.value.reason is Reason.MALFORMED


def test_a_resumed_download_refuses_held_indices_outside_the_offer(offer: UpdateOffer) -> None:
    with pytest.raises(ValueError, match="out of range"):
        Download(offer, held={0, offer.chunk_count})
