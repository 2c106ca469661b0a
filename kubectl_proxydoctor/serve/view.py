"""What `watch` prints: the node's verdict as text, redrawn only when it changes."""

from __future__ import annotations

from datetime import datetime

from kubectl_proxydoctor.serve.verdict import DriftKey, Verdict


def _drift_lines(label: str, keys: set[DriftKey]) -> list[str]:
    return [f"  {label:<9} {k.port}  {k.kind}  {k.ip_family}" for k in sorted(keys)]


def render(verdict: Verdict | None, error: str | None, reported: set[DriftKey], pending: set[DriftKey],
           when: datetime, node: str | None) -> str:
    """One block: time, node, verdict, then reported and pending drift and error/warning findings."""
    head = f"{when:%H:%M:%S}  {node or verdict and verdict.node or '?'}  "
    if verdict is None:
        return head + f"unknown: {error or 'no check finished yet'}"
    lines = [head + verdict.summary]
    if verdict.sync_note:
        lines.append(f"  {verdict.sync_note}")
    lines += _drift_lines("drift", reported)
    lines += _drift_lines("pending", pending)  # within the grace period, or kube-proxy is syncing
    for (severity, code), count in sorted(verdict.findings.items()):
        if severity != "info":
            lines.append(f"  {severity:<9} {code} x{count}")
    return "\n".join(lines)


def state_key(verdict: Verdict | None, error: str | None, reported: set[DriftKey],
              pending: set[DriftKey]) -> tuple:
    """Equal keys render the same block: nothing to redraw."""
    if verdict is None:
        return ("error", error)
    return (verdict.summary, verdict.sync_note, tuple(sorted(reported)), tuple(sorted(pending)),
            tuple(sorted(verdict.findings.items())))
