"""The backend's side of a rotation of its signing key, driven directly (no broker): the outbox
shows what would be published.  After ``start_backend_key_rotation`` the backend signs with the
new key from its next ``follow_signing_key``, tells every lock and user once -- retained, signed
with the old key -- to trust the new one, and signs its retained state again; after the finish
it tells every device once, signed with the new key, to drop the old one.

Creating a site's keys takes about a second, so one site is made per module and copied for
every test; the key the rotation hands out is made once too.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from site_copies import copy_site
from smartlock import crypto
from smartlock.adapters.backend_trust import BackendTrust, apply_ca_notice
from smartlock.admin import create_site, open_store
from smartlock.broker import free_port
from smartlock.core.alerts import open_alert
from smartlock.core.backend_key import ENDORSE, RETIRE, BackendKeyNotice, open_backend_key_notice
from smartlock.core.ca_notice import CaNotice, make_ca_notice, open_ca_notice
from smartlock.core.commands import open_command_key_delivery
from smartlock.core.errors import Reason, Rejected
from smartlock.core.revocation import open_revocation_list
from smartlock.key_rotation import finish_backend_key_rotation, start_backend_key_rotation
from smartlock.services.backend import Backend
from smartlock.services.common import Outgoing
from smartlock.site import BACKEND_USER, Site

LOCKS = ["lock_01", "lock_02"]
USERS = ["owner", "guest_01"]
DEVICE_TOPICS = {
    *(f"locks/{lock}/backend_key" for lock in LOCKS),
    *(f"users/{user}/backend_key" for user in USERS),
}


@pytest.fixture(scope="module")
def new_key() -> crypto.PrivateKey:
    """The key the rotation hands out (RSA key generation is slow: made once)."""
    return crypto.generate_private_key()


@pytest.fixture(autouse=True)
def _rotations_hand_out_the_new_key(
    monkeypatch: pytest.MonkeyPatch, new_key: crypto.PrivateKey
) -> None:
    monkeypatch.setattr(crypto, "generate_private_key", lambda: new_key)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return create_site(
        tmp_path_factory.mktemp("template") / "site",
        locks=LOCKS,
        owners=["owner"],
        guests=["guest_01"],
        broker_port=free_port(),
    )


@pytest.fixture(scope="module")
def old_key(template: Site) -> crypto.PrivateKey:
    return template.private_key(BACKEND_USER)


@pytest.fixture
def site(template: Site, tmp_path: Path) -> Site:
    """A copy of the template that the test may change."""
    return copy_site(template, tmp_path / "site")


@pytest.fixture
def backend(site: Site) -> Iterator[Backend]:
    with open_store(site) as store:
        yield Backend(site, store=store)


def taken(backend: Backend) -> list[Outgoing]:
    """What waits in the backend's outbox, and empty it."""
    items = list(backend._outbox._items)
    backend._outbox._items.clear()
    return items


def _on(items: list[Outgoing], leaf: str) -> list[Outgoing]:
    return [item for item in items if item.topic.endswith(f"/{leaf}")]


def _der(key: crypto.PrivateKey) -> bytes:
    return crypto.public_key_to_der(key.public_key())


def _ders(trust: BackendTrust) -> list[bytes]:
    keys = trust.keys()
    return [crypto.public_key_to_der(key) for key in keys]


def _notices(items: list[Outgoing], signed_by: crypto.PrivateKey) -> list[BackendKeyNotice]:
    """The notices of ``items`` (one per device, all retained), opened with ``signed_by``'s
    public key alone."""
    notices = _on(items, "backend_key")
    assert {item.topic for item in notices} == DEVICE_TOPICS
    assert len(notices) == len(DEVICE_TOPICS)
    assert all(item.retain for item in notices)
    return [
        open_backend_key_notice(item.payload, trusted=signed_by.public_key()) for item in notices
    ]


def _rotated(backend: Backend) -> None:
    """Start the rotation, let the backend follow it, and empty the outbox."""
    start_backend_key_rotation(backend.site)
    backend.follow_signing_key()
    taken(backend)


# --- before any rotation -------------------------------------------------------------------------


def test_no_notice_is_sent_before_any_rotation(backend: Backend) -> None:
    backend.follow_signing_key()

    assert _on(taken(backend), "backend_key") == []


def test_the_backend_signs_with_the_site_key_before_any_rotation(
    backend: Backend, old_key: crypto.PrivateKey
) -> None:
    backend.alert("intrusion", lock_id="lock_01", subject="guest_01", detail="test")

    (alert,) = _on(taken(backend), "alerts")
    assert open_alert(alert.payload, backend_public=old_key.public_key()).subject == "guest_01"


# --- start ---------------------------------------------------------------------------------------


def test_after_a_start_the_backend_signs_with_the_new_key(
    backend: Backend, old_key: crypto.PrivateKey, new_key: crypto.PrivateKey
) -> None:
    start_backend_key_rotation(backend.site)
    backend.follow_signing_key()

    backend.alert("intrusion", lock_id="lock_01", subject="guest_01", detail="test")

    (alert,) = _on(taken(backend), "alerts")
    assert alert.topic == "users/owner/alerts"
    assert open_alert(alert.payload, backend_public=new_key.public_key()).detail == "test"
    with pytest.raises(Rejected) as caught:
        open_alert(alert.payload, backend_public=old_key.public_key())
    assert caught.value.reason == Reason.BAD_SIGNATURE


