"""The dashboard as one FastAPI application, and the server that runs it in the backend's loop.

``create_app(backend, public_url=...)`` builds it over a :class:`.backend_port.BackendPort`;
:class:`DashboardServer` serves it with uvicorn on the backend's own event loop (no thread, no
second process), so a page, an API call and an MQTT message all see the same backend.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from smartlock.adapters.web import api, pages
from smartlock.adapters.web.auth import Sessions
from smartlock.adapters.web.backend_port import BackendPort
from smartlock.adapters.web.deps import SignInNeeded, sessions_of
from smartlock.core.errors import ConfigError
from smartlock.core.policy import RateLimit

logger = logging.getLogger("smartlock.web")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
ENROLL_BURST = 5
ENROLL_PER_MINUTE = 5.0


def create_app(backend: BackendPort, *, public_url: str) -> FastAPI:
    """The dashboard over ``backend``; ``public_url`` is where guests' devices reach it (it goes
    into invitations)."""
    app = FastAPI(
        title="smartlock dashboard API",
        version="1",
        description=api.__doc__,
        openapi_url="/api/openapi.json",
        docs_url=None,  # Swagger UI loads from a CDN, which the CSP (and many sites) forbid
        redoc_url=None,
    )
    app.state.backend = backend
    app.state.sessions = Sessions(backend)
    app.state.public_url = public_url
    app.state.enroll_limit = RateLimit(burst=ENROLL_BURST, per_minute=ENROLL_PER_MINUTE)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus text format; counts only (no names, no secrets)."""
        return Response(backend.metrics.render(), media_type=backend.metrics.content_type)

    @app.exception_handler(SignInNeeded)
    def sign_in_first(request: Request, exc: SignInNeeded) -> RedirectResponse:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, without echoing the input (a password, or text that cannot even be
        encoded back)."""
        errors = [
            {
                "type": str(e.get("type", "")),
                "loc": list(e.get("loc", ())),
                "msg": str(e.get("msg", "")),
            }
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api") or request.url.path in ("/metrics", "/events"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        viewer = sessions_of(request).viewer(request)
        titles = {401: "Sign in first", 403: "Not allowed", 404: "Not found"}
        return pages.render(
            request,
            "error.html",
            viewer,
            status=exc.status_code,
            title=titles.get(exc.status_code, "Refused"),
            detail=str(exc.detail),
        )

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith("/api") or request.url.path == "/events":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` for ``--http``; a clear ConfigError otherwise."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isascii() or not port.isdigit():
        raise ConfigError(f"--http wants HOST:PORT, e.g. 127.0.0.1:8080, not {text!r}")
    number = int(port)
    if not 0 <= number <= 65535:
        raise ConfigError(f"--http port must be 0..65535 (0: any free one), not {number}")
    return host, number


def check_dashboard_url(url: str, what: str) -> str:
    """An https:// URL, or http:// to a loopback host only: invitation codes and broker
    passwords travel to it."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return url
    raise ConfigError(
        f"{what} must be https://..., or http:// on this machine (127.0.0.1, localhost); "
        f"not {url!r}"
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside our loop: the backend, not uvicorn, owns SIGINT and SIGTERM."""

    def capture_signals(self) -> Any:
        return nullcontext()


class DashboardServer:
    """Serves the dashboard on ``host:port``; TLS with ``certfile``/``keyfile`` when given."""

    def __init__(
        self,
        app: FastAPI,
        host: str,
        port: int,
        *,
        certfile: Path | None = None,
        keyfile: Path | None = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError as exc:
            self._socket.close()
            raise ConfigError(
                f"the dashboard cannot listen on {host}:{port}: {exc.strerror}"
            ) from None
        self.port = self._socket.getsockname()[1]  # the real one when port 0 was asked for
        config = uvicorn.Config(
            app,
            host=host,
            port=self.port,
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
        self._server = _EmbeddedServer(config)

    async def serve(self) -> None:
        try:
            await self._server.serve(sockets=[self._socket])
        finally:
            self._socket.close()

    def stop(self) -> None:
        self._server.should_exit = True
