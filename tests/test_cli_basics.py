"""CLI basics: --help is fast and imports no heavy library; no root or a missing tool is named, exit 3."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

from kubectl_proxydoctor.collect.node import collect_node

ROOT = Path(__file__).parents[1]
HEAVY = ("kubernetes", "textual", "pyroute2", "nftables")

HELP_PROBE = """
import sys, time
start = time.perf_counter()
from kubectl_proxydoctor.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(HEAVY))
print('RESULT', code, heavy, round(time.perf_counter() - start, 3), file=sys.stderr)
""".replace("HEAVY", repr(HEAVY))


@pytest.mark.parametrize("args", [["--help"], ["status", "--help"], ["collect", "--help"]])
def test_help_is_fast_and_imports_no_heavy_library(args):
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-c", HELP_PROBE, *args], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    wall = time.monotonic() - start
    result = [line for line in res.stderr.splitlines() if line.startswith("RESULT")]
    assert result, res.stderr
    _, code, heavy, _seconds = result[0].split(" ", 3)
    assert code in ("0", "None"), res.stderr
    assert heavy == "[]", f"--help imported {heavy}"
    assert "Usage" in res.stdout
    assert wall < 10  # generous for a shared 2-core machine; typically well under a second


def test_status_imports_no_heavy_library_before_it_needs_one():
    probe = HELP_PROBE.replace("main(sys.argv[1:])", "main(['status', '--from', sys.argv[1], '-o', 'json'])")
    res = subprocess.run([sys.executable, "-c", probe, str(ROOT / "tests/fixtures/iptables/healthy")],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    result = [line for line in res.stderr.splitlines() if line.startswith("RESULT")]
    assert result and "'kubernetes'" not in result[0] and "'textual'" not in result[0], res.stderr


# ------------------------------------------------------------------------------- not root


def _as_nobody() -> list[str]:
    """A command prefix running Python as user nobody (or skip saying why)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to switch to user nobody")
    drop = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]
    site = sysconfig.get_paths()["purelib"]
    env = ["env", f"PYTHONPATH={ROOT}:{site}"]
    for python in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run([*drop, *env, python, "-c", "import typer, rich, kubectl_proxydoctor"],
                               capture_output=True, cwd="/tmp")
        if probe.returncode == 0:
            return [*drop, *env, python]
    pytest.skip("no Python interpreter that user nobody may run with this package")


def test_not_root_status_names_each_source_and_exits_3():
    cmd = _as_nobody()
    res = subprocess.run([*cmd, "-m", "kubectl_proxydoctor", "status", "-o", "json"], capture_output=True,
                         text=True, cwd="/tmp", timeout=120)
    assert res.returncode == 3, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    data = json.loads(res.stdout)
    unavailable = data["unavailable"]
    for source in ("iptables-nft-save.txt", "ip6tables-nft-save.txt", "iptables-legacy-save.txt",
                   "ip_tables_names.txt", "nft list tables"):
        assert "needs root (CAP_NET_ADMIN)" in unavailable[source], (source, unavailable.get(source))
    # what any user may read is still read
    assert data["kernel"]["release"]
    assert data["sources"]["sysctl.txt"].startswith("ok")


@pytest.fixture
def shared_tmp():
    """A directory user nobody may write to (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="pd-col-", dir="/tmp"))
    os.chmod(path, 0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_not_root_collect_writes_a_capture_that_says_why_and_exits_3(shared_tmp):
    cmd = _as_nobody()
    out = shared_tmp / "cap"
    res = subprocess.run([*cmd, "-m", "kubectl_proxydoctor", "collect", "-o", str(out)], capture_output=True,
                         text=True, cwd="/tmp", timeout=120)
    assert res.returncode == 3, res.stderr
    assert "Traceback" not in res.stderr
    assert "iptables-nft-save.txt: unavailable: needs root (CAP_NET_ADMIN)" in res.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["sources"]["iptables-nft-save.txt"].startswith("unavailable: needs root")
    assert not (out / "iptables-nft-save.txt").exists()  # not captured, never an empty file


def test_collect_to_an_unwritable_place_is_one_line(tmp_path):
    cmd = _as_nobody()
    res = subprocess.run([*cmd, "-m", "kubectl_proxydoctor", "collect", "-o", str(tmp_path / "cap")],
                         capture_output=True, text=True, cwd="/tmp", timeout=120)
    assert res.returncode == 3
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("kubectl-proxydoctor: ")
    assert "Permission denied" in res.stderr


# ------------------------------------------------------------------------------- missing tool


def _path_without_iptables(tmp_path: Path) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ip", "nft", "conntrack", "ipset", "ipvsadm"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_missing_binary_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_without_iptables(tmp_path))
    snap = collect_node()
    for name, tool in (("iptables-nft-save.txt", "iptables-nft-save"), ("ip6tables-nft-save.txt",
                                                                        "ip6tables-nft-save")):
        assert snap.sources[name] == f"unavailable: {tool} not found"
        assert not snap.has(name)


def test_missing_binary_cli_exits_3(tmp_path):
    env = dict(os.environ, PATH=_path_without_iptables(tmp_path))
    res = subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", "status"], capture_output=True,
                         text=True, cwd=ROOT, env=env, timeout=120)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert "iptables-nft-save not found" in res.stdout
