"""The header line: node, mode(s), kernel, kube-proxy health and counts, from a NodeReport."""

from __future__ import annotations

from collections import Counter

from rich.text import Text

from kubectl_proxydoctor.report import NodeReport

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan", None: "green"}


# finding code (from checks/kube_proxy_health.py) -> the word the header shows
HEALTH_WORDS = {
    "sync-failing": "sync failing",
    "kube-proxy-not-running": "not running",
    "kube-proxy-unreadable": "unreadable",
    "kube-proxy-node-ineligible": "node ineligible",
    "kube-proxy-not-captured": "not captured",
    "restore-failures": "recovered",
}


def kube_proxy_health(report: NodeReport) -> tuple[str, str | None]:
    """kube-proxy's health as the checks judged it: a short word and the severity to colour it."""
    for code, word in HEALTH_WORDS.items():
        for finding in report.findings:
            if finding.code == code:
                return word, finding.severity
    snapshot = report.snapshot
    if snapshot is not None and snapshot.has("kube-proxy-healthz.json"):
        return "healthy", None
    if snapshot is not None and snapshot.has("kube-proxy-metrics.txt"):
        return "running", None
    return "unknown", "warning"


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
    for status in ("ok", "drift", "not-programmed", "not-expected", "unknown"):
        if statuses.get(status):
            style = {"ok": "green", "not-expected": "yellow", "unknown": "yellow"}.get(status, "red")
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
