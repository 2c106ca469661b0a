"""A NodeReport summarised into what continuous verification watches: drifting service ports (by
kind and IP family), findings by severity and code, per-service signatures, and whether kube-proxy
has a sync in progress."""

from __future__ import annotations

from dataclasses import dataclass, field

from kubectl_proxydoctor.report import NodeReport

# ServiceStatus values that are drift ("ok" and "unknown", rules not understood, are not)
DRIFT_KINDS = ("drift", "not-programmed", "not-expected")
FAMILIES = {4: "IPv4", 6: "IPv6"}  # kube-proxy's ip_family label values


@dataclass(frozen=True, order=True)
class DriftKey:
    """One drifting service port in one IP family, and how it drifts."""

    port: str  # ServicePortName.key, e.g. default/web:http/TCP
    kind: str  # one of DRIFT_KINDS
    ip_family: str  # IPv4 | IPv6

    @property
    def service(self) -> str:
        """``namespace/name`` of the service."""
        return self.port.split(":", 1)[0]


@dataclass
class Verdict:
    """What one analysis says about the node, in the terms the metrics and Events use."""

    node: str | None = None
    drifts: set[DriftKey] = field(default_factory=set)
    findings: dict[tuple[str, str], int] = field(default_factory=dict)  # (severity, code) -> count
    signatures: dict[str, tuple] = field(default_factory=dict)  # service -> what the API expects
    unhealthy_services: set[str] = field(default_factory=set)  # services with a non-ok port
    unreadable: list[str] = field(default_factory=list)  # sources asked for and not read
    sync_in_progress: bool = False
    sync_note: str = ""
    sync_age: float | None = None  # how long kube-proxy's queued change had waited when read
    exit_code: int = 0
    summary: str = ""
    # kube-proxy's own kubeproxy_network_programming_duration_seconds: {le: cumulative count}
    kube_proxy_programming: dict[float, float] | None = None

    @property
    def known(self) -> bool:
        """False when a source could not be read: the verdict is unknown, not clean."""
        return not self.unreadable


def _families(report: NodeReport) -> dict[str, set[int]]:
    """Service port key -> the IP families the API expects it in (else the programmed ones)."""
    out: dict[str, set[int]] = {}
    if report.expected is not None:
        for name, fam in report.expected.ports:
            out.setdefault(name.key, set()).add(fam)
    for view in report.views:
        if view.mode != report.mode:
            continue
        for name, fam in view.ports:
            if name.key not in out or not out[name.key]:
                out.setdefault(name.key, set()).add(fam)
    return out


def signatures(report: NodeReport) -> dict[str, tuple]:
    """Per service (``ns/name``), everything the API expects this node to program for it: equal
    signatures mean a change needed no new rules."""
    sigs: dict[str, list] = {}
    if report.expected is None:
        return {}
    for (name, fam), port in report.expected.ports.items():
        sigs.setdefault(name.service, []).append((
            name.key, fam, tuple(sorted(f.address + "/" + f.policy for f in port.frontends)),
            tuple(sorted(str(e) for e in port.cluster_endpoints)),
            tuple(sorted(str(e) for e in port.local_endpoints)),
            port.affinity_seconds,
        ))
    return {svc: tuple(sorted(parts)) for svc, parts in sigs.items()}


def sync_in_progress(report: NodeReport, sync_wait: float) -> tuple[bool, str, float | None]:
    """kube-proxy queued a change it has not synced yet, less than ``sync_wait`` s before the node
    was read (older than that it is stuck, which explains nothing)."""
    from kubectl_proxydoctor import nodeinfo
    from kubectl_proxydoctor.checks.kube_proxy_health import pending_age
    from kubectl_proxydoctor.errors import ProxyDoctorError

    snapshot = report.snapshot
    if snapshot is None:
        return False, "", None
    try:
        metrics = nodeinfo.kube_proxy_metrics(snapshot)
        if metrics is None:
            return False, "", None
        age = pending_age(snapshot, nodeinfo.sync_figures(metrics), nodeinfo.kube_proxy_healthz(snapshot))
    except ProxyDoctorError:  # unreadable metrics: the checks report them; nothing is postponed
        return False, "", None
    if age is None:
        return False, "", None
    return sync_state(age, sync_wait) + (age,)


