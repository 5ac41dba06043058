"""The lock's optional RSSI floor: a token heard too faintly is refused before it is verified.

A real-time relay of a live advertisement is the known weakness of BLE proximity (README,
"Security model"): an attacker near the phone records the advertisement and replays it at the
door within the token's time slot.  Short key lives and per-slot counters bound it in time; the
RSSI floor bounds it in space -- a relay transmitter must be close to the lock, or loud enough,
to be heard above the floor.  It raises the bar, it does not close the gap: an amplifying relay
passes it.  Off by default, because a floor suits one door and its reader, not every one.

The Bluetooth Core spec (Vol 4, Part E, 7.7.65.2, LE Advertising Report) gives RSSI in dBm,
-127 to +20, and 127 for "not available": with a floor set, an unknown strength is refused.
"""

from __future__ import annotations

from smartlock.core.errors import Reason, Rejected

RSSI_UNAVAILABLE = 127
MIN_FLOOR_DBM = -127
MAX_FLOOR_DBM = 20


def check_signal(rssi: int, floor_dbm: int | None) -> None:
    """Refuse (``weak_signal``) an advertisement heard below ``floor_dbm``; no floor, no check."""
    if floor_dbm is None:
        return
    if rssi == RSSI_UNAVAILABLE:
        raise Rejected(Reason.WEAK_SIGNAL, "signal strength not reported, and a floor is set")
    if rssi < floor_dbm:
        raise Rejected(Reason.WEAK_SIGNAL, f"heard at {rssi} dBm, below the floor {floor_dbm} dBm")


def check_floor(floor_dbm: int) -> int:
    """A floor a radio can report (``ValueError`` otherwise)."""
    if not MIN_FLOOR_DBM <= floor_dbm <= MAX_FLOOR_DBM:
        raise ValueError(
            f"--min-rssi must be between {MIN_FLOOR_DBM} and {MAX_FLOOR_DBM} dBm, not {floor_dbm}"
        )
    return floor_dbm
