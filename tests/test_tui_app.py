"""Pilot tests of the TUI: navigation, filtering, sorting, details, traces, findings, help,
the empty and error states, re-collect, NO_COLOR and 80x24."""

from __future__ import annotations

import asyncio
import functools
import io

import pytest
from rich.console import Console
from textual.widgets import Input, Static, Tree
from textual.worker import WorkerFailed

from kubectl_proxydoctor.errors import BundleError
from kubectl_proxydoctor.report import NodeReport
from kubectl_proxydoctor.tui.app import ProxyDoctorApp
from kubectl_proxydoctor.tui.screens.detail import DetailScreen
from kubectl_proxydoctor.tui.screens.findings import FindingsScreen
from kubectl_proxydoctor.tui.screens.help import HelpScreen
from kubectl_proxydoctor.tui.screens.trace import TraceScreen
from tests.test_tui_fixture import STALE, WEB, fake_trace, stale_endpoint_report

SIZE = (80, 24)


def sync(fn):
    """Run an async Pilot test with asyncio.run (no async pytest plugin needed)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


def screen_text(app: ProxyDoctorApp) -> str:
    """What the terminal shows, as plain text lines."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


def static_text(widget: Static, width: int = 200) -> str:
    """The plain text of a Static's content (a string or a rich renderable)."""
    content = widget.content
    if isinstance(content, str):
        return content
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(content)
    return console.file.getvalue()


def make_app(load=stale_endpoint_report, **kw) -> ProxyDoctorApp:
    kw.setdefault("origin", "stale-endpoint")
    kw.setdefault("tracer", fake_trace)
    return ProxyDoctorApp(load, **kw)


async def loaded(pilot) -> None:
    try:
        await pilot.app.workers.wait_for_complete()
    except WorkerFailed:  # the app shows the error state; the tests look at that
        pass
    await pilot.pause()


@sync
async def test_main_screen_shows_header_and_every_port() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        text = screen_text(app)
        lines = text.splitlines()
        assert len(lines) == 24 and all(len(line) == 80 for line in lines)
        assert "node pdnode1" in lines[0] and "mode iptables" in lines[0] and "kernel 6.18.44" in lines[0]
        assert "16 ports" in lines[1] and "15 ok" in lines[1] and "1 drift" in lines[1]
        assert "1 error" in lines[1]
        assert lines[2].startswith("NAMESPACE") and "STATUS" in lines[2]
        web = next(line for line in lines if " web " in line)
        assert "10.96.100.10:80" in web and "2/3" in web and web.rstrip().endswith("drift")
        assert len(app.table.model.view) == 16


