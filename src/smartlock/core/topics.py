"""Every MQTT topic of the system, in one place (README, "Topics").

A user's or lock's identity is part of each topic it may write, and the broker's ACL
(:func:`smartlock.broker.topics_for`) lets only that user or lock write it: the broker proves who
sent a request, the messages prove the rest.

=================================== ========== ==========================================
topic                               written by read by
=================================== ========== ==========================================
``backend/session_requests/{user}`` user       backend: "a key for this lock, please"
``backend/commands/{user}``         user       backend: remote lock / unlock request
``users/{user}/session``            backend    user: key delivery or denial
``users/{user}/events``             backend    user: the lock's access event (proof it acted)
``users/{user}/replies``            backend    user: answer to a remote command (v5 response)
``users/{user}/alerts``             backend    owner / resident: security and health alerts
``users/{user}/backend_key``        backend    user: the backend key to trust (retained)
``users/{user}/ca``                 backend    user: the site CA certificates (retained)
``locks/{lock}/session``            backend    lock: session key deliveries
``locks/{lock}/command_key``        backend    lock: per-lock command key (retained)
``locks/{lock}/revocations``        backend    lock: signed revocation list (retained)
``locks/{lock}/commands``           backend    lock: sealed remote commands
``locks/{lock}/update``             backend    lock: offered software update (retained)
``locks/{lock}/backend_key``        backend    lock: the backend key to trust (retained)
``locks/{lock}/ca``                 backend    lock: the site CA certificates (retained)
``updates/{bundle}/{index}``        backend    locks: chunks of a signed update (retained)
``locks/{lock}/events``             lock       backend: acks, access events, reports
``locks/{lock}/availability``       lock       backend: ``online`` / ``offline`` (retained, will)
``homeassistant/lock/{lock}/config`` backend   Home Assistant: MQTT discovery (retained)
``smartlock/ha/{lock}/state``       backend    Home Assistant: LOCKED, UNLOCKING, ... (retained)
``smartlock/ha/{lock}/set``         HA user    backend: ``LOCK`` / ``UNLOCK`` from Home Assistant
=================================== ========== ==========================================

The three Home Assistant topics exist only when the site names a Home Assistant user; it also
reads ``locks/{lock}/availability``.
"""

from __future__ import annotations

SESSION_REQUESTS = "backend/session_requests"
COMMAND_REQUESTS = "backend/commands"


def session_requests(user: str) -> str:
    return f"{SESSION_REQUESTS}/{user}"


def command_requests(user: str) -> str:
    return f"{COMMAND_REQUESTS}/{user}"


def user_topic(user: str, leaf: str) -> str:
    """``users/{user}/{leaf}`` with leaf one of session, events, replies, alerts."""
    return f"users/{user}/{leaf}"


def lock_topic(lock_id: str, leaf: str) -> str:
    """``locks/{lock}/{leaf}`` with leaf one of session, command_key, revocations, commands,
    update, events, availability."""
    return f"locks/{lock_id}/{leaf}"


TRUST_LEAVES = ("backend_key", "ca")  # whom a device is to trust: read before anything else
USER_LEAVES_READ = ("session", "events", "replies", "alerts", *TRUST_LEAVES)
LOCK_LEAVES_READ = ("session", "command_key", "revocations", "commands", "update", *TRUST_LEAVES)
UPDATE_CHUNKS = "updates/+/+"  # signed software, the same for every lock: no secret in it
LOCK_LEAVES_WRITE = ("events", "availability")
ONLINE = b"online"
OFFLINE = b"offline"


def home_assistant_config(lock_id: str) -> str:
    """Home Assistant's MQTT discovery topic for one lock (its default prefix)."""
    return f"homeassistant/lock/{lock_id}/config"


def home_assistant_state(lock_id: str) -> str:
    return f"smartlock/ha/{lock_id}/state"


def home_assistant_command(lock_id: str) -> str:
    return f"smartlock/ha/{lock_id}/set"


def lock_trust_topics(lock_id: str) -> tuple[str, ...]:
    return tuple(lock_topic(lock_id, leaf) for leaf in TRUST_LEAVES)


def user_trust_topics(user: str) -> tuple[str, ...]:
    return tuple(user_topic(user, leaf) for leaf in TRUST_LEAVES)