def test_after_a_start_every_device_is_told_by_the_old_key_to_trust_the_new_one(
    backend: Backend, old_key: crypto.PrivateKey, new_key: crypto.PrivateKey
) -> None:
    start_backend_key_rotation(backend.site)

    backend.follow_signing_key()

    notices = _notices(taken(backend), signed_by=old_key)
    assert {notice.kind for notice in notices} == {ENDORSE}
    assert {crypto.public_key_to_der(notice.key) for notice in notices} == {_der(new_key)}


def test_the_endorsement_does_not_open_with_the_key_it_endorses(
    backend: Backend, new_key: crypto.PrivateKey
) -> None:
    start_backend_key_rotation(backend.site)
    backend.follow_signing_key()

    (first, *_) = _on(taken(backend), "backend_key")
    with pytest.raises(Rejected) as caught:
        open_backend_key_notice(first.payload, trusted=new_key.public_key())
    assert caught.value.reason == Reason.BAD_SIGNATURE


def test_the_endorsement_is_not_sent_again_on_the_next_call(backend: Backend) -> None:
    _rotated(backend)

    backend.follow_signing_key()
    backend.follow_signing_key()

    assert taken(backend) == []


def test_a_backend_started_during_the_overlap_tells_every_device_again(
    site: Site, old_key: crypto.PrivateKey, new_key: crypto.PrivateKey
) -> None:
    start_backend_key_rotation(site)

    with open_store(site) as store:
        restarted = Backend(site, store=store)
        restarted.follow_signing_key()

        notices = _notices(taken(restarted), signed_by=old_key)
    assert {(notice.kind, crypto.public_key_to_der(notice.key)) for notice in notices} == {
        (ENDORSE, _der(new_key))
    }


def test_after_a_start_the_retained_lock_state_is_signed_again_with_the_new_key(
    backend: Backend, site: Site, old_key: crypto.PrivateKey, new_key: crypto.PrivateKey
) -> None:
    backend.publish_lock_state()
    before = taken(backend)
    assert len(_on(before, "revocations")) == len(_on(before, "command_key")) == len(LOCKS)

    start_backend_key_rotation(site)
    backend.follow_signing_key()
    backend.publish_lock_state()

    after = taken(backend)
    for item in _on(after, "revocations"):
        assert item.retain
        lock_id = item.topic.split("/")[1]
        opened = open_revocation_list(
            item.payload, lock_id=lock_id, backend_public=new_key.public_key()
        )
        assert opened.lock_id == lock_id
        with pytest.raises(Rejected):
            open_revocation_list(item.payload, lock_id=lock_id, backend_public=old_key.public_key())
    for item in _on(after, "command_key"):
        assert item.retain
        lock_id = item.topic.split("/")[1]
        open_command_key_delivery(
            item.payload,
            lock_id=lock_id,
            lock_key=site.private_key(lock_id),
            backend_public=new_key.public_key(),
        )
    assert {item.topic for item in _on(after, "revocations") + _on(after, "command_key")} == {
        f"locks/{lock}/{leaf}" for lock in LOCKS for leaf in ("revocations", "command_key")
    }


def test_the_lock_state_signed_again_is_not_sent_a_second_time(backend: Backend) -> None:
    backend.publish_lock_state()
    _rotated(backend)
    backend.publish_lock_state()
    taken(backend)

    backend.follow_signing_key()
    backend.publish_lock_state()

    assert taken(backend) == []


def test_a_tick_follows_the_key_before_it_signs_the_retained_state_again(
    backend: Backend, new_key: crypto.PrivateKey
) -> None:
    backend.tick()
    taken(backend)
    start_backend_key_rotation(backend.site)

    backend.tick()

    sent = taken(backend)
    topics = [item.topic for item in sent]
    first_state = min(
        topics.index(topic) for topic in topics if topic.endswith(("/revocations", "/command_key"))
    )
    assert max(topics.index(topic) for topic in DEVICE_TOPICS) < first_state
    for item in _on(sent, "revocations"):
        lock_id = item.topic.split("/")[1]
        open_revocation_list(item.payload, lock_id=lock_id, backend_public=new_key.public_key())


# --- finish --------------------------------------------------------------------------------------


def test_after_the_finish_every_device_is_told_by_the_new_key_to_drop_the_old_one(
    backend: Backend, old_key: crypto.PrivateKey, new_key: crypto.PrivateKey
) -> None:
    _rotated(backend)
    finish_backend_key_rotation(backend.site)

    backend.follow_signing_key()

    notices = _notices(taken(backend), signed_by=new_key)
    assert {notice.kind for notice in notices} == {RETIRE}
    assert {crypto.public_key_to_der(notice.key) for notice in notices} == {_der(old_key)}


def test_the_retirement_is_not_sent_again_on_the_next_call(backend: Backend) -> None:
    _rotated(backend)
    finish_backend_key_rotation(backend.site)
    backend.follow_signing_key()
    taken(backend)

    backend.follow_signing_key()

    assert taken(backend) == []


