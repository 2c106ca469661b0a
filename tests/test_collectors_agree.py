"""Issue 16 "Also" and item 8: `collect --netns` and collect-node.sh capture the same node into the
same layout, kube-proxy's process and log included, and `check` gives identical findings on both.

The "node" is a network namespace holding a real kube-proxy ruleset; a process named kube-proxy
(a shell under that name, with kube-proxy's flags) and its container log under /var/log/pods stand
in a private PID and mount namespace (unshare), so nothing outside the test sees them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kubectl_proxydoctor.snapshot import NodeSnapshot
from kubectl_proxydoctor.sources import Readability, source_state
from tests.conftest import FIXTURES, ns_run

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "kubectl_proxydoctor" / "scripts" / "collect-node.sh"
FIXTURE = FIXTURES / "iptables" / "stale-endpoint"
LOG = ('2026-11-22T08:30:01.1Z stderr F I1122 08:30:01.100000 1 server_linux.go:69] "Using iptables '
       'Proxier"\n2026-11-22T08:34:40.0Z stderr F E1122 08:34:40.000000 1 proxier.go:1537] '
       '"Failed to execute iptables-restore" err="iptables-restore: line 42 failed"\n')
FLAGS = "--config=/var/lib/kube-proxy/config.conf --hostname-override=pdnode1"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("iptables-nft-restore") is None,
                       reason="needs unshare and iptables-nft"),
]


def _capture_both(ns: str, tmp: Path, *, with_kube_proxy: bool) -> tuple[Path, Path]:
    """Run both collectors on namespace ``ns``, in a private PID+mount namespace."""
    script_tar, collect_dir = tmp / "script.tar", tmp / "collect"
    fake = tmp / "bin" / "kube-proxy"
    fake.parent.mkdir()
    fake.symlink_to(shutil.which("sh") or "/bin/sh")  # comm is the name it was run by: kube-proxy
    kubelet = tmp / "bin" / "kubelet"  # every node runs one: the host's processes are visible
    kubelet.symlink_to(shutil.which("sh") or "/bin/sh")
    setup = f"{{ {kubelet} -c 'sleep 120; :' & }} && "
    if with_kube_proxy:
        (tmp / "0.log").write_text(LOG)
        pods = "/var/log/pods/kube-system_kube-proxy-x7k2p_0123/kube-proxy"
        setup += (f"mount -t tmpfs none /var/log && mkdir -p {pods} && cp {tmp}/0.log {pods}/0.log && "
                 f"{{ {fake} -c 'sleep 120; :' kube-proxy {FLAGS} & }} && sleep 0.5 && ")
    else:
        setup += "mount -t tmpfs none /var/log && "
    run = (f"{setup}ip netns exec {ns} env NODE_NAME=pdnode1 sh {SCRIPT} > {script_tar} && "
           f"{sys.executable} -m kubectl_proxydoctor collect -o {collect_dir} --netns {ns} "
           f"--node-name pdnode1; echo collect-rc=$?")
    res = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", run], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert "collect-rc=0" in res.stdout or "collect-rc=3" in res.stdout, res.stdout + res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    out = tmp / "script"
    with tarfile.open(script_tar) as tar:
        tar.extractall(out, filter="data")
    return out / "capture", collect_dir


def _check(capture: Path) -> tuple[int, dict]:
    shutil.copy(FIXTURE / "api.json", capture / "api.json")
    res = subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", "check", "--from", str(capture),
                          "-o", "json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout)


def _diagnosis(doc: dict) -> list[tuple]:
    return [(f["code"], f["severity"], f["service"], f["port"], f["message"], f["caused_by"])
            for f in doc["findings"]]


@pytest.mark.parametrize("with_kube_proxy", [False, True], ids=["stopped", "running"])
def test_collect_and_collect_node_sh_give_the_same_diagnosis(netns, tmp_path, with_kube_proxy):
    ns = netns("pd-agree-")
    ns_run(ns, "iptables-nft-restore", input=(FIXTURE / "iptables-nft-save.txt").read_text())
    script_capture, collect_capture = _capture_both(ns, tmp_path, with_kube_proxy=with_kube_proxy)

    snaps = [NodeSnapshot.load(script_capture), NodeSnapshot.load(collect_capture)]
    for snap in snaps:  # the same layout: kube-proxy's process and log in files of the format
        assert snap.has("kube-proxy-cmdline.txt")
        if with_kube_proxy:
            assert snap.text("kube-proxy-cmdline.txt").strip().endswith(f"kube-proxy {FLAGS}")
            assert snap.text("kube-proxy.log") == LOG
        else:
            assert snap.text("kube-proxy-cmdline.txt") == ""
            assert source_state(snap, "kube-proxy.log").state is Readability.ABSENT
    a, b = snaps
    assert a.text("kube-proxy-cmdline.txt") == b.text("kube-proxy-cmdline.txt")
    for name in ("iptables-nft-save.txt", "iptables-legacy-save.txt"):
        assert source_state(a, name).state == source_state(b, name).state

    (code_a, doc_a), (code_b, doc_b) = _check(script_capture), _check(collect_capture)
    assert _diagnosis(doc_a) == _diagnosis(doc_b)
    assert doc_a["services"] == doc_b["services"] and doc_a["mode"] == doc_b["mode"] == "iptables"
    assert code_a == code_b == 1
    first = doc_a["findings"][0]
    if with_kube_proxy:  # it runs but does not answer; its log names the failing restore
        assert first["code"] == "kube-proxy-not-answering"
        assert any("kube-proxy" in e and FLAGS in e for e in first["evidence"])
    else:  # the same WARNING from both, first, with the drift it explains under it
        assert (first["code"], first["severity"]) == ("kube-proxy-not-running", "warning")
        assert any("kube-proxy-cmdline.txt: empty" in e for e in first["evidence"])
        stale = [f for f in doc_a["findings"] if f["code"] == "stale-endpoint"]
        assert stale and stale[0]["caused_by"] == "kube-proxy-not-running"


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv not installed")
def test_non_root_collect_node_sh_capture_is_unknown_not_empty(tmp_path):
    """Issue 16 item 1: collect-node.sh without root, then check/trace/status/migrate-check --from."""
    tar = tmp_path / "node.tar"
    with tar.open("wb") as out:
        subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "sh", str(SCRIPT)],
                       stdout=out, check=True, timeout=120, env={"PATH": os.environ["PATH"], "TMPDIR": "/tmp",
                                                                  "NODE_NAME": "pdnode1"})
    with tarfile.open(tar) as t:
        t.extractall(tmp_path / "x", filter="data")
    capture = tmp_path / "x" / "capture"
    shutil.copy(FIXTURE / "api.json", capture / "api.json")
    snap = NodeSnapshot.load(capture)
    assert not snap.has("iptables-legacy-save.txt")  # unknown, not "no legacy tables"

    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", *argv, "--from", str(capture)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    res = cli("check", "-o", "json")
    assert res.returncode == 3 and "Traceback" not in res.stderr
    doc = json.loads(res.stdout)
    assert doc["services"] == []
    assert [f["code"] for f in doc["findings"] if f["severity"] == "error"] == []
    [unknown] = [f for f in doc["findings"] if f["code"] == "rules-unknown"]
    assert doc["findings"][0] is not None and doc["findings"][0]["code"] == "rules-unknown"
    assert "needs root" in unknown["message"] and "sudo sh collect-node.sh" in unknown["fix"]
    res = cli("trace", "--dst", "10.96.100.10:80")
    assert res.returncode == 3 and "unknown" in res.stdout and "no kube-proxy rules" not in res.stdout
    assert cli("status").returncode == 3
    res = cli("svc", "web")
    assert res.returncode == 3 and "rules-unknown" in res.stdout and "not-programmed" not in res.stdout
    res = cli("migrate-check", "nftables", "-o", "json")
    assert res.returncode == 3 and json.loads(res.stdout)["verdict"] == "could not tell"


def test_host_processes_not_visible_is_unknown_not_stopped(tmp_path):
    """A collector without the host PID namespace (neither kube-proxy nor kubelet in /proc) does not
    say kube-proxy is stopped: the process is unknown, and the finding hedges."""
    from kubectl_proxydoctor.collect import CollectContext
    from kubectl_proxydoctor.collect.kube_proxy import HOST_PROCESSES_HIDDEN, collect_process
    from kubectl_proxydoctor.kube_proxy_process import kube_proxy_process

    proc = tmp_path / "proc"
    (proc / "1").mkdir(parents=True)
    (proc / "1" / "comm").write_text("pause\n")
    (proc / "1" / "cmdline").write_bytes(b"/pause\0")
    ctx = CollectContext()
    collect_process(ctx, str(proc))
    assert HOST_PROCESSES_HIDDEN in ctx.sources["kube-proxy-cmdline.txt"]
    (proc / "7").mkdir()
    (proc / "7" / "comm").write_text("kubelet\n")
    (proc / "7" / "cmdline").write_bytes(b"kubelet\0--config=/var/lib/kubelet/config.yaml\0")
    ctx2 = CollectContext()
    collect_process(ctx2, str(proc))
    assert ctx2.sources["kube-proxy-cmdline.txt"] == "ok"
    (proc / "7" / "comm").write_text("k3s-agent\n")  # k3s: kubelet and kube-proxy inside one process
    ctx3 = CollectContext()
    collect_process(ctx3, str(proc))
    assert "kube-proxy is embedded in k3s-agent" in ctx3.sources["kube-proxy-cmdline.txt"]
    assert "kube-proxy-cmdline.txt" not in ctx3.files
    meta = {"sources": {"kube-proxy-cmdline.txt": ctx.sources["kube-proxy-cmdline.txt"]}}
    snap = NodeSnapshot.from_files({"meta.json": json.dumps(meta)})
    assert kube_proxy_process(snap).running is None
    assert source_state(snap, "kube-proxy-cmdline.txt").state is Readability.ABSENT  # not a read failure
