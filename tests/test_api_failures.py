"""Issue 16 items 2 and 10: an unreachable or forbidden API, or a garbage kubeconfig, gives one
clear line on stderr and exit 3 on every command, never a traceback; live `check` without
credentials still runs the node-only checks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kubectl_proxydoctor.cli import main
from tests.apiserver import write_kubeconfig
from tests.node_apiserver import NodeApiServer

FIXTURES = Path(__file__).parent / "fixtures"
HEALTHY = FIXTURES / "iptables" / "healthy"

NODE_COMMANDS = [
    ["check"], ["status"], ["svc", "web"], ["trace", "--dst", "10.96.0.1:443"],
    ["migrate-check", "nftables"], ["collect", "-o", "{tmp}/out.tar.gz"],
]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unreachable(tmp_path) -> Path:
    return write_kubeconfig(tmp_path / "kc", {"gone": f"https://127.0.0.1:{_closed_port()}"}, token="t")


@pytest.mark.parametrize("command", NODE_COMMANDS, ids=lambda c: c[0])
def test_node_flag_with_unreachable_api_is_one_line_exit_3(capsys, tmp_path, unreachable, command):
    argv = [a.format(tmp=tmp_path) for a in command]
    code, out, err = run(capsys, *argv, "--node", "n1", "--kubeconfig", str(unreachable))
    assert code == 3
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kubectl-proxydoctor: unreachable: https://127.0.0.1:")
    assert "connection refused" in lines[0] and "Traceback" not in err
    assert "drift" not in out


def test_scan_with_unreachable_api_is_one_line_exit_3(capsys, unreachable):
    code, _, err = run(capsys, "scan", "--kubeconfig", str(unreachable))
    assert code == 3
    assert err.strip().count("\n") == 0 and "unreachable" in err


def test_node_flag_with_forbidden_node_read_is_one_line_exit_3(capsys, tmp_path):
    server = NodeApiServer.from_api_json(HEALTHY / "api.json")
    server.add_node("n1")
    server.forbid("get", "nodes")
    with server:
        kc = write_kubeconfig(tmp_path / "kc", {"c": server.url}, token=server.token)
        code, _, err = run(capsys, "check", "--node", "n1", "--kubeconfig", str(kc))
    assert code == 3
    assert err.strip().splitlines() == [err.strip()] and "forbidden: get nodes/n1 (RBAC)" in err


@pytest.mark.parametrize("garbage", ["garbage\n", "- a\n- b\n", "clusters: nope\n", "{{{{\n"])
@pytest.mark.parametrize("command", [["check", "--from", str(HEALTHY)], ["status", "--node", "n1"],
                                     ["check", "--node", "n1"]], ids=lambda c: " ".join(c[:2]))
def test_garbage_kubeconfig_is_one_clear_line(capsys, tmp_path, garbage, command):
    kc = tmp_path / "kc"
    kc.write_text(garbage)
    code, _, err = run(capsys, *command, "--kubeconfig", str(kc))
    assert code == 3
    assert "object does not support" not in err and "Traceback" not in err
    assert f"kubeconfig {kc}" in err
    assert len(err.strip().splitlines()) == 1


def test_capture_with_unusable_api_runs_node_only_checks(capsys, tmp_path):
    kc = tmp_path / "kc"
    kc.write_text("garbage\n")
    code, out, err = run(capsys, "check", "--from", str(FIXTURES / "iptables" / "stale-endpoint"),
                         "--kubeconfig", str(kc))
    assert code == 3
    assert "kube-proxy-not-running" in out  # a node-only check, from the node that was read
    assert "stale-endpoint" not in out  # nothing is compared with an API that was not read


@pytest.mark.skipif(os.geteuid() != 0, reason="reads this host's rules (needs root)")
def test_live_check_without_credentials_runs_node_only_checks(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    res = subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", "check", "-o", "json"],
                         capture_output=True, text=True, env=env, timeout=120,
                         cwd=Path(__file__).parents[1])
    assert res.returncode == 3, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("kubectl-proxydoctor: API not usable")
    assert "no Kubernetes credentials" in res.stderr
    import json

    doc = json.loads(res.stdout)
    assert doc["sources"]["api"].startswith("unavailable") and doc["services"] == []


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to drop CAP_NET_ADMIN with setpriv")
@pytest.mark.parametrize("command", ["status", "check"])
def test_live_run_without_net_admin_is_unknown_and_quiet(command, tmp_path):
    """Item 10: nft's "Operation not permitted" does not leak to stderr; the rules are unknown."""
    res = subprocess.run(["setpriv", "--bounding-set=-net_admin,-net_raw", sys.executable, "-m",
                          "kubectl_proxydoctor", command], capture_output=True, text=True, timeout=120,
                         env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
                         cwd=Path(__file__).parents[1])
    assert res.returncode == 3, res.stderr
    assert "Operation not permitted" not in res.stderr and "Traceback" not in res.stderr
    assert "could not be read" in res.stdout and "needs root" in res.stdout


def test_tui_node_with_unreachable_api_exits_3_with_one_line(unreachable):
    """The TUI (on a terminal: Textual draws on stderr) shows the error; on quit, one line after
    the screen is restored, and exit 3."""
    import pty
    import re
    import select
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "kubectl_proxydoctor", "tui", "--node", "n1",
                             "--kubeconfig", str(unreachable)], stdin=slave, stdout=slave, stderr=slave,
                            cwd=Path(__file__).parents[1], env={**os.environ, "TERM": "xterm"})
    os.close(slave)
    screen = b""

    def read(until: float) -> None:
        nonlocal screen
        while time.monotonic() < until and select.select([master], [], [], 0.2)[0]:
            try:
                screen += os.read(master, 65536)
            except OSError:
                return

    try:
        deadline = time.monotonic() + 60
        while b"Could not build the report" not in screen and time.monotonic() < deadline:
            read(time.monotonic() + 1)
        assert b"Could not build the report" in screen
        os.write(master, b"q")
        proc.wait(timeout=30)
        read(time.monotonic() + 2)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert proc.returncode == 3
    after = screen.rsplit(b"\x1b[?1049l", 1)[-1].decode(errors="replace")  # after leaving the TUI screen
    lines = [line for line in re.sub(r"\x1b\[[0-9;?<>]*[A-Za-z]", "", after).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("kubectl-proxydoctor: unreachable:"), lines
    assert "Traceback" not in screen.decode(errors="replace")
