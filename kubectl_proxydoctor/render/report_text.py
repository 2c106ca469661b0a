"""Rich text for people: the `check` summary and findings, and the `svc` end-to-end view."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from kubectl_proxydoctor.clip import clip
from kubectl_proxydoctor.model import SEVERITY_ORDER, Finding, Packet, TraceResult, port_label
from kubectl_proxydoctor.report import NodeReport, ServiceStatus
from kubectl_proxydoctor.words import plural

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
STATUS_STYLE = {"ok": "green", "not-programmed": "bold red", "not-expected": "bold red", "unknown": "yellow"}
MAX_OK_ROWS = 200  # above this many service ports, the table lists only the ones that are not ok


def _port_findings(report: NodeReport, status: ServiceStatus) -> list[Finding]:
    n = status.name
    return [f for f in report.findings if (f.service, f.port, f.protocol) == (n.service, n.port, n.protocol)]


def status_style(report: NodeReport, status: ServiceStatus) -> str:
    """ok green; drift coloured by its worst finding; not-programmed / not-expected red."""
    if status.status != "drift":
        return STATUS_STYLE[status.status]
    worst = min((SEVERITY_ORDER[f.severity] for f in _port_findings(report, status)), default=0)
    return SEVERITY_STYLE[{0: "error", 1: "warning", 2: "info"}[worst]]


def header(report: NodeReport) -> Text:
    text = Text()
    text.append("node ", style="dim").append(report.node or "?", style="bold")
    text.append("  mode ", style="dim").append(report.mode, style="bold")
    if len(report.modes_found) > 1 or (report.modes_found and report.modes_found != [report.mode]):
        text.append(f"  (rules found: {', '.join(report.modes_found)})", style="dim")
    for name, value in report.sources.items():
        ok = str(value).startswith("ok")
        text.append(f"\n  {name}: ", style="dim").append(str(value), style="green" if ok else "yellow")
    for note in report.notes:
        if note.startswith("mode ") and "; " in note:  # the mode decision's evidence: the first item
            extra = note.count("; ")
            note = f"{note.split('; ', 1)[0]} (+{extra} more; -o json has all)"
        text.append(f"\n  note: {note}", style="dim")
    return text


def summary_table(report: NodeReport) -> Table:
    """One row per service port (only the ones not ok when there are very many)."""
    rows = report.services
    if len(rows) > MAX_OK_ROWS:
        rows = [s for s in rows if s.status != "ok"]
    table = Table(title="service ports", title_justify="left", show_lines=False)
    table.add_column("service port", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("frontends", no_wrap=True)
    table.add_column("endpoints\nAPI/rules", justify="right", no_wrap=True)
    for s in rows:
        table.add_row(
            escape(s.name.label),
            Text(s.status, style=status_style(report, s)),
            escape("\n".join(s.frontends)),
            f"{len(s.expected_endpoints)}/{len(s.programmed_endpoints)}",
        )
    return table


def finding_text(f: Finding, max_evidence: int = 8) -> Text:
    text = Text()
    text.append(f"{f.severity.upper():7} ", style=SEVERITY_STYLE[f.severity]).append(f.code, style="bold")
    if f.service:
        text.append(f"  {port_label(f.service, f.port, f.protocol)}", style="bold")
    text.append(f"\n  {f.message}")
    for line in f.evidence[:max_evidence]:
        text.append(f"\n    {line}", style="dim")
    if len(f.evidence) > max_evidence:
        text.append(
            f"\n    ... {len(f.evidence) - max_evidence} more evidence lines (-o json has all)", style="dim"
        )
    if f.fix:
        text.append("\n  fix: ", style="green").append(f.fix)
    return text


def findings_block(findings: Iterable[Finding]) -> Group:
    """Every finding in the order given (root causes first); those a root cause explains are
    indented under it, after a line that says so."""
    from rich.padding import Padding

    items = list(findings)
    if not items:
        return Group(Text("no findings", style="green"))
    parts: list = [Text(f"findings ({len(items)})", style="bold")]
    for f in items:
        if f.caused_by is None:
            parts.append(finding_text(f))
            explained = sum(1 for g in items if g.caused_by == f.code)
            if explained:
                parts.append(Text(f"  caused by this: {plural(explained, 'finding')} below", style="dim"))
        else:
            parts.append(Padding(finding_text(f), (0, 0, 0, 4)))
    return Group(*parts)


def counts_line(report: NodeReport) -> Text:
    by_status: dict[str, int] = {}
    for s in report.services:
        by_status[s.status] = by_status.get(s.status, 0) + 1
    hidden = by_status.get("ok", 0) if len(report.services) > MAX_OK_ROWS else 0
    text = Text(f"{plural(len(report.services), 'service port')}: ")
    text.append(", ".join(f"{n} {k}" for k, n in sorted(by_status.items())) or "none")
    if hidden:
        text.append(f" ({hidden} ok ports not listed; -o json lists every port)", style="dim")
    return text


def render_check(report: NodeReport, console: Console) -> None:
    """`check`: header, summary table of service ports, then every finding with evidence and fix."""
    console.print(header(report))
    if report.services:
        console.print(summary_table(report))
    console.print(counts_line(report))
    console.print(findings_block(report.findings))


# -- svc ------------------------------------------------------------------------------------------


def _api_table(report: NodeReport, namespace: str, name: str) -> Group:
    expected = report.expected
    service = expected.services.get(f"{namespace}/{name}") if expected is not None else None
    if service is None:
        return Group(Text("API: no such Service (deleted, or the API was not read)", style="yellow"))
    spec = service.get("spec") or {}
    parts: list = []
    policy = Text()
    policy.append(f"type {spec.get('type', 'ClusterIP')}", style="bold")
    policy.append(f"  clusterIPs {', '.join(spec.get('clusterIPs') or [str(spec.get('clusterIP'))])}")
    policy.append(f"  internalTrafficPolicy {spec.get('internalTrafficPolicy') or 'Cluster'}")
    if spec.get("externalTrafficPolicy"):
        policy.append(f"  externalTrafficPolicy {spec['externalTrafficPolicy']}")
    policy.append(f"  sessionAffinity {spec.get('sessionAffinity') or 'None'}")
    skip = expected.skipped.get(f"{namespace}/{name}")
    if skip:
        policy.append(f"\nkube-proxy ignores this Service: {skip}", style="yellow")
    parts.append(policy)
    for port in expected.ports_of(f"{namespace}/{name}"):
        table = Table(title=f"API {port.name}/{port.name.protocol} (IPv{port.family})", title_justify="left")
        for col in ("endpoint", "node", "zone", "conditions", "used by this node"):
            table.add_column(col)
        cluster, local = set(port.cluster_endpoints), set(port.local_endpoints)
        for ep in port.all_endpoints:
            used = [p for p, s in (("cluster", cluster), ("local", local)) if ep.endpoint in s]
            why = ", ".join(used) if used else port.why_not_used(ep.endpoint)
            table.add_row(
                str(ep.endpoint),
                ep.node or "-",
                ep.zone or "-",
                ep.conditions,
                Text(why, style="green" if used else "dim"),
            )
        if not port.all_endpoints:
            table.add_row("(none)", "", "", "", "")
        fronts = ", ".join(f"{f.address} ({f.policy})" for f in port.frontends)
        extra = (
            f"  health check node port {port.health_check_node_port}" if port.health_check_node_port else ""
        )
        parts.append(Group(Text(f"frontends: {fronts}{extra}"), table))
    return Group(*parts)


def _programmed_table(report: NodeReport, namespace: str, name: str) -> Group:
    parts: list = []
    for view in report.views:
        for (pname, family), port in sorted(view.ports.items()):
            if pname.service != f"{namespace}/{name}":
                continue
            table = Table(
                title=f"{view.source}: {pname}/{pname.protocol} (IPv{family})", title_justify="left"
            )
            for col in ("frontend", "policy", "endpoint", "share"):
                table.add_column(col)
            for f in port.frontends:
                if not f.targets:
                    table.add_row(
                        f.address, f.policy, Text(f.no_endpoints or "no targets", style="yellow"), ""
                    )
                for t in f.targets:
                    share = f"weight {t.weight}" if t.weight is not None else f"{t.probability:.0%}"
                    table.add_row(f.address, f.policy, str(t.endpoint), share)
            parts.append(table)
    if not parts:
        parts.append(Text("programmed: no rules for this service in any mode", style="yellow"))
    return Group(*parts)


def trace_tree(result: TraceResult) -> Tree:
    """A packet's outcomes through one mode's rules, as a tree of the rules it went through."""
    try:
        from kubectl_proxydoctor.render import trace_text  # written by another engineer

        if hasattr(trace_text, "trace_tree"):
            return trace_text.trace_tree(result)
    except ImportError:
        pass
    tree = Tree(Text(f"{result.packet}  [{result.source}]", style="bold"))
    for outcome in result.outcomes:
        label = outcome.verdict.upper()
        if outcome.destination is not None:
            label += f" -> {outcome.destination}"
        if outcome.probability < 1:
            label += f"  ({outcome.probability:.0%})"
        if outcome.masquerade:
            label += "  masqueraded"
        branch = tree.add(Text(label, style="green" if outcome.verdict == "dnat" else "yellow"))
        for step in outcome.path:
            branch.add(
                Text(f"{step.chain}: {clip(step.rule)}" + (f"  # {clip(step.why)}" if step.why else ""),
                     style="dim")
            )
    for note in result.notes:
        tree.add(Text(note, style="dim"))
    return tree


def render_service(
    report: NodeReport, namespace: str, name: str, traces: dict[str, list[TraceResult]], console: Console
) -> None:
    """`svc`: the API view, what each mode programmed, a trace per frontend, and the findings."""
    console.print(Text(f"{namespace}/{name}", style="bold"), header(report))
    console.print(_api_table(report, namespace, name))
    console.print(_programmed_table(report, namespace, name))
    for frontend, results in traces.items():
        if not results:
            console.print(Text(f"trace {frontend}: no rules in any mode match it", style="yellow"))
        for result in results:
            console.print(trace_tree(result))
    console.print(findings_block(service_findings(report, f"{namespace}/{name}")))


def service_findings(report: NodeReport, key: str) -> list[Finding]:
    """The findings `svc` shows for Service ``key``: its own, the causes that stopped every comparison
    (rules unknown, an API answer that cannot be this node's), and the root causes of its own."""
    from kubectl_proxydoctor.causes import STOPS_COMPARISON

    own = [f for f in report.findings if f.service == key]
    causes = {f.caused_by for f in own}  # a root cause shows when it explains this service's findings
    return [f for f in report.findings if f in own or f.code in STOPS_COMPARISON or f.code in causes]


def trace_packets(report: NodeReport, namespace: str, name: str) -> dict[str, Packet]:
    """One packet per frontend of the service (NodePorts aimed at the node's first address)."""
    packets: dict[str, Packet] = {}
    expected = report.expected
    ports = expected.ports_of(f"{namespace}/{name}") if expected is not None else []
    node_ip = _node_ip(report)
    for port in ports:
        for f in port.frontends:
            ip = f.ip if f.kind != "node-port" else node_ip
            if ip:
                packets[f"{f.address}/{f.protocol.lower()}"] = Packet(ip, f.port, f.protocol)
    if not ports:
        for view in report.views:
            for (pname, _), pport in view.ports.items():
                if pname.service != f"{namespace}/{name}":
                    continue
                for f in pport.frontends:
                    ip = f.ip if f.kind != "node-port" else (f.ip or node_ip)
                    if ip:
                        packets[f"{f.address}/{f.protocol.lower()}"] = Packet(ip, f.port, f.protocol)
    return packets


def _node_ip(report: NodeReport) -> str | None:
    cluster = report.cluster
    if cluster is not None:
        node = cluster.node(report.node)
        for addr in ((node or {}).get("status") or {}).get("addresses") or []:
            if addr.get("type") == "InternalIP":
                return addr.get("address")
    return None
