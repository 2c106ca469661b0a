"""Rich renderables for one service port: API view, programmed view, findings and raw rules."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from kubectl_proxydoctor.clip import clip_lines
from kubectl_proxydoctor.model import Finding, ProgrammedPort
from kubectl_proxydoctor.report import NodeReport, ServiceStatus
from kubectl_proxydoctor.tui.highlight import highlight_rules
from kubectl_proxydoctor.tui.summary import SEVERITY_STYLE


def _kv_table() -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(overflow="fold")
    return table


def find_service(report: NodeReport, status: ServiceStatus) -> dict | None:
    cluster = report.cluster
    if cluster is None:
        return None
    for svc in getattr(cluster, "services", []):
        meta = svc.get("metadata") or {}
        if meta.get("namespace") == status.name.namespace and meta.get("name") == status.name.name:
            return svc
    return None


def _slice_endpoints(report: NodeReport, status: ServiceStatus) -> list[tuple[str, str, str]]:
    """(address:port, conditions, node) per endpoint in the service's EndpointSlices for this port."""
    out: list[tuple[str, str, str]] = []
    cluster = report.cluster
    if cluster is None:
        return out
    name = status.name
    for es in getattr(cluster, "endpointslices", []):
        meta = es.get("metadata") or {}
        labels = meta.get("labels") or {}
        if meta.get("namespace") != name.namespace or labels.get("kubernetes.io/service-name") != name.name:
            continue
        ports = [p for p in es.get("ports") or [] if (p.get("name") or "") == (name.port or "")
                 and (p.get("protocol") or "TCP") == name.protocol]
        for port in ports:
            for ep in es.get("endpoints") or []:
                cond = ep.get("conditions") or {}
                words = [k for k in ("ready", "serving", "terminating") if cond.get(k)]
                for addr in ep.get("addresses") or []:
                    shown = f"[{addr}]" if ":" in addr else addr
                    out.append((f"{shown}:{port.get('port')}", ",".join(words) or "not ready",
                                ep.get("nodeName") or ""))
    return sorted(out)


def api_view(report: NodeReport, status: ServiceStatus) -> RenderableType:
    """What the API says this port should have."""
    table = _kv_table()
    table.add_row("service", f"{status.name}  ({status.name.protocol})")
    table.add_row("type", status.service_type or "-")
    table.add_row("frontends", "\n".join(status.frontends) or "-")
    table.add_row("expected", "\n".join(status.expected_endpoints) or "none")
    svc = find_service(report, status)
    if svc is not None:
        spec = svc.get("spec") or {}
        for key in ("clusterIPs", "externalIPs", "loadBalancerSourceRanges"):
            if spec.get(key):
                table.add_row(key, ", ".join(spec[key]))
        for key in ("externalTrafficPolicy", "internalTrafficPolicy", "sessionAffinity"):
            if spec.get(key):
                table.add_row(key, str(spec[key]))
        endpoints = _slice_endpoints(report, status)
        if endpoints:
            eps = Table(box=None, padding=(0, 1), show_edge=False)
            eps.add_column("endpoint")
            eps.add_column("conditions")
            eps.add_column("node")
            for addr, cond, node in endpoints:
                eps.add_row(addr, Text(cond, style="green" if cond.startswith("ready") else "yellow"), node)
            table.add_row("slices", eps)
    elif report.cluster is None:
        table.add_row("api", Text("not read (node-only checks)", style="yellow"))
    return table


def programmed_ports(report: NodeReport, status: ServiceStatus) -> list[tuple[str, ProgrammedPort]]:
    """(view source, port) for every view that programmed this service port, both families."""
    out: list[tuple[str, ProgrammedPort]] = []
    for view in report.views:
        for family in (4, 6):
            port = view.port(status.name, family)
            if port is not None:
                out.append((f"{view.source} (IPv{family})", port))
    return out


def programmed_view(report: NodeReport, status: ServiceStatus) -> RenderableType:
    """What each mode programmed for this port: frontends and where new connections go."""
    ports = programmed_ports(report, status)
    if not ports:
        return Text("nothing programmed for this port in any mode", style="yellow")
    parts: list[RenderableType] = []
    for source, port in ports:
        parts.append(Text(source, style="bold"))
        for fe in port.frontends:
            line = Text(f"  {fe.address}", style="bold")
            extras = [fe.kind, f"policy {fe.policy}"]
            if fe.affinity_seconds:
                extras.append(f"affinity {fe.affinity_seconds}s")
            if fe.scheduler:
                extras.append(f"scheduler {fe.scheduler}")
            if fe.source_ranges:
                extras.append("from " + ",".join(fe.source_ranges))
            line.append("  " + ", ".join(extras), style="dim")
            parts.append(line)
            if not fe.targets:
                parts.append(Text(f"    no endpoints: {fe.no_endpoints or 'no rule'}", style="yellow"))
            for t in fe.targets:
                row = Text(f"    -> {t.endpoint}  {t.probability * 100:5.1f}%")
                if t.weight is not None:
                    row.append(f"  weight {t.weight}", style="yellow" if t.weight == 0 else "")
                parts.append(row)
            if fe.masquerade:
                parts.append(Text(f"    masquerade: {fe.masquerade}", style="dim"))
    return Group(*parts)


def finding_renderable(finding: Finding, *, with_service: bool = False) -> RenderableType:
    """A finding with its evidence and fix."""
    head = Text()
    head.append(f"{finding.severity.upper():7} ", style=SEVERITY_STYLE[finding.severity])
    head.append(finding.code, style="bold")
    if with_service and finding.service:
        where = f"{finding.service}:{finding.port}" if finding.port else finding.service
        head.append(f"  {where}", style="dim")
    parts: list[RenderableType] = [head, Padding(Text(finding.message), (0, 0, 0, 2))]
    if finding.evidence:
        parts.append(Text("  evidence:", style="dim"))
        parts.append(Padding(highlight_rules(finding.evidence), (0, 0, 0, 4)))
    if finding.fix:
        fix = Text("fix: ", style="bold green")
        fix.append(finding.fix)
        parts.append(Padding(fix, (0, 0, 0, 2)))
    return Group(*parts)


def findings_view(findings: list[Finding]) -> RenderableType:
    if not findings:
        return Text("no findings on this port", style="green")
    return Group(*(finding_renderable(f) for f in findings))


def raw_rule_lines(report: NodeReport, status: ServiceStatus) -> list[tuple[str, list[str]]]:
    """(view source, evidence lines in order, deduplicated) for the port in each view."""
    out: list[tuple[str, list[str]]] = []
    for source, port in programmed_ports(report, status):
        seen: dict[str, None] = {}
        for line in port.evidence:
            seen.setdefault(line, None)
        for fe in port.frontends:
            for line in fe.evidence:
                seen.setdefault(line, None)
            for t in fe.targets:
                for line in t.evidence:
                    seen.setdefault(line, None)
        out.append((source, clip_lines(list(seen))))
    return out


def raw_rules(report: NodeReport, status: ServiceStatus) -> RenderableType:
    sections = raw_rule_lines(report, status)
    if not sections:
        return Text("no rules for this port", style="yellow")
    parts: list[RenderableType] = []
    for source, lines in sections:
        parts.append(Text(f"{source}: {len(lines)} lines", style="bold"))
        parts.append(highlight_rules(lines) if lines else Text("(no rule text recorded)", style="dim"))
    return Group(*parts)
