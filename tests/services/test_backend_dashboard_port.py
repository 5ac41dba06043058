"""The backend's side of the dashboard and of Home Assistant, driven directly (no broker): the
outbox shows what would be published, the store what was audited.  Commands from the dashboard
and from Home Assistant take the same path as MQTT ones: roles, the fail-closed "sent" entry,
the deadline; Home Assistant's state is never optimistic and shows a bolt that failed as
JAMMED."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartlock.adapters.mqtt import Incoming
from smartlock.adapters.store import Store
from smartlock.adapters.store.records import AuditEntry
from smartlock.admin import create_site, open_store
from smartlock.broker import grant_broker_access
from smartlock.core import topics
from smartlock.core.alerts import Alert
from smartlock.core.messages import Action
from smartlock.core.reports import CommandResult
from smartlock.crypto import CertifiedKey, make_server_certificate
from smartlock.services.backend import Backend
from smartlock.site import Site, set_home_assistant_user, write_private


@pytest.fixture
def site() -> Iterator[Site]:
    root = Path(tempfile.mkdtemp(prefix="smartlock-test-"))
    made = create_site(
        root / "site",
        locks=["lock_01"],
        owners=["owner"],
        residents=["house"],
        guests=["guest_01"],
        broker_port=18883,
    )
    yield set_home_assistant_user(made, "house")
    shutil.rmtree(root, ignore_errors=True)


def _published(backend: Backend, topic: str) -> list[bytes]:
    return [item.payload for item in backend._outbox._items if item.topic == topic]


def _audited(store: Store, who: str) -> list[tuple[str, str, str, str]]:
    return [
        (e.record.channel, e.record.action, e.record.result, e.record.reason)
        for e in store.audit_entries(who=who)
        if e.record.channel != "admin"
    ]


async def _answer(backend: Backend, result: str, reason: str, bolt: str) -> None:
    """The lock's report on the one pending command."""
    (nonce,) = backend._pending_commands
    action = backend._pending_commands[nonce].request.action
    backend._on_command_result(
        "lock_01", int(time.time()), CommandResult(nonce, action, result, reason, bolt)
    )


async def test_a_dashboard_unlock_is_audited_sent_then_granted_and_answered(site: Site) -> None:
    with open_store(site) as store:
        backend = Backend(site, store=store)
        outcome = asyncio.ensure_future(
            backend.remote_command("owner", "lock_01", Action.UNLOCK, channel="web")
        )
        await asyncio.sleep(0)
        assert len(_published(backend, topics.lock_topic("lock_01", "commands"))) == 1
        assert _audited(store, "owner") == [("web", "unlock", "sent", "")]
        await _answer(backend, "done", "", "unlocked")
        assert (await outcome).result == "done"
        assert (await outcome).bolt == "unlocked"
        assert _audited(store, "owner")[-1] == ("web", "unlock", "granted", "")


async def test_a_guest_cannot_command_from_the_dashboard(site: Site) -> None:
    with open_store(site) as store:
        backend = Backend(site, store=store)
        outcome = await backend.remote_command("guest_01", "lock_01", Action.UNLOCK, channel="web")
        assert (outcome.result, outcome.reason) == ("denied", "role_not_allowed")
        assert _published(backend, topics.lock_topic("lock_01", "commands")) == []
        assert _audited(store, "guest_01")[-1][:3] == ("web", "unlock", "denied")


async def test_a_command_the_lock_never_answers_fails_at_its_deadline(site: Site) -> None:
    with open_store(site) as store:
        backend = Backend(site, store=store, command_timeout_s=0.05)
        outcome = asyncio.ensure_future(
            backend.remote_command("owner", "lock_01", Action.LOCK, channel="web")
        )
        await asyncio.sleep(0.1)
        backend._expire_commands(time.time())
        assert (await outcome).result == "failed"
        assert (await outcome).reason == "lock_unreachable"


async def test_home_assistant_sees_unlocking_then_jammed_when_the_bolt_does_not_move(
    site: Site,
) -> None:
    with open_store(site) as store:
        backend = Backend(site, store=store)
        backend.handle(Incoming(topics.home_assistant_command("lock_01"), b"UNLOCK"))
        await _answer(backend, "failed", "bolt_failed", "locked")
        states = _published(backend, topics.home_assistant_state("lock_01"))
        assert states == [b"UNLOCKING", b"JAMMED"]
        assert _audited(store, "house") == [
            ("homeassistant", "unlock", "sent", ""),
            ("homeassistant", "unlock", "failed", "bolt_failed"),
        ]


async def test_a_retained_home_assistant_command_is_refused(site: Site) -> None:
    with open_store(site) as store:
        backend = Backend(site, store=store)
        backend.handle(Incoming(topics.home_assistant_command("lock_01"), b"UNLOCK", retained=True))
        assert _published(backend, topics.lock_topic("lock_01", "commands")) == []
        assert backend.rejections.counts["replay"] == 1


async def test_an_alert_reaches_a_live_page_and_the_metrics(site: Site) -> None:
    with open_store(site) as store:
        backend = Backend(site, store=store)
        feed = backend.alert_feed()
        waiting = asyncio.ensure_future(anext(feed))
        await asyncio.sleep(0)
        backend.alert("lock_offline", lock_id="lock_01", subject="lock_01", detail="gone")
        notice = await asyncio.wait_for(waiting, 1)
        assert (notice.kind, notice.lock_id, notice.detail) == ("lock_offline", "lock_01", "gone")
        assert b'smartlock_alerts_total{kind="lock_offline"} 1.0' in backend.metrics.render()
        await feed.aclose()  # type: ignore[attr-defined]


async def test_a_broker_certificate_close_to_expiry_is_alerted_once_a_day(site: Site) -> None:
    ca = CertifiedKey((site.root / "ca" / "ca.key").read_bytes(), site.ca_cert.read_bytes())
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(days=20)
    short = make_server_certificate(ca, ["127.0.0.1"], now=issued, days=30)
    write_private(site.broker_dir / "broker.crt", short.cert_pem)
    write_private(site.broker_dir / "broker.key", short.key_pem)
    grant_broker_access(site)
    with open_store(site) as store:
        backend = Backend(site, store=store)
        backend.tick()
        alerts = [
            Alert.from_bytes(p) for p in _published(backend, topics.user_topic("owner", "alerts"))
        ]
        assert [(a.kind, a.subject) for a in alerts] == [
            ("certificate_expiring", "broker_certificate")
        ]
        assert "expires in 10 days" in alerts[0].detail
        assert "smartlock rotate broker-cert" in alerts[0].detail
        entries: list[AuditEntry] = store.audit_entries(result="alert")
        assert [(e.record.action, e.record.channel) for e in entries] == [("certificate", "system")]
        backend._outbox._items.clear()
        backend.tick()  # the next check is a day away
        assert _published(backend, topics.user_topic("owner", "alerts")) == []
