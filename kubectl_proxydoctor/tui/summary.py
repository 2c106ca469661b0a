"""The header line: node, mode(s), kernel, kube-proxy health and counts, from a NodeReport."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from rich.text import Text

from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.report import NodeReport

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan", None: "green"}
HEALTH_CODES = ("sync-failing", "kube-proxy-stuck", "healthz-failing")


def _seconds_between(start: str | None, end: str | None) -> float | None:
    try:
        a = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        b = datetime.fromisoformat(str(end).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (b - a).total_seconds()


def kube_proxy_health(report: NodeReport) -> tuple[str, str | None]:
    """A short health word for kube-proxy and the severity to colour it with."""
    if any(f.code in HEALTH_CODES for f in report.findings):
        return "failing", "error"
    snapshot = report.snapshot
    if snapshot is None:
        return "unknown", "warning"
    from kubectl_proxydoctor import nodeinfo

    try:
        healthz = nodeinfo.kube_proxy_healthz(snapshot)
        metrics = nodeinfo.kube_proxy_metrics(snapshot)
    except ProxyDoctorError:
        return "unreadable", "warning"
    if metrics is not None:
        figures = nodeinfo.sync_figures(metrics)
        if figures.restore_failures:
            return f"restore failures {figures.restore_failures:g}", "error"
        stuck = figures.stuck_seconds
        if stuck is not None and stuck > 30:
            return f"stuck {stuck:.0f}s", "error"
    if healthz is not None:
        age = _seconds_between(healthz.last_updated, healthz.current_time)
        if age is not None and age > 60:
            return f"healthz stale {age:.0f}s", "error"
        return "healthy", None
    if metrics is not None:
        return "metrics ok", None
    return "not captured", "warning"


def kernel(report: NodeReport) -> str:
    snapshot = report.snapshot
    text = snapshot.text("kernel.txt") if snapshot is not None else None
    return text.strip() if text and text.strip() else "?"


def severity_counts(report: NodeReport) -> Counter:
    return Counter(f.severity for f in report.findings)


def status_counts(report: NodeReport) -> Counter:
    return Counter(s.status for s in report.services)


def header_text(report: NodeReport, origin: str = "") -> Text:
    """Two short lines for the top of the main screen (fits 80 columns)."""
    modes = report.mode
    others = [m for m in report.modes_found if m != report.mode]
    if others:
        modes += f" (+{','.join(others)})"
    health, health_sev = kube_proxy_health(report)
    text = Text()
    text.append("node ", style="dim")
    text.append(report.node or "?", style="bold")
    text.append("  mode ", style="dim")
    text.append(modes, style="bold")
    text.append("  kernel ", style="dim")
    text.append(kernel(report))
    text.append("  kube-proxy ", style="dim")
    text.append(health, style=SEVERITY_STYLE.get(health_sev, ""))
    text.append("\n")
    statuses = status_counts(report)
    text.append(f"{len(report.services)} ports", style="bold")
    for status in ("ok", "drift", "not-programmed", "not-expected"):
        if statuses.get(status):
            style = "green" if status == "ok" else ("yellow" if status == "not-expected" else "red")
            text.append(f"  {statuses[status]} {status}", style=style)
    counts = severity_counts(report)
    text.append("  findings", style="dim")
    for sev in ("error", "warning", "info"):
        text.append(f" {counts.get(sev, 0)} {sev}", style=SEVERITY_STYLE[sev] if counts.get(sev) else "dim")
    if report.partial:
        text.append("  partial", style="yellow")
    if origin:
        text.append(f"  {origin}", style="dim")
    return text
