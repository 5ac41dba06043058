"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) against the real
system: broker, radio hub, backend with ``--http`` and both lock agents as processes.

One system and one browser for the module, a fresh browser context (cookies, storage) per test.
The owner signs in once through the form and later tests reuse that session: sign-ins are
rate-limited per name (five at once), so every test signing in anew would be refused.

Each page visited is saved as a full-page screenshot under ``test-artifacts/screenshots``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    StorageState,
    async_playwright,
    expect,
)

from smartlock.admin import open_store, set_web_password
from system_harness import GUESTS, LOCKS, OWNER, RESIDENT, System, running_system

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORDS = {OWNER: "owner-browser-pass-1", RESIDENT: "resident-browser-pass-1"}
STEP_MS = 5_000  # a page, a redirect or a form post
LIVE_MS = 15_000  # a lock's state reaching an open page over /events
AUDIT_CSV_HEADER = ["seq", "at", "who", "role", "lock_id", "channel", "action", "result"]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (make chromium)"
)


@pytest_asyncio.fixture(scope="module")
async def system() -> AsyncIterator[System]:
    async with running_system(backend_args=["--http", "127.0.0.1:0"]) as running:
        for name, password in PASSWORDS.items():
            set_web_password(running.site, name, password)
        yield running


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        await launched.close()


@pytest_asyncio.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    fresh = await browser.new_context()
    yield fresh
    await fresh.close()


@pytest_asyncio.fixture(scope="module")
async def owner_session(system: System, browser: Browser) -> StorageState:
    """The owner's signed-in cookies, signed in once through the form for the whole module."""
    context = await browser.new_context()
    try:
        await sign_in(await context.new_page(), url(system), OWNER)
        return await context.storage_state()
    finally:
        await context.close()


@pytest_asyncio.fixture
async def owner(browser: Browser, owner_session: StorageState) -> AsyncIterator[Page]:
    """A page in a fresh context holding the owner's session."""
    context = await browser.new_context(storage_state=owner_session)
    yield await context.new_page()
    await context.close()


def url(system: System) -> str:
    assert system.dashboard_url is not None
    return system.dashboard_url


async def sign_in(page: Page, base: str, name: str, password: str | None = None) -> None:
    await page.goto(f"{base}/login")
    await page.fill("form#login input[name=name]", name)
    await page.fill("form#login input[name=password]", password or PASSWORDS[name])
    await page.click("form#login button[type=submit]")


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def lock_row(page: Page, lock_id: str) -> Locator:
    return page.locator(f'table#locks tr[data-lock="{lock_id}"]')


def pass_row(page: Page, pass_id: int) -> Locator:
    return page.locator(f'table#passes tr[data-pass="{pass_id}"]')


def store_passes(system: System, **criteria: Any) -> list[Any]:
    with open_store(system.site) as store:
        return store.list_passes(now=int(time.time()), **criteria)


async def test_owner_signs_in_and_a_wrong_password_stays_on_the_sign_in_page(
    system: System, context: BrowserContext
) -> None:
    page = await context.new_page()
    await page.goto(f"{url(system)}/login")
    await expect(page.locator("form#login input[name=csrf_token]")).to_have_count(1)
    await screenshot(page, "login")

    await sign_in(page, url(system), OWNER, "not-the-owner-password")
    await expect(page).to_have_url(re.compile(r"/login$"), timeout=STEP_MS)
    await expect(page.locator("p#message")).to_have_text("Wrong name or password.")
    await expect(page.locator("nav")).to_have_count(0)

    await sign_in(page, url(system), OWNER)
    await expect(page).to_have_url(re.compile(r"/locks$"), timeout=STEP_MS)
    await expect(page.locator("header .who")).to_have_text(f"{OWNER} (owner)")
    await expect(page.locator("table#locks tr[data-lock]")).to_have_count(len(LOCKS))


