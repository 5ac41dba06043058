"""The invitation a guest scans or pastes: where to enroll, the one-time code, the site's CA.

Text form (also the QR code's content)::

    SLI1.<base64url of a JSON object, no padding>

with ``v`` (1), ``site``, ``guest``, ``url`` (the dashboard the guest's device talks to), ``code``
(the one-time secret, 128 random bits) and ``ca`` (the hex SHA-256 of the site CA certificate).
The device checks the CA it is sent against ``ca`` before it trusts anything from the site, so
the invitation is the only thing that must reach the guest intact.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from smartlock.core.wire import check_identifier

PREFIX = "SLI1."
VERSION = 1
MAX_TEXT = 2048
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CODE = re.compile(r"[A-Za-z0-9_-]{16,64}")


class InvitationError(ValueError):
    """Not an invitation this version can read (the message says what is wrong)."""


@dataclass(frozen=True)
class InvitationCode:
    site: str
    guest: str
    url: str
    code: str
    ca_sha256: str

    def __str__(self) -> str:
        body = json.dumps(
            {
                "v": VERSION,
                "site": self.site,
                "guest": self.guest,
                "url": self.url,
                "code": self.code,
                "ca": self.ca_sha256,
            },
            separators=(",", ":"),
        ).encode()
        return PREFIX + base64.urlsafe_b64encode(body).decode().rstrip("=")

    @classmethod
    def parse(cls, text: str) -> InvitationCode:
        text = text.strip()
        if not text.startswith(PREFIX):
            raise InvitationError(f"not a smartlock invitation (it starts with {PREFIX!r})")
        if len(text) > MAX_TEXT:
            raise InvitationError(f"the invitation is too long (at most {MAX_TEXT} characters)")
        body = text[len(PREFIX) :]
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (binascii.Error, ValueError, RecursionError):
            raise InvitationError("the invitation is damaged (copy all of it)") from None
        if not isinstance(data, dict) or type(data.get("v")) is not int or data["v"] != VERSION:
            raise InvitationError("this invitation is of another smartlock version")
        fields = {k: data.get(k) for k in ("site", "guest", "url", "code", "ca")}
        if not all(isinstance(v, str) for v in fields.values()):
            raise InvitationError("the invitation is damaged (a field is missing)")
        invitation = cls(
            str(fields["site"]),
            str(fields["guest"]),
            str(fields["url"]),
            str(fields["code"]),
            str(fields["ca"]),
        )
        try:
            check_identifier(invitation.guest, "guest name")
        except ValueError as exc:
            raise InvitationError(str(exc)) from None
        if not _safe_url(invitation.url):
            raise InvitationError(
                "the invitation's address must be https://, or http:// on this machine"
            )
        if not _CODE.fullmatch(invitation.code) or not _HEX64.fullmatch(invitation.ca_sha256):
            raise InvitationError("the invitation is damaged (bad code or CA fingerprint)")
        return invitation


def _safe_url(url: str) -> bool:
    """https://, or plain http:// only to a loopback host: the code and the broker password
    travel to this address."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if url.startswith("https://") and host:
        return True
    if not url.startswith("http://") or not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
