"""A guest's device joins a site from an invitation (``smartlock guest enroll``).

1. Read the invitation (:mod:`smartlock.core.invitation`): the dashboard's URL, the one-time
   code, the SHA-256 of the site CA.
2. Make the device's own RSA key pair, here.  The private key never leaves this directory.
3. Fetch the site CA (``GET /api/ca``; over HTTPS not yet verified) and go on only if its
   SHA-256 is the invitation's, so a wrong site never sees the code; over HTTPS, talk to the
   dashboard from then on verified against that CA.  (A loopback ``http://`` URL has no TLS.)
4. ``POST /api/enroll`` with the code and the public key; the answer is the broker account and
   the backend's public key.
5. Write a one-user site directory that ``smartlock guest unlock --site DIR`` reads.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smartlock import crypto
from smartlock.core.errors import ConfigError
from smartlock.core.invitation import InvitationCode
from smartlock.site import Site, save_site, write_private, write_public

TIMEOUT_S = 15.0
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Enrolled:
    site: Site
    guest: str
    locks: tuple[str, ...]


def enroll(invitation: InvitationCode, directory: Path) -> Enrolled:
    """Enroll this device; ``directory`` must not exist or be empty.  ConfigError on failure,
    with a message for the guest (nothing is written then)."""
    directory = directory.resolve()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConfigError(f"{directory} is not empty: enroll into a new directory")
    key = crypto.generate_private_key()
    context = _tls_context(invitation)
    answer = _post(
        f"{invitation.url}/api/enroll",
        {
            "code": invitation.code,
            "public_key_pem": crypto.public_key_to_pem(key.public_key()).decode(),
        },
        context,
    )
    try:
        ca_pem = str(answer["ca_pem"]).encode()
        if hashlib.sha256(ca_pem).hexdigest() != invitation.ca_sha256:
            raise ConfigError(
                "the site's CA does not match the invitation: someone may be in between; "
                "ask the owner for a new invitation"
            )
        guest = str(answer["guest"])
        if guest != invitation.guest:
            raise ConfigError("the site enrolled another guest than the invitation names")
        backend_public = crypto.load_public_key(str(answer["backend_public_pem"]).encode())
        site = Site(
            root=directory,
            name=str(answer["site_name"]),
            broker_host=str(answer["broker_host"]),
            broker_port=int(answer["broker_port"]),
            locks=tuple(str(lock) for lock in answer["locks"]),
            users=(guest,),
        )
        password = str(answer["password"])
    except (KeyError, TypeError, ValueError, crypto.CryptoError) as exc:
        raise ConfigError(f"the site's answer is damaged ({type(exc).__name__})") from None
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    write_public(site.ca_cert, ca_pem)
    write_public(site.public_key_path("backend"), crypto.public_key_to_pem(backend_public))
    identity = site.identity_dir(guest)
    identity.mkdir(parents=True, exist_ok=True)
    identity.chmod(0o700)
    write_private(site.private_key_path(guest), crypto.private_key_to_pem(key))
    write_public(site.public_key_path(guest), crypto.public_key_to_pem(key.public_key()))
    write_private(identity / "password", password.encode() + b"\n")
    save_site(site)
    return Enrolled(Site.load(directory), guest, site.locks)


def _tls_context(invitation: InvitationCode) -> ssl.SSLContext | None:
    """Check the site CA the dashboard shows against the invitation, before the code is spent;
    for https://, a context that trusts exactly that CA (None for a loopback http:// URL)."""
    unverified = None
    if invitation.url.startswith("https://"):
        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
    ca_pem = _get(f"{invitation.url}/api/ca", unverified)
    if hashlib.sha256(ca_pem).hexdigest() != invitation.ca_sha256:
        raise ConfigError(
            "the site's CA does not match the invitation: someone may be in between; "
            "ask the owner for a new invitation"
        )
    if unverified is None:
        return None
    return ssl.create_default_context(cadata=ca_pem.decode())


def _get(url: str, context: ssl.SSLContext | None) -> bytes:
    return _send(urllib.request.Request(url), context)  # noqa: S310 -- http(s) only (parse)


def _post(url: str, body: dict[str, Any], context: ssl.SSLContext | None) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 -- http(s) only, checked by the parser
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        answer = json.loads(_send(request, context))
    except ValueError:
        raise ConfigError("the dashboard's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise ConfigError("the dashboard's answer is damaged")
    return answer


def _send(request: urllib.request.Request, context: ssl.SSLContext | None) -> bytes:
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as response:  # noqa: S310 -- http(s) only, checked by InvitationCode.parse
            return bytes(response.read(MAX_RESPONSE_BYTES))
    except urllib.error.HTTPError as exc:
        raise ConfigError(f"the site refused: {_detail(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"cannot reach {request.full_url}: {reason}") from None


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(error.read(4096)).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    return str(detail) if isinstance(detail, str) else f"HTTP {error.code}"
