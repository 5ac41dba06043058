"""What the web adapter's tests share: an in-memory :class:`BackendPort` over a real site and a
real store, the people of the test site, and signing in.

The backend here is the dashboard's only collaborator (``backend_port.py``), built from real
parts: a site provisioned by :func:`smartlock.admin.create_site`, its SQLite store, a real
:class:`Metrics`.  Only the MQTT side is replaced: ``remote_command`` records the call and
answers "done"; ``recent_alerts`` reads the ``alerts`` list.

This module has a name of its own (not ``conftest``): ``from conftest import ...`` would find
whichever conftest was imported last.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from starlette.exceptions import StarletteDeprecationWarning

from smartlock import admin, crypto
from smartlock.adapters.store import Store
from smartlock.adapters.web.auth import CSRF_HEADER, SESSION_COOKIE, SESSION_TTL_S
from smartlock.adapters.web.backend_port import AlertNotice, CommandOutcome, Enrollment
from smartlock.adapters.web.metrics import Metrics
from smartlock.core.messages import Action
from smartlock.core.records import AuditRecord, Invitation
from smartlock.site import BACKEND_USER, Site

# starlette 1.x warns on import when it finds httpx instead of httpx2; the project pins httpx
# (pyproject: "FastAPI's TestClient"), so this one warning, and only at this import, is expected.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore",
        message=r"Using `httpx` with `starlette\.testclient` is deprecated",
        category=StarletteDeprecationWarning,
    )
    from fastapi.testclient import TestClient

OWNER, RESIDENT, GUEST, OTHER_GUEST = "olivia", "rick", "gina", "gus"
FRONT, BACK = "front", "back"
PASSWORDS = {
    OWNER: "owner-password-1",
    RESIDENT: "resident-password-2",
    GUEST: "guest-password-3",
    OTHER_GUEST: "guest-password-4",
}
GUEST_PASS, OTHER_GUEST_PASS = 1, 2  # create_site numbers the passes in the order given
PUBLIC_URL = "https://dashboard.example"
BASE_URL = "https://testserver"  # https: the session cookie is Secure
FAST_SCRYPT_N = 2**10


RAM_DISK = Path("/dev/shm")


@contextmanager
def scratch_directory() -> Iterator[Path]:
    """A directory deleted afterwards, on a RAM disk when there is one: the store syncs every
    write to disk, and on a busy disk writing and deleting a hundred site copies (and pytest's
    cleanup of old tmp_path trees) costs more than the tests themselves."""
    usable = RAM_DISK.is_dir() and os.access(RAM_DISK, os.W_OK)
    with tempfile.TemporaryDirectory(
        prefix="smartlock-web-", dir=RAM_DISK if usable else None
    ) as directory:
        yield Path(directory)


def create_test_site(root: Path) -> Site:
    """The site every web test starts from: two locks, one owner, one resident, two guests
    with one pass each, and a dashboard password for everyone."""
    site = admin.create_site(
        root,
        locks=[FRONT, BACK],
        owners=[OWNER],
        residents=[RESIDENT],
        guests=[GUEST, OTHER_GUEST],
        passes=[(GUEST, FRONT), (OTHER_GUEST, BACK)],
        broker_host="127.0.0.1",
        broker_port=18883,
    )
    with admin.open_store(site) as store:
        for name, password in PASSWORDS.items():
            store.set_web_password(
                name, crypto.hash_password(password, n=FAST_SCRYPT_N), now=int(time.time())
            )
    return site


@dataclass
class Command:
    user: str
    lock_id: str
    action: Action
    channel: str


@dataclass
class MemoryBackend:
    """A :class:`smartlock.adapters.web.backend_port.BackendPort` without MQTT."""

    site: Site
    store: Store
    clock: Callable[[], float] = time.time
    commands: list[Command] = field(default_factory=list)
    alerts: list[AlertNotice] = field(default_factory=list)
    rejections: Counter[str] = field(default_factory=Counter)
    metrics: Metrics = field(init=False)
    _listeners: set[asyncio.Queue[AlertNotice]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.metrics = Metrics(lambda: self.rejections)

    def now(self) -> float:
        return self.clock()

    def audit_web(self, *, who: str, action: str, result: str, reason: str = "") -> None:
        """As ``Backend.audit_web``: channel web, no lock, the user's role looked up."""
        user = self.store.get_user(who) if who else None
        self.store.append_audit(
            AuditRecord(
                at_ms=int(self.clock() * 1000),
                who=who,
                role=user.role.value if user else "",
                lock_id="",
                channel="web",
                action=action,
                result=result,
                reason=reason,
            )
        )

    async def remote_command(
        self, user: str, lock_id: str, action: Action, *, channel: str
    ) -> CommandOutcome:
        self.commands.append(Command(user, lock_id, action, channel))
        return CommandOutcome("done", "", "unlocked")

    async def alert_feed(self) -> AsyncIterator[AlertNotice]:
        queue: asyncio.Queue[AlertNotice] = asyncio.Queue()  # made in the loop that reads it
        self._listeners.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._listeners.discard(queue)

    def recent_alerts(self) -> list[AlertNotice]:
        return list(self.alerts)

    def enroll_guest(self, invitation: Invitation, public_key_pem: bytes) -> Enrollment:
        """As ``Backend.enroll_guest`` (no broker runs, so its reload is a no-op)."""
        site, password = admin.enroll_guest(self.site, invitation, public_key_pem)
        self.site = site
        return Enrollment(
            site_name=site.name,
            guest=invitation.guest,
            broker_host=site.broker_host,
            broker_port=site.broker_port,
            password=password,
            ca_pem=site.ca_cert.read_text(),
            backend_public_pem=site.public_key_path(BACKEND_USER).read_text(),
            locks=(invitation.lock_id,),
        )


