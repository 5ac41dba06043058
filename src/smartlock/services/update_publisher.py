"""The backend's part of software updates: it publishes what ``smartlock update push`` recorded
and logs what the locks say about it (README, "Updates").

For each lock with a pushed bundle that it has not finished with, the bundle's chunks go out
retained on ``updates/{bundle}/{index}`` (once per bundle, whatever the number of locks) and its
offer retained on ``locks/{lock}/update`` (:mod:`smartlock.core.update_transfer`).  When the lock
has settled it -- healthy, refused or rolled back -- the offer is withdrawn (an empty retained
message), so a lock that restarts is not offered it again.  Each step a lock reports is stored
(``smartlock status``) and audited (channel ``update``, action the step, reason the version and
why).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from smartlock.adapters.store import Store
from smartlock.core import topics
from smartlock.core.records import LockUpdate
from smartlock.core.reports import UpdateStep
from smartlock.core.update_transfer import chunk_topic, split_bundle
from smartlock.services.common import Outbox
from smartlock.site import Site

logger = logging.getLogger("smartlock.backend")

Audit = Callable[..., bool]


class UpdatePublisher:
    def __init__(self, site: Site, store: Store, outbox: Outbox, audit: Audit) -> None:
        self._site = site
        self._store = store
        self._outbox = outbox
        self._audit = audit
        self._offered: dict[str, str] = {}  # lock -> bundle id offered in this session ("": none)
        self._bundles: set[str] = set()  # bundles whose chunks went out in this session
        self._unreadable: set[str] = set()  # bundles already logged as unreadable

    def reset(self) -> None:
        """A new broker session: publish everything again (retained copies may be gone)."""
        self._offered.clear()
        self._bundles.clear()

    def publish(self) -> None:
        for update in self._store.lock_updates():
            if update.bundle_id:
                self._publish_one(update)

    def _publish_one(self, update: LockUpdate) -> None:
        offer_topic = topics.lock_topic(update.lock_id, "update")
        if update.settled:
            if self._offered.get(update.lock_id) != "":
                self._outbox.put(offer_topic, b"", retain=True)  # withdrawn
                self._offered[update.lock_id] = ""
            return
        if self._offered.get(update.lock_id) == update.bundle_id:
            return
        try:
            bundle = self._site.bundle_path(update.bundle_id).read_bytes()
            offer, chunks = split_bundle(bundle)
        except (OSError, ValueError) as exc:
            if update.bundle_id not in self._unreadable:
                self._unreadable.add(update.bundle_id)
                logger.error(
                    "Cannot offer update %s to %s: bundle %s unreadable (%s)",
                    update.version,
                    update.lock_id,
                    update.bundle_id,
                    getattr(exc, "strerror", None) or exc,
                )
            return
        if offer.bundle_id != update.bundle_id:
            if update.bundle_id not in self._unreadable:
                self._unreadable.add(update.bundle_id)
                logger.error("Bundle file %s.slu was changed after the push", update.bundle_id)
            return
        if update.bundle_id not in self._bundles:
            for chunk in chunks:
                self._outbox.put(
                    chunk_topic(chunk.bundle_id, chunk.index), bytes(chunk), retain=True
                )
            self._bundles.add(update.bundle_id)
        self._outbox.put(offer_topic, bytes(offer), retain=True)
        self._offered[update.lock_id] = update.bundle_id
        logger.info(
            "Offered update %s to %s (bundle %s, %d chunks, %d bytes)",
            update.version,
            update.lock_id,
            update.bundle_id,
            offer.chunk_count,
            offer.size,
        )

    def on_step(self, lock_id: str, at: int, step: UpdateStep, event_key: str) -> None:
        """A step reported by ``lock_id``: stored, audited once (the version a lock says it runs
        after each start is only stored), logged."""
        self._store.record_update_step(
            lock_id, version=step.version, step=step.step, reason=step.reason, at=at
        )
        if step.step == "running":
            logger.info("Lock %s runs version %s", lock_id, step.version)
            return
        self._audit(
            who="",
            lock_id=lock_id,
            channel="update",
            action=step.step,
            result="refused" if step.step in ("refused", "rolled_back") else "info",
            reason=f"{step.version} {step.reason}".strip(),
            event_key=event_key,
            at=at,
        )
        log = logger.warning if step.step in ("refused", "rolled_back") else logger.info
        log(
            "Lock %s update %s: %s%s",
            lock_id,
            step.version,
            step.step,
            f" ({step.reason})" if step.reason else "",
        )
