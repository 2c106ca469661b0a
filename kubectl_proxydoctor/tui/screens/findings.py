"""All findings of the node, grouped by severity; enter (or a click) opens a finding's service port."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from kubectl_proxydoctor.model import Finding
from kubectl_proxydoctor.tui.detail import finding_renderable


class FindingItem(Static, can_focus=True):
    """One finding; focusable so the keyboard can walk the list and open its service port."""

    BINDINGS = [Binding("enter", "open", "Open port")]

    class Opened(Message):
        def __init__(self, finding: Finding) -> None:
            super().__init__()
            self.finding = finding

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding_renderable(finding, with_service=True), classes="finding")
        self.finding = finding

    def action_open(self) -> None:
        self.post_message(self.Opened(self.finding))

    def on_click(self) -> None:
        if self.has_focus:
            self.action_open()
        else:
            self.focus()


class FindingsScreen(Screen):
    """Errors, then warnings, then info; each finding with evidence and fix."""

    BINDINGS = [
        Binding("escape,q,f", "app.pop_screen", "Back"),
        Binding("question_mark", "app.help", "Help"),
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
    ]

    def __init__(self, findings: list[Finding], notes: list[str] | None = None) -> None:
        super().__init__()
        self.findings = findings
        self.notes = notes or []

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="findings-body"):
            yield Static(f"Findings ({len(self.findings)})", id="findings-title")
            if not self.findings:
                yield Static("No findings: kube-proxy programmed what the API asks for.", classes="section")
            for severity in ("error", "warning", "info"):
                group = [f for f in self.findings if f.severity == severity]
                if not group:
                    continue
                yield Static(f"{severity.upper()} ({len(group)})", classes=f"section-title sev-{severity}")
                for finding in group:
                    yield FindingItem(finding)
            if self.notes:
                yield Static("Notes", classes="section-title")
                yield Static("\n".join(self.notes), classes="section", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        items = self.query(FindingItem)
        if items:
            items.first().focus(scroll_visible=False)
        else:
            self.query_one("#findings-body").focus()

    def action_move(self, delta: int) -> None:
        if not self.query(FindingItem):
            self.query_one("#findings-body", VerticalScroll).scroll_relative(y=delta, animate=False)
        elif delta > 0:
            self.focus_next(FindingItem)
        else:
            self.focus_previous(FindingItem)

    def on_finding_item_opened(self, message: FindingItem.Opened) -> None:
        self.app.open_finding(message.finding)  # type: ignore[attr-defined]
