"""``smartlock demo --once``: the newcomer's first command, run exactly as `make demo` runs it."""

from __future__ import annotations

import json

from smartlock.adapters.processes import Child


async def test_demo_once_unlocks_and_ends_with_a_json_summary() -> None:
    demo = await Child.smartlock("demo", "demo", "--once").start()
    code = await demo.wait(timeout_s=90)
    assert code == 0, demo.output() + "\n".join(demo.stdout_lines)
    summary = json.loads(demo.stdout_lines[-1])
    assert summary["unlocked"] is True
    assert summary["lock_id"] == "lock_01"
    assert summary["guest_id"] == "guest_01"
    assert set(summary["timings_ms"]) == {"key_request", "ble_unlock", "total", "remote_unlock"}
    assert summary["remote_unlock"] == "done"
    assert summary["dashboard"].startswith("http://127.0.0.1:")
    assert all(value > 0 for value in summary["timings_ms"].values())
    wire = summary["wire_bytes"]
    assert set(wire) == {
        "session_request",
        "lock_delivery",
        "guest_delivery",
        "advertisement",
        "remote_command",
    }
    assert wire["advertisement"] <= 31
    assert wire["remote_command"] == 37
    assert wire["lock_delivery"] <= 600
    output = "\n".join(demo.stdout_lines)
    for step in (
        "Backend listening for session requests",
        "Subscribed to locks/lock_01/session",
        "Requested session key",
        "Received session key",
        "Advertising with token",
        "UNLOCKED lock_01 for guest_01",
        "UNLOCKED lock_01 for remote command",
        f"Dashboard: {summary['dashboard']}",
        "sign in as owner with",
    ):
        assert step in output, step
