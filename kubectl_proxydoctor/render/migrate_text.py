"""Rich text for `migrate-check`: the readiness table, the verdict line and the plan."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from kubectl_proxydoctor.migrate.engine import Readiness

STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "unknown": "magenta"}
VERDICT_STYLE = {"ready": "bold green", "not ready": "bold red", "could not tell": "bold magenta",
                 "already": "bold green"}
MAX_EVIDENCE = 6


def readiness_table(readiness: Readiness, verbose: bool = False) -> Table:
    """One row per check result: status, scope, check, and what was found (evidence for non-passes)."""
    table = Table(title=f"Ready to switch kube-proxy to {readiness.target} mode?", title_justify="left",
                  show_lines=True, expand=False)
    table.add_column("status", no_wrap=True)
    table.add_column("scope", no_wrap=True)
    table.add_column("check", max_width=22)
    table.add_column("finding", overflow="fold")
    for r in readiness.results:
        finding = Text(r.summary)
        shown = r.evidence if verbose else ([] if r.status == "pass" else r.evidence[:MAX_EVIDENCE])
        for line in shown:
            finding.append("\n  " + line, style="dim")
        if len(r.evidence) > len(shown) and r.status != "pass":
            finding.append(f"\n  ... {len(r.evidence) - len(shown)} more (-v or -o json)", style="dim")
        table.add_row(Text(r.status.upper(), style=STATUS_STYLE[r.status]), r.scope, r.title, finding)
    return table


def verdict_line(readiness: Readiness) -> Text:
    counts = {s: sum(1 for r in readiness.results if r.status == s)
              for s in ("fail", "unknown", "warn", "pass")}
    text = Text("verdict: ", style="bold")
    text.append(readiness.verdict.upper(), style=VERDICT_STYLE[readiness.verdict])
    text.append(f" in {readiness.target} mode" if readiness.verdict == "already"
                else f" to switch to {readiness.target}", style="bold")
    text.append("  (" + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + ")", style="dim")
    where = ", ".join(readiness.nodes) if readiness.nodes else "no node capture"
    text.append(f"  nodes checked: {where}", style="dim")
    return text


def render_readiness(readiness: Readiness, console: Console, verbose: bool = False) -> None:
    """Print the table, the verdict, notes and the plan."""
    console.print(readiness_table(readiness, verbose))
    console.print(verdict_line(readiness))
    for note in readiness.notes:
        console.print(f"[dim]note:[/dim] {escape(note)}")
    todo = [r for r in readiness.results if r.status != "pass" and r.action]
    if todo:
        console.print()
        console.print("[bold]What to do[/bold]")
        for r in todo:
            style = STATUS_STYLE[r.status]
            console.print(f"  [{style}]{r.status.upper()}[/{style}] {escape(r.scope)} / {escape(r.title)}: "
                          f"{escape(r.action)}")
    plan = readiness.plan
    if not (plan.config or plan.rollout or plan.rollback or plan.watch):
        return
    console.print()
    console.print("[bold]Plan[/bold]")
    for title, lines in (("config change", plan.config), ("roll out", plan.rollout),
                         ("rollback", plan.rollback), ("watch after", plan.watch)):
        if not lines:
            continue
        console.print(f"  [bold]{title}[/bold]")
        for line in lines:
            console.print(f"    - {escape(line)}")
