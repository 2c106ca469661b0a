"""Kubernetes Events when reported drift starts and ends: one on each Service concerned and one on the
Node, aggregated and rate-limited like client-go's EventCorrelator.

``EventCorrelator`` (pure, clock passed in) decides per event: *create* a new Event, *patch* the
similar one posted within ``window`` seconds (count + 1, new message and lastTimestamp), or *drop* it
when the involved object's token bucket (``burst`` events, one more every ``refill`` s) is empty.
``EventSink`` turns drift transitions into Events and posts them; a failed post is logged and
counted (``proxydoctor_source_errors_total{source="events"}``), never fatal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kubectl_proxydoctor.serve.grace import Transitions
from kubectl_proxydoctor.serve.verdict import DriftKey, Verdict

COMPONENT = "kubectl-proxydoctor"
REASON_START = "KubeProxyDatapathDrift"
REASON_END = "KubeProxyDatapathDriftResolved"
MAX_LISTED = 5


@dataclass
class Posted:
    """An Event this process created (to aggregate later ones into)."""

    name: str
    namespace: str
    count: int
    first_timestamp: str
    last: float  # monotonic


@dataclass
class Bucket:
    tokens: float
    at: float


@dataclass
class EventCorrelator:
    window: float = 600.0
    burst: int = 5
    refill: float = 300.0
    posted: dict[tuple, Posted] = field(default_factory=dict)
    buckets: dict[tuple, Bucket] = field(default_factory=dict)
    dropped: int = 0

    def decide(self, obj: tuple, reason: str, now: float) -> tuple[str, Posted | None]:
        """"create", "patch" (with the Event to patch) or "drop" for an event on ``obj``."""
        bucket = self.buckets.get(obj)
        if bucket is None:
            bucket = self.buckets[obj] = Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) / self.refill)
        bucket.at = now
        if bucket.tokens < 1:
            self.dropped += 1
            return "drop", None
        bucket.tokens -= 1
        previous = self.posted.get((*obj, reason))
        if previous is not None and now - previous.last < self.window:
            return "patch", previous
        return "create", None

    def remember(self, obj: tuple, reason: str, posted: Posted) -> None:
        self.posted[(*obj, reason)] = posted


def _ports(keys: list[DriftKey], with_service: bool) -> str:
    parts = []
    for k in keys[:MAX_LISTED]:
        port = k.port if with_service else k.port.split(":", 1)[1]
        parts.append(f"{port} ({k.kind}, {k.ip_family})")
    more = f" (+{len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else ""
    return ", ".join(parts) + more


def messages(tr: Transitions[DriftKey], node: str) -> list[tuple[tuple, str, str, str]]:
    """(involved object, reason, type, message) for one update's transitions: per Service, then one
    for the Node. ``obj`` is ("Service", namespace, name) or ("Node", "", name)."""
    out = []
    for keys, reason, etype, verb in ((tr.started, REASON_START, "Warning", "differ from the API"),
                                      (tr.ended, REASON_END, "Normal", "match the API again")):
        if not keys:
            continue
        by_service: dict[str, list[DriftKey]] = {}
        for k in keys:
            by_service.setdefault(k.service, []).append(k)
        for service, ports in sorted(by_service.items()):
            if "/" not in service:  # a frontend no Service claims (an IPVS leftover): the Node's Event
                continue
            ns, name = service.split("/", 1)
            out.append((("Service", ns, name), reason, etype,
                        f"kube-proxy's rules on node {node} {verb} for {_ports(ports, False)}"))
        what = "started" if reason == REASON_START else "ended"
        out.append((("Node", "", node), reason, etype,
                    f"drift {what} on {len(keys)} service port(s): {_ports(keys, True)}"))
    return out


class EventSink:
    """Posts the Events for drift transitions through the API (core/v1 Events)."""

    def __init__(self, api_client, node: str | None, *, log: Callable[[str], None],
                 correlator: EventCorrelator | None = None, clock: Callable[[], float] = time.monotonic,
                 on_error: Callable[[str], None] | None = None,
                 uid_of: Callable[[str, str, str], str | None] | None = None) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.node = node or "unknown-node"
        self.log = log
        self.correlator = correlator or EventCorrelator()
        self.clock = clock
        self.on_error = on_error
        self.uid_of = uid_of
        self.created = 0
        self.patched = 0

    def transitions(self, tr: Transitions[DriftKey], verdict: Verdict) -> None:
        for obj, reason, etype, message in messages(tr, self.node):
            self.post(obj, reason, etype, message)

    def post(self, obj: tuple, reason: str, etype: str, message: str) -> None:
        decision, previous = self.correlator.decide(obj, reason, self.clock())
        kind, ns, name = obj
        where = f"{kind} {ns + '/' if ns else ''}{name}"
        if decision == "drop":
            self.log(f"event on {where} dropped (rate limit): {message}")
            return
        event_ns = ns or "default"  # Node events live in the default namespace, as kubelet's do
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            if decision == "patch" and previous is not None:
                previous.count += 1
                body = {"count": previous.count, "lastTimestamp": now, "message": message}
                self.core.patch_namespaced_event(previous.name, event_ns, body, _request_timeout=(5, 10))
                previous.last = self.clock()
                self.patched += 1
                return
            involved = {"kind": kind, "name": name, "apiVersion": "v1"}
            if ns:
                involved["namespace"] = ns
            uid = self.uid_of(kind, ns, name) if self.uid_of else None
            if uid:
                involved["uid"] = uid
            event_name = f"{name}.{time.time_ns():x}"
            body = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": event_name, "namespace": event_ns},
                "involvedObject": involved, "reason": reason, "message": message, "type": etype,
                "source": {"component": COMPONENT, "host": self.node},
                "reportingComponent": COMPONENT, "reportingInstance": self.node,
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            }
            self.core.create_namespaced_event(event_ns, body, _request_timeout=(5, 10))
            self.correlator.remember(obj, reason, Posted(event_name, event_ns, 1, now, self.clock()))
            self.created += 1
        except Exception as e:  # noqa: BLE001 - an Event that cannot be posted must not stop verification
            status = getattr(e, "status", None)
            why = (f"HTTP {status} {getattr(e, 'reason', '')}".strip() if status
                   else f"{type(e).__name__}: {e}")
            self.log(f"cannot post event {reason} on {where}: {why}")
            if self.on_error:
                self.on_error("events")
