"""The trace view: type a destination, see the packet's path through each mode's rules as a tree."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static, Tree
from textual.widgets.tree import TreeNode
from textual.worker import get_current_worker

from kubectl_proxydoctor.clip import clip
from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.fate import trace_fate
from kubectl_proxydoctor.model import Packet, TraceOutcome, TraceResult
from kubectl_proxydoctor.node_facts import NodeFacts, node_facts, resolve_source
from kubectl_proxydoctor.render.trace_text import fate_text
from kubectl_proxydoctor.tui.packet import parse_packet

if TYPE_CHECKING:
    from kubectl_proxydoctor.snapshot import NodeSnapshot

Tracer = Callable[["NodeSnapshot", Packet], list[TraceResult]]

VERDICT_STYLE = {"dnat": "green", "accept": "yellow", "reject": "red", "drop": "red", "no-match": "yellow"}


def outcome_label(outcome: TraceOutcome) -> Text:
    text = Text()
    text.append(outcome.verdict.upper(), style=f"bold {VERDICT_STYLE.get(outcome.verdict, '')}")
    if outcome.destination is not None:
        text.append(f" -> {outcome.destination}")
    if outcome.probability < 1:
        text.append(f"  {outcome.probability * 100:.1f}%", style="magenta")
    if outcome.masquerade:
        text.append("  masquerade", style="dim")
    if outcome.service is not None:
        text.append(f"  {outcome.service}", style="cyan")
    return text


def fill_tree(root: TreeNode, results: list[TraceResult], facts: NodeFacts | None = None,
              unknown: list[str] | None = None) -> None:
    """One branch per mode source, its fate line first, one per outcome, the rules as leaves;
    ``unknown``: rules not read or not captured (never shown as "no rules")."""
    for line in unknown or []:
        root.add_leaf(Text(f"unknown: {line}", style="bold yellow"))
    if not results and not unknown:
        root.add_leaf(Text("no proxy rules in this snapshot to trace through", style="yellow"))
    for result in results:
        fate = trace_fate(result, facts if facts is not None else NodeFacts(), results)
        title = Text(f"{result.mode} · {result.source}", style="bold")
        if result.outcomes:
            title.append("  ")
            title.append_text(fate_text(fate))
        branch = root.add(title, expand=True)
        if not result.outcomes and not result.notes:
            branch.add_leaf(Text("no rule matches: the packet is not proxied", style="yellow"))
        for outcome, part in zip(result.outcomes, fate.outcomes, strict=True):
            label = outcome_label(outcome)
            for mark in part.marks:
                label.append(f"  [{mark}]", style="bold red" if mark.startswith("stale") else "yellow")
            node = branch.add(label, expand=True)
            for step in outcome.path:
                label = Text(step.chain, style="bold cyan")
                label.append(f"  {clip(step.rule)}")
                if step.why:
                    label.append(f"  ({clip(step.why)})", style="dim")
                node.add_leaf(label)
        for note in result.notes:
            branch.add_leaf(Text(f"note: {note}", style="dim"))


class TraceScreen(Screen):
    """Trace a packet through the snapshot's rules (every mode found)."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q", "app.pop_screen", "Back", show=False),  # typed into the field when it has focus
        Binding("question_mark", "app.help", "Help", show=False),
    ]

    def __init__(self, snapshot: NodeSnapshot | None, tracer: Tracer, initial: str = "",
                 state: object = None) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.state = state  # the report's NodeState: its mode decision and node facts
        self.tracer = tracer
        self.initial = initial

    def compose(self) -> ComposeResult:
        yield Static("Trace: IP:PORT[/tcp|udp|sctp] [from SRC-IP|node|POD], enter to run", id="trace-help",
                     markup=False)
        yield Input(value=self.initial, placeholder="10.96.0.10:53/udp", id="trace-input")
        yield Static("", id="trace-message")
        tree: Tree[None] = Tree("(no trace yet)", id="trace-tree")
        tree.show_root = True
        yield tree
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#trace-input", Input).focus()
        if self.initial:
            self.run_trace(self.initial)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.run_trace(event.value)

    def show_message(self, message: str, style: str = "") -> None:
        self.query_one("#trace-message", Static).update(Text(message, style=style))

    def run_trace(self, text: str) -> None:
        try:
            facts = self._facts()
            packet = parse_packet(text, None if facts is None else
                                  (lambda name, family: resolve_source(name, facts, family)))
        except ProxyDoctorError as e:
            self.clear_tree()  # the previous packet's result must not stand for this input
            self.show_message(str(e), "red")
            return
        if self.snapshot is None:
            self.clear_tree()
            self.show_message("no node snapshot to trace through", "red")
            return
        self.show_message(f"tracing {packet} ...", "dim")
        self._trace(packet)

    @work(thread=True, exclusive=True, group="trace")
    def _trace(self, packet: Packet) -> None:
        snapshot = self.snapshot
        assert snapshot is not None  # checked before the worker starts
        try:
            results = self.tracer(snapshot, packet)
            error = None
        except ProxyDoctorError as e:
            results, error = [], str(e)
        except ModuleNotFoundError as e:
            results, error = [], f"tracing is not available: {e}"
        except Exception as e:  # a bug in a tracer must not take the whole TUI down
            results, error = [], f"internal error: {type(e).__name__}: {e}"
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self.show_results, packet, results, error)

    def _facts(self) -> NodeFacts | None:
        from kubectl_proxydoctor.snapshot import NodeSnapshot

        facts = getattr(self.state, "facts", None)
        if facts is not None:
            return facts
        return node_facts(self.snapshot) if isinstance(self.snapshot, NodeSnapshot) else None

    def _unknown(self, traced: set[str]) -> list[str]:
        from kubectl_proxydoctor.modes import MODES
        from kubectl_proxydoctor.snapshot import NodeSnapshot
        from kubectl_proxydoctor.tracing import trace_unknown_lines

        if not isinstance(self.snapshot, NodeSnapshot):
            return []
        return trace_unknown_lines(self.snapshot, tuple(MODES), traced, getattr(self.state, "mode", None))

    def clear_tree(self) -> None:
        self.workers.cancel_group(self, "trace")  # a trace still running is for an earlier input
        tree = self.query_one("#trace-tree", Tree)
        tree.clear()
        tree.root.set_label("(no trace yet)")

    def show_results(self, packet: Packet, results: list[TraceResult], error: str | None) -> None:
        tree = self.query_one("#trace-tree", Tree)
        tree.clear()
        tree.root.set_label(Text(str(packet), style="bold"))
        if error:
            self.show_message(error, "red")
            return
        outcomes = sum(len(r.outcomes) for r in results)
        self.show_message(f"{len(results)} rule source(s), {outcomes} outcome(s)")
        fill_tree(tree.root, results, self._facts(), self._unknown({r.mode for r in results}))
        tree.root.expand_all()
