"""The lock agent's decisions, driven directly: key deliveries into on_delivery, advertising
reports into on_advertisement -- no broker, no radio.  Deliveries and tokens are real: signed
with the site's backend key and MACed under the session key, as the backend and guest do.

The lock's state file is a versioned JSON wrapper (verifier snapshot, command key, events not
yet sent, next report number): what a restart must not lose is tested through a second agent on
the same file."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smartlock import crypto
from smartlock.adapters.actuator import Actuator, BoltState, LoggingActuator
from smartlock.adapters.radio import AdvertisingReport
from smartlock.core.errors import ConfigError, Reason, Rejected
from smartlock.core.issuance import Issuance, issue_session_key
from smartlock.core.lock_verifier import LOCK_SUBJECT
from smartlock.core.messages import NO_PASS, Action, SessionRequest
from smartlock.core.reports import Lockout, ReportBody, TokenRefused, body_from_json
from smartlock.core.token import advertising_data, make_token
from smartlock.services.common import Rejections
from smartlock.services.guest_app import GuestApp
from smartlock.services.lock_agent import STATE_VERSION, LockAgent
from smartlock.site import BACKEND_USER, Site, provision_site

LOCK = "lock_01"
OTHER_LOCK = "lock_02"
GUEST = "guest_01"
OWNER = "owner"
RELOCK_S = 0.05


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    root = Path(tempfile.mkdtemp(prefix="smartlock-test-"))
    yield provision_site(
        root,
        locks=[LOCK, OTHER_LOCK],
        users=[OWNER, GUEST],
        broker_host="127.0.0.1",
        broker_port=18883,
    )
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_lock_state(site: Site) -> Iterator[None]:
    """Every test starts with locks that have never seen a key."""
    paths = [site.identity_dir(lock) / "state.json" for lock in site.locks]
    for path in paths:
        path.unlink(missing_ok=True)
    yield
    for path in paths:
        path.unlink(missing_ok=True)


def issue(
    site: Site, lock_id: str = LOCK, *, now: float | None = None, pass_id: int = NO_PASS
) -> Issuance:
    """A key for GUEST: under a guest pass with ``pass_id``, else as an owner's (no pass)."""
    now = time.time() if now is None else now
    request = SessionRequest(crypto.random_bytes(16), int(now), lock_id)
    return issue_session_key(
        request=request,
        guest_id=GUEST,
        now=now,
        ttl_s=300,
        backend_key=site.private_key(BACKEND_USER),
        lock_public=site.public_key(lock_id),
        guest_public=site.public_key(GUEST),
        random_bytes=crypto.random_bytes,
        pass_id=pass_id,
    )


def delivery(issuance: Issuance) -> bytes:
    return bytes(issuance.lock_delivery)


def token(issuance: Issuance, counter: int, action: Action = Action.UNLOCK) -> AdvertisingReport:
    data = advertising_data(make_token(issuance.key, counter, action))
    return AdvertisingReport("guest-phone", -50, data)


def agent_for(site: Site, actuator: Actuator | None = None) -> LockAgent:
    return LockAgent(
        site,
        LOCK,
        radio="memory:unused",
        actuator=actuator or LoggingActuator(),
        relock_after_s=RELOCK_S,
    )


def bolt(agent: LockAgent) -> LoggingActuator:
    assert isinstance(agent.actuator, LoggingActuator)
    return agent.actuator


def stored_reports(agent: LockAgent) -> list[tuple[int, ReportBody]]:
    """The reports waiting in the agent's outbox: (seq, body)."""
    return [
        (int(item["seq"]), body_from_json(item["body"]))
        for item in agent.events.items
        if "body" in item
    ]


def stored_access_events(agent: LockAgent) -> list[str]:
    return [item["payload"] for item in agent.events.items if "payload" in item]


async def until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Poll ``condition``: the code under test offers no event to wait on."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


class JammedBolt:
    """An actuator whose bolt never moves."""

    def __init__(self) -> None:
        self.state = BoltState.LOCKED
        self.attempts = 0

    def unlock(self) -> BoltState:
        self.attempts += 1
        raise RuntimeError("relay did not switch to UNLOCKED")

    def lock(self) -> BoltState:
        self.attempts += 1
        raise RuntimeError("relay did not switch to LOCKED")

    def close(self) -> None:
        """Nothing to release."""


