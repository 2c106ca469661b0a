"""`serve --from DIR` as a real process, scraped over real HTTP: the drift gauge follows the capture
directory's api.json (endpoint removed -> drift, restored -> 0) and the last-success time moves."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.serve_helpers import drop_endpoint, free_port, metric, scrape, wait_for, write_atomic

DRIFT = "proxydoctor_drift_service_ports"
LAST = "proxydoctor_check_last_success_timestamp_seconds"


def _serve(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kubectl_proxydoctor", "serve", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def _gauge(port: int) -> float | None:
    status, text = scrape(port)
    return metric(text, DRIFT, kind="drift", ip_family="IPv4") if status == 200 else None


def test_serve_from_dir_follows_the_capture(tmp_path: Path) -> None:
    capture = tmp_path / "node"
    shutil.copytree(FIXTURES / "iptables/healthy", capture)
    port = free_port()
    proc = _serve(["--from", str(capture), "--listen", f"127.0.0.1:{port}", "--interval", "1",
                   "--grace", "0"])
    try:
        wait_for(lambda: _gauge(port) == 0, 20, what="drift gauge 0 on the healthy capture")
        status, text = scrape(port)
        first = metric(text, LAST)
        assert first and abs(first - time.time()) < 30
        # the healthy capture has no findings (its INFO local-blackhole was expected behaviour, no longer
        # reported): the stale-endpoint series exists at 0 only once a check has run
        assert metric(text, "proxydoctor_findings", severity="error", code="stale-endpoint") in (None, 0)
        assert scrape(port, "/healthz")[0] == 200
        drop_endpoint(capture / "api.json", "default", "web", "10.244.0.12")
        t0 = time.monotonic()
        wait_for(lambda: (_gauge(port) or 0) >= 1, 10, what="drift gauge >= 1 after removing an endpoint")
        assert time.monotonic() - t0 < 5
        status, text = scrape(port)
        assert metric(text, "proxydoctor_findings", severity="error", code="stale-endpoint") == 1
        verdict = scrape(port, "/verdict")[1]
        assert "default/web:http/TCP drift IPv4" in verdict
        shutil.copy(FIXTURES / "iptables/healthy/api.json", capture / "api.json")
        wait_for(lambda: _gauge(port) == 0, 10, what="drift gauge back to 0 after restoring it")
        status, text = scrape(port)
        assert metric(text, "proxydoctor_findings", severity="error", code="stale-endpoint") == 0
        wait_for(lambda: (metric(scrape(port)[1], LAST) or 0) > first, 5, what="a newer last success")
    finally:
        err = _stop(proc)
    assert "drift started: default/web:http/TCP drift IPv4" in err
    assert "drift ended: default/web:http/TCP drift IPv4" in err
    assert "Traceback" not in err


def test_serve_from_dir_with_grace_reports_later_and_unreadable_is_unknown(tmp_path: Path) -> None:
    capture = tmp_path / "node"
    shutil.copytree(FIXTURES / "iptables/healthy", capture)
    port = free_port()
    proc = _serve(["--from", str(capture), "--listen", f"127.0.0.1:{port}", "--interval", "1",
                   "--grace", "3"])
    try:
        wait_for(lambda: _gauge(port) == 0, 20, what="drift gauge 0")
        drop_endpoint(capture / "api.json", "default", "web", "10.244.0.12")
        wait_for(lambda: metric(scrape(port)[1], "proxydoctor_drift_pending_service_ports", kind="drift",
                                ip_family="IPv4") == 1, 10, what="drift pending within the grace period")
        t0 = time.monotonic()
        assert _gauge(port) == 0
        wait_for(lambda: _gauge(port) == 1, 10, what="drift reported after the grace period")
        assert time.monotonic() - t0 >= 1.5
        write_atomic(capture / "api.json", "{broken")
        wait_for(lambda: metric(scrape(port)[1], "proxydoctor_check_unknown") == 1, 10, what="unknown")
        status, text = scrape(port)
        assert metric(text, "proxydoctor_source_errors_total", source="node") >= 1
        assert _gauge(port) == 1  # a capture that cannot be read does not clear the drift
    finally:
        err = _stop(proc)
    assert "check failed:" in err and "api.json" in err and "Traceback" not in err


@pytest.mark.parametrize("args, message, code", [
    (["--interval", "0"], "--interval must be > 0", 2),
    (["--listen", "nowhere"], "expected HOST:PORT", 2),
    (["--from", "/nonexistent/capture"], "no such file", 3),  # as check and tui: could not read
])
def test_serve_bad_input_is_one_line(args: list[str], message: str, code: int, tmp_path: Path) -> None:
    full = ["--from", str(FIXTURES / "iptables/healthy"), *args] if "--from" not in args else args
    done = subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", "serve", *full],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == code, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_watch_prints_the_verdict_when_it_changes(tmp_path: Path) -> None:
    import threading

    capture = tmp_path / "node"
    shutil.copytree(FIXTURES / "iptables/healthy", capture)
    proc = subprocess.Popen([sys.executable, "-m", "kubectl_proxydoctor", "watch", "--from", str(capture),
                             "--interval", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("ok: 16 service port(s) match the API" in x for x in lines), 30, what="ok")
        time.sleep(2.5)  # unchanged verdict: nothing more printed
        verdicts = [x for x in lines if "pdnode1" in x]
        assert len(verdicts) == 1
        drop_endpoint(capture / "api.json", "default", "web", "10.244.0.12")
        wait_for(lambda: any("drift     default/web:http/TCP  drift  IPv4" in x for x in lines), 15,
                 what="the drift block")
        assert any("error     stale-endpoint x1" in x for x in lines)
        shutil.copy(FIXTURES / "iptables/healthy/api.json", capture / "api.json")
        wait_for(lambda: len([x for x in lines if "ok: 16 service port(s)" in x]) == 2, 15, what="ok again")
    finally:
        err = _stop(proc)
    assert "Traceback" not in err


def test_watch_keeps_a_failed_check_unknown_until_a_check_succeeds(tmp_path: Path) -> None:
    """An unreadable capture is 'unknown' and stays so at the next ticks (the last good verdict must
    not come back while the files are still broken); a fixed capture is ok again."""
    import threading

    capture = tmp_path / "node"
    shutil.copytree(FIXTURES / "iptables/healthy", capture)
    proc = subprocess.Popen([sys.executable, "-m", "kubectl_proxydoctor", "watch", "--from", str(capture),
                             "--interval", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("ok: 16 service port(s)" in x for x in lines), 30, what="ok")
        good = {n: (capture / n).read_text() for n in ("iptables-save.txt", "iptables-nft-save.txt")}
        for name, text in good.items():  # a rule for an undeclared chain in the first table
            lines_of = text.splitlines(keepends=True)
            first = next(i for i, line in enumerate(lines_of) if line.startswith("*"))
            lines_of.insert(first + 1, "-A FOO -j ACCEPT\n")
            (capture / name).write_text("".join(lines_of))
        wait_for(lambda: any("unknown" in x for x in lines), 15, what="unknown")
        time.sleep(3.5)  # several ticks with the files unchanged and still broken
        after = lines[next(i for i, x in enumerate(lines) if "unknown" in x):]
        assert not any("ok: 16 service port(s)" in x for x in after), after
        for name, text in good.items():
            (capture / name).write_text(text)
        wait_for(lambda: len([x for x in lines if "ok: 16 service port(s)" in x]) == 2, 15, what="ok again")
    finally:
        err = _stop(proc)
    assert "Traceback" not in err
