"""The virtual radio hub: one process owns a bumble ``LocalLink`` and one controller per name,
and exposes each controller as an HCI transport on a unix socket.

bumble 0.0.236 has no link relay between processes, so this is how the lock and the guest, in
separate processes, share a radio: each connects its own host stack (``unix:PATH``) to its own
controller here, and the controllers hear each other over the link.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bumble.controller import Controller
from bumble.link import LocalLink
from bumble.transport import open_transport


async def serve_radio_hub(sockets: dict[str, Path], ready: asyncio.Event | None = None) -> None:
    """Run until cancelled: one controller per ``name -> socket path``."""
    link = LocalLink()  # type: ignore[no-untyped-call]
    transports = []
    for path in sockets.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
    try:
        for index, (name, path) in enumerate(sockets.items()):
            transport = await open_transport(f"unix-server:{path}")
            transports.append(transport)
            Controller(
                f"C{index}-{name}",
                host_source=transport.source,
                host_sink=transport.sink,
                link=link,
            )
            path.chmod(0o600)
        if ready is not None:
            ready.set()
        await asyncio.get_running_loop().create_future()
    finally:
        for transport in transports:
            await transport.close()
        for path in sockets.values():
            path.unlink(missing_ok=True)