def test_after_the_finish_the_backend_still_signs_with_the_new_key(
    backend: Backend, new_key: crypto.PrivateKey
) -> None:
    _rotated(backend)
    finish_backend_key_rotation(backend.site)
    backend.follow_signing_key()

    backend.alert("intrusion", lock_id="lock_01", subject="guest_01", detail="test")

    (alert,) = _on(taken(backend), "alerts")
    open_alert(alert.payload, backend_public=new_key.public_key())


# --- what a device with its own copy of the site makes of them -----------------------------------


def test_a_device_with_its_own_copy_follows_the_rotation_through_the_notices(
    backend: Backend,
    template: Site,
    tmp_path: Path,
    old_key: crypto.PrivateKey,
    new_key: crypto.PrivateKey,
) -> None:
    phone = BackendTrust(copy_site(template, tmp_path / "phone"))
    topic = "users/guest_01/backend_key"

    start_backend_key_rotation(backend.site)
    backend.follow_signing_key()
    (endorsement,) = [item for item in taken(backend) if item.topic == topic]
    assert phone.on_notice(endorsement.payload) != ""
    assert _ders(phone) == [_der(new_key), _der(old_key)]

    finish_backend_key_rotation(backend.site)
    backend.follow_signing_key()
    (retirement,) = [item for item in taken(backend) if item.topic == topic]
    assert phone.on_notice(retirement.payload) != ""
    assert _ders(phone) == [_der(new_key)]


# --- the site CA told to every device ------------------------------------------------------------


def _ca_notices(items: list[Outgoing], backend_public: crypto.PublicKey) -> list[CaNotice]:
    notices = _on(items, "ca")
    assert {item.topic.rsplit("/", 1)[0] for item in notices} == {
        topic.rsplit("/", 1)[0] for topic in DEVICE_TOPICS
    }
    assert all(item.retain for item in notices)
    return [open_ca_notice(item.payload, trusted=backend_public) for item in notices]


def test_every_device_is_told_the_site_ca_once_and_again_when_ca_crt_changes(
    backend: Backend, old_key: crypto.PrivateKey
) -> None:
    site = backend.site
    backend.publish_site_ca()
    notices = _ca_notices(taken(backend), old_key.public_key())
    assert {n.certificates for n in notices} == {
        crypto.certificates_to_der(site.ca_cert.read_bytes())
    }
    backend.publish_site_ca()
    assert _on(taken(backend), "ca") == []  # once per version of ca.crt
    from smartlock.broker import start_ca_rotation

    start_ca_rotation(site, now=dt.datetime.now(dt.UTC))
    backend.publish_site_ca()
    notices = _ca_notices(taken(backend), old_key.public_key())
    assert {len(n.certificates) for n in notices} == {2}  # the current and the next CA


def test_a_device_with_its_own_copy_follows_the_ca_notice(
    backend: Backend, old_key: crypto.PrivateKey, tmp_path: Path
) -> None:
    site = backend.site
    phone = tmp_path / "phone-ca.crt"
    phone.write_bytes(site.ca_cert.read_bytes())
    backend.publish_site_ca()
    payload = _on(taken(backend), "ca")[0].payload
    assert apply_ca_notice(phone, payload, old_key.public_key()) == ""  # the same: no change
    from smartlock.broker import start_ca_rotation

    start_ca_rotation(site, now=dt.datetime.now(dt.UTC))
    backend.publish_site_ca()
    payload = _on(taken(backend), "ca")[0].payload
    changed = apply_ca_notice(phone, payload, old_key.public_key())
    assert changed == "now trusts 2 site CA certificate(s)"
    assert crypto.certificates_to_der(phone.read_bytes()) == crypto.certificates_to_der(
        site.ca_cert.read_bytes()
    )
    stranger = crypto.generate_private_key()
    with pytest.raises(Rejected) as refused:
        apply_ca_notice(phone, payload, stranger.public_key())
    assert refused.value.reason is Reason.BAD_SIGNATURE


def test_a_ca_notice_older_than_the_devices_ca_crt_is_refused_as_stale(
    backend: Backend, old_key: crypto.PrivateKey, tmp_path: Path
) -> None:
    """A replayed overlap bundle must not bring back a CA the rotation retired."""
    site = backend.site
    ders = crypto.certificates_to_der(site.ca_cert.read_bytes())
    phone = tmp_path / "phone-ca.crt"
    phone.write_bytes(b"")  # nothing trusted yet: the first notice is taken
    old_notice = make_ca_notice(ders, now=time.time() - 3600, backend_key=old_key)
    fresh = make_ca_notice(ders, now=time.time(), backend_key=old_key)
    assert apply_ca_notice(phone, fresh, old_key.public_key()).startswith("now trusts")
    phone.write_bytes(b"")  # as if ca.crt now held something else, written just now
    with pytest.raises(Rejected) as refused:
        apply_ca_notice(phone, old_notice, old_key.public_key())
    assert refused.value.reason is Reason.STALE
    assert phone.read_bytes() == b""
