"""What the fuzz suite shares: byte mutations of valid messages, edits of JSON documents, strategies
for the protocol's values, a fixed clock and deterministic randomness.

The rule every fuzz test checks: a decoder lets no exception escape but its documented one, and
accepts nothing malformed.  Authenticated messages are checked with :func:`assert_mutation_refused`:
the genuine message opens and every mutation of it (:func:`mutations`) is refused.

This module has a name of its own (not ``conftest``): ``from conftest import ...`` would find
whichever conftest was imported last.
"""

from __future__ import annotations

import copy
import math
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import assume, settings
from hypothesis import strategies as st

from pure_fixtures import DeterministicRandom as DeterministicRandom  # noqa: PLC0414 -- re-exported
from smartlock.core.errors import Rejected
from smartlock.core.messages import PROTOCOL_VERSION, Action
from smartlock.core.wire import IDENTIFIER

CI_EXAMPLES = 60  # examples a test in the ci profile (the default)
FUZZ_EXAMPLES = 5000  # examples a test in the fuzz profile (make fuzz)
NOW = 1_800_000_000.0
LOCK_ID = "lock1"
GUEST_ID = "guest1"


def costly_examples() -> settings:
    """Settings for a test whose every example is costly (a whole CLI command and its store):
    a tenth of the profile's examples, never fewer than the ci profile's.  The parsers behind such
    a test are fuzzed with the full budget on their own."""
    return settings(max_examples=max(CI_EXAMPLES, settings.default.max_examples // 10))


# --- randomness ----------------------------------------------------------------------------------


# --- mutations of bytes --------------------------------------------------------------------------
# Positions wrap around the message, so one mutation applies to a message of any length and can be
# written in an @example without knowing the message.


@dataclass(frozen=True)
class FlipBit:
    position: int
    bit: int

    def apply(self, data: bytes) -> bytes:
        index = self.position % len(data)
        return data[:index] + bytes([data[index] ^ (1 << self.bit)]) + data[index + 1 :]


@dataclass(frozen=True)
class ReplaceByte:
    position: int
    xor: int  # 1..255: the byte always changes

    def apply(self, data: bytes) -> bytes:
        index = self.position % len(data)
        return data[:index] + bytes([data[index] ^ self.xor]) + data[index + 1 :]


@dataclass(frozen=True)
class SetVersion:
    """The version byte (at ``at``) set to ``value``, another version than the message's."""

    value: int
    at: int = 0

    def apply(self, data: bytes) -> bytes:
        return data[: self.at] + bytes([self.value]) + data[self.at + 1 :]


@dataclass(frozen=True)
class Truncate:
    keep: int

    def apply(self, data: bytes) -> bytes:
        return data[: self.keep % len(data)]


@dataclass(frozen=True)
class Append:
    extra: bytes

    def apply(self, data: bytes) -> bytes:
        return data + self.extra


@dataclass(frozen=True)
class Insert:
    position: int
    extra: bytes

    def apply(self, data: bytes) -> bytes:
        index = self.position % (len(data) + 1)
        return data[:index] + self.extra + data[index:]


@dataclass(frozen=True)
class Delete:
    position: int
    count: int

    def apply(self, data: bytes) -> bytes:
        index = self.position % len(data)
        return data[:index] + data[index + self.count :]


@dataclass(frozen=True)
class Several:
    """Mutations applied in turn (they may cancel out: :func:`mutate` skips those)."""

    steps: tuple[Mutation, ...]

    def apply(self, data: bytes) -> bytes:
        for step in self.steps:
            if not data:
                break
            data = step.apply(data)
        return data


Mutation = FlipBit | ReplaceByte | SetVersion | Truncate | Append | Insert | Delete | Several

_positions = st.integers(min_value=0, max_value=4096)
_extra = st.binary(min_size=1, max_size=64)


def mutations(
    *, version: int | None = PROTOCOL_VERSION, version_at: int = 0
) -> st.SearchStrategy[Mutation]:
    """Bit flips, byte replacements, truncations, appended / inserted / deleted bytes, another
    version byte (when ``version`` is the message's, at ``version_at``), and a few of them at once.
    """
    single: list[st.SearchStrategy[Mutation]] = [
        st.builds(FlipBit, _positions, st.integers(0, 7)),
        st.builds(ReplaceByte, _positions, st.integers(1, 255)),
        st.builds(Truncate, _positions),
        st.builds(Append, _extra),
        st.builds(Insert, _positions, _extra),
        st.builds(Delete, _positions, st.integers(1, 300)),
    ]
    if version is not None:
        others = st.integers(0, 255).filter(lambda value: value != version)
        single.append(st.builds(SetVersion, others, st.just(version_at)))
    one = st.one_of(single)
    return st.one_of(one, st.builds(Several, st.lists(one, min_size=2, max_size=4).map(tuple)))


def mutate(original: bytes, mutation: Mutation) -> bytes:
    """``mutation`` applied to ``original``; the example is skipped if it changed nothing."""
    mutated = mutation.apply(original)
    assume(mutated != original)
    return mutated


def assert_mutation_refused(
    open_: Callable[[bytes], object], original: bytes, mutation: Mutation
) -> Rejected:
    """``open_`` refuses the mutated message with :class:`Rejected` (and raises nothing else)
    while it accepts ``original``.

    The mutated message goes first: an opener that remembers what it accepted (a replay cache)
    must not be what refuses it, and the refusal must leave the genuine message acceptable.
    """
    mutated = mutate(original, mutation)
    with pytest.raises(Rejected) as refused:
        open_(mutated)
    open_(original)
    return refused.value


def decoded_or_refused(decode: Callable[[bytes], Any], data: bytes) -> Any | None:
    """``decode(data)``, or None when it was refused with :class:`Rejected` (anything else
    escapes and fails the test)."""
    try:
        return decode(data)
    except Rejected:
        return None


# --- strategies for the protocol's values --------------------------------------------------------

identifiers = st.from_regex(IDENTIFIER, fullmatch=True)
ids = st.binary(min_size=16, max_size=16)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
actions = st.sampled_from(Action)
# Text whose UTF-8 fits a one-byte length (at most 4 bytes a character).
short_texts = st.text(max_size=63)
tags = st.binary(min_size=16, max_size=16)


# --- JSON: documents and edits of them -----------------------------------------------------------

# Values a fuzzer keeps in its dictionary: edges of the integer sizes the code converts to, numbers
# no float holds, and what JSON's NaN / Infinity turn into.
EDGE_NUMBERS: tuple[int | float, ...] = (
    0,
    -1,
    1,
    2**15,
    2**16,
    2**31,
    2**32,
    2**63,
    2**64,
    -(2**63),
    10**400,
    -(10**400),
    1e308,
    -1e308,
    0.5,
    math.inf,
    -math.inf,
    math.nan,
)

json_leaves: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.sampled_from(EDGE_NUMBERS),
    st.text(max_size=20),
    st.binary(max_size=40).map(bytes.hex),  # hex strings of any length: keys, nonces, ids
    st.text(string.ascii_lowercase + string.digits + "_-", min_size=1, max_size=40),
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

JsonPath = tuple[str | int, ...]


def json_paths(document: Any, prefix: JsonPath = ()) -> list[JsonPath]:
    """Every path in ``document``: the root, then each member and item, depth first."""
    paths = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            paths += json_paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            paths += json_paths(value, (*prefix, index))
    return paths


def _parent(document: Any, path: JsonPath) -> Any:
    for step in path[:-1]:
        document = document[step]
    return document


@st.composite
def edited_json(draw: st.DrawFn, document: Any, *, max_edits: int = 3) -> Any:
    """``document`` after one to ``max_edits`` edits: a value replaced by any JSON value, a member
    or an item deleted, a member added, an item repeated."""
    edited = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, max_edits))):
        path = draw(st.sampled_from(json_paths(edited)))
        if not path:
            edited = draw(json_values)
            continue
        parent, last = _parent(edited, path), path[-1]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add", "repeat"]))
        if action == "replace":
            parent[last] = draw(json_values)
        elif action == "delete":
            del parent[last]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(json_values)
        else:
            parent.insert(int(last), copy.deepcopy(parent[last]))
    return edited