# --- unlocking ----------------------------------------------------------------------------------


async def test_token_under_a_delivered_key_unlocks_then_the_bolt_relocks(site: Site) -> None:
    agent = agent_for(site)
    issued = issue(site)
    agent.on_delivery(delivery(issued))
    agent.on_advertisement(token(issued, 1))
    assert bolt(agent).movements == [BoltState.UNLOCKED]
    await until(lambda: bolt(agent).state is BoltState.LOCKED)
    assert bolt(agent).movements == [BoltState.UNLOCKED, BoltState.LOCKED]
    assert sum(agent.rejections.counts.values()) == 0


async def test_lock_token_throws_the_bolt_without_a_relock(site: Site) -> None:
    agent = agent_for(site)
    issued = issue(site)
    agent.on_delivery(delivery(issued))
    agent.on_advertisement(token(issued, 1, Action.LOCK))
    await asyncio.sleep(RELOCK_S * 3)
    assert bolt(agent).movements == [BoltState.LOCKED]


async def test_token_before_its_key_arrived_moves_nothing(site: Site) -> None:
    agent = agent_for(site)
    issued = issue(site)
    agent.on_advertisement(token(issued, 1))
    assert bolt(agent).movements == []
    assert agent.rejections.counts["unknown_key"] == 1


async def test_repeated_advertisement_moves_the_bolt_once(site: Site) -> None:
    agent = agent_for(site)
    issued = issue(site)
    agent.on_delivery(delivery(issued))
    for _ in range(5):  # a guest's phone advertises each token many times a second
        agent.on_advertisement(token(issued, 1))
    assert bolt(agent).movements == [BoltState.UNLOCKED]
    assert sum(agent.rejections.counts.values()) == 0
    await until(lambda: bolt(agent).state is BoltState.LOCKED)


async def test_delivery_for_another_lock_is_refused_and_stores_nothing(site: Site) -> None:
    agent = agent_for(site)
    issued = issue(site, OTHER_LOCK)
    agent.on_delivery(delivery(issued))
    assert agent.rejections.counts["wrong_lock"] == 1
    assert not agent.state_path.exists()
    agent.on_advertisement(token(issued, 1))
    assert bolt(agent).movements == []


# --- durable state --------------------------------------------------------------------------


async def test_state_file_is_private_to_the_lock(site: Site) -> None:
    agent = agent_for(site)
    issued = issue(site)
    agent.on_delivery(delivery(issued))
    assert agent.state_path.is_file()
    assert stat.S_IMODE(agent.state_path.stat().st_mode) == 0o600
    agent.on_advertisement(token(issued, 1))
    await until(lambda: bolt(agent).state is BoltState.LOCKED)
    assert stat.S_IMODE(agent.state_path.stat().st_mode) == 0o600


async def test_restarted_agent_refuses_a_token_used_before_the_restart(site: Site) -> None:
    first = agent_for(site)
    issued = issue(site)
    first.on_delivery(delivery(issued))
    first.on_advertisement(token(issued, 1))
    assert bolt(first).movements == [BoltState.UNLOCKED]
    await until(lambda: bolt(first).state is BoltState.LOCKED)

    restarted = agent_for(site)
    restarted.on_advertisement(token(issued, 1))
    assert restarted.rejections.counts["replay"] == 1
    assert bolt(restarted).movements == []
    # it restored the key itself, not just a refusal: the next token still opens
    restarted.on_advertisement(token(issued, 2))
    assert bolt(restarted).movements == [BoltState.UNLOCKED]
    await until(lambda: bolt(restarted).state is BoltState.LOCKED)


async def test_restarted_agent_refuses_a_replayed_key_delivery(site: Site) -> None:
    issued = issue(site)
    agent_for(site).on_delivery(delivery(issued))
    restarted = agent_for(site)
    restarted.on_delivery(delivery(issued))
    assert restarted.rejections.counts["replay"] == 1


