"""``smartlock demo``: the whole system on a temporary site, each part its own process."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import socket
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from smartlock.adapters.processes import Child, ChildFailed
from smartlock.admin import create_site, set_web_password
from smartlock.broker import free_port
from smartlock.core.errors import SmartlockError
from smartlock.site import Site

LOCK_ID = "lock_01"
GUEST_ID = "guest_01"
OWNER_ID = "owner"
COLORS = {
    "broker": "magenta",
    "radio": "blue",
    "backend": "cyan",
    "lock": "green",
    "guest": "yellow",
}
REPEAT_EVERY_S = 10.0
DASHBOARD_PORT = 8080  # when free; any free port otherwise


def _dashboard_port() -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", DASHBOARD_PORT))
        except OSError:
            return 0
    return DASHBOARD_PORT


class Demo:
    def __init__(self, site: Site, console: Console, verbose: bool) -> None:
        self.site = site
        self.console = console
        self.verbose = verbose
        self.children: list[Child] = []

    def show(self, name: str, line: str) -> None:
        color = COLORS.get(name, "white")
        self.console.print(
            f"[{color}]{name:>7}[/] | {escape(line)}", soft_wrap=True, highlight=False
        )

    async def start(self, name: str, *args: str, ready: list[str]) -> Child:
        flags = ["--verbose"] if self.verbose else []
        child = Child.smartlock(
            name, *args, "--site", str(self.site.root), *flags, on_line=self.show
        )
        self.children.append(child)
        await child.start()
        for pattern in ready:
            await child.wait_for(pattern, timeout_s=30)
        return child

    async def _run_client(self, name: str, *args: str, what: str) -> dict[str, object]:
        """Run a one-shot ``smartlock ... --json`` client; its JSON summary line."""
        client = Child.smartlock(
            name, *args, "--site", str(self.site.root), "--json", on_line=self.show
        )
        await client.start()
        code = await client.wait(timeout_s=60)
        if code != 0 or not client.stdout_lines:
            raise ChildFailed(f"{what} failed (exit code {code})")
        result: dict[str, object] = json.loads(client.stdout_lines[-1])
        return result

    async def open_door(self) -> dict[str, object]:
        """The guest opens the door over BLE: ``smartlock guest unlock``."""
        return await self._run_client(
            "guest", "guest", "unlock", LOCK_ID, "--id", GUEST_ID, what="the guest"
        )

    async def remote_unlock(self) -> dict[str, object]:
        """The owner opens the door from afar: ``smartlock remote unlock``."""
        return await self._run_client(
            "owner", "remote", "unlock", LOCK_ID, "--id", OWNER_ID, what="the owner's remote unlock"
        )

    async def stop(self) -> None:
        for child in reversed(self.children):
            await child.stop()


async def run_demo(*, once: bool, keep: bool, verbose: bool) -> int:
    console = Console(highlight=False)
    root = Path(tempfile.mkdtemp(prefix="smartlock-demo-"))
    started = time.perf_counter()
    console.print(f"[bold]smartlock demo[/]: provisioning a site in {root}")
    site = create_site(
        root,
        locks=[LOCK_ID],
        owners=[OWNER_ID],
        guests=[GUEST_ID],
        broker_host="127.0.0.1",
        broker_port=free_port(),
    )
    console.print(
        f"Site ready in {time.perf_counter() - started:.1f} s: CA, broker certificate, "
        f"RSA keys for backend, {LOCK_ID}, {OWNER_ID} and {GUEST_ID}, hashed broker passwords, "
        f"ACL, and a store where {GUEST_ID} holds a 30-day pass for {LOCK_ID}"
    )
    password = secrets.token_urlsafe(12)
    set_web_password(site, OWNER_ID, password)
    demo = Demo(site, console, verbose)
    summary: dict[str, object] = {"unlocked": False, "lock_id": LOCK_ID, "guest_id": GUEST_ID}
    try:
        await demo.start("broker", "broker", ready=[r"Broker listening"])
        await demo.start("radio", "radio-hub", ready=[r"Radio hub ready"])
        backend = await demo.start(
            "backend",
            "backend",
            "--http",
            f"127.0.0.1:{_dashboard_port()}",
            ready=[r"Backend listening for session requests"],
        )
        dashboard = (await backend.wait_for(r"Dashboard on (\S+)")).group(1)
        console.print(
            f"[bold]Dashboard:[/] {dashboard}  sign in as [bold]{OWNER_ID}[/] with "
            f"[bold]{escape(password)}[/] (this demo's password, made for it)"
        )
        lock = await demo.start(
            "lock",
            "lock",
            "run",
            "--id",
            LOCK_ID,
            ready=[r"Subscribed to locks/lock_01/session", r"Scanning for BLE advertisements"],
        )
        while True:
            mark = len(lock.lines)
            result = await demo.open_door()
            unlocked = await lock.wait_for(
                rf"UNLOCKED {LOCK_ID} for {GUEST_ID}", after=mark, timeout_s=5
            )
            delivery = await lock.wait_for(
                r"Received session key .*\((\d+) bytes\)", after=mark, timeout_s=5
            )
            remote_mark = len(backend.lines)
            remote = await demo.remote_unlock()
            command = await backend.wait_for(
                r"Remote unlock of lock_01 for owner sent to the lock \((\d+) bytes\)",
                after=remote_mark,
                timeout_s=5,
            )
            wire = dict(result["wire_bytes"])  # type: ignore[call-overload]
            summary = {
                "unlocked": bool(unlocked),
                "lock_id": LOCK_ID,
                "guest_id": GUEST_ID,
                "timings_ms": {
                    **result["timings_ms"],  # type: ignore[dict-item]
                    "remote_unlock": remote["round_trip_ms"],
                },
                "remote_unlock": remote["result"],
                "wire_bytes": {
                    "session_request": wire["session_request"],
                    "lock_delivery": int(delivery.group(1)),
                    "guest_delivery": wire["guest_delivery"],
                    "advertisement": wire["advertisement"],
                    "remote_command": int(command.group(1)),
                },
            }
            summary["dashboard"] = dashboard
            if once:
                break
            console.print(
                f"[bold green]Door opened.[/] Again in {REPEAT_EVERY_S:.0f} s; Ctrl-C to stop. "
                f"Watch it at {dashboard}"
            )
            await asyncio.sleep(REPEAT_EVERY_S)
    except (ChildFailed, SmartlockError) as exc:
        console.print(f"[bold red]demo failed:[/] {escape(str(exc))}")
        summary = {**summary, "unlocked": False, "error": str(exc).splitlines()[0]}
    finally:
        await demo.stop()
        if keep:
            console.print(f"Site kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(summary), flush=True)  # the last line, for scripts, failed or not
    return 0 if summary["unlocked"] else 1
