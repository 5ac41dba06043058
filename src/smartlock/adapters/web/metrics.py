"""The backend's Prometheus metrics (``/metrics``, text exposition format).

One registry per backend (not the process-global one), so tests and several backends in one
process do not mix.  Labels never carry a user name or any secret: only channels, results,
reasons and lock ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from smartlock.core.errors import Reason

ISSUANCE_BUCKETS_S = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, rejection_counts: Callable[[], Mapping[str, int]]) -> None:
        """``rejection_counts`` reads the backend's refusal counters, by reason, at scrape time."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.attempts = Counter(
            "smartlock_access_attempts",
            "Access attempts decided or reported, by channel (ble, remote, web, homeassistant) "
            "and result (granted, denied, failed)",
            ["channel", "result"],
            registry=self.registry,
        )
        self.issuance_seconds = Histogram(
            "smartlock_key_issuance_seconds",
            "From a key request's arrival to the guest's key leaving (after the lock's ack)",
            buckets=ISSUANCE_BUCKETS_S,
            registry=self.registry,
        )
        self.locks_online = Gauge(
            "smartlock_locks_online", "Locks whose heartbeat is current", registry=self.registry
        )
        self.locks_known = Gauge("smartlock_locks", "Locks in the store", registry=self.registry)
        self.alerts = Counter(
            "smartlock_alerts",
            "Alerts sent to owners and residents, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.registry.register(_RejectionCollector(rejection_counts))
        self.web_logins = Counter(
            "smartlock_web_logins",
            "Dashboard sign-ins by result",
            ["result"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _RejectionCollector(Collector):
    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "smartlock_rejected_messages",
            "Messages and requests refused, by reason (bad_signature, replay, malformed, ...)",
            labels=["reason"],
        )
        counts = dict(self._counts())
        # every known reason from the start, at 0: a rate over a series needs the series
        for reason in sorted({r.value for r in Reason} | set(counts)):
            family.add_metric([reason], counts.get(reason, 0))
        yield family
