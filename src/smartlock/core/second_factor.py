"""The dashboard's second factor, as pure rules: what a typed code is, recovery codes, replays.

An owner may add a TOTP second factor (RFC 6238: 6 digits, 30-second time steps) to the
dashboard password.  Rules:

* a sign-in code is either 6 ASCII digits (the authenticator app's) or a recovery code; spaces
  are ignored (apps show ``123 456``), and so are a recovery code's hyphens and letter case;
* a recovery code is :data:`RECOVERY_CODE_LENGTH` characters of Crockford's base32 (no ``i``,
  ``l``, ``o``, ``u``; a typed ``i``/``l`` reads as ``1``, ``o`` as ``0``): 50 random bits each,
  :data:`RECOVERY_CODE_COUNT` of them, each usable once;
* a time step is accepted only if it is later than the last one accepted for that user: a code
  seen once (over a shoulder, in a proxy's log) cannot be used again within its window.

Checking a code against the secret is a recipe of :mod:`smartlock.crypto`; randomness is passed
in, as everywhere in the core.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field

TOTP_DIGITS = 6
RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_LENGTH = 10
RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case
MAX_CODE_TEXT = 32  # the longest text a sign-in form or API call may carry as its code

_TOTP = re.compile(rf"[0-9]{{{TOTP_DIGITS}}}")
_RECOVERY = re.compile(rf"[{RECOVERY_ALPHABET}]{{{RECOVERY_CODE_LENGTH}}}")
_CONFUSABLE = str.maketrans({"i": "1", "l": "1", "o": "0"})
_IGNORED = re.compile(r"[\s-]+")

assert len(RECOVERY_ALPHABET) == 32  # one character per 5 random bits: no bias


class CodeKind(enum.Enum):
    MISSING = "missing"
    TOTP = "totp"
    RECOVERY = "recovery"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class PresentedCode:
    """A sign-in code as typed, read: its kind and its normalised value (empty unless usable)."""

    kind: CodeKind
    value: str = field(default="", repr=False)


@dataclass(frozen=True)
class TotpState:
    """A user's second factor as the sign-in needs it: the secret (base32) and the last time
    step accepted (0: none yet)."""

    secret: str = field(repr=False)
    last_step: int


def read_code(text: str | None) -> PresentedCode:
    """What kind of code ``text`` is (see the module docstring for the rules)."""
    if text is None or not text.strip():
        return PresentedCode(CodeKind.MISSING)
    if len(text) > MAX_CODE_TEXT:
        return PresentedCode(CodeKind.MALFORMED)
    compact = _IGNORED.sub("", text)
    if _TOTP.fullmatch(compact):
        return PresentedCode(CodeKind.TOTP, compact)
    recovery = compact.lower().translate(_CONFUSABLE)
    if _RECOVERY.fullmatch(recovery):
        return PresentedCode(CodeKind.RECOVERY, recovery)
    return PresentedCode(CodeKind.MALFORMED)


def make_recovery_codes(
    random_bytes: Callable[[int], bytes], count: int = RECOVERY_CODE_COUNT
) -> list[str]:
    """``count`` distinct recovery codes, in their normalised form (see :func:`read_code`)."""
    codes: list[str] = []
    while len(codes) < count:
        raw = random_bytes(RECOVERY_CODE_LENGTH)
        code = "".join(RECOVERY_ALPHABET[byte & 0x1F] for byte in raw)
        if code not in codes:
            codes.append(code)
    return codes


def format_recovery_code(code: str) -> str:
    """As shown to the owner: two groups of five, ``abcde-fghjk`` (read back by read_code)."""
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"


def is_fresh_step(step: int, last_step: int) -> bool:
    """Whether a matching code's time step may sign in: later than every one accepted before."""
    return step > last_step