@sync
async def test_keyboard_navigation_and_details() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        table = app.table
        assert table.cursor == 0
        await pilot.press("down", "j", "j")
        assert table.cursor == 3
        await pilot.press("k")
        assert table.cursor == 2
        await pilot.press("G")
        assert table.current_row.key == "shop/cart:http/TCP"
        await pilot.press("g")
        assert table.cursor == 0
        await pilot.press("pagedown")
        assert table.cursor > 10
        # open the drifted port
        target = next(i for i, idx in enumerate(table.model.view) if table.model.rows[idx].key == WEB.key)
        await pilot.press("home", *["down"] * target, "enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        assert app.screen.row.key == WEB.key
        text = screen_text(app)
        assert "default/web:http TCP  [drift]" in text
        assert "API view" in text and "10.244.0.11:8080" in text
        # scroll to the raw rules: the real KUBE-SVC chain of default/web:http is there
        raw = app.screen.query_one("#raw-rules", Static)
        raw_text = static_text(raw)
        assert "KUBE-SVC-CDGGSHYLG3RE2FKL" in raw_text and STALE in raw_text
        await pilot.press("q")
        assert not isinstance(app.screen, DetailScreen)
        assert app.table.current_row.key == WEB.key


@sync
async def test_detail_pane_sections() -> None:
    app = make_app()
    async with app.run_test(size=(100, 80)) as pilot:
        await loaded(pilot)
        await pilot.press("slash", *"web drift", "enter", "enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        text = screen_text(app)
        for needle in ("Programmed", "iptables-nft (IPv4)", "10.96.100.10:80", "33.3%",
                       "Findings (1)", "stale-endpoint", "fix: kube-proxy is not syncing",
                       "Raw rules", "ready,serving"):
            assert needle in text, needle


@sync
async def test_filter_as_you_type_and_clear() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"web")
        keys = [app.table.model.row(i).key for i in range(len(app.table.model))]
        assert keys == ["default/web:http/TCP", "default/web-affinity:http/TCP", "default/web-local:http/TCP",
                        "default/web-np:http/TCP"]
        await pilot.press("space", *"drift")
        assert [app.table.model.row(0).key] == [WEB.key] and len(app.table.model) == 1
        await pilot.press("backspace", *"x" * 3)
        assert len(app.table.model) == 0
        await pilot.pause()
        assert "No service ports match 'web drifxxx'" in screen_text(app)
        await pilot.press("escape")
        assert len(app.table.model) == 16
        assert not app.filter_input.display and app.focused is app.table
        # the filter matches endpoints and protocols too
        await pilot.press("slash", *"udp", "enter")
        assert [app.table.model.row(i).key for i in range(len(app.table.model))] == ["default/dns:dns/UDP"]
        assert app.focused is app.table


@sync
async def test_sort_by_column_and_reverse() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("7")
        model = app.table.model
        assert model.row(0).key == WEB.key
        await pilot.press("7")
        assert model.row(len(model) - 1).key == WEB.key
        await pilot.press("2")
        names = [model.row(i).cells[1] for i in range(len(model))]
        assert names == sorted(names)
        await pilot.pause()
        assert "NAME^" in screen_text(app).splitlines()[2]


@sync
async def test_mouse_selects_sorts_and_opens() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        table = app.table
        await pilot.click("#services", offset=(2, 4))  # header is line 0: this is the 4th row
        assert table.cursor == 3
        await pilot.click("#services", offset=(2, 4))
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        assert app.screen.row.key == "default/itp-local:http/TCP"
        await pilot.press("escape")
        await pilot.click("#services", offset=(76, 0))  # STATUS header
        assert table.model.sort_column == 6 and table.model.row(0).key == WEB.key


@sync
async def test_trace_view_shows_the_path_as_a_tree() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("slash", *"web drift", "enter", "t")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TraceScreen)
        assert screen.query_one("#trace-input", Input).value == "10.96.100.10:80/tcp"
        await app.workers.wait_for_complete()
        await pilot.pause()
        tree = screen.query_one("#trace-tree", Tree)
        source = tree.root.children[0]
        assert "iptables-nft" in str(source.label)
        outcomes = [str(node.label) for node in source.children]
        assert len(outcomes) == 3 and all(o.startswith("DNAT -> 10.244.0.1") for o in outcomes)
        assert any(STALE in o for o in outcomes)
        assert "KUBE-SERVICES" in str(source.children[0].children[0].label)
        # a new destination, then a bad one
        field = screen.query_one("#trace-input", Input)
        field.value = "10.96.100.99:80"
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert str(tree.root.children[0].children[0].label).startswith("NO-MATCH")
        field.value = "10.96.100.99"
        await pilot.press("enter")
        await pilot.pause()
        message = static_text(screen.query_one("#trace-message", Static))
        assert "expected IP:PORT" in message
        await pilot.press("q")  # typed into the field, which has the focus
        assert field.value.endswith("q") and isinstance(app.screen, TraceScreen)
        tree.focus()
        await pilot.press("q")
        assert not isinstance(app.screen, TraceScreen) and app.is_running


@sync
async def test_trace_errors_are_shown_not_raised() -> None:
    def broken(snapshot, packet):
        raise BundleError("iptables-save.txt: cannot be read")

    def buggy(snapshot, packet):
        raise RuntimeError("tracer bug")

    for tracer, message in ((broken, "cannot be read"), (buggy, "internal error: RuntimeError: tracer bug")):
        app = make_app(tracer=tracer)
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            await pilot.press("t")
            screen = app.screen
            screen.query_one("#trace-input", Input).value = "10.96.100.10:80"
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert message in static_text(screen.query_one("#trace-message", Static))
            assert app.is_running


