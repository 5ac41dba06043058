"""Fuzzes how an update travels to a lock (smartlock.core.update_transfer): ``UpdateOffer`` and
``UpdateChunk`` ``from_bytes``, and ``Download.accept``.

Rules: decoding any bytes gives a message or ``Rejected``, nothing else; a decoded message is
exactly the bytes it came from (it re-encodes to them); valid messages round-trip; a download
accepts any chunk or refuses it with ``Rejected``, holds only indices of its offer (never more
than ``chunk_count``), says True exactly for a chunk it did not hold, and is complete exactly
when nothing is missing.
"""

from __future__ import annotations

import math

from fuzz_support import Mutation, decoded_or_refused, mutations
from hypothesis import example, given
from hypothesis import strategies as st

from smartlock.core.errors import Rejected
from smartlock.core.messages import PROTOCOL_VERSION, MessageType
from smartlock.core.release import MAGIC, MAX_PAYLOAD
from smartlock.core.update_transfer import (
    CHUNK_BYTES,
    MAX_CHUNKS,
    MAX_OFFER_BYTES,
    Download,
    UpdateChunk,
    UpdateOffer,
)

bundle_ids = st.binary(min_size=16, max_size=16).map(bytes.hex)
heads = st.binary(max_size=300).map(lambda rest: MAGIC + rest)


@st.composite
def offers(draw: st.DrawFn, *, max_size: int = MAX_PAYLOAD) -> UpdateOffer:
    """A valid offer: a layout whose count matches its size, a head that starts as a bundle's."""
    chunk_bytes = draw(st.integers(1, CHUNK_BYTES) | st.sampled_from([1, CHUNK_BYTES]))
    # the count travels as a u16 (and no chunk has an index beyond MAX_CHUNKS)
    largest = min(max_size, chunk_bytes * min(0xFFFF, MAX_CHUNKS))
    size = draw(st.integers(1, largest) | st.sampled_from([1, largest]))
    count = math.ceil(size / chunk_bytes)
    return UpdateOffer(draw(bundle_ids), chunk_bytes, count, size, draw(heads))


chunk_data = st.binary(min_size=1, max_size=64) | st.integers(CHUNK_BYTES - 1, CHUNK_BYTES).map(
    lambda size: b"\xaa" * size
)
chunks = st.builds(UpdateChunk, bundle_ids, st.integers(0, MAX_CHUNKS - 1), chunk_data)


def _headers_then(message_type: MessageType, max_rest: int) -> st.SearchStrategy[bytes]:
    """Our version and ``message_type`` (or any two bytes), then anything."""
    return st.builds(
        lambda version, kind, rest: bytes([version, kind]) + rest,
        st.just(PROTOCOL_VERSION) | st.integers(0, 255),
        st.just(int(message_type)) | st.integers(0, 255),
        st.binary(max_size=max_rest),
    )


# --- offers --------------------------------------------------------------------------------------


@given(offers())
def test_every_offer_round_trips(offer: UpdateOffer) -> None:
    payload = bytes(offer)
    assert len(payload) <= MAX_OFFER_BYTES
    assert UpdateOffer.from_bytes(payload) == offer


@given(offers(), mutations())
def test_a_mutated_offer_decodes_to_exactly_its_bytes_or_is_refused(
    offer: UpdateOffer, mutation: Mutation
) -> None:
    payload = mutation.apply(bytes(offer))
    decoded = decoded_or_refused(UpdateOffer.from_bytes, payload)
    if decoded is not None:
        assert bytes(decoded) == payload


@given(st.binary(max_size=400) | _headers_then(MessageType.UPDATE_OFFER, 400))
@example(b"")
@example(bytes([PROTOCOL_VERSION, MessageType.UPDATE_OFFER]) + b"\x00" * (MAX_OFFER_BYTES - 2))
@example(bytes([PROTOCOL_VERSION, MessageType.UPDATE_OFFER]) + b"\xff" * (MAX_OFFER_BYTES - 1))
def test_any_bytes_decode_to_an_offer_of_exactly_those_bytes_or_are_refused(
    payload: bytes,
) -> None:
    decoded = decoded_or_refused(UpdateOffer.from_bytes, payload)
    if decoded is not None:
        assert bytes(decoded) == payload


