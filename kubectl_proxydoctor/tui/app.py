"""ProxyDoctorApp: browse a node's service ports, drift, rules and traces with the keyboard.

Presentation only: a ``load`` callable returns the NodeReport (collection and analysis run in a
Textual thread worker so the screen stays live), and a ``tracer`` traces packets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Input, Static
from textual.worker import Worker, WorkerState

from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.model import Finding, Packet, TraceResult
from kubectl_proxydoctor.report import NodeReport
from kubectl_proxydoctor.tui.packet import packet_text_for
from kubectl_proxydoctor.tui.rows import COLUMNS, ServiceRow, build_rows
from kubectl_proxydoctor.tui.summary import header_text
from kubectl_proxydoctor.tui.widgets.service_table import ServiceTable

if TYPE_CHECKING:
    from kubectl_proxydoctor.snapshot import NodeSnapshot
    from kubectl_proxydoctor.tui.screens.trace import Tracer

Loader = Callable[[], NodeReport]


def default_tracer(snapshot: NodeSnapshot, packet: Packet) -> list[TraceResult]:
    """Every mode's trace of the packet (tracing.trace_modes: a mode that cannot trace becomes a
    note instead of hiding the others)."""
    from kubectl_proxydoctor.tracing import trace_modes

    results: list[TraceResult] = []
    for traced in trace_modes(snapshot, packet):
        results.extend(traced.results)
        if traced.error is not None:
            results.append(TraceResult(packet, traced.mode, "not traced",
                                       notes=[f"{traced.mode} cannot trace: {traced.error}"]))
    return results


class ProxyDoctorApp(App[None]):
    """The kubectl-proxydoctor TUI."""

    CSS_PATH = "proxydoctor.tcss"
    TITLE = "kubectl proxydoctor"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("enter", "details", "Details", show=False),
        Binding("t", "trace", "Trace"),
        Binding("f", "findings", "Findings"),
        Binding("r", "recollect", "Re-collect"),
        Binding("question_mark", "help", "Help"),
        Binding("escape", "back", "Back", show=False),
        Binding("q", "quit", "Quit"),
        *(Binding(str(i + 1), f"sort({i})", f"Sort {c.label.lower()}", show=False)
          for i, c in enumerate(COLUMNS)),
    ]

    def __init__(self, load: Loader, *, live: bool = False, origin: str = "",
                 tracer: Tracer | None = None) -> None:
        super().__init__()
        self.load = load
        self.live = live
        self.origin = origin
        self.tracer = tracer or default_tracer
        self.report: NodeReport | None = None
        self.error: str | None = None
        self.loading = False

    # -- layout -------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("", id="summary")
        yield Input(placeholder="filter: words that must all match", id="filter")
        yield ServiceTable(id="services")
        yield Static("", id="state")
        yield Footer()

    @property
    def table(self) -> ServiceTable:
        return self.query_one("#services", ServiceTable)

    @property
    def filter_input(self) -> Input:
        return self.query_one("#filter", Input)

    def on_mount(self) -> None:
        self.collect()

    # -- loading --------------------------------------------------------------------------------

    def collect(self) -> None:
        """Run the loader (collection + analysis) in a thread worker."""
        self.loading = True
        what = "Collecting the node and analysing" if self.live else f"Reading {self.origin or 'the capture'}"
        self._show_state(Text(f"{what} ...", style="bold"))
        self.run_worker(self._load_rows, thread=True, exclusive=True, group="collect", name="collect",
                        exit_on_error=False)

    def _load_rows(self) -> tuple[NodeReport, list[ServiceRow]]:
        """In the worker thread: the report, and its table rows (10k rows take ~50 ms to build)."""
        report = self.load()
        return report, build_rows(report)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "collect":
            return
        if event.state == WorkerState.SUCCESS:
            self.loading = False
            report, rows = cast(tuple[NodeReport, list[ServiceRow]], event.worker.result)
            self.set_report(report, rows)
        elif event.state == WorkerState.ERROR:
            self.loading = False
            self.show_error(event.worker.error)

    def set_report(self, report: NodeReport, rows: list[ServiceRow] | None = None) -> None:
        """Show a report: header, rows, empty state when it has no service ports."""
        self.report, self.error = report, None
        self.sub_title = report.node or ""
        self.query_one("#summary", Static).update(header_text(report, self.origin))
        table = self.table
        empty = "No service ports on this node."
        if report.notes:
            empty += " " + " ".join(report.notes)
        table.empty_message = empty
        table.set_rows(build_rows(report) if rows is None else rows)
        table.set_query(self.filter_input.value)
        self._update_empty_message()
        self.query_one("#state", Static).display = False
        table.display = True
        table.focus()
        self.refresh_bindings()

    def show_error(self, error: BaseException | None) -> None:
        """The error state: what could not be read, and what the user can do."""
        if isinstance(error, ProxyDoctorError):
            message = str(error)
        else:
            message = f"internal error: {type(error).__name__}: {error}"
        self.error = message
        hint = "press r to try again, q to quit" if self.live else "q to quit"
        text = Text("Could not build the report\n\n", style="bold red")
        text.append(message + "\n\n")
        text.append(hint, style="dim")
        self._show_state(text)
        self.refresh_bindings()

    def _show_state(self, text: Text) -> None:
        state = self.query_one("#state", Static)
        state.update(text)
        state.display = True
        self.table.display = False
        if self.focused is not None and not self.filter_input.display:
            self.set_focus(None)

    # -- actions ------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Grey out keys that cannot work now (re-collect on a capture, the report's keys before there
        is a report) and hide the table's keys off the main screen."""
        if action == "recollect":
            return True if self.live else None
        if action in ("filter", "sort", "details") and len(self.screen_stack) > 1:
            return False
        if action in ("filter", "sort", "details", "trace", "findings") and self.report is None:
            return None
        return True

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.table.set_query(event.value)
            self._update_empty_message()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            if not event.value:
                event.input.display = False
            self.table.focus()

    def _update_empty_message(self) -> None:
        query = self.filter_input.value
        if query and self.report is not None and self.report.services:
            self.table.empty_message = f"No service ports match {query!r} (esc clears the filter)."

    def action_filter(self) -> None:
        if self.report is None:
            return
        self.filter_input.display = True
        self.filter_input.focus()

    async def action_back(self) -> None:
        if len(self.screen_stack) > 1:
            self.pop_screen()
            return
        if self.filter_input.display:
            self.filter_input.value = ""
            self.filter_input.display = False
            self.table.set_query("")
            self.table.focus()
            return
        self.exit()

    def action_sort(self, column: int) -> None:
        if self.report is not None:
            self.table.sort_by(column)

    def action_details(self) -> None:
        self.table.action_select()

    def on_service_table_selected(self, message: ServiceTable.Selected) -> None:
        if self.report is not None:
            from kubectl_proxydoctor.tui.screens.detail import DetailScreen

            self.push_screen(DetailScreen(self.report, message.row))

    def open_trace(self, row: ServiceRow | None = None) -> None:
        if self.report is None:
            return
        from kubectl_proxydoctor.tui.screens.trace import TraceScreen

        initial = packet_text_for(row.status.frontends, row.status.name.protocol) if row else ""
        self.push_screen(TraceScreen(self.report.snapshot, self.tracer, initial, self.report.state))

    def action_trace(self) -> None:
        self.open_trace(self.table.current_row)

    def action_findings(self) -> None:
        if self.report is None:
            return
        from kubectl_proxydoctor.tui.screens.findings import FindingsScreen

        self.push_screen(FindingsScreen(self.report.findings, self.report.notes))

    def open_finding(self, finding: Finding) -> None:
        """The detail pane of the service port a finding names (node-level findings have none)."""
        if self.report is None:
            return
        for row in self.table.model.rows:
            name = row.status.name
            if (finding.service == name.service and finding.port == name.port
                    and finding.protocol in (None, name.protocol)):
                from kubectl_proxydoctor.tui.screens.detail import DetailScreen

                self.push_screen(DetailScreen(self.report, row))
                return
        where = finding.service or "the node"
        self.notify(f"{finding.code} is about {where}, not one service port", severity="information")

    def on_key(self, event: events.Key) -> None:
        """`r` on a capture is greyed out in the footer, yet says why when pressed (not silence)."""
        if event.key == "r" and not self.live and not isinstance(self.focused, Input):
            self.action_recollect()

    def action_recollect(self) -> None:
        if not self.live:
            self.notify(f"{self.origin or 'this'} is a capture: it cannot be re-collected (re-collect "
                        "works on a live node: `tui` on the node, or `tui --node NAME`)", severity="warning")
            return
        if not self.loading:
            self.collect()

    def action_help(self) -> None:
        from kubectl_proxydoctor.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())
