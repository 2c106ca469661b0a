"""The detail pane for one service port: API view, programmed view, findings, raw rules."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from kubectl_proxydoctor.report import NodeReport
from kubectl_proxydoctor.tui import detail
from kubectl_proxydoctor.tui.rows import ServiceRow


class DetailScreen(Screen):
    """Everything known about the selected service port, in one scrollable pane."""

    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back"),
        Binding("t", "trace", "Trace"),
        Binding("question_mark", "app.help", "Help"),
        Binding("up,k", "scroll(-1)", "Up", show=False),
        Binding("down,j", "scroll(1)", "Down", show=False),
    ]

    def __init__(self, report: NodeReport, row: ServiceRow) -> None:
        super().__init__()
        self.report = report
        self.row = row

    def compose(self) -> ComposeResult:
        status = self.row.status
        with VerticalScroll(id="detail-body"):
            yield Static(f"{status.name} {status.name.protocol}  [{status.status}]", id="detail-title",
                         markup=False)
            yield Static("API view", classes="section-title")
            yield Static(detail.api_view(self.report, status), classes="section")
            yield Static("Programmed", classes="section-title")
            yield Static(detail.programmed_view(self.report, status), classes="section")
            yield Static(f"Findings ({len(self.row.findings)})", classes="section-title")
            yield Static(detail.findings_view(self.row.findings), classes="section")
            yield Static("Raw rules", classes="section-title")
            yield Static(detail.raw_rules(self.report, status), classes="section", id="raw-rules")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#detail-body").focus()

    def action_scroll(self, delta: int) -> None:
        body = self.query_one("#detail-body", VerticalScroll)
        body.scroll_relative(y=delta, animate=False)

    def action_trace(self) -> None:
        self.app.open_trace(self.row)  # type: ignore[attr-defined]
