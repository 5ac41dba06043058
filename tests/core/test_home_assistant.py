"""smartlock.core.home_assistant: the MQTT discovery config Home Assistant reads, the commands it
may send, and the states a lock's reported bolt means (never optimistic)."""

from __future__ import annotations

import json

import pytest

from smartlock.core import home_assistant as ha
from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import Action


def _config(lock_id: str = "front", site: str = "home") -> dict[str, object]:
    decoded = json.loads(ha.discovery_config(lock_id, site))
    assert isinstance(decoded, dict)
    return decoded


def test_discovery_config_names_the_topics_of_its_lock() -> None:
    config = _config("front")
    assert config["command_topic"] == "smartlock/ha/front/set"
    assert config["state_topic"] == "smartlock/ha/front/state"
    assert config["availability_topic"] == "locks/front/availability"


def test_discovery_config_has_every_payload_and_state_home_assistant_reads() -> None:
    config = _config()
    named = {key: config[key] for key in config if key.startswith(("payload_", "state_"))}
    assert {key: value for key, value in named.items() if not key.endswith("_topic")} == {
        "payload_available": "online",
        "payload_not_available": "offline",
        "payload_lock": "LOCK",
        "payload_unlock": "UNLOCK",
        "state_locked": "LOCKED",
        "state_unlocked": "UNLOCKED",
        "state_locking": "LOCKING",
        "state_unlocking": "UNLOCKING",
        "state_jammed": "JAMMED",
    }


def test_discovery_config_is_never_optimistic_and_does_not_retain_commands() -> None:
    config = _config()
    assert config["optimistic"] is False
    assert config["retain"] is False  # a retained LOCK/UNLOCK would be replayed on reconnect
    assert config["qos"] == 1


def test_discovery_config_describes_one_device_per_lock() -> None:
    config = _config("front", "home")
    assert config["unique_id"] == "smartlock_home_front"
    assert config["object_id"] == "smartlock_front"
    assert config["name"] is None  # the entity takes the device's name
    assert config["device"] == {
        "identifiers": ["smartlock_home_front"],
        "name": "front",
        "manufacturer": "smartlock",
        "model": "smartlock agent",
    }


def test_unique_ids_differ_between_locks_and_between_sites() -> None:
    ids = {
        _config(lock, site)["unique_id"]
        for lock in ("front", "garage")
        for site in ("home", "cabin")
    }
    assert len(ids) == 4


def test_discovery_config_is_compact_json() -> None:
    payload = ha.discovery_config("front", "home")
    assert b": " not in payload
    assert b", " not in payload


@pytest.mark.parametrize(
    ("payload", "action"),
    [
        (b"LOCK", Action.LOCK),
        (b"UNLOCK", Action.UNLOCK),
        (b"LOCK\n", Action.LOCK),
        (b" UNLOCK ", Action.UNLOCK),
    ],
)
def test_lock_and_unlock_are_the_commands(payload: bytes, action: Action) -> None:
    assert ha.parse_command(payload) is action


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"lock",
        b"Unlock",
        b"OPEN",
        b"LOCKED",
        b"LOCK UNLOCK",
        b"UNLOCK\x00",
        b"\xff",
        b"1",
        b'"LOCK"',
    ],
)
def test_anything_else_is_rejected_as_malformed(payload: bytes) -> None:
    with pytest.raises(Rejected) as raised:
        ha.parse_command(payload)
    assert raised.value.reason is Reason.MALFORMED
    assert "LOCK or UNLOCK" in str(raised.value)


def test_a_moving_bolt_shows_locking_or_unlocking() -> None:
    assert ha.moving_state(Action.LOCK) == "LOCKING"
    assert ha.moving_state(Action.UNLOCK) == "UNLOCKING"


@pytest.mark.parametrize(
    ("bolt", "state"),
    [
        ("locked", "LOCKED"),
        ("unlocked", "UNLOCKED"),
        ("jammed", "JAMMED"),
        ("LOCKED", "LOCKED"),
        ("unknown", None),
        ("", None),
        (None, None),
        ("open", None),
    ],
)
def test_only_a_reported_bolt_confirms_a_state(bolt: str | None, state: str | None) -> None:
    assert ha.confirmed_state(bolt) == state


def test_every_state_shown_is_one_the_discovery_config_declares() -> None:
    config = _config()
    declared = {
        value for key, value in config.items() if key.startswith("state_") and key != "state_topic"
    }
    shown = {ha.moving_state(action) for action in Action} | {
        ha.confirmed_state(bolt) for bolt in ("locked", "unlocked", "jammed")
    }
    assert shown == declared == ha.STATES
