"""The TUI on real analysis: the `tui` command's loader (capture -> analyse) and the real iptables
trace on tests/fixtures/iptables/stale-endpoint, plus the command line itself."""

from __future__ import annotations

import importlib.util
import io
import json

import pytest
from rich.console import Console
from textual.widgets import Input, Tree

from kubectl_proxydoctor.cli.tui import build_report
from kubectl_proxydoctor.snapshot import NodeSnapshot
from kubectl_proxydoctor.tui.app import ProxyDoctorApp
from kubectl_proxydoctor.tui.rows import build_rows
from kubectl_proxydoctor.tui.screens.detail import DetailScreen
from kubectl_proxydoctor.tui.screens.trace import TraceScreen
from tests.test_tui_app import SIZE, loaded, screen_text, static_text, sync
from tests.test_tui_fixture import FIXTURE, STALE, WEB

needs_analysis = pytest.mark.skipif(
    importlib.util.find_spec("kubectl_proxydoctor.analysis") is None
    or importlib.util.find_spec("kubectl_proxydoctor.modes.iptables") is None,
    reason="analysis / iptables mode not in this tree yet",
)


def test_a_capture_without_api_json_gives_node_only_checks(tmp_path) -> None:
    snapshot = NodeSnapshot.load(FIXTURE)
    files = dict(snapshot.files)
    del files["api.json"]
    NodeSnapshot.from_files(files, origin="test").save(tmp_path / "capture")
    report = build_report(tmp_path / "capture", False)
    assert report.cluster is None
    assert any("api.json" in note for note in report.notes)
    assert not any(f.code == "stale-endpoint" for f in report.findings)


@needs_analysis
def test_rows_follow_the_analysis_of_the_capture() -> None:
    report = build_report(FIXTURE, False)
    expected = json.loads((FIXTURE / "expected.json").read_text())["statuses"]
    rows = {r.key: r for r in build_rows(report)}
    assert rows[WEB.key].cells[-1] == "drift" and rows[WEB.key].severity == "error"
    assert any(f.code == "stale-endpoint" for f in rows[WEB.key].findings)
    assert set(rows) == {s.name.key for s in report.services} >= set(expected)
    for key, status in expected.items():
        if status == "drift":
            assert rows[key].cells[-1] == "drift" and rows[key].severity == "error"


@needs_analysis
@sync
async def test_real_report_details_and_trace() -> None:
    app = ProxyDoctorApp(lambda: build_report(FIXTURE, False), origin=str(FIXTURE))
    async with app.run_test(size=(100, 70)) as pilot:
        await loaded(pilot)
        assert app.report is not None and app.report.node == "pdnode1"
        await pilot.press("slash", *"default/web:http", "enter", "enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen) and app.screen.row.key == WEB.key
        raw = static_text(app.screen.query_one("#raw-rules"))
        assert "KUBE-SVC-CDGGSHYLG3RE2FKL" in raw and STALE in raw
        assert "stale-endpoint" in screen_text(app)
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, TraceScreen)
        assert app.screen.query_one("#trace-input", Input).value == "10.96.100.10:80/tcp"
        await app.workers.wait_for_complete()
        await pilot.pause()
        tree = app.screen.query_one("#trace-tree", Tree)
        labels = [str(o.label) for source in tree.root.children for o in source.children]
        assert any(label.startswith("DNAT") and STALE in label for label in labels), labels


def test_tui_command_needs_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from kubectl_proxydoctor.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["tui", "--from", str(FIXTURE)])
    assert exc.value.code == 2
    assert "tui needs a terminal" in capsys.readouterr().err


def test_tui_command_names_a_missing_capture(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    from kubectl_proxydoctor.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["tui", "--from", str(tmp_path / "nope.tar.gz")])
    assert exc.value.code == 3
    err = capsys.readouterr().err
    assert "nope.tar.gz: no such file or directory" in err and "Traceback" not in err


def test_tui_command_rejects_from_and_sample(capsys: pytest.CaptureFixture[str]) -> None:
    from kubectl_proxydoctor.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["tui", "--sample", "--from", str(FIXTURE)])
    assert exc.value.code == 2
    assert "exclude each other" in capsys.readouterr().err


