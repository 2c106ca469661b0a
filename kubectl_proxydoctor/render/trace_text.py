"""Render packet traces: a rich tree (shared path once, then each outcome's own steps) and JSON."""

from __future__ import annotations

from rich.console import Console, Group
from rich.text import Text
from rich.tree import Tree

from kubectl_proxydoctor.clip import clip
from kubectl_proxydoctor.model import Packet, TraceOutcome, TraceResult, TraceStep

_STYLE = {"dnat": "green", "accept": "yellow", "no-match": "yellow", "reject": "red", "drop": "red"}
_MEANING = {
    "dnat": "DNAT",
    "reject": "REJECT (the client gets 'connection refused')",
    "drop": "DROP (the client times out)",
    "accept": "ACCEPT without DNAT (delivered to the original address)",
    "no-match": "no service rule matched (not DNATed)",
}


def outcome_label(outcome: TraceOutcome) -> Text:
    """One line: probability, verdict, destination, masquerade, service."""
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
    return text


def _step(step: TraceStep) -> Text:
    text = Text()
    text.append(step.chain, style="bold blue")
    text.append("  ")
    text.append(clip(step.rule), style="")  # a rule can carry a megabyte comment
    if step.why:
        text.append(f"\n  matched: {clip(step.why)}", style="dim")
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


def trace_tree(result: TraceResult) -> Tree:
    """One mode/source's trace: the steps all outcomes share, then each outcome with its own steps."""
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
    for outcome in result.outcomes:
        branch = tree.add(outcome_label(outcome))
        for step in outcome.path[shared:]:
            branch.add(_step(step))
    for note in result.notes:
        tree.add(Text(f"note: {note}", style="dim italic"))
    return tree


def render_traces(packet: Packet, results: list[TraceResult], console: Console) -> None:
    """Every mode's trace of one packet, with a one-line summary first."""
    if not results:
        console.print(Text(f"{packet}: no kube-proxy rules (iptables, nftables or IPVS) found on this node",
                           style="yellow"))
        return
    parts = []
    for result in results:
        parts.append(trace_tree(result))
    console.print(Group(*parts))


def outcome_json(outcome: TraceOutcome) -> dict:
    return {
        "verdict": outcome.verdict,
        "destination": str(outcome.destination) if outcome.destination is not None else None,
        "probability": round(outcome.probability, 9),
        "masquerade": outcome.masquerade,
        "service": None if outcome.service is None else {
            "service": outcome.service.service, "port": outcome.service.port,
            "protocol": outcome.service.protocol},
        "path": [{"chain": s.chain, "rule": s.rule, "why": s.why} for s in outcome.path],
    }


def trace_json(packet: Packet, results: list[TraceResult]) -> dict:
    """The stable JSON form of `trace -o json`."""
    return {
        "packet": {"dst": packet.dst, "port": packet.port, "protocol": packet.protocol, "src": packet.src},
        "results": [
            {
                "mode": r.mode,
                "source": r.source,
                "outcomes": [outcome_json(o) for o in r.outcomes],
                "notes": list(r.notes),
            }
            for r in results
        ],
    }