async def test_owner_grants_a_pass_sees_it_listed_then_revokes_it(
    system: System, owner: Page
) -> None:
    guest, lock_id = GUESTS[2], LOCKS[0]  # guest_03 has no pass yet
    await owner.goto(f"{url(system)}/passes")
    await owner.select_option("form#grant select[name=guest]", guest)
    await owner.select_option("form#grant select[name=lock_id]", lock_id)
    await owner.fill("form#grant input[name=uses]", "3")
    await owner.click("form#grant button[type=submit]")

    message = owner.locator("p#message")
    await expect(message).to_have_text(
        re.compile(rf"^Pass \d+ granted to {guest} on {lock_id}\.$"), timeout=STEP_MS
    )
    granted = re.search(r"Pass (\d+)", await message.inner_text())
    assert granted is not None
    pass_id = int(granted.group(1))
    row = pass_row(owner, pass_id)
    await expect(row).to_contain_text(guest)
    await expect(row).to_contain_text(lock_id)
    await expect(row).to_contain_text("0 / 3")
    await screenshot(owner, "passes")
    assert [p.pass_id for p in store_passes(system, guest=guest)] == [pass_id]

    await row.locator("button.revoke").click()
    await expect(message).to_have_text(f"Pass {pass_id} of {guest} revoked.", timeout=STEP_MS)
    await expect(pass_row(owner, pass_id)).to_have_count(0)
    assert store_passes(system, guest=guest) == []
    (record,) = store_passes(system, guest=guest, include_inactive=True)
    assert record.pass_id == pass_id
    assert record.revoked


@pytest.mark.parametrize(
    "how",
    [
        pytest.param(signal.SIGTERM, id="stopped"),  # the agent says "offline" as it stops
        pytest.param(signal.SIGKILL, id="crashed"),  # the broker sends the agent's last will
    ],
)
async def test_owner_sees_a_lock_go_offline_and_back_online_live_without_reloading(
    system: System, owner: Page, how: signal.Signals, request: pytest.FixtureRequest
) -> None:
    lock_id = LOCKS[1]
    status = await open_locks_page_live(system, owner, lock_id)
    navigations: list[str] = []
    owner.on("framenavigated", lambda frame: navigations.append(frame.url))

    await system.locks[lock_id].stop(how)
    try:
        await expect(status).to_have_text("offline", timeout=LIVE_MS)
        await expect(status).to_have_class("status offline")
        await expect(lock_row(owner, LOCKS[0]).locator('[data-field="status"]')).to_have_text(
            "online"
        )
        await screenshot(owner, f"locks-offline-{request.node.callspec.id}")
    finally:
        await system.start_lock(lock_id)  # its first heartbeat goes out once it is connected
    await expect(status).to_have_text("online", timeout=LIVE_MS)
    await expect(status).to_have_class("status online")
    assert navigations == []  # the page was never reloaded


async def open_locks_page_live(system: System, page: Page, lock_id: str) -> Locator:
    """The /locks page open with its live feed connected; the status cell of ``lock_id``."""
    await page.goto(f"{url(system)}/locks")
    status = lock_row(page, lock_id).locator('[data-field="status"]')
    await expect(status).to_have_text("online")
    await expect(page.locator("#live.on")).to_have_count(1, timeout=STEP_MS)  # /events is open
    return status


async def test_owner_reads_filters_and_exports_the_audit_log(system: System, owner: Page) -> None:
    lock_id = LOCKS[0]
    await owner.goto(f"{url(system)}/audit")
    await expect(owner.locator("p#integrity")).to_contain_text("Hash chain intact")
    await expect(owner.locator("table#audit tbody tr", has_text="login")).not_to_have_count(0)

    await owner.select_option("form#audit-filter select[name=lock_id]", lock_id)
    await owner.click("form#audit-filter button[type=submit]")
    await expect(owner).to_have_url(re.compile(rf"lock_id={lock_id}"), timeout=STEP_MS)
    lock_cells = owner.locator("table#audit tbody tr td:nth-child(5)")
    await expect(lock_cells.first).to_have_text(lock_id)
    assert set(await lock_cells.all_inner_texts()) == {lock_id}
    await expect(owner.locator("p#integrity")).to_contain_text("Hash chain intact")
    await screenshot(owner, "audit")

    async with owner.expect_download(timeout=STEP_MS) as download_info:
        await owner.click("a#export")
    download = await download_info.value
    assert download.suggested_filename == "smartlock-audit.csv"
    text = await asyncio.to_thread(Path(await download.path()).read_text, encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0].split(",")[: len(AUDIT_CSV_HEADER)] == AUDIT_CSV_HEADER
    assert rows
    assert {row["lock_id"] for row in rows} == {lock_id}  # the export keeps the filter
    assert any(row["channel"] == "system" and row["action"] == "online" for row in rows)


