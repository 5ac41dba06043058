"""The backend's Home Assistant side: discovery, commands in, the state topic out.

Home Assistant is one more user of the site (``site.json``'s ``home_assistant_user``, an owner or
resident in the store): the broker's ACL lets only that user write the command topics, so the
backend knows who sent ``LOCK`` / ``UNLOCK``, and decides and audits it like any remote command
(channel ``homeassistant``).  The states follow :mod:`smartlock.core.home_assistant`.
"""

from __future__ import annotations

import logging

from smartlock.core import home_assistant as ha
from smartlock.core import topics
from smartlock.core.messages import Action
from smartlock.services.common import Outbox
from smartlock.site import Site

logger = logging.getLogger("smartlock.backend")


class HomeAssistantBridge:
    def __init__(self, site: Site, outbox: Outbox) -> None:
        assert site.home_assistant_user is not None
        self.user = site.home_assistant_user
        self._site_name = site.name
        self._outbox = outbox
        self._confirmed: dict[str, str] = {}  # lock -> last state the lock itself reported
        self._shown: dict[str, str] = {}  # lock -> state last published

    def announce(self, lock_ids: list[str], bolts: dict[str, str | None]) -> None:
        """On every (re)connection: each lock's discovery config and its current state."""
        self._shown.clear()
        for lock_id in lock_ids:
            self._outbox.put(
                topics.home_assistant_config(lock_id),
                ha.discovery_config(lock_id, self._site_name),
                retain=True,
            )
            self.settled(lock_id, bolts.get(lock_id))

    def moving(self, lock_id: str, action: Action) -> None:
        self._show(lock_id, ha.moving_state(action))

    def settled(self, lock_id: str, bolt: str | None) -> None:
        """The lock reported its bolt (None: nothing known, the last confirmed state stays)."""
        state = ha.confirmed_state(bolt)
        if state is not None:
            self._confirmed[lock_id] = state
        shown = self._confirmed.get(lock_id)
        if shown is not None:
            self._show(lock_id, shown)

    def _show(self, lock_id: str, state: str) -> None:
        if self._shown.get(lock_id) == state:
            return
        self._shown[lock_id] = state
        logger.info("Home Assistant: %s is %s", lock_id, state)
        self._outbox.put(topics.home_assistant_state(lock_id), state.encode(), retain=True)
