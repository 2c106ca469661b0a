"""Render packet traces: a rich tree (shared path once, then each outcome's own steps) and JSON."""

from __future__ import annotations

from rich.console import Console, Group
from rich.text import Text
from rich.tree import Tree

from kubectl_proxydoctor.fate import Fate, NodeFacts, backend_order, trace_fate
from kubectl_proxydoctor.model import Packet, TraceOutcome, TraceResult, TraceStep

_STYLE = {"dnat": "green", "accept": "yellow", "no-match": "yellow", "reject": "red", "drop": "red"}
_MEANING = {
    "dnat": "DNAT",
    "reject": "REJECT (the client gets 'connection refused')",
    "drop": "DROP (the client times out)",
    "accept": "ACCEPT without DNAT (delivered to the original address)",
    "no-match": "no service rule matched (not DNATed)",
}


def outcome_label(outcome: TraceOutcome, marks: tuple[str, ...] = ()) -> Text:
    """One line: probability, verdict, destination, masquerade, service, and marks (stale...)."""
    text = Text()
    text.append(f"{outcome.probability:6.1%}  ", style="bold")
    label = _MEANING.get(outcome.verdict, outcome.verdict)
    if outcome.destination is not None:
        label += f" -> {outcome.destination}"
    text.append(label, style=_STYLE.get(outcome.verdict, ""))
    if outcome.verdict in ("dnat", "accept", "no-match"):
        text.append("  masqueraded" if outcome.masquerade else "  source kept", style="cyan")
    if outcome.service is not None:
        text.append(f"  {outcome.service}", style="magenta")
    for mark in marks:
        text.append(f"  [{mark}]", style="bold red" if mark.startswith("stale") else "yellow")
    return text


def fate_text(fate: Fate) -> Text:
    """The trace's one-line fate."""
    style = "bold green"
    if set(fate.kinds) & {"reject", "drop", "routed"} or any(
            m.startswith("stale") for f in fate.outcomes for m in f.marks):
        style = "bold red"
    elif set(fate.kinds) & {"node"}:
        style = "bold yellow"
    return Text(fate.line, style=style)


def _step(step: TraceStep) -> Text:
    text = Text()
    text.append(step.chain, style="bold blue")
    text.append("  ")
    text.append(step.rule, style="")
    if step.why:
        text.append(f"\n  matched: {step.why}", style="dim")
    return text


def _common_prefix(paths: list[list[TraceStep]]) -> int:
    if not paths:
        return 0
    n = min(len(p) for p in paths)
    for i in range(n):
        first = paths[0][i]
        if any(p[i].chain != first.chain or p[i].rule != first.rule for p in paths[1:]):
            return i
    return n


def trace_tree(result: TraceResult, facts: NodeFacts | None = None) -> Tree:
    """One mode/source's trace: the steps all outcomes share, then each outcome with its own steps,
    and last the packet's fate in one line."""
    fate = trace_fate(result, facts if facts is not None else NodeFacts())
    title = Text()
    title.append(str(result.packet), style="bold")
    title.append(f"  through {result.mode} ({result.source})", style="dim")
    tree = Tree(title)
    if not result.outcomes:
        tree.add(Text("no outcome: these rules do not handle this packet", style="yellow"))
    paths = [o.path for o in result.outcomes]
    shared = _common_prefix(paths) if len(paths) > 1 else 0
    if shared:
        node = tree.add(Text(f"path shared by every outcome ({shared} rules)", style="bold"))
        for step in paths[0][:shared]:
            node.add(_step(step))
    for outcome, part in zip(result.outcomes, fate.outcomes, strict=True):
        branch = tree.add(outcome_label(outcome, part.marks))
        for step in outcome.path[shared:]:
            branch.add(_step(step))
    for note in result.notes:
        tree.add(Text(f"note: {note}", style="dim italic"))
    tree.add(fate_text(fate))
    return tree


def render_traces(packet: Packet, results: list[TraceResult], console: Console,
                  facts: NodeFacts | None = None) -> None:
    """Every mode's trace of one packet, each ending with the packet's fate."""
    if not results:
        console.print(Text(f"{packet}: no kube-proxy rules (iptables, nftables or IPVS) found on this node",
                           style="yellow"))
        return
    parts: list = []
    for result in results:
        parts.append(trace_tree(result, facts))
    order = backend_order(results, facts if facts is not None else NodeFacts())
    if order is not None:
        first = (f"{order.first} takes the packet" if order.first
                 else "which backend takes the packet is unknown")
        parts.append(Text(f"two iptables backends: {first}. {order.text}", style="bold yellow"))
    console.print(Group(*parts))


def outcome_json(outcome: TraceOutcome, part=None) -> dict:
    extra = {} if part is None else {"fate": part.kind, "fate_text": part.text, "marks": list(part.marks)}
    return {
        **extra,
        "verdict": outcome.verdict,
        "destination": str(outcome.destination) if outcome.destination is not None else None,
        "probability": round(outcome.probability, 9),
        "masquerade": outcome.masquerade,
        "service": None if outcome.service is None else {
            "service": outcome.service.service, "port": outcome.service.port,
            "protocol": outcome.service.protocol},
        "path": [{"chain": s.chain, "rule": s.rule, "why": s.why} for s in outcome.path],
    }


def trace_json(packet: Packet, results: list[TraceResult], facts: NodeFacts | None = None) -> dict:
    """The stable JSON form of `trace -o json`."""
    facts = facts if facts is not None else NodeFacts()
    fates = [trace_fate(r, facts) for r in results]
    order = backend_order(results, facts)
    return {
        "backends": None if order is None else {"first": order.first, "why": order.text},
        "packet": {"dst": packet.dst, "port": packet.port, "protocol": packet.protocol, "src": packet.src},
        "results": [
            {
                "mode": r.mode,
                "source": r.source,
                "outcomes": [outcome_json(o, p) for o, p in zip(r.outcomes, f.outcomes, strict=True)],
                "notes": list(r.notes),
                "fate": f.line.removeprefix("fate: "),
            }
            for r, f in zip(results, fates, strict=True)
        ],
    }
