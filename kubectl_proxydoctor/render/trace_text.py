"""Render packet traces: a rich tree (shared path once, then each outcome's own steps) and JSON."""

from __future__ import annotations

from rich.console import Console, Group
from rich.text import Text
from rich.tree import Tree

from kubectl_proxydoctor.backend_order import backend_order
from kubectl_proxydoctor.clip import clip
from kubectl_proxydoctor.fate import Fate, trace_fate
from kubectl_proxydoctor.model import Packet, TraceOutcome, TraceResult, TraceStep
from kubectl_proxydoctor.node_facts import NodeFacts

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
    if "passes" in fate.kinds:
        return Text(fate.line, style="dim")
    if set(fate.kinds) & {"reject", "drop", "routed"} or any(
            m.startswith("stale") for f in fate.outcomes for m in f.marks):
        style = "bold red"
    elif set(fate.kinds) & {"node"}:
        style = "bold yellow"
    return Text(fate.line, style=style)


def _step(step: TraceStep, one_line: bool = False) -> Text:
    text = Text(no_wrap=one_line, overflow="ellipsis")
    text.append(step.chain, style="bold blue")
    text.append("  ")
    text.append(clip(step.rule), style="")  # a rule can carry a megabyte comment
    if step.why:
        why = clip(step.why)
        text.append(f"  # {why}" if one_line else f"\n  matched: {why}", style="dim")
    return text


def _same(a: TraceStep, b: TraceStep) -> bool:
    return a.chain == b.chain and a.rule == b.rule


def _common_prefix(paths: list[list[TraceStep]]) -> int:
    if not paths:
        return 0
    n = min(len(p) for p in paths)
    for i in range(n):
        first = paths[0][i]
        if any(not _same(p[i], first) for p in paths[1:]):
            return i
    return n


def _common_suffix(paths: list[list[TraceStep]], prefix: int) -> int:
    """Steps every path ends with (after its own part), not overlapping the shared prefix."""
    if len(paths) < 2:
        return 0
    n = min(len(p) for p in paths) - prefix
    for i in range(1, n + 1):
        last = paths[0][-i]
        if any(not _same(p[-i], last) for p in paths[1:]):
            return i - 1
    return max(n, 0)


def trace_tree(result: TraceResult, facts: NodeFacts | None = None, *, limit: int | None = None,
               one_line: bool = False, title: Text | None = None,
               seen: dict[tuple, str] | None = None, label: str = "",
               others: list[TraceResult] | None = None) -> Tree:
    """One mode/source's trace: the steps all outcomes share, each outcome with its own steps, the
    steps they all end with, and last the packet's fate in one line.

    ``limit`` lists at most that many outcomes (the fate line still counts every one); ``seen``
    maps shared paths already printed (by another trace) to their label, which is named instead;
    ``one_line`` prints each rule on one cropped line.
    """
    fate = trace_fate(result, facts if facts is not None else NodeFacts(), others)
    if title is None:
        title = Text()
        title.append(str(result.packet), style="bold")
        title.append(f"  through {result.mode} ({result.source})", style="dim")
    tree = Tree(title)
    if not result.outcomes:
        tree.add(Text("no outcome: these rules do not handle this packet", style="yellow"))
    paths = [o.path for o in result.outcomes]
    shared = _common_prefix(paths) if len(paths) > 1 else 0
    tail = _common_suffix(paths, shared)
    if len(paths) == 1 and seen is not None:
        shared = len(paths[0])  # one outcome: its whole path is "shared"
    _shared_node(tree, "path shared by every outcome", paths[0][:shared] if shared else [], seen, label,
                 one_line)
    shown = result.outcomes if limit is None else result.outcomes[:limit]
    steps_each = limit is None or len(result.outcomes) <= limit
    for outcome, part in zip(shown, fate.outcomes, strict=False):
        branch = tree.add(outcome_label(outcome, part.marks))
        if steps_each:
            for step in outcome.path[shared:len(outcome.path) - tail]:
                branch.add(_step(step, one_line))
    hidden = len(result.outcomes) - len(shown)
    if hidden:
        share = sum(o.probability for o in result.outcomes[len(shown):])
        tree.add(Text(f"... {hidden} more outcomes ({share:.1%} together; --all lists every one, with "
                      "its own rules)", style="dim"))
    if tail:
        _shared_node(tree, "then, for every outcome", paths[0][-tail:], seen, label, one_line)
    for note in result.notes:
        tree.add(Text(f"note: {note}", style="dim italic", no_wrap=one_line, overflow="ellipsis"))
    tree.add(fate_text(fate))
    return tree


def _shared_node(tree: Tree, what: str, steps: list[TraceStep], seen: dict[tuple, str] | None,
                 label: str, one_line: bool) -> None:
    if not steps:
        return
    key = (what, tuple((s.chain, s.rule) for s in steps))
    if seen is not None and key in seen:
        tree.add(Text(f"{what}: the same {len(steps)} rules as {seen[key]}", style="dim"))
        return
    if seen is not None:
        seen[key] = label
    node = tree.add(Text(f"{what} ({len(steps)} rules)", style="bold"))
    for step in steps:
        node.add(_step(step, one_line))


def render_traces(packet: Packet, results: list[TraceResult], console: Console,
                  facts: NodeFacts | None = None, unknown: list[str] | None = None) -> None:
    """Every mode's trace of one packet, each ending with the packet's fate. ``unknown``: the modes
    whose rules could not be read or were not captured (never shown as "no rules")."""
    unknown = unknown or []
    if not results and unknown:
        console.print(Text(f"{packet}: kube-proxy's rules on this node are unknown, nothing traced",
                           style="yellow"))
    elif not results:
        console.print(Text(f"{packet}: no kube-proxy rules (iptables, nftables or IPVS) found on this node",
                           style="yellow"))
    for line in unknown:
        console.print(Text(f"  {line}", style="yellow"))
    if not results:
        return
    parts: list = []
    for result in results:
        parts.append(trace_tree(result, facts, others=results))
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


def trace_json(packet: Packet, results: list[TraceResult], facts: NodeFacts | None = None,
               unknown: list[str] | None = None) -> dict:
    """The stable JSON form of `trace -o json` (``unknown``: rules not read, as in render_traces)."""
    facts = facts if facts is not None else NodeFacts()
    fates = [trace_fate(r, facts, results) for r in results]
    order = backend_order(results, facts)
    return {
        "unknown": list(unknown or []),
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
