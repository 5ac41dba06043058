// Live updates for the locks and alerts pages (server-sent events from /events).
// No framework; the pages work without it, only less live.
"use strict";
(function () {
  const locks = document.getElementById("locks");
  const alerts = document.getElementById("alerts");
  if (!locks && !alerts) return;
  const live = document.getElementById("live");
  const events = new EventSource("/events");
  events.onopen = () => live && live.classList.add("on");
  events.onerror = () => live && live.classList.remove("on");
  events.addEventListener("locks", (event) => {
    if (!locks) return;
    for (const lock of JSON.parse(event.data)) {
      const row = locks.querySelector(`tr[data-lock="${CSS.escape(lock.lock_id)}"]`);
      if (!row) continue;
      const status = row.querySelector('[data-field="status"]');
      status.textContent = lock.online ? "online" : "offline";
      status.className = "status " + (lock.online ? "online" : "offline");
      row.querySelector('[data-field="bolt"]').textContent = lock.bolt;
      row.querySelector('[data-field="heartbeat"]').textContent = lock.last_heartbeat_iso || "never";
      row.querySelector('[data-field="revocations"]').textContent =
        `v${lock.revocation_version_applied} of v${lock.revocation_version}`;
    }
  });
  events.addEventListener("alert", (event) => {
    if (!alerts) return;
    const alert = JSON.parse(event.data);
    const none = alerts.querySelector(".none");
    if (none) none.remove();
    const item = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = alert.at_iso;
    const kind = document.createElement("strong");
    kind.textContent = alert.kind;
    item.append(time, " ", kind, ` ${alert.lock_id} — ${alert.detail}`);
    alerts.prepend(item);
  });
})();