# --- state snapshots -----------------------------------------------------------------------------


finite_times = st.floats(min_value=0, max_value=2**32, allow_nan=False, allow_infinity=False)


@st.composite
def intrusion_snapshots(draw: st.DrawFn) -> dict[str, Any]:
    """A valid ``IntrusionDetector.snapshot()`` document, its keys in the order it writes them."""
    subjects = draw(st.lists(st.text(max_size=12), max_size=4, unique=True))
    return {
        "format": "smartlock-intrusion",
        "version": 1,
        "subjects": [
            {
                "subject": name,
                "failures": sorted(draw(st.lists(finite_times, max_size=6))),
                "locked_until": draw(st.none() | finite_times),
            }
            for name in subjects
        ],
    }


# --- text inputs: times and weekly hours ---------------------------------------------------------

# Digits of every kind: ASCII, other scripts' (Nd) and superscripts / fractions (No), which
# str.isdigit() accepts and int() does not.
_any_digits = st.from_regex(r"[0-9]{1,20}", fullmatch=True) | st.text(
    st.characters(categories=["Nd", "No"]), min_size=1, max_size=14
)
relative_times = st.builds(
    lambda sign, digits, unit, space: f"{space}{sign}{digits}{unit}{space}",
    st.sampled_from(["+", "-", "", "--", "+-"]),
    _any_digits,
    st.sampled_from(["m", "h", "d", "s", "w", "M", "H", "D", ""]),
    st.sampled_from(["", " ", "\t"]),
)
iso_times = st.builds(
    lambda moment, sep, timespec: moment.isoformat(sep=sep, timespec=timespec),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.sampled_from(["T", " "]),
    st.sampled_from(["auto", "hours", "minutes", "seconds", "milliseconds", "microseconds"]),
)


@st.composite
def _edited_text(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> str:
    """A text with one character inserted, deleted or replaced."""
    text = draw(texts)
    position = draw(st.integers(0, len(text)))
    char = draw(st.characters())
    match draw(st.sampled_from(["insert", "delete", "replace"])):
        case "insert":
            return text[:position] + char + text[position:]
        case "delete":
            return text[:position] + text[position + 1 :]
        case _:
            return text[:position] + char + text[position + 1 :]


def edited_texts(texts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return _edited_text(texts)


when_texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["now", " now ", "NOW", "+", "-", "+h", "-d", "+0m", "-0d"]),
    relative_times,
    iso_times,
    edited_texts(iso_times | relative_times),
)