async def test_owner_creates_an_invitation_with_a_qr_code_and_its_text(
    system: System, owner: Page
) -> None:
    (first,) = store_passes(system, guest=GUESTS[0])
    await owner.goto(f"{url(system)}/passes")
    await pass_row(owner, first.pass_id).locator("button.invite").click()

    await expect(owner.locator("h1")).to_have_text(f"Invitation for {GUESTS[0]}", timeout=STEP_MS)
    await expect(owner.locator("#qr svg")).to_be_visible()
    text = owner.locator("textarea#invitation-text")
    await expect(text).to_have_value(re.compile(r"^SLI1\."))
    await screenshot(owner, "invitation")


async def test_resident_uses_locks_and_alerts_but_is_refused_owner_pages(
    system: System, context: BrowserContext
) -> None:
    page = await context.new_page()
    await sign_in(page, url(system), RESIDENT)
    await expect(page).to_have_url(re.compile(r"/locks$"), timeout=STEP_MS)
    await expect(page.locator("table#locks tr[data-lock]")).to_have_count(len(LOCKS))
    nav = page.locator("header nav")
    await expect(nav.get_by_role("link", name="Locks")).to_have_count(1)
    await expect(nav.get_by_role("link", name="Alerts")).to_have_count(1)
    await expect(nav.get_by_role("link", name="Passes")).to_have_count(0)
    await expect(nav.get_by_role("link", name="Audit log")).to_have_count(0)
    await screenshot(page, "locks")

    response = await page.goto(f"{url(system)}/alerts")
    assert response is not None
    assert response.status == 200
    await expect(page.locator("ul#alerts")).to_be_visible()
    await screenshot(page, "alerts")

    for owner_page in ("/passes", "/audit"):
        response = await page.goto(f"{url(system)}{owner_page}")
        assert response is not None
        assert response.status == 403, owner_page
        await expect(page.locator("p#error")).to_have_text("owners only")
        await expect(page.locator("table#passes, table#audit")).to_have_count(0)


async def test_a_post_without_the_csrf_token_is_refused(system: System, owner: Page) -> None:
    (first,) = store_passes(system, guest=GUESTS[0])
    await owner.goto(f"{url(system)}/passes")
    await expect(pass_row(owner, first.pass_id)).to_have_count(1)

    refused = await owner.request.post(f"{url(system)}/passes/{first.pass_id}/revoke", form={})
    assert refused.status == 403
    assert "CSRF" in await refused.text()
    assert [p.pass_id for p in store_passes(system, guest=GUESTS[0])] == [first.pass_id]

    signed_in = await owner.request.get(f"{url(system)}/api/me")
    assert signed_in.status == 200  # the session itself is good: only the token is missing
    refused = await owner.request.post(
        f"{url(system)}/api/passes", data={"guest": GUESTS[2], "lock_id": LOCKS[1]}
    )
    assert refused.status == 403
    assert "X-CSRF-Token" in (await refused.json())["detail"]
    assert store_passes(system, guest=GUESTS[2]) == []


async def test_owner_unlocks_a_lock_remotely_from_the_locks_page(
    system: System, owner: Page
) -> None:
    lock_id = LOCKS[0]
    lock = system.locks[lock_id]
    mark = len(lock.lines)
    await owner.goto(f"{url(system)}/locks")
    await lock_row(owner, lock_id).locator("button.unlock").click()

    await expect(owner.locator("p#message")).to_have_text(
        f"{lock_id}: unlock done (bolt unlocked).", timeout=LIVE_MS
    )
    await lock.wait_for(rf"UNLOCKED {lock_id} for remote command", after=mark)
