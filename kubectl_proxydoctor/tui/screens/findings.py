"""All findings of the node, grouped by severity."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from kubectl_proxydoctor.model import Finding
from kubectl_proxydoctor.tui.detail import finding_renderable


class FindingsScreen(Screen):
    """Errors, then warnings, then info; each finding with evidence and fix."""

    BINDINGS = [
        Binding("escape,q,f", "app.pop_screen", "Back"),
        Binding("question_mark", "app.help", "Help"),
        Binding("up,k", "scroll(-1)", "Up", show=False),
        Binding("down,j", "scroll(1)", "Down", show=False),
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
                    yield Static(finding_renderable(finding, with_service=True), classes="finding")
            if self.notes:
                yield Static("Notes", classes="section-title")
                yield Static("\n".join(self.notes), classes="section", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#findings-body").focus()

    def action_scroll(self, delta: int) -> None:
        self.query_one("#findings-body", VerticalScroll).scroll_relative(y=delta, animate=False)
