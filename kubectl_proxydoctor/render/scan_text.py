"""Rich rendering of a fleet scan: per-node lines as they finish, a summary table, cross-node drift."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from kubectl_proxydoctor.remote.scan import NodeSummary, ScanResult
from kubectl_proxydoctor.words import plural


def node_line(summary: NodeSummary) -> str:
    """One line for a node that just finished."""
    if summary.failure:
        return f"[yellow]?[/] {summary.node}: could not collect: {summary.failure}"
    mark = "[red]✗[/]" if summary.errors else ("[yellow]![/]" if summary.warnings else "[green]✓[/]")
    codes = f" ({', '.join(summary.codes)})" if summary.codes else ""
    counts = f"{summary.errors} errors, {summary.warnings} warnings"
    return f"{mark} {summary.node}: {summary.mode}, {counts}{codes}"


def render_scan(result: ScanResult, console: Console) -> None:
    """The summary table and the cross-node drift."""
    table = Table(title="Nodes", title_justify="left")
    for column in ("node", "mode", "kernel", "kube-proxy", "errors", "warnings", "findings"):
        table.add_column(column)
    for n in result.nodes:
        if n.failure:
            table.add_row(n.node, "?", "?", "?", "-", "-", f"[yellow]not collected: {n.failure}[/]")
            continue
        errors = f"[red]{n.errors}[/]" if n.errors else "0"
        table.add_row(n.node, n.mode, n.kernel or "?", n.kube_proxy, errors, str(n.warnings),
                      ", ".join(n.codes) or "-")
    console.print(table)
    if result.drift:
        drift = Table(title="Cross-node drift: nodes that should agree programmed different endpoints",
                      title_justify="left")
        drift.add_column("service port")
        drift.add_column("programmed endpoints")
        drift.add_column("nodes")
        for d in result.drift:
            for i, (endpoints, count, examples) in enumerate(d.answers):
                more = f" (+{count - len(examples)} more)" if count > len(examples) else ""
                nodes = f"{count}: {', '.join(examples)}{more}"
                drift.add_row(d.service_port if i == 0 else "", endpoints, nodes)
        console.print(drift)
    bad = sum(1 for n in result.nodes if n.errors)
    failed = sum(1 for n in result.nodes if n.failure)
    differ = "differs" if len(result.drift) == 1 else "differ"
    console.print(f"{plural(len(result.nodes), 'node')}: {bad} with drift, {failed} not collected, "
                  f"{plural(len(result.drift), 'service port')} {differ} across nodes")
