"""The help overlay: every key the TUI answers to."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: tuple[tuple[str, str], ...] = (
    ("/", "filter services (all words must match; esc clears)"),
    ("enter", "details of the selected service port"),
    ("t", "trace a packet (destination IP:PORT/proto)"),
    ("f", "findings by severity (enter opens the port of one)"),
    ("r", "re-collect the node (live only)"),
    ("1-7", "sort by column (again: reverse)"),
    ("j k g G", "down, up, top, bottom (arrows, pgup/pgdn work)"),
    ("?", "this help"),
    ("q / esc", "back; quit on the main screen"),
)


class HelpScreen(ModalScreen[None]):
    """A modal list of keys; any of esc, q or ? closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, what in KEYS:
            table.add_row(key, what)
        with Vertical(id="help-box"):
            yield Static("Keys", id="help-title")
            yield Static(table)
            yield Static("Mouse: click a row to select it, again to open it; click a header to sort.",
                         id="help-mouse")
