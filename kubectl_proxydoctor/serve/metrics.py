"""serve's Prometheus metrics (prometheus_client), named in kube-proxy's style, low cardinality:
labels are drift kinds, IP families, finding severities and codes, and source names, never services."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

from kubectl_proxydoctor.serve.verdict import DRIFT_KINDS, FAMILIES, DriftKey

CHECK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)
LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300)


class ServeMetrics:
    """The metrics one serve process exports (its own registry, plus process CPU/memory)."""

    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series: kube-proxy exports none either
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        self.drift = Gauge("proxydoctor_drift_service_ports",
                           "Service ports whose rules differ from the API for longer than the grace "
                           "period, by drift kind (drift, not-programmed, not-expected) and IP family.",
                           ["kind", "ip_family"], registry=r)
        self.pending = Gauge("proxydoctor_drift_pending_service_ports",
                             "Service ports seen drifting but not reported yet (within the grace period "
                             "or while kube-proxy syncs).", ["kind", "ip_family"], registry=r)
        self.findings = Gauge("proxydoctor_findings", "Findings of the last check, by severity and code.",
                              ["severity", "code"], registry=r)
        self.duration = Histogram("proxydoctor_check_duration_seconds",
                                  "How long one check (read the node and the API, analyse) took.",
                                  buckets=CHECK_BUCKETS, registry=r)
        self.last_success = Gauge("proxydoctor_check_last_success_timestamp_seconds",
                                  "When the node's verdict was last known (every source read).", registry=r)
        self.unknown = Gauge("proxydoctor_check_unknown",
                             "1 when the last check could not read a source it needs (verdict unknown).",
                             registry=r)
        self.source_errors = Counter("proxydoctor_source_errors_total",
                                     "Reads of a source that failed, by source.", ["source"], registry=r)
        self.latency = Histogram("proxydoctor_programming_latency_seconds",
                                 "Seen from outside kube-proxy: from an API change that affects this node "
                                 "to the node's rules reflecting it.", buckets=LATENCY_BUCKETS, registry=r)
        self.latency_timeouts = Counter("proxydoctor_programming_timeouts_total",
                                        "API changes the rules did not reflect within the timeout.",
                                        registry=r)
        self.latency_pending = Gauge("proxydoctor_programming_pending_changes",
                                     "API changes waiting to be reflected in the rules.", registry=r)
        self.sync_in_progress = Gauge("proxydoctor_kubeproxy_sync_in_progress",
                                      "1 when kube-proxy has queued a change it has not synced yet.",
                                      registry=r)
        self.interval = Gauge("proxydoctor_check_interval_seconds",
                              "The interval between full re-reads now (longer than configured when "
                              "backing off).", registry=r)
        self.backoff = Gauge("proxydoctor_check_backoff",
                             "1 when a full re-read costs more than the budget and the interval is extended.",
                             registry=r)
        self._findings_seen: set[tuple[str, str]] = set()
        for source in ("node", "api"):
            self.source_errors.labels(source)

    def set_drifts(self, reported: set[DriftKey], pending: set[DriftKey]) -> None:
        """Every kind and family, 0 included, from the first known verdict on (no series before it:
        nothing is known yet)."""
        for gauge, keys in ((self.drift, reported), (self.pending, pending)):
            counts: dict[tuple[str, str], int] = {}
            for key in keys:
                counts[(key.kind, key.ip_family)] = counts.get((key.kind, key.ip_family), 0) + 1
            for kind in DRIFT_KINDS:
                for family in FAMILIES.values():
                    gauge.labels(kind, family).set(counts.get((kind, family), 0))

    def set_findings(self, findings: dict[tuple[str, str], int]) -> None:
        for key in self._findings_seen - set(findings):
            self.findings.labels(*key).set(0)
        for key, count in findings.items():
            self.findings.labels(*key).set(count)
        self._findings_seen |= set(findings)
