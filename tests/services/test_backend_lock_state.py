"""The backend's publishing of each lock's retained state, driven directly (no broker): the
outbox shows what would be published.  A lock whose heartbeat reports an older revocation
list than the store's -- the retained copy was withheld or overwritten on its way -- is sent
the list again."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartlock.admin import create_site, open_store
from smartlock.core.reports import Heartbeat
from smartlock.core.revocation import RevocationList
from smartlock.services.backend import Backend
from smartlock.site import Site


@pytest.fixture
def site() -> Iterator[Site]:
    root = Path(tempfile.mkdtemp(prefix="smartlock-test-"))
    yield create_site(
        root / "site",
        locks=["lock_01"],
        owners=["owner"],
        guests=["guest_01"],
        broker_port=18883,
    )
    shutil.rmtree(root, ignore_errors=True)


def revocation_versions(backend: Backend) -> list[int]:
    """The revocation lists waiting in the backend's outbox, by version, and empty it."""
    items = list(backend._outbox._items)
    backend._outbox._items.clear()
    return [
        RevocationList.from_bytes(item.payload).version
        for item in items
        if item.topic == "locks/lock_01/revocations"
    ]


async def test_a_lock_reporting_an_older_revocation_list_is_sent_it_again(site: Site) -> None:
    with open_store(site) as store:
        backend = Backend(site, store=store)
        backend.publish_lock_state()
        assert revocation_versions(backend) == [1]
        pass_id = store.list_passes(guest="guest_01", now=0)[0].pass_id
        store.revoke_pass(pass_id, now=int(time.time()))
        backend.publish_lock_state()
        assert revocation_versions(backend) == [2]
        backend.publish_lock_state()
        assert revocation_versions(backend) == []  # published once per version...
        now = int(time.time())
        lock = store.get_lock("lock_01")
        assert lock is not None
        backend._on_heartbeat(lock, now, Heartbeat("locked", 1, 0, 0))
        backend.publish_lock_state()
        assert revocation_versions(backend) == [2]  # ...and again for a lock that lacks it
        backend._on_heartbeat(lock, now, Heartbeat("locked", 2, 0, 0))
        backend.publish_lock_state()
        assert revocation_versions(backend) == []
