"""The backend's side of updates, driven directly (no broker): the outbox shows what would be
published.  A pushed bundle goes out once (chunks for all locks, one offer per lock), is
withdrawn once the lock settled it, and goes out again on a new broker session; each reported
step is stored and audited once."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartlock import crypto
from smartlock.admin import create_site, open_store
from smartlock.core.release import make_bundle
from smartlock.core.reports import UpdateStep
from smartlock.core.update_transfer import UpdateChunk, UpdateOffer, bundle_id
from smartlock.services.backend import Backend
from smartlock.site import Site, write_public

RELEASE_KEY = crypto.generate_private_key()
BUNDLE = make_bundle(b"w" * 30_000, release_key=RELEASE_KEY, version=(1, 1, 0))
BUNDLE_ID = bundle_id(BUNDLE)


@pytest.fixture
def site() -> Iterator[Site]:
    root = Path(tempfile.mkdtemp(prefix="smartlock-test-"))
    made = create_site(
        root / "site",
        locks=["lock_01", "lock_02"],
        owners=["owner"],
        guests=[],
        broker_port=18883,
    )
    write_public(made.bundle_path(BUNDLE_ID), BUNDLE)
    yield made
    shutil.rmtree(root, ignore_errors=True)


def published(backend: Backend) -> list[tuple[str, bytes]]:
    """What waits in the backend's outbox under update topics (all retained), and empty it."""
    items = list(backend._outbox._items)
    backend._outbox._items.clear()
    wanted = [i for i in items if i.topic.startswith("updates/") or i.topic.endswith("/update")]
    assert all(item.retain for item in wanted)
    return [(item.topic, item.payload) for item in wanted]


def test_a_push_sends_the_chunks_once_and_an_offer_to_each_lock(site: Site) -> None:
    with open_store(site) as store:
        backend = Backend(site, store=store)
        store.push_update(
            ["lock_01", "lock_02"], bundle_id=BUNDLE_ID, version="1.1.0", by="", now=1
        )
        backend.updates.publish()
        sent = published(backend)
        chunks = [UpdateChunk.from_bytes(p) for t, p in sent if t.startswith("updates/")]
        offers = {t: UpdateOffer.from_bytes(p) for t, p in sent if t.endswith("/update")}
        assert [c.index for c in chunks] == [0, 1, 2]  # 30,000 bytes in 12 KiB chunks, once
        assert b"".join(c.data for c in chunks) == BUNDLE[-30_000:]
        assert set(offers) == {"locks/lock_01/update", "locks/lock_02/update"}
        assert all(o.bundle_id == BUNDLE_ID and o.chunk_count == 3 for o in offers.values())
        backend.updates.publish()
        assert published(backend) == []  # nothing again while the offer stands


def test_an_offer_is_withdrawn_once_the_lock_settled_it_and_sent_again_on_a_new_session(
    site: Site,
) -> None:
    with open_store(site) as store:
        backend = Backend(site, store=store)
        store.push_update(["lock_01"], bundle_id=BUNDLE_ID, version="1.1.0", by="", now=1)
        backend.updates.publish()
        published(backend)
        backend.updates.on_step("lock_01", 5, UpdateStep("1.1.0", "downloading", ""), "r/1")
        backend.updates.publish()
        assert published(backend) == []  # still under way
        backend.updates.on_step("lock_01", 6, UpdateStep("1.1.0", "healthy", ""), "r/2")
        backend.updates.publish()
        assert published(backend) == [("locks/lock_01/update", b"")]
        backend.updates.publish()
        assert published(backend) == []
        backend.updates.reset()  # a new broker session: the withdrawal is repeated, once
        backend.updates.publish()
        assert published(backend) == [("locks/lock_01/update", b"")]
        update = store.lock_update("lock_01")
        assert update is not None and update.settled and update.running_version == "1.1.0"


def test_each_step_is_audited_once_and_the_running_version_only_stored(site: Site) -> None:
    with open_store(site) as store:
        backend = Backend(site, store=store)
        store.push_update(["lock_01"], bundle_id=BUNDLE_ID, version="1.1.0", by="", now=1)
        backend.updates.on_step("lock_01", 5, UpdateStep("0.1.0", "running", ""), "r/1")
        backend.updates.on_step("lock_01", 6, UpdateStep("1.1.0", "refused", "not_newer"), "r/2")
        backend.updates.on_step("lock_01", 6, UpdateStep("1.1.0", "refused", "not_newer"), "r/2")
        entries = [e.record for e in store.audit_entries() if e.record.channel == "update"]
        assert [(e.lock_id, e.action, e.result, e.reason) for e in entries] == [
            ("lock_01", "refused", "refused", "1.1.0 not_newer")
        ]
        update = store.lock_update("lock_01")
        assert update is not None
        assert (update.running_version, update.step, update.reason) == (
            "0.1.0",
            "refused",
            "not_newer",
        )


def test_a_missing_or_changed_bundle_file_is_logged_once_and_offers_nothing(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    with open_store(site) as store:
        backend = Backend(site, store=store)
        store.push_update(["lock_01"], bundle_id="ab" * 16, version="1.1.0", by="", now=1)
        with caplog.at_level(logging.ERROR, logger="smartlock.backend"):
            backend.updates.publish()
            backend.updates.publish()
        assert published(backend) == []
        assert len([r for r in caplog.records if "unreadable" in r.getMessage()]) == 1
        site.bundle_path("cd" * 16).write_bytes(BUNDLE)  # a file that is not what was pushed
        store.push_update(["lock_01"], bundle_id="cd" * 16, version="1.1.0", by="", now=2)
        with caplog.at_level(logging.ERROR, logger="smartlock.backend"):
            backend.updates.publish()
        assert published(backend) == []
        assert [r for r in caplog.records if "changed after the push" in r.getMessage()]
