"""Issue 16 "Also": with --node, kube-proxy's process and log come from the API (the collector pod
sees neither the host's processes nor /var/log): the kube-proxy pod on that node, its container's
command and state, and the tail of its pods/log, into the capture's own files."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.collect.api import load_client
from kubectl_proxydoctor.remote.run import RemoteOptions, collect_remote
from tests.apiserver import write_kubeconfig
from tests.node_apiserver import NodeApiServer

FIX = Path(__file__).parent / "fixtures"
LOG = "".join(f'I1122 08:30:{i:02d}.000000 1 proxier.go:800] "Syncing iptables rules"\n' for i in range(60))
LOG += 'E1122 08:34:40.000000 1 proxier.go:1537] "Failed" err="iptables-restore: line 42 failed"\n'
COMMAND = ["/usr/local/bin/kube-proxy"]
ARGS = ["--config=/var/lib/kube-proxy/config.conf", "--hostname-override=remote-a"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("iptables-nft-restore") is None,
    reason="needs root and iptables-nft to stand a node up in a network namespace",
)


@pytest.fixture
def node_netns():
    name = f"pd-rkp-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        dump = (FIX / "iptables" / "stale-endpoint" / "iptables-nft-save.txt").read_text()
        subprocess.run(["ip", "netns", "exec", name, "iptables-nft-restore"], input=dump, text=True,
                       check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def server():
    srv = NodeApiServer.from_api_json(FIX / "iptables" / "stale-endpoint" / "api.json")
    with srv:
        yield srv


def _api() -> ClusterState:
    return ClusterState.from_json_text((FIX / "iptables/stale-endpoint/api.json").read_text())


def _kube_proxy_pod(node: str, state: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"kube-proxy-{node}", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-proxy"}},
            "spec": {"nodeName": node,
                     "containers": [{"name": "kube-proxy", "command": COMMAND, "args": ARGS}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "kube-proxy", "state": state}]}}


def _collect(server, node_netns, tmp_path, state: dict):
    server.add_node("remote-a", netns=node_netns)
    server.objects["pods"].append(_kube_proxy_pod("remote-a", state))
    server.objects["pods"].append(_kube_proxy_pod("other-node", {"running": {}}))
    server.pod_logs["kube-proxy-remote-a"] = LOG
    client = load_client(str(write_kubeconfig(tmp_path / "kc", {"t": server.url}))).client
    return collect_remote("remote-a", client, RemoteOptions(poll_interval=0.05, start_timeout=3,
                                                            exec_timeout=60))


def test_running_kube_proxy_pod_gives_cmdline_and_log(server, node_netns, tmp_path):
    snap = _collect(server, node_netns, tmp_path, {"running": {"startedAt": "2026-11-22T08:00:00Z"}})
    assert snap.text("kube-proxy-cmdline.txt") == " ".join(COMMAND + ARGS) + "\n"
    assert snap.sources["kube-proxy-cmdline.txt"].startswith(
        "ok (from the API: pod kube-system/kube-proxy-remote-a")
    assert snap.text("kube-proxy.log") == LOG
    logs = [p for _, p, _ in server.requests if p.endswith("/log")]
    assert logs == ["/api/v1/namespaces/kube-system/pods/kube-proxy-remote-a/log"]  # this node's pod only
    report = analyse(snap, _api(), "pdnode1")
    codes = [f.code for f in report.findings]
    assert "kube-proxy-not-answering" in codes and "kube-proxy-not-running" not in codes


def test_crashing_kube_proxy_pod_is_not_running(server, node_netns, tmp_path):
    snap = _collect(server, node_netns, tmp_path, {"waiting": {"reason": "CrashLoopBackOff"}})
    assert snap.text("kube-proxy-cmdline.txt") == ""
    report = analyse(snap, _api(), "pdnode1")
    first = report.findings[0]
    assert (first.code, first.severity) == ("kube-proxy-not-running", "warning")
    assert any("CrashLoopBackOff" in e for e in first.evidence)


def test_no_kube_proxy_pod_on_the_node_is_unknown_not_stopped(server, node_netns, tmp_path):
    server.add_node("remote-a", netns=node_netns)
    client = load_client(str(write_kubeconfig(tmp_path / "kc", {"t": server.url}))).client
    snap = collect_remote("remote-a", client,
                          RemoteOptions(poll_interval=0.05, start_timeout=3, exec_timeout=60))
    assert not snap.has("kube-proxy-cmdline.txt")
    assert "no pod labelled k8s-app=kube-proxy on node remote-a" in snap.sources["kube-proxy-cmdline.txt"]