def test_tui_help_is_fast_and_lists_options() -> None:
    import subprocess
    import sys
    import time

    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", "tui", "--help"],
                         capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr
    assert "--from" in out.stdout and "--sample" in out.stdout
    assert "kubectl debug node/NAME -it --profile=sysadmin" in out.stdout
    assert elapsed < 15  # generous: the CPU is shared; the import probe below is the real check
    probe = subprocess.run([sys.executable, "-c", "import sys, kubectl_proxydoctor.cli.tui; "
                            "print(sorted(m for m in ('textual', 'kubernetes', 'pyroute2', 'nftables') "
                            "if m in sys.modules))"], capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "[]"


def test_default_tracer_turns_a_failing_mode_into_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubectl_proxydoctor import modes
    from kubectl_proxydoctor.errors import ParseError
    from kubectl_proxydoctor.model import Packet, TraceResult
    from kubectl_proxydoctor.tui.app import default_tracer

    def fake_trace_all(snapshot, packet, which):
        (mode,) = which
        if mode == "ipvs":
            raise ParseError("ipvsadm.txt", "bad line", 3)
        return [TraceResult(packet, mode, f"{mode}-src")]

    monkeypatch.setattr(modes, "trace_all", fake_trace_all)
    results = default_tracer(None, Packet("10.96.0.1", 443))
    by_mode = {r.mode: r for r in results}
    assert by_mode["iptables"].source == "iptables-src"
    assert by_mode["ipvs"].source == "not traced" and "ipvsadm.txt:3: bad line" in by_mode["ipvs"].notes[0]


@needs_analysis
def test_runs_in_a_real_terminal_and_quits_on_q() -> None:
    """`kubectl-proxydoctor tui --sample` in a pseudo-terminal (80x24, like kubectl debug -it)."""
    import fcntl
    import os
    import pty
    import re
    import select
    import struct
    import sys
    import termios
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: the real command line
        os.environ.update(TERM="xterm-256color", NO_COLOR="1")
        os.execv(sys.executable, [sys.executable, "-m", "kubectl_proxydoctor", "tui", "--sample"])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    output = b""

    def read_until(needle: bytes | None, seconds: float) -> None:
        nonlocal output
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if needle is not None and needle in re.sub(rb"\x1b\[[0-9;?<>]*[a-zA-Z]", b"", output):
                return
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    output += os.read(fd, 65536)
                except OSError:
                    return

    try:
        read_until(b"drift", 30)
        plain = re.sub(rb"\x1b\[[0-9;?<>]*[a-zA-Z]", b"", output).decode(errors="replace")
        assert "pdnode1" in plain and "drift" in plain and "Traceback" not in plain
        os.write(fd, b"q")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            read_until(None, 0.2)
        else:
            raise AssertionError("tui did not quit on q")
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


FIXTURE_DIRS = sorted(p.parent for p in FIXTURE.parent.parent.glob("*/*/expected.json"))


@needs_analysis
@pytest.mark.parametrize("capture", FIXTURE_DIRS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_capture_renders_every_port(capture) -> None:
    """Every fixture capture: rows, and the detail pane of every port, render from the analysis."""
    from kubectl_proxydoctor.tui import detail

    report = build_report(capture, False)
    rows = build_rows(report)
    assert len(rows) == len(report.services)
    console = Console(file=io.StringIO(), width=80, color_system=None)
    for row in rows:
        for part in (detail.api_view, detail.programmed_view, detail.raw_rules):
            console.print(part(report, row.status))
        console.print(detail.findings_view(row.findings))
    assert console.file.getvalue()


@needs_analysis
@pytest.mark.parametrize("capture", ["nftables/stale-endpoint", "ipvs/stale-endpoint"])
@sync
async def test_other_modes_in_the_app(capture: str) -> None:
    """The nftables and IPVS captures: details of the drifted port on screen, and a trace."""
    path = FIXTURE.parent.parent / capture
    app = ProxyDoctorApp(lambda: build_report(path, False), origin=capture)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert app.report is not None, app.error
        await pilot.press("7", "g", "enter")  # sorted by status: the worst port first
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen) and "API view" in screen_text(app)
        assert app.screen.row.status.status != "ok"
        await pilot.press("escape", "t")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, TraceScreen)
        assert "internal error" not in static_text(app.screen.query_one("#trace-message"))


@needs_analysis
def test_header_shows_a_failing_kube_proxy() -> None:
    from kubectl_proxydoctor.tui.summary import header_text

    report = build_report(FIXTURE.parent / "sync-failing", False)
    assert "kube-proxy sync failing" in header_text(report).plain


@sync
async def test_a_corrupt_bundle_shows_the_error_state(tmp_path) -> None:
    bundle = tmp_path / "node.tar.gz"
    bundle.write_bytes(b"\x1f\x8b\x08\x00 this is not gzip data")
    app = ProxyDoctorApp(lambda: build_report(bundle, False), origin=str(bundle))
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        text = screen_text(app)
        assert "Could not build the report" in text and "node.tar.gz" in text
        assert app.report is None and app.is_running