# --- chunks --------------------------------------------------------------------------------------


@given(chunks)
def test_every_chunk_round_trips(chunk: UpdateChunk) -> None:
    assert UpdateChunk.from_bytes(bytes(chunk)) == chunk


@given(chunks, mutations())
def test_a_mutated_chunk_decodes_to_exactly_its_bytes_or_is_refused(
    chunk: UpdateChunk, mutation: Mutation
) -> None:
    payload = mutation.apply(bytes(chunk))
    decoded = decoded_or_refused(UpdateChunk.from_bytes, payload)
    if decoded is not None:
        assert bytes(decoded) == payload


@given(
    st.binary(max_size=400)
    | _headers_then(MessageType.UPDATE_CHUNK, 400)
    | st.builds(
        lambda header, size: header + b"\x5a" * size,
        _headers_then(MessageType.UPDATE_CHUNK, 20),
        st.integers(CHUNK_BYTES - 2, CHUNK_BYTES + 64),
    )
)
@example(b"")
@example(bytes([PROTOCOL_VERSION, MessageType.UPDATE_CHUNK]) + b"\xff" * 18)
@example(bytes([PROTOCOL_VERSION, MessageType.UPDATE_CHUNK]) + b"\xff" * 19)
def test_any_bytes_decode_to_a_chunk_of_exactly_those_bytes_or_are_refused(
    payload: bytes,
) -> None:
    decoded = decoded_or_refused(UpdateChunk.from_bytes, payload)
    if decoded is not None:
        assert bytes(decoded) == payload


# --- a lock's download ---------------------------------------------------------------------------


@st.composite
def small_offers(draw: st.DrawFn) -> UpdateOffer:
    """A valid offer of up to 12 small chunks, so that a download of it may complete."""
    chunk_bytes = draw(st.integers(1, 64))
    count = draw(st.integers(1, 12))
    size = draw(st.integers((count - 1) * chunk_bytes + 1, count * chunk_bytes))
    return UpdateOffer(draw(bundle_ids), chunk_bytes, count, size, draw(heads))


@st.composite
def chunks_for(draw: st.DrawFn, offer: UpdateOffer) -> UpdateChunk:
    """A chunk that is nearly one of ``offer``'s: its bundle or another, an index in or just
    past the count, the expected length or one off -- or any chunk at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(chunks)
    name = draw(st.just(offer.bundle_id) | bundle_ids)
    index = draw(st.integers(0, min(offer.chunk_count + 1, MAX_CHUNKS - 1)))
    expected = Download(offer).expected_length(min(index, offer.chunk_count - 1))
    length = min(CHUNK_BYTES, max(1, expected + draw(st.sampled_from([0, 0, 0, -1, 1]))))
    return UpdateChunk(name, index, b"\x33" * length)


@given(st.data(), small_offers() | offers())
def test_a_download_holds_only_its_offers_chunks_whatever_arrives(
    data: st.DataObject, offer: UpdateOffer
) -> None:
    download = Download(offer)
    for _ in range(data.draw(st.integers(1, 40), label="arrivals")):
        chunk = data.draw(chunks_for(offer), label="chunk")
        held_before = set(download.held)
        try:
            accepted = download.accept(chunk)
        except Rejected:
            assert download.held == held_before  # a refused chunk changes nothing
            continue
        assert chunk.bundle_id == offer.bundle_id
        assert len(chunk.data) == download.expected_length(chunk.index)
        assert accepted is (chunk.index not in held_before)
        assert download.held == held_before | {chunk.index}
        assert download.held <= set(range(offer.chunk_count))
        assert len(download.held) <= offer.chunk_count
        assert download.complete is (download.missing() == [])
        assert sorted([*download.held, *download.missing()]) == list(range(offer.chunk_count))
