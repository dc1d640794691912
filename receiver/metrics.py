"""Every Prometheus metric of dtpush, defined in one place (spec §10).

`Metrics(registry)` is created once at start-up and passed to whatever observes; tests give
it a fresh `CollectorRegistry`. Labels are bounded: no device or event ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PUSH_OUTCOMES = ("accepted", "duplicate", "quarantined", "unauthorized", "too_large", "unavailable")

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_DELAY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 43200.0)
_SKEW_BUCKETS = (-60.0, -10.0, -1.0, -0.1, 0.0, 0.1, 1.0, 10.0, 60.0, 300.0, 3600.0)


class Metrics:
    """The service's metrics, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.push_requests = Counter(
            "dtpush_push_requests", "Pushes answered, by outcome.", ["outcome"], registry=registry
        )
        self.signature_failures = Counter(
            "dtpush_signature_failures", "Pushes refused, by reason.", ["reason"], registry=registry
        )
        self.signature_secret_matches = Counter(
            "dtpush_signature_secret_matches",
            "Pushes verified, by the position of the matching secret in verify.secrets.",
            ["index"],
            registry=registry,
        )
        self.push_duration = Histogram(
            "dtpush_push_duration_seconds",
            "Time from push received to answer.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.events = Counter(
            "dtpush_events",
            "New events accepted, by event type.",
            ["event_type"],
            registry=registry,
        )
        self.event_delay = Histogram(
            "dtpush_event_delay_seconds",
            "Receive time minus event.timestamp.",
            ["event_type"],
            buckets=_DELAY_BUCKETS,
            registry=registry,
        )
        self.clock_skew = Histogram(
            "dtpush_clock_skew_seconds",
            "Receive time minus the token's iat.",
            buckets=_SKEW_BUCKETS,
            registry=registry,
        )
        self.handler_duration = Histogram(
            "dtpush_handler_duration_seconds",
            "Duration of handler calls.",
            ["handler"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.handler_failures = Counter(
            "dtpush_handler_failures",
            "Failed or timed-out handler calls.",
            ["handler"],
            registry=registry,
        )
        self.dead_letters = Gauge(
            "dtpush_dead_letters", "Dead letters, by handler.", ["handler"], registry=registry
        )
        self.inbox_pending = Gauge(
            "dtpush_inbox_pending", "(event, handler) deliveries not yet done.", registry=registry
        )
        self.inbox_oldest_pending = Gauge(
            "dtpush_inbox_oldest_pending_seconds",
            "Age of the oldest pending delivery.",
            registry=registry,
        )
        self.connector_up = Gauge(
            "dtpush_connector_up",
            "1 on the managed connector's current status.",
            ["connector", "status"],
            registry=registry,
        )
        self.connector_success_count = Gauge(
            "dtpush_connector_success_count",
            "DT's successful pushes in its 3 h window.",
            ["connector"],
            registry=registry,
        )
        self.connector_error_count = Gauge(
            "dtpush_connector_error_count",
            "DT's failed pushes in its 3 h window.",
            ["connector"],
            registry=registry,
        )
        self.connector_latency_p99 = Gauge(
            "dtpush_connector_latency_p99_seconds",
            "DT's p99 push latency in its 3 h window.",
            ["connector"],
            registry=registry,
        )
        self.backfilled_events = Counter(
            "dtpush_backfilled_events",
            "Events fetched from DT's history by backfill.",
            registry=registry,
        )
