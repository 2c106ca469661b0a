"""The stand-alone POSIX collector script, run for real inside a network namespace."""

import os
import shutil
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from kubectl_proxydoctor.snapshot import NodeSnapshot

SCRIPT = Path(__file__).parents[1] / "kubectl_proxydoctor" / "scripts" / "collect-node.sh"
FIX = Path(__file__).parent / "fixtures"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("iptables-nft-restore") is None,
    reason="needs root, iproute2 and iptables-nft to create a network namespace",
)


@contextmanager
def namespace():
    name = f"pd-sh-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _in(ns: str, *cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, **kw)


def _rules(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _state(ns: str) -> tuple[str, str, str]:
    return (_in(ns, "iptables-nft-save").stdout, _in(ns, "nft", "list", "ruleset").stdout,
            _in(ns, "cat", "/proc/net/ip_tables_names").stdout)


def test_script_captures_loaded_rules_and_writes_nothing(tmp_path):
    dump = (FIX / "iptables" / "healthy" / "iptables-nft-save.txt").read_text()
    with namespace() as ns:
        _in(ns, "iptables-nft-restore", input=dump, check=True)
        before = _state(ns)
        tar = tmp_path / "node.tar"
        with tar.open("wb") as out:
            subprocess.run(["ip", "netns", "exec", ns, "sh", str(SCRIPT)], stdout=out, check=True,
                           env={**os.environ, "NODE_NAME": "node-under-test"}, timeout=120)
        after = _state(ns)
    assert _rules(before[0]) == _rules(after[0])
    assert before[1:] == after[1:]
    assert after[2] == ""  # no legacy table was created by reading

    snap = NodeSnapshot.load(tar)
    assert snap.node == "node-under-test"
    assert _rules(snap.text("iptables-nft-save.txt")) == _rules(before[0])
    assert "KUBE-SVC-CDGGSHYLG3RE2FKL" in snap.text("iptables-nft-save.txt")
    assert snap.sources["iptables-nft"] == "ok"
    assert snap.sources["ipvs"].startswith("unavailable") or snap.has("ipvsadm.txt")


def test_script_without_root_says_why(tmp_path):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv not installed")
    tar = tmp_path / "node.tar"
    with tar.open("wb") as out:
        subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        "sh", str(SCRIPT)], stdout=out, check=True, timeout=120,
                       env={"PATH": os.environ["PATH"], "TMPDIR": "/tmp"})
    snap = NodeSnapshot.load(tar)
    assert snap.sources["privileges"].startswith("unavailable: needs root")
    assert snap.sources["iptables-nft"].startswith("unavailable")
