"""Who a user is to the system (README, "Roles").

* **owner** -- lock and unlock any lock at any time, read the audit log, manage users and locks,
  check health, reset a lock; receives alerts.
* **resident** -- lock and unlock any lock at any time; receives alerts.
* **guest** -- only through a pass (one lock, a time window, optionally a use count and weekly
  hours), which the owner may revoke at any time.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    RESIDENT = "resident"
    GUEST = "guest"

    @property
    def has_free_access(self) -> bool:
        """Owners and residents open any lock at any time, without a pass."""
        return self is not Role.GUEST

    @property
    def receives_alerts(self) -> bool:
        return self is not Role.GUEST
