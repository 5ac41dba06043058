"""What the dashboard needs from the backend it runs in (the web adapter's only collaborator).

The backend implements it (:class:`smartlock.services.backend.Backend`); the adapter's tests use
a small in-memory one.  Everything here is authorised again by the backend itself: the dashboard
signs people in and shows them pages, the backend decides what the doors do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from smartlock.adapters.store import Store
from smartlock.adapters.web.metrics import Metrics
from smartlock.core.messages import Action
from smartlock.core.records import Invitation
from smartlock.site import Site


@dataclass(frozen=True)
class CommandOutcome:
    """A remote command's end: ``done``, ``denied`` or ``failed``, why, and the bolt after it."""

    result: str
    reason: str = ""
    bolt: str = "unknown"


@dataclass(frozen=True)
class AlertNotice:
    """An alert as the dashboard shows it (the signed original went to owners and residents)."""

    at: float
    kind: str
    lock_id: str
    subject: str
    detail: str


@dataclass(frozen=True)
class Enrollment:
    """What a guest's device receives when its invitation is redeemed (no private key)."""

    site_name: str
    guest: str
    broker_host: str
    broker_port: int
    password: str
    ca_pem: str
    backend_public_pem: str
    locks: tuple[str, ...]


class BackendPort(Protocol):
    @property
    def site(self) -> Site: ...

    @property
    def store(self) -> Store: ...

    @property
    def metrics(self) -> Metrics: ...

    def now(self) -> float: ...

    def audit_web(self, *, who: str, action: str, result: str, reason: str = "") -> None:
        """One dashboard event (sign-in, pass granted, ...) in the audit log."""

    async def remote_command(
        self, user: str, lock_id: str, action: Action, *, channel: str
    ) -> CommandOutcome:
        """Decide, audit and send a remote command exactly as one arriving over MQTT."""

    def alert_feed(self) -> AsyncIterator[AlertNotice]:
        """Every alert from now on (for the live pages); ends when the client leaves."""

    def recent_alerts(self) -> list[AlertNotice]: ...

    def enroll_guest(self, invitation: Invitation, public_key_pem: bytes) -> Enrollment:
        """Install the guest's own public key and a fresh broker password; reload the broker."""