async def test_state_file_is_a_versioned_wrapper_of_everything_a_restart_needs(
    site: Site,
) -> None:
    agent = agent_for(site)
    agent.on_delivery(delivery(issue(site)))
    state = json.loads(agent.state_path.read_bytes())
    assert set(state) == {"version", "verifier", "commands", "events", "next_seq"}
    assert state["version"] == STATE_VERSION == 1
    assert (state["events"], state["next_seq"]) == ([], 1)


async def test_restarted_agent_keeps_the_access_events_not_yet_sent(site: Site) -> None:
    first = agent_for(site)
    issued = issue(site)
    first.on_delivery(delivery(issued))
    first.on_advertisement(token(issued, 1))
    await until(lambda: bolt(first).state is BoltState.LOCKED)
    [event] = stored_access_events(first)  # no broker here: it waits on disk
    assert stored_access_events(agent_for(site)) == [event]


async def test_report_numbers_go_on_after_a_restart(site: Site) -> None:
    # the backend refuses a report number it has seen: a restart must never reuse one
    first = agent_for(site)
    issued = issue(site)
    first.on_delivery(delivery(issued))
    first.on_advertisement(token(issued, 2))
    await until(lambda: bolt(first).state is BoltState.LOCKED)
    first.on_advertisement(token(issued, 1))  # a replay: counted, and reported
    assert [(seq, type(body)) for seq, body in stored_reports(first)] == [(1, TokenRefused)]

    restarted = agent_for(site)
    restarted.on_advertisement(token(issued, 2, Action.LOCK))  # another replay
    reports = stored_reports(restarted)
    assert [seq for seq, _ in reports] == [1, 2]
    assert [body.reason for _, body in reports if isinstance(body, TokenRefused)] == [
        "replay",
        "replay",
    ]


async def test_restart_does_not_lift_an_intrusion_lockout(site: Site) -> None:
    agent = agent_for(site)
    issued = issue(site, pass_id=7)  # a guest's: an owner's valid token opens during a lockout
    agent.on_delivery(delivery(issued))
    agent.on_advertisement(token(issued, 8))
    await until(lambda: bolt(agent).state is BoltState.LOCKED)
    for counter in range(1, site.max_failures + 2):  # one more replay than the threshold
        agent.on_advertisement(token(issued, counter))
    assert agent.verifier.intrusion.locked_until(LOCK_SUBJECT, time.time()) is not None
    assert [type(body) for _, body in stored_reports(agent)][-1] is Lockout

    restarted = agent_for(site)
    restarted.on_advertisement(token(issued, 9))  # a good token, but the lock is locked out
    assert restarted.rejections.counts["locked_out"] == 1
    assert bolt(restarted).movements == []
    assert stored_reports(restarted)[-1][1] == TokenRefused(Reason.LOCKED_OUT, "", 0, 0)


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        pytest.param(b"{not json", "Expecting property name", id="not-json"),
        pytest.param(b"[]", "unknown state version", id="not-an-object"),
        pytest.param(b'{"version": 2}', "unknown state version", id="newer-version"),
        pytest.param(None, "unknown state version", id="bare-verifier-snapshot"),
        pytest.param("events", "events", id="no-events"),
        pytest.param("next_seq", "next_seq", id="no-next-seq"),
    ],
)
async def test_damaged_state_file_is_a_config_error(
    site: Site, content: bytes | str | None, detail: str
) -> None:
    state = site.identity_dir(LOCK) / "state.json"
    if content is None:  # the verifier's own snapshot, without the wrapper around it
        agent = agent_for(site)
        state.write_bytes(agent.verifier.snapshot())
    elif isinstance(content, str):  # a complete state file without one of its fields
        agent = agent_for(site)
        agent.on_delivery(delivery(issue(site)))
        complete = json.loads(state.read_bytes())
        del complete[content]
        state.write_text(json.dumps(complete))
    else:
        state.write_bytes(content)
    with pytest.raises(ConfigError, match=r"state\.json: unreadable lock state") as raised:
        agent_for(site)
    assert detail in str(raised.value)


# --- a bolt that does not move ----------------------------------------------------------------


