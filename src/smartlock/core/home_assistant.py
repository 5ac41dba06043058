"""Home Assistant's view of a lock: MQTT discovery, commands, and the state it shows.

Home Assistant's MQTT lock (https://www.home-assistant.io/integrations/lock.mqtt/) reads a
retained discovery config, sends ``LOCK`` / ``UNLOCK`` on a command topic and shows what the
state topic says: ``LOCKED``, ``UNLOCKED``, ``LOCKING``, ``UNLOCKING`` or ``JAMMED``.  Its
availability is the lock's own retained ``online`` / ``offline``.

A security lock is never optimistic: the state becomes LOCKED or UNLOCKED only when the lock
reports its bolt (command result or heartbeat); while a command is on its way it is LOCKING or
UNLOCKING; a bolt that did not move is JAMMED.  A command that never reached the lock puts the
last confirmed state back.
"""

from __future__ import annotations

import json

from smartlock.core import topics
from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import Action

LOCKED = "LOCKED"
UNLOCKED = "UNLOCKED"
LOCKING = "LOCKING"
UNLOCKING = "UNLOCKING"
JAMMED = "JAMMED"
STATES = frozenset({LOCKED, UNLOCKED, LOCKING, UNLOCKING, JAMMED})
COMMANDS = {b"LOCK": Action.LOCK, b"UNLOCK": Action.UNLOCK}


def discovery_config(lock_id: str, site_name: str) -> bytes:
    """The retained discovery payload for ``homeassistant/lock/{lock_id}/config``."""
    return json.dumps(
        {
            "name": None,  # the device's name is the entity's
            "unique_id": f"smartlock_{site_name}_{lock_id}",
            "object_id": f"smartlock_{lock_id}",
            "command_topic": topics.home_assistant_command(lock_id),
            "state_topic": topics.home_assistant_state(lock_id),
            "availability_topic": topics.lock_topic(lock_id, "availability"),
            "payload_available": topics.ONLINE.decode(),
            "payload_not_available": topics.OFFLINE.decode(),
            "payload_lock": "LOCK",
            "payload_unlock": "UNLOCK",
            "state_locked": LOCKED,
            "state_unlocked": UNLOCKED,
            "state_locking": LOCKING,
            "state_unlocking": UNLOCKING,
            "state_jammed": JAMMED,
            "optimistic": False,
            "retain": False,
            "qos": 1,
            "device": {
                "identifiers": [f"smartlock_{site_name}_{lock_id}"],
                "name": lock_id,
                "manufacturer": "smartlock",
                "model": "smartlock agent",
            },
        },
        separators=(",", ":"),
    ).encode()


def parse_command(payload: bytes) -> Action:
    """``LOCK`` or ``UNLOCK``; anything else is refused as malformed."""
    action = COMMANDS.get(payload.strip())
    if action is None:
        raise Rejected(Reason.MALFORMED, "a Home Assistant command is LOCK or UNLOCK")
    return action


def moving_state(action: Action) -> str:
    return LOCKING if action is Action.LOCK else UNLOCKING


def confirmed_state(bolt: str | None) -> str | None:
    """The state a lock's reported bolt means (``locked``, ``unlocked``; a failed move is
    ``jammed``); None when the lock does not know."""
    return {"locked": LOCKED, "unlocked": UNLOCKED, "jammed": JAMMED}.get((bolt or "").lower())
