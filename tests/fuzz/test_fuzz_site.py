"""Fuzzes the reading of a site's configuration (smartlock.site.Site.load) with a damaged
``site.json``: edited JSON, any JSON value, any bytes.

Rule: ``Site.load`` returns a site or raises ``ConfigError``, nothing else; a site it returns holds
only valid values (ids, a TCP port, durations in range, a known time zone) and saves to a
``site.json`` that loads back to the same site; valid sites round-trip through ``site.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import edited_json, identifiers, json_values
from hypothesis import example, given
from hypothesis import strategies as st

from smartlock.core.errors import ConfigError
from smartlock.core.issuance import MAX_KEY_TTL_S
from smartlock.core.wire import check_identifier
from smartlock.site import RESERVED_IDS, SITE_FILE, SITE_VERSION, Site

REFERENCE: dict[str, Any] = {
    "version": SITE_VERSION,
    "name": "site",
    "broker": {"host": "127.0.0.1", "port": 8883},
    "locks": ["lock_01", "lock_02"],
    "users": ["owner", "guest_01"],
    "session_ttl_s": 300,
    "heartbeat_s": 60,
    "command_window_s": 30,
    "timezone": "Europe/Paris",
    "store_url": None,
    "max_failures": 3,
    "failure_window_s": 300,
    "lockout_s": 300,
    "home_assistant_user": None,
}


def _site_json(**changes: object) -> bytes:
    return json.dumps({**REFERENCE, **changes}).encode()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzzed-site")


def _load(root: Path, content: bytes) -> Site | None:
    (root / SITE_FILE).write_bytes(content)
    try:
        return Site.load(root)
    except ConfigError:
        return None


def test_the_reference_site_json_loads(root: Path) -> None:
    site = _load(root, json.dumps(REFERENCE).encode())
    assert site is not None
    assert json.loads(site.to_json()) == REFERENCE


@given(
    st.one_of(
        edited_json(REFERENCE).map(json.dumps).map(str.encode),
        json_values.map(json.dumps).map(str.encode),
        st.binary(max_size=200),
    )
)
# Regressions: a broker port of 0 (false) or 99999 was accepted; int(Infinity) raised
# OverflowError and JSON nested too deep RecursionError out of Site.load.
@example(content=_site_json(broker={"host": "127.0.0.1", "port": False}))
@example(content=_site_json(broker={"host": "127.0.0.1", "port": 99999}))
@example(content=_site_json(broker={"host": "127.0.0.1", "port": math.inf}))
@example(content=_site_json(heartbeat_s=math.inf))
@example(content=b"[" * 100_000)
def test_a_damaged_site_json_loads_a_valid_site_or_raises_config_error(
    root: Path, content: bytes
) -> None:
    site = _load(root, content)
    if site is None:
        return
    for identity in (*site.locks, *site.users):
        check_identifier(identity)
    assert site.locks
    assert 1 <= site.broker_port <= 65535
    assert 0 < site.session_ttl_s <= MAX_KEY_TTL_S
    for duration in (site.heartbeat_s, site.command_window_s, site.failure_window_s):
        assert 1 <= duration <= 86_400
    assert 1 <= site.max_failures <= 86_400
    assert 1 <= site.lockout_s <= 86_400
    site.zone  # noqa: B018 -- a known time zone
    assert _load(root, site.to_json().encode()) == site


durations = st.integers(1, 86_400)


@st.composite
def sites(draw: st.DrawFn, root: Path) -> Site:
    ids = draw(
        st.lists(
            identifiers.filter(lambda i: i not in RESERVED_IDS), min_size=1, max_size=5, unique=True
        )
    )
    split = draw(st.integers(1, len(ids)))
    return Site(
        root=root.resolve(),
        name=draw(st.text(max_size=20)),
        broker_host=draw(st.text(max_size=20)),
        broker_port=draw(st.integers(1, 65535)),
        locks=tuple(ids[:split]),
        users=tuple(ids[split:]),
        session_ttl_s=draw(st.integers(1, MAX_KEY_TTL_S)),
        heartbeat_s=draw(durations),
        command_window_s=draw(durations),
        timezone=draw(st.sampled_from(["UTC", "Europe/Paris", "America/St_Johns", "Asia/Kolkata"])),
        store_url=draw(st.none() | st.text(max_size=30)),
        max_failures=draw(durations),
        failure_window_s=draw(durations),
        lockout_s=draw(durations),
    )


@given(data=st.data())
def test_valid_sites_round_trip_through_site_json(root: Path, data: st.DataObject) -> None:
    site = data.draw(sites(root), label="site")
    assert _load(root, site.to_json().encode()) == site
