"""smartlock.services.home_assistant: what the backend publishes for Home Assistant: a retained
discovery config and state per lock, LOCKING/UNLOCKING while a command is on its way, JAMMED for a
bolt that did not move, the last confirmed state back when nothing is known, and no repeats.

The outbox is a real :class:`Outbox` (its ``put`` needs a running loop); nothing is sent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from smartlock.core import home_assistant as ha
from smartlock.core.messages import Action
from smartlock.services.common import Outbox, Outgoing
from smartlock.services.home_assistant import HomeAssistantBridge
from smartlock.site import Site

SITE = Site(
    root=Path("/srv/smartlock/site"),
    name="home",
    broker_host="127.0.0.1",
    broker_port=8883,
    locks=("front", "garage"),
    users=("owner", "hass"),
    home_assistant_user="hass",
)


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def bridge(outbox: Outbox) -> HomeAssistantBridge:
    return HomeAssistantBridge(SITE, outbox)


def sent(outbox: Outbox) -> list[Outgoing]:
    return list(outbox._items)


def states(outbox: Outbox, lock_id: str = "front") -> list[bytes]:
    """The state payloads queued for ``lock_id``, in order."""
    return [item.payload for item in sent(outbox) if item.topic == f"smartlock/ha/{lock_id}/state"]


def test_a_site_without_a_home_assistant_user_has_no_bridge(outbox: Outbox) -> None:
    with pytest.raises(AssertionError):
        HomeAssistantBridge(Site(SITE.root, "home", "127.0.0.1", 8883, ("front",), ()), outbox)


async def test_the_bridge_knows_the_user_home_assistant_signs_in_as(
    bridge: HomeAssistantBridge,
) -> None:
    assert bridge.user == "hass"


async def test_announce_publishes_each_locks_retained_config_and_state(
    bridge: HomeAssistantBridge, outbox: Outbox
) -> None:
    bridge.announce(["front", "garage"], {"front": "locked", "garage": "unlocked"})
    assert sent(outbox) == [
        Outgoing("homeassistant/lock/front/config", ha.discovery_config("front", "home"), True),
        Outgoing("smartlock/ha/front/state", b"LOCKED", True),
        Outgoing("homeassistant/lock/garage/config", ha.discovery_config("garage", "home"), True),
        Outgoing("smartlock/ha/garage/state", b"UNLOCKED", True),
    ]


async def test_announce_of_a_lock_that_never_reported_publishes_its_config_but_no_state(
    bridge: HomeAssistantBridge, outbox: Outbox
) -> None:
    bridge.announce(["front", "garage"], {"front": "unknown"})
    assert [item.topic for item in sent(outbox)] == [
        "homeassistant/lock/front/config",
        "homeassistant/lock/garage/config",
    ]


async def test_a_reconnection_announces_the_state_again_even_if_unchanged(
    bridge: HomeAssistantBridge, outbox: Outbox
) -> None:
    bridge.announce(["front"], {"front": "locked"})
    bridge.announce(["front"], {"front": "locked"})  # a new broker may have lost the retained one
    assert states(outbox) == [b"LOCKED", b"LOCKED"]
    assert len(sent(outbox)) == 4


@pytest.mark.parametrize(
    ("action", "state"), [(Action.LOCK, b"LOCKING"), (Action.UNLOCK, b"UNLOCKING")]
)
async def test_a_command_on_its_way_shows_the_bolt_moving(
    bridge: HomeAssistantBridge, outbox: Outbox, action: Action, state: bytes
) -> None:
    bridge.moving("front", action)
    assert sent(outbox) == [Outgoing("smartlock/ha/front/state", state, True)]


async def test_the_state_becomes_locked_only_when_the_lock_confirms_it(
    bridge: HomeAssistantBridge, outbox: Outbox
) -> None:
    bridge.settled("front", "unlocked")
    bridge.moving("front", Action.LOCK)
    assert states(outbox) == [b"UNLOCKED", b"LOCKING"]
    bridge.settled("front", "locked")
    assert states(outbox) == [b"UNLOCKED", b"LOCKING", b"LOCKED"]


async def test_a_bolt_that_did_not_move_shows_jammed(
    bridge: HomeAssistantBridge, outbox: Outbox
) -> None:
    bridge.settled("front", "locked")
    bridge.moving("front", Action.UNLOCK)
    bridge.settled("front", "jammed")
    assert states(outbox) == [b"LOCKED", b"UNLOCKING", b"JAMMED"]


async def test_a_command_that_never_reached_the_lock_restores_the_last_confirmed_state(
    bridge: HomeAssistantBridge, outbox: Outbox
) -> None:
    bridge.settled("front", "locked")
    bridge.moving("front", Action.UNLOCK)
    bridge.settled("front", None)
    assert states(outbox) == [b"LOCKED", b"UNLOCKING", b"LOCKED"]


async def test_an_unknown_bolt_with_nothing_confirmed_leaves_the_moving_state_shown(
    bridge: HomeAssistantBridge, outbox: Outbox
) -> None:
    bridge.moving("front", Action.LOCK)
    bridge.settled("front", None)
    bridge.settled("front", "unknown")
    assert states(outbox) == [b"LOCKING"]


async def test_a_repeated_identical_state_is_not_published_again(
    bridge: HomeAssistantBridge, outbox: Outbox
) -> None:
    bridge.settled("front", "locked")
    bridge.settled("front", "locked")
    bridge.settled("front", None)  # restores LOCKED, which is already shown
    bridge.moving("front", Action.UNLOCK)
    bridge.moving("front", Action.UNLOCK)
    assert states(outbox) == [b"LOCKED", b"UNLOCKING"]


async def test_each_lock_has_its_own_state(bridge: HomeAssistantBridge, outbox: Outbox) -> None:
    bridge.settled("front", "locked")
    bridge.settled("garage", "locked")  # the same state, but another lock: published
    bridge.moving("garage", Action.UNLOCK)
    bridge.settled("front", None)
    assert states(outbox, "front") == [b"LOCKED"]
    assert states(outbox, "garage") == [b"LOCKED", b"UNLOCKING"]


async def test_every_state_is_retained_for_a_home_assistant_that_starts_later(
    bridge: HomeAssistantBridge, outbox: Outbox
) -> None:
    bridge.announce(["front"], {"front": "unlocked"})
    bridge.moving("front", Action.LOCK)
    bridge.settled("front", "jammed")
    assert len(sent(outbox)) == 4
    assert all(item.retain for item in sent(outbox))
    assert all(item.correlation_data is None and item.deadline is None for item in sent(outbox))
