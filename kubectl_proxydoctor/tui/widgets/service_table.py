"""A virtualised services table: only the visible lines are ever rendered (Textual's line API).

Textual's DataTable re-adds every row on a new filter (about 1.5 s for 10k rows here); this widget
keeps all rows in a TableModel and filtering only swaps the list of visible indices.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from kubectl_proxydoctor.tui.rows import COLUMNS, ServiceRow, TableModel, column_widths, fit

ROW_STYLES = {
    "error": Style(color="red", bold=True),
    "warning": Style(color="yellow"),
    "info": Style(color="cyan"),
    None: Style(color="green"),
}


class ServiceTable(ScrollView, can_focus=True):
    """Service ports with a sticky header line, a cursor, filter and sort."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "Top", show=False),
        Binding("end,G", "jump(-1)", "Bottom", show=False),
        Binding("enter", "select", "Details", show=False),
    ]
    COMPONENT_CLASSES = {"service-table--header", "service-table--cursor", "service-table--empty"}
    DEFAULT_CSS = """
    ServiceTable { height: 1fr; overflow-x: hidden; }
    ServiceTable > .service-table--header { text-style: bold; background: $panel; }
    ServiceTable > .service-table--cursor { text-style: reverse bold; }
    ServiceTable > .service-table--empty { color: $text-muted; }
    """

    class Selected(Message):
        """The user opened a row (enter, or a click on the highlighted row)."""

        def __init__(self, row: ServiceRow) -> None:
            super().__init__()
            self.row = row

    class Sorted(Message):
        """The sort column or direction changed."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = TableModel()
        self.cursor = 0
        self.empty_message = "No service ports."
        self._widths: list[int] = []
        self._widths_for = -1

    # -- data ------------------------------------------------------------------------------------

    def set_rows(self, rows: list[ServiceRow]) -> None:
        self.model.set_rows(rows)
        self._widths_for = -1
        self._after_view_change()

    def set_query(self, query: str) -> None:
        self.model.set_query(query)
        self._after_view_change()

    def sort_by(self, column: int) -> None:
        current = self.current_row
        self.model.sort_by(column)
        if current is not None:
            key = current.key
            for i, index in enumerate(self.model.view):
                if self.model.rows[index].key == key:
                    self.cursor = i
                    break
        self._after_view_change()
        self.post_message(self.Sorted())

    @property
    def current_row(self) -> ServiceRow | None:
        if not self.model.view:
            return None
        return self.model.row(min(self.cursor, len(self.model.view) - 1))

    def _after_view_change(self) -> None:
        count = len(self.model.view)
        self.cursor = max(0, min(self.cursor, count - 1))
        self.virtual_size = Size(self.size.width, count + 1)
        self._scroll_cursor_into_view()
        self.refresh()

    # -- layout and rendering ----------------------------------------------------------------------

    def _column_widths(self, width: int) -> list[int]:
        if width != self._widths_for:
            self._widths = column_widths(self.model.rows, width)
            self._widths_for = width
        return self._widths

    def _line_text(self, cells: tuple[str, ...], widths: list[int]) -> str:
        return " ".join(fit(cell, w) for cell, w in zip(cells, widths, strict=True) if w)

    def _header_cells(self) -> tuple[str, ...]:
        labels = []
        for i, column in enumerate(COLUMNS):
            mark = ""
            if self.model.sort_column == i:
                mark = "v" if self.model.reverse else "^"
            labels.append(column.label + mark)
        return tuple(labels)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        widths = self._column_widths(width)
        base = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("service-table--header")
            text = self._line_text(self._header_cells(), widths)
            return Strip([Segment(text, style)]).adjust_cell_length(width, style)
        scroll_y = round(self.scroll_offset.y)
        index = scroll_y + y - 1
        view = self.model.view
        if not view:
            if y == 2:
                style = base + self.get_component_rich_style("service-table--empty")
                return Strip([Segment("  " + self.empty_message, style)]).adjust_cell_length(width, base)
            return Strip.blank(width, base)
        if index >= len(view):
            return Strip.blank(width, base)
        row = self.model.rows[view[index]]
        text = self._line_text(row.cells, widths)
        status_start = len(text) - widths[-1]
        row_style = base
        status_style = base + ROW_STYLES.get(row.severity, Style())
        if index == self.cursor:
            cursor = self.get_component_rich_style("service-table--cursor")
            row_style += cursor
            status_style += cursor
        segments = [Segment(text[:status_start], row_style), Segment(text[status_start:], status_style)]
        return Strip(segments).adjust_cell_length(width, row_style)

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, len(self.model.view) + 1)
        self._scroll_cursor_into_view()

    # -- cursor ------------------------------------------------------------------------------------

    def _scroll_cursor_into_view(self) -> None:
        height = self.scrollable_content_region.height
        if height <= 1:
            return
        top = round(self.scroll_offset.y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor > top + height - 2:
            self.scroll_to(y=self.cursor - height + 2, animate=False)

    def move_cursor(self, index: int) -> None:
        count = len(self.model.view)
        if not count:
            return
        old = self.cursor
        self.cursor = max(0, min(index, count - 1))
        self._scroll_cursor_into_view()
        if old != self.cursor:
            self.refresh()

    def action_cursor(self, delta: int) -> None:
        self.move_cursor(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor + direction * max(1, self.scrollable_content_region.height - 1))

    def action_jump(self, where: int) -> None:
        self.move_cursor(where if where >= 0 else len(self.model.view) - 1)

    def action_select(self) -> None:
        row = self.current_row
        if row is not None:
            self.post_message(self.Selected(row))

    def on_click(self, event: events.Click) -> None:
        region: Region = self.scrollable_content_region
        y = event.y - (region.y - self.region.y)
        if y == 0:
            widths = self._column_widths(region.width)
            x, start = event.x, 0
            for i, w in enumerate(widths):
                if not w:
                    continue  # a column hidden on a narrow terminal
                if start <= x < start + w + 1:
                    self.sort_by(i)
                    return
                start += w + 1
            return
        index = round(self.scroll_offset.y) + y - 1
        if 0 <= index < len(self.model.view):
            if index == self.cursor:
                self.action_select()
            else:
                self.move_cursor(index)
