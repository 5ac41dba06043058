"""The second factor's pure rules: reading a typed code, making recovery codes, fresh steps."""

from __future__ import annotations

import pytest

from pure_fixtures import DeterministicRandom
from smartlock.core.second_factor import (
    MAX_CODE_TEXT,
    RECOVERY_ALPHABET,
    RECOVERY_CODE_COUNT,
    RECOVERY_CODE_LENGTH,
    CodeKind,
    PresentedCode,
    format_recovery_code,
    is_fresh_step,
    make_recovery_codes,
    read_code,
)


@pytest.mark.parametrize("text", [None, "", "   ", "\t\n"])
def test_no_code_is_missing(text: str | None) -> None:
    assert read_code(text) == PresentedCode(CodeKind.MISSING)


@pytest.mark.parametrize(
    ("text", "value"),
    [("123456", "123456"), ("123 456", "123456"), (" 000000 ", "000000"), ("123-456", "123456")],
)
def test_six_ascii_digits_are_an_authenticator_code(text: str, value: str) -> None:
    assert read_code(text) == PresentedCode(CodeKind.TOTP, value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("abcde-fghjk", "abcdefghjk"),
        ("ABCDE FGHJK", "abcdefghjk"),
        ("0123456789", "0123456789"),
        ("oooooiiiii", "0000011111"),  # Crockford: o reads as 0, i and l as 1
        ("lllll-00000", "1111100000"),
    ],
)
def test_ten_base32_characters_are_a_recovery_code(text: str, value: str) -> None:
    assert read_code(text) == PresentedCode(CodeKind.RECOVERY, value)


@pytest.mark.parametrize(
    "text",
    [
        "12345",  # too short for either
        "1234567",
        "١٢٣٤٥٦",  # Arabic-Indic digits: str.isdigit says yes, the code says no
        "12345a",
        "abcdefghju",  # u is not in Crockford's alphabet
        "abcdefghjkm",  # 11 characters
        "abc",
        "1" * (MAX_CODE_TEXT + 1),
        "123456" + " " * MAX_CODE_TEXT,  # too long to be read at all
    ],
)
def test_anything_else_is_malformed(text: str) -> None:
    assert read_code(text).kind is CodeKind.MALFORMED
    assert read_code(text).value == ""


def test_recovery_codes_are_distinct_and_of_the_alphabet() -> None:
    codes = make_recovery_codes(DeterministicRandom())

    assert len(codes) == RECOVERY_CODE_COUNT == len(set(codes))
    for code in codes:
        assert len(code) == RECOVERY_CODE_LENGTH
        assert set(code) <= set(RECOVERY_ALPHABET)


def test_recovery_codes_come_from_the_randomness_given() -> None:
    assert make_recovery_codes(DeterministicRandom(b"a")) == make_recovery_codes(
        DeterministicRandom(b"a")
    )
    assert make_recovery_codes(DeterministicRandom(b"a")) != make_recovery_codes(
        DeterministicRandom(b"b")
    )


def test_a_repeated_draw_does_not_make_a_duplicate_code() -> None:
    draws = iter([b"\x00" * 10, b"\x00" * 10, b"\x01" * 10])

    assert make_recovery_codes(lambda size: next(draws), count=2) == ["0" * 10, "1" * 10]


def test_a_shown_recovery_code_reads_back_as_itself() -> None:
    for code in make_recovery_codes(DeterministicRandom()):
        shown = format_recovery_code(code)
        assert shown == f"{code[:5]}-{code[5:]}"
        assert read_code(shown) == PresentedCode(CodeKind.RECOVERY, code)


@pytest.mark.parametrize(
    ("step", "last", "fresh"), [(10, 0, True), (10, 9, True), (10, 10, False), (9, 10, False)]
)
def test_only_a_step_later_than_the_last_accepted_is_fresh(
    step: int, last: int, fresh: bool
) -> None:
    assert is_fresh_step(step, last) is fresh


def test_the_secret_is_not_in_the_state_repr() -> None:
    from smartlock.core.second_factor import TotpState

    assert "JBSWY3DPEHPK3PXP" not in repr(TotpState("JBSWY3DPEHPK3PXP", 3))
    assert "123456" not in repr(read_code("123456"))
