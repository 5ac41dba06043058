"""A lock's two software slots and the rule that an update cannot be rolled back.

The lock runs the agent from the *active* slot.  An accepted update is installed into the other
slot and started on *trial*; it becomes active only when it reports healthy within the grace
period (a minute), otherwise the lock goes back to the previous slot by itself.

``highest_installed`` only ever grows, and it grows *before* the trial starts: once a version
was installed, no bundle of that version or lower is accepted again -- not after a rollback,
not after a reset of the agent's state (the file lives beside the slots, not in the agent's
state) -- so an attacker who captured an old, vulnerable, genuinely signed bundle cannot bring
it back.  A rolled-back version is refused too: its fix must come as a higher version.

Pure: the caller persists :meth:`SlotState.encode` (atomically, fsynced) after every change and
passes the time in.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace

from smartlock.core.release import Version, parse_version, version_text

GRACE_S = 60.0
SLOTS = ("a", "b")
STATE_VERSION = 1


class SlotStateError(ValueError):
    """A damaged slot state file (the message says what is wrong)."""


@dataclass(frozen=True)
class Trial:
    slot: str
    version: Version
    deadline: float


@dataclass(frozen=True)
class SlotState:
    active: str
    active_version: Version
    highest_installed: Version
    trial: Trial | None = None

    @property
    def spare(self) -> str:
        """The slot an update is installed into."""
        return SLOTS[1 - SLOTS.index(self.active)]

    def start_trial(self, version: Version, now: float, grace_s: float = GRACE_S) -> SlotState:
        """The new version goes into the spare slot; from now on nothing at or below it is
        accepted."""
        if self.trial is not None:
            raise ValueError("an update is already on trial")
        if version <= self.highest_installed:
            raise ValueError(f"{version_text(version)} is not above the highest installed")
        return replace(
            self,
            highest_installed=version,
            trial=Trial(self.spare, version, now + grace_s),
        )

    def healthy(self) -> SlotState:
        """The trial version reported healthy in time: it is the active one."""
        if self.trial is None:
            raise ValueError("no update on trial")
        return SlotState(self.trial.slot, self.trial.version, self.highest_installed)

    def check(self, now: float) -> tuple[SlotState, bool]:
        """(the state, rolled back?): a trial past its deadline goes back to the previous slot."""
        if self.trial is not None and now >= self.trial.deadline:
            return replace(self, trial=None), True
        return self, False

    @property
    def slot_to_run(self) -> str:
        return self.trial.slot if self.trial is not None else self.active

    def encode(self) -> bytes:
        trial = None
        if self.trial is not None:
            trial = {
                "slot": self.trial.slot,
                "version": version_text(self.trial.version),
                "deadline": self.trial.deadline,
            }
        return json.dumps(
            {
                "v": STATE_VERSION,
                "active": self.active,
                "active_version": version_text(self.active_version),
                "highest_installed": version_text(self.highest_installed),
                "trial": trial,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> SlotState:
        try:
            fields = json.loads(data)
            if not isinstance(fields, dict) or fields.get("v") != STATE_VERSION:
                raise ValueError("unknown state version")
            active = str(fields["active"])
            if active not in SLOTS:
                raise ValueError(f"unknown slot {active!r}")
            trial = None
            raw = fields["trial"]
            if raw is not None:
                if not isinstance(raw, dict) or raw.get("slot") not in SLOTS:
                    raise ValueError("damaged trial")
                deadline = float(raw["deadline"])
                if not math.isfinite(deadline):
                    raise ValueError("damaged trial deadline")
                trial = Trial(str(raw["slot"]), parse_version(str(raw["version"])), deadline)
            state = cls(
                active,
                parse_version(str(fields["active_version"])),
                parse_version(str(fields["highest_installed"])),
                trial,
            )
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
            raise SlotStateError(f"the slot state is damaged: {exc}") from None
        if state.active_version > state.highest_installed or (
            trial is not None and (trial.slot == active or trial.version > state.highest_installed)
        ):
            raise SlotStateError("the slot state is inconsistent")
        return state