def sync_state(age: float, sync_wait: float) -> tuple[bool, str]:
    """A change kube-proxy queued ``age`` s ago and has not synced: in progress, or stuck."""
    if age < sync_wait:
        return True, f"kube-proxy has a sync in progress (change queued {age:.0f} s ago)"
    return False, f"kube-proxy queued a change {age:.0f} s ago and has not synced it (stuck)"


KP_PROGRAMMING = "kubeproxy_network_programming_duration_seconds_bucket"


def kube_proxy_programming(report: NodeReport) -> dict[float, float] | None:
    """kube-proxy's network programming histogram (cumulative buckets), when its metrics were read."""
    from kubectl_proxydoctor import nodeinfo
    from kubectl_proxydoctor.errors import ProxyDoctorError

    if report.snapshot is None:
        return None
    try:
        metrics = nodeinfo.kube_proxy_metrics(report.snapshot)
    except ProxyDoctorError:
        return None
    if metrics is None or KP_PROGRAMMING not in metrics.samples:
        return None
    out: dict[float, float] = {}
    for labels, value in metrics.samples[KP_PROGRAMMING]:
        try:
            out[float(labels.get("le", "nan"))] = out.get(float(labels.get("le", "nan")), 0.0) + value
        except ValueError:
            continue
    return out


def programming_delta(before: dict[float, float] | None, after: dict[float, float] | None) -> str:
    """What kube-proxy's own histogram recorded between two reads, in words."""
    if after is None:
        return "kube-proxy's network programming metric not readable"
    if before is None:
        return "kube-proxy's network programming metric not read before the change"
    total = after.get(float("inf"), 0.0) - before.get(float("inf"), 0.0)
    if total <= 0:
        return "kube-proxy recorded no network programming observation meanwhile"
    bound = min((le for le in after if after[le] - before.get(le, 0.0) >= total), default=float("inf"))
    return (f"kube-proxy's network_programming_duration_seconds: {total:g} new observation(s), "
            f"all <= {bound:g} s")


def summarise(report: NodeReport, sync_wait: float = 60.0) -> Verdict:
    """The verdict of one analysis."""
    families = _families(report)
    verdict = Verdict(node=report.node, unreadable=list(report.unreadable), exit_code=report.exit_code)
    for status in report.services:
        if status.status not in DRIFT_KINDS:  # ok, or unknown (rules not understood: not drift)
            continue
        verdict.unhealthy_services.add(status.name.service)
        for fam in sorted(families.get(status.name.key) or {4}):
            verdict.drifts.add(DriftKey(status.name.key, status.status, FAMILIES.get(fam, "IPv4")))
    for f in report.findings:
        key = (f.severity, f.code)
        verdict.findings[key] = verdict.findings.get(key, 0) + 1
    verdict.signatures = signatures(report)
    verdict.kube_proxy_programming = kube_proxy_programming(report)
    verdict.sync_in_progress, verdict.sync_note, verdict.sync_age = sync_in_progress(report, sync_wait)
    errors = verdict.findings and sum(n for (sev, _), n in verdict.findings.items() if sev == "error")
    if verdict.unreadable:
        verdict.summary = "unknown: could not read " + ", ".join(verdict.unreadable)
    elif verdict.drifts or errors:
        verdict.summary = (f"drift: {len({d.port for d in verdict.drifts})} service port(s), "
                           f"{errors or 0} error finding(s)")
    else:
        verdict.summary = f"ok: {len(report.services)} service port(s) match the API"
    return verdict
