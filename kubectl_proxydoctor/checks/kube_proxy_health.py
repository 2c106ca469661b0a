"""kube-proxy's own health: syncs that fail (kubernetes#112292), and a kube-proxy that is not running.

kube-proxy's /healthz (pkg/proxy/healthcheck/proxier_health.go) answers 503 once a queued change
has waited longer than healthTimeout (2 x syncPeriod, 60 s by default) without a successful sync;
when healthy it reports lastUpdated = currentTime. The metrics give the same story in numbers:
``..._last_queued_timestamp_seconds`` later than ``..._last_timestamp_seconds`` is a pending change.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

from kubectl_proxydoctor import nodeinfo
from kubectl_proxydoctor.checks import CheckContext, check
from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.kube_proxy_pod import KubeProxyPod, for_context
from kubectl_proxydoctor.model import Finding, Severity
from kubectl_proxydoctor.snapshot import NodeSnapshot

HEALTH_TIMEOUT_SECONDS = 60.0  # kube-proxy default: 2 x syncPeriod (30 s)
_RESTORE_ERROR = re.compile(r"((?:ip6?tables-restore|nft): line \d+ failed)")


def _sync_fix(kube_proxy: KubeProxyPod) -> str:
    return (f"Look at kube-proxy's log for the failing restore (`{kube_proxy.logs}`): a rule another "
            "tool holds, an iptables/nft version skew with the host, or an xtables lock; fix the cause, "
            f"then restart kube-proxy (`{kube_proxy.restart}`) and re-run this check.")


def _not_running_fix(kube_proxy: KubeProxyPod) -> str:
    return (f"Find this node's kube-proxy pod (`{kube_proxy.show}`), read its log (`{kube_proxy.logs}`) "
            f"and restart it (`{kube_proxy.restart}`).")


def _times(n: float) -> str:
    return "once" if n == 1 else f"{n:g} times"


def _parse_capture_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    m = re.match(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(\.\d+)?", text.strip())
    if not m:
        return None
    try:
        base = datetime.strptime(f"{m.group(1)} {m.group(2)}", "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return base.replace(microsecond=int(float(m.group(3)) * 1e6)) if m.group(3) else base


def capture_time(snapshot: NodeSnapshot, healthz: nodeinfo.Healthz | None) -> datetime | None:
    """When the node was read: meta.json captured_at, else /healthz currentTime."""
    when = _parse_capture_time(snapshot.meta.get("captured_at"))
    if when is None and healthz is not None:
        when = _parse_capture_time(healthz.current_time)
    return when


def pending_age(snapshot: NodeSnapshot, figures: nodeinfo.SyncFigures,
                healthz: nodeinfo.Healthz | None) -> float | None:
    """Seconds a queued, not yet synced change had waited when the node was read (None if none)."""
    when = capture_time(snapshot, healthz)
    if not figures.stuck_seconds or when is None or figures.last_queued is None:
        return None
    return when.timestamp() - figures.last_queued


def healthz_status(snapshot: NodeSnapshot, healthz: nodeinfo.Healthz | None) -> int | None:
    """/healthz HTTP status: recorded by collect, else inferred (200 reports lastUpdated = currentTime)."""
    recorded = snapshot.meta.get("kube_proxy_healthz_status")
    if isinstance(recorded, int):
        return recorded
    if healthz is None:
        return None
    if healthz.node_eligible is False:
        return 503
    if healthz.last_updated and healthz.current_time:
        return 200 if healthz.last_updated == healthz.current_time else 503
    return None


def _hms(seconds: float | None) -> str:
    return "?" if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%SZ")


def _short(text: str | None) -> str:
    when = _parse_capture_time(text)
    return when.strftime("%H:%M:%SZ") if when else (text or "?")


def restore_errors(log_text: str | None) -> list[str]:
    """Distinct restore error lines from a captured kube-proxy.log, in order."""
    seen: list[str] = []
    for line in (log_text or "").splitlines():
        for m in _RESTORE_ERROR.finditer(line):
            msg = m.group(1).strip()
            if msg and msg not in seen:
                seen.append(msg)
    return seen


def _has_rules(ctx: CheckContext) -> bool:
    if ctx.views:
        return True
    snap = ctx.snapshot
    for name in ("iptables-save.txt", "iptables-nft-save.txt", "iptables-legacy-save.txt"):
        if ":KUBE-SERVICES" in (snap.text(name) or ""):
            return True
    return '"kube-proxy"' in (snap.text("nft-ruleset.json") or "") or bool(
        re.search(r"^(TCP|UDP|SCTP)\s", snap.text("ipvsadm.txt") or "", re.M))


def _unreadable(name: str, e: ProxyDoctorError) -> Finding:
    return Finding("kube-proxy-unreadable", "warning", f"kube-proxy's {name} answer could not be read: {e}",
                   evidence=[str(e)])


@check("sync-failing")
def sync_failing(ctx: CheckContext) -> Iterator[Finding]:
    """kube-proxy runs but its syncs fail: restore errors, a queued change never synced, /healthz 503."""
    # a garbage metrics file must not hide a valid /healthz (nor the other way round)
    metrics: nodeinfo.Metrics | None = None
    healthz: nodeinfo.Healthz | None = None
    try:
        metrics = nodeinfo.kube_proxy_metrics(ctx.snapshot)
    except ProxyDoctorError as e:
        yield _unreadable("metrics", e)
    try:
        healthz = nodeinfo.kube_proxy_healthz(ctx.snapshot)
    except ProxyDoctorError as e:
        yield _unreadable("healthz", e)
    if metrics is None and healthz is None:
        return
    status = healthz_status(ctx.snapshot, healthz)
    when = capture_time(ctx.snapshot, healthz)
    figures = nodeinfo.sync_figures(metrics) if metrics is not None else nodeinfo.SyncFigures()
    stuck = figures.stuck_seconds
    age = pending_age(ctx.snapshot, figures, healthz)
    failures = figures.restore_failures or 0
    errors = restore_errors(ctx.snapshot.text("kube-proxy.log"))

    unhealthy = status == 503 and healthz is not None and healthz.node_eligible is not False
    late = age is not None and age >= HEALTH_TIMEOUT_SECONDS
    evidence: list[str] = []
    parts: list[str] = []
    if failures or figures.sync_failures:
        # counters say how often a sync failed, not that every sync fails
        what = (f"iptables-restore failed {_times(failures)} since kube-proxy started" if failures else
                f"nftables syncs failed {_times(figures.sync_failures or 0)} since kube-proxy started")
        if errors:
            what += " (kube-proxy.log: " + ", then ".join(f"'{e}'" for e in errors[:3]) + ")"
        parts.append(what)
    detail: list[str] = []
    if failures:
        detail.append(f"kubeproxy_sync_proxy_rules_iptables_restore_failures_total {failures:g}"
                      + (f" (partial {figures.partial_restore_failures:g})"
                         if figures.partial_restore_failures else ""))
    if figures.sync_failures:
        detail.append(f"kubeproxy_sync_proxy_rules_nftables_sync_failures_total {figures.sync_failures:g}")
    if stuck:
        queued = (f"last_queued_timestamp {_hms(figures.last_queued)} > "
                  f"last_timestamp {_hms(figures.last_sync)}")
        if age is not None:
            queued += f": a change queued {age:.0f} s before the capture is not programmed"
        detail.append(queued)
    if status == 503 and healthz is not None:
        detail.append(f"/healthz 503 (lastUpdated {_short(healthz.last_updated)}, "
                      f"currentTime {_short(healthz.current_time)})")
    evidence = [*detail, *(f"kube-proxy.log: {e}" for e in errors)]

    if healthz is not None and healthz.node_eligible is False:
        yield Finding("kube-proxy-node-ineligible", "info",
                      "kube-proxy's /healthz reports this node not eligible (being deleted or tainted "
                      "ToBeDeletedByClusterAutoscaler): load balancers take it out of rotation",
                      evidence=[f"/healthz nodeEligible false (currentTime {_short(healthz.current_time)})"])
    if unhealthy or late or (stuck and failures and when is None):
        severity: Severity = "error" if (unhealthy or late) else "warning"
        head = "kube-proxy is running but " + (parts[0] if parts else "its rules are not being synced")
        yield Finding("sync-failing", severity, f"{head}: " + "; ".join(detail), evidence=evidence,
                      fix=_sync_fix(for_context(ctx)))
    elif failures or figures.sync_failures:
        total = failures + (figures.sync_failures or 0)
        yield Finding("restore-failures", "info",
                      f"kube-proxy had {total:g} failed syncs since it started, "
                      "but its last sync is current (it recovered)", evidence=evidence)


@check("kube-proxy-not-running")
def kube_proxy_not_running(ctx: CheckContext) -> Iterator[Finding]:
    """Rules are there but kube-proxy's metrics and /healthz did not answer (or were not captured)."""
    from kubectl_proxydoctor.kube_proxy_process import kube_proxy_process
    from kubectl_proxydoctor.sources import Readability, source_state

    snap = ctx.snapshot
    if snap.has("kube-proxy-metrics.txt") or snap.has("kube-proxy-healthz.json") or not _has_rules(ctx):
        return
    states = [source_state(snap, f) for f in ("kube-proxy-metrics.txt", "kube-proxy-healthz.json")]
    refused = [s.describe() for s in states if s.state is Readability.ABSENT]
    reasons = [s.describe() for s in states]
    process = kube_proxy_process(snap)
    kube_proxy = for_context(ctx)
    if process.running is False:
        refused.insert(0, process.evidence)
    if process.running is True and refused:
        yield Finding("kube-proxy-not-answering", "warning",
                      "kube-proxy runs but does not answer on 127.0.0.1:10249/10256 (metrics and healthz "
                      "bound elsewhere, or it is hanging): whether it syncs is unknown",
                      evidence=[process.evidence, *refused],
                      fix=(f"Find this node's kube-proxy pod (`{kube_proxy.show}`) and read its log "
                           f"(`{kube_proxy.logs}`)."))
    elif refused:
        yield Finding("kube-proxy-not-running", "warning",
                      "kube-proxy's rules are here but kube-proxy does not answer on 127.0.0.1:10249/10256"
                      + (" and no kube-proxy process runs: it is not running, so nothing keeps these rules "
                         "in sync with the API" if process.running is False else
                         ": it is not running (or listens elsewhere), so nothing may keep these rules in "
                         "sync with the API"),
                      evidence=refused,
                      fix=_not_running_fix(kube_proxy))
    else:
        yield Finding("kube-proxy-not-captured", "info",
                      "kube-proxy's metrics and /healthz were not captured: whether it runs and syncs "
                      "is unknown", evidence=reasons)
