"""`svc` at any size: the Service's settings, endpoints and programmed targets grouped when there
are many, one trace per frontend and kind of source with shared paths printed once, and findings."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from kubectl_proxydoctor.expected import ExpectedPort
from kubectl_proxydoctor.model import TraceResult
from kubectl_proxydoctor.node_facts import NodeFacts
from kubectl_proxydoctor.render.report_text import findings_block, header, service_findings
from kubectl_proxydoctor.render.trace_text import trace_tree
from kubectl_proxydoctor.report import NodeReport
from kubectl_proxydoctor.svc_plan import PlannedTrace

ROWS = 12  # endpoints / targets listed one by one; above this they are grouped
OUTCOMES = 6  # outcomes listed per trace; the fate line still counts every one


def settings_text(report: NodeReport, namespace: str, name: str) -> Text:
    """Type, cluster IPs, traffic policies, affinity, source ranges, health-check port."""
    expected = report.expected
    service = expected.services.get(f"{namespace}/{name}") if expected is not None else None
    if service is None and report.cluster is not None:  # nothing compared (rules unknown): the API's own
        service = next((s for s in report.cluster.services
                        if (s.get("metadata") or {}).get("namespace") == namespace
                        and (s.get("metadata") or {}).get("name") == name), None)
    if service is None:
        return Text("API: no such Service (deleted, or the API was not read)", style="yellow")
    spec = service.get("spec") or {}
    text = Text()
    text.append(f"type {spec.get('type', 'ClusterIP')}", style="bold")
    text.append(f"  clusterIPs {', '.join(spec.get('clusterIPs') or [str(spec.get('clusterIP'))])}")
    text.append(f"  internalTrafficPolicy {spec.get('internalTrafficPolicy') or 'Cluster'}")
    if spec.get("externalTrafficPolicy"):
        text.append(f"  externalTrafficPolicy {spec['externalTrafficPolicy']}")
    affinity = spec.get("sessionAffinity") or "None"
    seconds = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
    timeout = f" ({seconds}s)" if affinity == "ClientIP" and seconds else ""
    text.append(f"  sessionAffinity {affinity}{timeout}")
    ranges = spec.get("loadBalancerSourceRanges") or []
    if spec.get("type") == "LoadBalancer":
        text.append(f"\nloadBalancerSourceRanges {', '.join(ranges) if ranges else '(none: every source)'}")
    if spec.get("healthCheckNodePort"):
        text.append(f"  healthCheckNodePort {spec['healthCheckNodePort']}")
    skip = expected.skipped.get(f"{namespace}/{name}") if expected is not None else None
    if skip:
        text.append(f"\nkube-proxy ignores this Service: {skip}", style="yellow")
    return text


def endpoints_table(port: ExpectedPort, node: str | None) -> Table:
    """The API's endpoints of one port: one row each, or grouped by node/conditions/use when many."""
    table = Table(title=f"API {port.name}/{port.name.protocol} (IPv{port.family}): "
                        f"{len(port.all_endpoints)} endpoints", title_justify="left")
    cluster, local = set(port.cluster_endpoints), set(port.local_endpoints)

    def used(ep) -> str:
        kinds = [p for p, s in (("cluster", cluster), ("local", local)) if ep.endpoint in s]
        return ", ".join(kinds) if kinds else port.why_not_used(ep.endpoint)

    if len(port.all_endpoints) <= ROWS:
        for col in ("endpoint", "node", "conditions", "used by this node"):
            table.add_column(col)
        for ep in port.all_endpoints:
            table.add_row(str(ep.endpoint), ep.node or "-", ep.conditions, used(ep))
        if not port.all_endpoints:
            table.add_row("(none)", "", "", "")
        return table
    for col in ("endpoints", "node", "conditions", "used by this node", "e.g."):
        table.add_column(col)
    groups: dict[tuple, list] = {}
    for ep in port.all_endpoints:
        where = "this node" if node and ep.node == node else "other nodes"
        groups.setdefault((where, ep.conditions, used(ep)), []).append(ep)
    for (where, cond, use), eps in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        sample = ", ".join(str(e.endpoint) for e in eps[:2]) + (" ..." if len(eps) > 2 else "")
        table.add_row(str(len(eps)), where, cond, use, sample)
    return table


def programmed_tables(report: NodeReport, namespace: str, name: str) -> list:
    """What each mode programmed: one row per target, or per frontend with a count when many."""
    parts: list = []
    for view in report.views:
        for (pname, family), port in sorted(view.ports.items()):
            if pname.service != f"{namespace}/{name}":
                continue
            table = Table(title=f"{view.source}: {pname}/{pname.protocol} (IPv{family})",
                          title_justify="left")
            for col in ("frontend", "policy", "targets", "share"):
                table.add_column(col)
            for f in port.frontends:
                if not f.targets:
                    none = Text(f.no_endpoints or "no targets", style="yellow")
                    table.add_row(f.address, f.policy, none, "")
                    continue
                if len(f.targets) <= ROWS:
                    for t in f.targets:
                        share = f"weight {t.weight}" if t.weight is not None else f"{t.probability:.0%}"
                        table.add_row(f.address, f.policy, str(t.endpoint), share)
                    continue
                shares = sorted({round(t.probability, 6) for t in f.targets})
                share = f"{shares[0]:.2%} each" if len(shares) == 1 else f"{shares[0]:.2%}-{shares[-1]:.2%}"
                table.add_row(f.address, f.policy, f"{len(f.targets)} endpoints", share)
            parts.append(table)
    if not parts and "rules" in report.unreadable:
        parts.append(Text("programmed: unknown (the rules could not be read or were not captured: see "
                          "rules-unknown below)", style="yellow"))
    elif not parts:
        parts.append(Text("programmed: no rules for this service in any mode", style="yellow"))
    return parts


def render_service_compact(report: NodeReport, namespace: str, name: str,
                           traces: list[tuple[PlannedTrace, list[TraceResult]]], facts: NodeFacts,
                           console: Console) -> None:
    """`svc` without --all: short at any number of endpoints."""
    console.print(Text(f"{namespace}/{name}", style="bold"), header(report))
    console.print(settings_text(report, namespace, name))
    expected = report.expected
    for port in expected.ports_of(f"{namespace}/{name}") if expected is not None else []:
        fronts = ", ".join(f"{f.address} ({f.policy})" for f in port.frontends)
        console.print(Group(Text(f"frontends: {fronts}"), endpoints_table(port, report.node)))
    console.print(*programmed_tables(report, namespace, name))
    seen: dict[tuple, str] = {}
    for planned, results in traces:
        head = Text("trace ", style="bold")
        head.append(planned.frontend, style="bold cyan")
        head.append(f" from {planned.source}")
        if not results:
            console.print(head, Text("  no rules in any mode match it", style="yellow"))
            continue
        for result in results:
            title = head.copy()
            title.append(f"  through {result.mode} ({result.source})", style="dim")
            console.print(trace_tree(result, facts, limit=OUTCOMES, one_line=True, title=title, seen=seen,
                                     label=f"{planned.frontend} from {planned.source.split(' (')[0]}",
                                     others=results))
    console.print(findings_block(service_findings(report, f"{namespace}/{name}")))