@sync
async def test_findings_grouped_by_severity() -> None:
    app = make_app()
    async with app.run_test(size=(100, 60)) as pilot:
        await loaded(pilot)
        await pilot.press("f")
        await pilot.pause()
        assert isinstance(app.screen, FindingsScreen)
        text = screen_text(app)
        positions = [text.index(group) for group in ("ERROR (1)", "WARNING (1)", "INFO (1)")]
        assert positions == sorted(positions)
        assert "stale-endpoint  default/web:http" in text
        # walk the findings with the keyboard; enter opens the service port of the first one
        assert app.focused.finding.code == "stale-endpoint"
        await pilot.press("down")
        assert app.focused.finding.code == "kube-proxy-not-running"
        await pilot.press("enter")  # a node-level finding: nothing to open, a notice says why
        await pilot.pause()
        assert isinstance(app.screen, FindingsScreen)
        assert any("not one service port" in n.message for n in app._notifications)
        await pilot.press("k", "enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen) and app.screen.row.key == WEB.key
        await pilot.press("escape")
        assert isinstance(app.screen, FindingsScreen)
        await pilot.press("f")
        assert not isinstance(app.screen, FindingsScreen)


@sync
async def test_help_overlay() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for key in ("/", "enter", "t", "f", "r", "?", "q / esc"):
            assert f"│ {key} " in text, key
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        assert app.is_running


@sync
async def test_empty_state() -> None:
    app = make_app(lambda: NodeReport(node="n1", mode="unknown", notes=["no kube-proxy rules found"]))
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        text = screen_text(app)
        assert "0 ports" in text
        assert "No service ports on this node. no kube-proxy rules found" in text
        await pilot.press("enter", "t", "down")  # nothing to open; trace opens with an empty field
        await pilot.pause()
        assert isinstance(app.screen, TraceScreen)
        assert app.screen.query_one("#trace-input", Input).value == ""


@sync
async def test_error_state_for_an_unreadable_capture() -> None:
    calls = []

    def load():
        calls.append(1)
        raise BundleError("/tmp/x.tar.gz: corrupt or truncated bundle")

    app = make_app(load)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        text = screen_text(app)
        assert "Could not build the report" in text and "corrupt or truncated bundle" in text
        assert not app.table.display
        assert app.check_action("recollect", ()) is None  # a capture cannot be re-collected
        assert app.check_action("findings", ()) is None
        await pilot.press("r", "slash", "f", "t", "enter")  # greyed out: nothing happens, no crash
        await loaded(pilot)
        assert app.is_running and app.report is None and len(calls) == 1
        assert len(app.screen_stack) == 1


@sync
async def test_internal_errors_do_not_escape() -> None:
    app = make_app(lambda: {}["boom"])
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert "internal error: KeyError" in screen_text(app)


@sync
async def test_recollect_when_live() -> None:
    calls = []

    def load():
        calls.append(1)
        if len(calls) == 1:
            raise BundleError("iptables-save: permission denied")
        return stale_endpoint_report()

    app = make_app(load, live=True)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert "press r to try again" in screen_text(app)
        await pilot.press("r")
        await loaded(pilot)
        assert len(calls) == 2 and app.report is not None
        assert app.table.display and len(app.table.model) == 16
        await pilot.press("slash", *"web", "enter", "r")
        await loaded(pilot)
        assert len(calls) == 3
        assert len(app.table.model) == 4  # the filter survives a re-collect


@sync
async def test_quit_keys() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("escape")
        await pilot.pause()
        assert not app.is_running


@sync
async def test_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    def colours(app: ProxyDoctorApp) -> set[tuple[int, int, int]]:
        found = set()
        for strip in app.screen._compositor.render_strips():
            for segment in strip:
                style = segment.style
                for colour in (style.color, style.bgcolor) if style else ():
                    if colour is not None and colour.triplet is not None:
                        found.add(tuple(colour.triplet))
        return found

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert any(len(set(c)) > 1 for c in colours(app))  # in colour: some hues
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert app.no_color
        assert all(len(set(c)) == 1 for c in colours(app))  # greys only
        text = screen_text(app)
        assert "drift" in text and "findings 1 error" in text  # the words carry the meaning
        await pilot.press("f")
        await pilot.pause()
        assert all(len(set(c)) == 1 for c in colours(app))


@sync
async def test_narrow_terminal_keeps_status_visible() -> None:
    for size in ((60, 20), (40, 16)):
        app = make_app()
        async with app.run_test(size=size) as pilot:
            await loaded(pilot)
            lines = screen_text(app).splitlines()
            web = next(line for line in lines if " web " in line)
            assert "drift" in web, (size, web)
            assert ("FRONTEN" in lines[2]) == (size[0] >= 60)  # hidden when too narrow
