"""SVG snapshots of the main TUI screens at 80x24 (pytest-textual-snapshot).

Fixed fixture: tests/fixtures/iptables/stale-endpoint through the `tui` command's own loader (capture
-> analysis.analyse) and the real tracer (modes.trace_all), so the screens show what a user sees.
Update after an intended change (here or in the analysis' wording) with:
    pytest tests/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest
from textual.worker import WorkerFailed

from kubectl_proxydoctor.cli.tui import build_report
from kubectl_proxydoctor.errors import BundleError
from kubectl_proxydoctor.report import NodeReport
from kubectl_proxydoctor.tui.app import ProxyDoctorApp
from tests.test_tui_fixture import FIXTURE

SIZE = (80, 24)
WEB_DETAIL = ["slash", *"web drift", "enter"]


def stale_endpoint() -> NodeReport:
    return build_report(FIXTURE, False)


def app_for(load=stale_endpoint) -> ProxyDoctorApp:
    return ProxyDoctorApp(load, origin="stale-endpoint")


async def ready(pilot) -> None:
    try:
        await pilot.app.workers.wait_for_complete()
    except WorkerFailed:  # the app shows the error state; the tests look at that
        pass
    await pilot.pause()


@pytest.mark.parametrize(
    ("name", "press"),
    [
        ("main", []),
        ("sorted-by-status", ["7"]),
        ("filtered", ["slash", *"web"]),
        ("no-match", ["slash", *"nothing-like-this"]),
        ("detail", [*WEB_DETAIL, "enter"]),
        ("detail-scrolled", [*WEB_DETAIL, "enter", "end"]),
        ("findings", ["f"]),
        ("trace", [*WEB_DETAIL, "t", "_", "_"]),
        ("help", ["question_mark"]),
    ],
)
def test_screens(snap_compare, name: str, press: list[str]) -> None:
    assert snap_compare(app_for(), press=press, terminal_size=SIZE, run_before=ready)


def test_no_color(snap_compare, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(app_for(), press=["7"], terminal_size=SIZE, run_before=ready)


def test_error_state(snap_compare) -> None:
    def load() -> NodeReport:
        raise BundleError("capture.tar.gz: corrupt or truncated bundle (unexpected end of data)")

    assert snap_compare(app_for(load), terminal_size=SIZE, run_before=ready)


def test_empty_state(snap_compare) -> None:
    empty = NodeReport(node="worker-3", mode="unknown", notes=["no kube-proxy rules on this node"])
    assert snap_compare(app_for(lambda: empty), terminal_size=SIZE, run_before=ready)
