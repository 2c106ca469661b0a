"""Issue 16 item 10 (TUI): `r` on a capture says it cannot re-collect (not silence), and a bad
trace input clears the previous result and shows the error. Real capture, real tracer."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.widgets import Input, Static, Tree

from kubectl_proxydoctor.cli.tui import build_report
from kubectl_proxydoctor.tui.app import ProxyDoctorApp
from kubectl_proxydoctor.tui.screens.trace import TraceScreen
from tests.test_tui_app import loaded, static_text

FIXTURE = Path(__file__).parent / "fixtures" / "iptables" / "stale-endpoint"
SIZE = (80, 24)


def _app() -> ProxyDoctorApp:
    return ProxyDoctorApp(lambda: build_report(FIXTURE, False), origin=str(FIXTURE))


def test_r_on_a_capture_says_it_cannot_recollect() -> None:
    async def run() -> None:
        app = _app()
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            await pilot.press("r")
            await pilot.pause()
            messages = [n.message for n in app._notifications]
            assert any("is a capture: it cannot be re-collected" in m for m in messages), messages
            assert app.report is not None  # nothing was reloaded

    asyncio.run(run())


def test_bad_trace_input_clears_the_previous_result() -> None:
    async def run() -> None:
        app = _app()
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            await pilot.press("t")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, TraceScreen)
            field = screen.query_one("#trace-input", Input)
            field.value = "10.96.100.10:80"
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            tree = screen.query_one("#trace-tree", Tree)
            assert tree.root.children and "10.96.100.10:80" in str(tree.root.label)
            field.value = "10.96.100.10"  # no port
            await pilot.press("enter")
            await pilot.pause()
            assert not tree.root.children and str(tree.root.label) == "(no trace yet)"
            assert "expected IP:PORT" in static_text(screen.query_one("#trace-message", Static))

    asyncio.run(run())