async def test_jammed_bolt_does_not_escape_on_advertisement(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    jammed = JammedBolt()
    agent = agent_for(site, jammed)
    issued = issue(site)
    agent.on_delivery(delivery(issued))
    agent.on_advertisement(token(issued, 1))  # must not raise
    assert jammed.attempts == 1
    assert jammed.state is BoltState.LOCKED
    assert any("The bolt did not move for guest_01" in m for m in caplog.messages)
    await asyncio.sleep(RELOCK_S * 3)
    assert jammed.attempts == 1  # no relock was scheduled for a bolt that never opened


async def test_token_is_spent_even_when_the_bolt_jams(site: Site) -> None:
    # the counter is stored before the bolt moves, so a crash or a jam never lets it work twice
    agent = agent_for(site, JammedBolt())
    issued = issue(site)
    agent.on_delivery(delivery(issued))
    agent.on_advertisement(token(issued, 1))
    restarted = agent_for(site)
    restarted.on_advertisement(token(issued, 1))
    assert restarted.rejections.counts["replay"] == 1
    assert bolt(restarted).movements == []


# --- identities -------------------------------------------------------------------------------


def test_lock_agent_for_an_unknown_lock_is_a_config_error(site: Site) -> None:
    with pytest.raises(ConfigError, match=r"no lock 'lock_99'.*locks: lock_01, lock_02"):
        LockAgent(site, "lock_99")


def test_guest_app_for_an_unknown_user_is_a_config_error(site: Site) -> None:
    with pytest.raises(ConfigError, match=r"no user 'guest_99'.*users: owner, guest_01"):
        GuestApp(site, "guest_99")


def test_guest_app_is_the_app_of_every_user_owners_included(site: Site) -> None:
    # the backend decides by role whether a user may open; the app serves any user of the site
    app = GuestApp(site, OWNER, radio="memory:unused")
    assert (app.session_topic, app.events_topic) == ("users/owner/session", "users/owner/events")


def test_a_lock_id_is_not_a_user_id(site: Site) -> None:
    with pytest.raises(ConfigError, match="no user 'lock_01'"):
        GuestApp(site, LOCK)
    with pytest.raises(ConfigError, match="no lock 'guest_01'"):
        LockAgent(site, GUEST)
    with pytest.raises(ConfigError, match="no lock 'owner'"):
        LockAgent(site, OWNER)


def test_rejection_summary_names_every_reason_with_its_count() -> None:
    rejections = Rejections(logging.getLogger("test"))
    assert rejections.summary() == "no input was rejected"
    rejections.record("advertisement", Rejected(Reason.REPLAY))
    rejections.record("advertisement", Rejected(Reason.REPLAY))
    rejections.record("message", Rejected(Reason.MALFORMED, "truncated"))
    assert rejections.summary() == "rejected: malformed=1, replay=2"


# --- the RSSI floor -----------------------------------------------------------------------------


def heard_at(report: AdvertisingReport, rssi: int) -> AdvertisingReport:
    return AdvertisingReport(report.address, rssi, report.data)


async def test_a_token_heard_below_the_rssi_floor_moves_nothing_and_is_counted(
    site: Site,
) -> None:
    agent = LockAgent(site, LOCK, radio="memory:unused", relock_after_s=RELOCK_S, min_rssi=-60)
    issued = issue(site)
    agent.on_delivery(delivery(issued))
    agent.on_advertisement(heard_at(token(issued, 1), -75))
    assert bolt(agent).movements == []
    assert agent.rejections.counts[Reason.WEAK_SIGNAL.value] == 1
    assert stored_reports(agent) == []  # too far away is not a failed guess: no intrusion count
    agent.on_advertisement(heard_at(token(issued, 1), -55))  # the same token, from close by
    assert bolt(agent).movements == [BoltState.UNLOCKED]


def test_a_state_file_nested_too_deep_is_a_clear_configuration_error(site: Site) -> None:
    (site.identity_dir(LOCK) / "state.json").write_text("[" * 100_000)
    with pytest.raises(ConfigError, match="unreadable lock state"):
        agent_for(site)