def sign_in(client: TestClient, name: str, password: str | None = None) -> str:
    """Sign ``client`` in through the API; its CSRF token."""
    response = client.post(
        "/api/session", json={"name": name, "password": password or PASSWORDS[name]}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["csrf_token"]
    return token


def open_session(client: TestClient, backend: MemoryBackend, name: str) -> str:
    """Sign ``client`` in as ``name`` straight in the store (what a sign-in leaves behind, without
    its password check and audit: for tests about what a session may do); its CSRF token."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = int(backend.now())
    backend.store.open_web_session(
        crypto.token_digest(token), name, csrf, now=now, expires_at=now + SESSION_TTL_S
    )
    client.cookies.set(SESSION_COOKIE, token)
    return csrf


def csrf_header(token: str) -> dict[str, str]:
    return {CSRF_HEADER: token}


def session_cookie(client: TestClient) -> str:
    value = client.cookies.get(SESSION_COOKIE)
    assert value, "not signed in"
    return value


def login_form_token(client: TestClient) -> str:
    """GET /login: sets the double-submit cookie; the hidden field's value."""
    page = client.get("/login")
    assert page.status_code == 200
    marker = 'name="csrf_token" value="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


@dataclass(frozen=True)
class StreamStart:
    """The head of a streamed response and its first body chunk."""

    status: int
    headers: dict[str, str]
    first_chunk: bytes
    error: Exception | None  # what the app raised after the client left, if anything


def open_event_stream(app: Any, cookie: str | None, *, timeout_s: float = 10.0) -> StreamStart:
    """GET /events as a browser would, then leave after the first chunk.

    The TestClient waits for a response to end, and the live feed never ends while its client
    stays; here the client "disconnects" as soon as a chunk arrived.
    """
    headers = [(b"host", b"testserver")]
    if cookie is not None:
        headers.append((b"cookie", f"{SESSION_COOKIE}={cookie}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/events",
        "raw_path": b"/events",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("testclient", 50000),
        "server": ("testserver", 443),
    }
    start: dict[str, Any] = {}
    chunks: list[bytes] = []
    errors: list[Exception] = []

    async def run() -> None:
        got_chunk = anyio.Event()
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if not got_chunk.is_set():
                await got_chunk.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    chunks.append(message["body"])
                if message.get("body") or not message.get("more_body", False):
                    got_chunk.set()

        with anyio.fail_after(timeout_s):
            try:
                await app(scope, receive, send)
            except Exception as exc:  # kept for the test to judge: the head was sent already
                errors.append(exc)

    anyio.run(run)
    return StreamStart(
        start["status"],
        {k.decode().lower(): v.decode() for k, v in start.get("headers", [])},
        chunks[0] if chunks else b"",
        errors[0] if errors else None,
    )
