"""Fleet scan: bounded concurrency, streamed results, node failures, cross-node drift."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.remote.scan import scan
from kubectl_proxydoctor.snapshot import NodeSnapshot

CAPTURE = Path(__file__).parent / "fixtures" / "iptables" / "stale-endpoint"
STALE_SEP = "KUBE-SEP-GFGX6LKJVO6TG6Y4"


def _synced_rules(text: str) -> str:
    """The capture's rules as kube-proxy would write them after syncing the API change
    (10.244.0.12 removed from default/web)."""
    out = []
    for line in text.splitlines():
        if STALE_SEP in line:
            continue
        out.append(line.replace("--probability 0.33333333349 -j KUBE-SEP-QZSIC2ZS53EHPBVZ",
                                "--probability 0.50000000000 -j KUBE-SEP-QZSIC2ZS53EHPBVZ"))
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def captures():
    stale = NodeSnapshot.load(CAPTURE)
    files = dict(stale.files)
    for name in ("iptables-save.txt", "iptables-nft-save.txt"):
        files[name] = _synced_rules(files[name])
    synced = NodeSnapshot.from_files(files)
    return stale, synced, ClusterState.from_json_text(stale.text("api.json"))


def test_synced_node_is_clean_and_stale_node_drifts(captures):
    stale, synced, cluster = captures
    assert analyse(synced, cluster, node_name="pdnode1").exit_code == 0
    assert analyse(stale, cluster, node_name="pdnode1").exit_code == 1


def test_scan_streams_results_and_finds_cross_node_drift(captures):
    stale, synced, cluster = captures
    by_node = {"n1": synced, "n2": synced, "n3": stale, "n4": None}

    def collect(node: str) -> NodeSnapshot:
        if by_node[node] is None:
            raise ProxyDoctorError("collector pod did not start within 1 s (last seen: Pending)")
        return by_node[node]

    seen = []
    result = scan(by_node, collect, lambda snap, node: analyse(snap, cluster, node_name="pdnode1"),
                  concurrency=2, on_done=lambda s: seen.append(s.node))
    assert sorted(seen) == ["n1", "n2", "n3", "n4"]
    nodes = {n.node: n for n in result.nodes}
    assert nodes["n4"].failure.startswith("collector pod did not start")
    assert nodes["n3"].errors >= 1 and "stale-endpoint" in nodes["n3"].codes
    assert nodes["n1"].errors == 0 and nodes["n1"].mode == "iptables"
    web = [d for d in result.drift if d.service_port == "default/web:http/TCP"]
    assert len(web) == 1
    answers = {endpoints: (count, examples) for endpoints, count, examples in web[0].answers}
    count, examples = answers["10.244.0.11:8080,10.244.0.13:8080"]
    assert count == 2 and sorted(examples) == ["n1", "n2"]
    assert answers["10.244.0.11:8080,10.244.0.12:8080,10.244.0.13:8080"][0] == 1
    assert [d.service_port for d in result.drift] == ["default/web:http/TCP"]
    assert result.exit_code == 1


def test_concurrency_is_bounded():
    lock = threading.Lock()
    running = peak = 0

    def collect(node: str):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        raise ProxyDoctorError("simulated")

    result = scan((f"n{i}" for i in range(40)), collect, lambda s, n: None, concurrency=3)
    assert len(result.nodes) == 40 and peak == 3
    assert result.exit_code == 3


# -- end to end: the scan command against the test API server and two namespace "nodes" -----------

def _netns_with(rules: str) -> str:
    import subprocess
    import uuid

    name = f"pd-scan-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "netns", "exec", name, "iptables-nft-restore"], input=rules, text=True, check=True)
    return name


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="needs root to create network namespaces")
def test_scan_command_end_to_end(tmp_path):
    import json
    import subprocess
    import sys

    from tests.apiserver import write_kubeconfig
    from tests.node_apiserver import NodeApiServer

    stale_rules = (CAPTURE / "iptables-nft-save.txt").read_text()
    namespaces = [_netns_with(stale_rules), _netns_with(_synced_rules(stale_rules))]
    try:
        server = NodeApiServer.from_api_json(CAPTURE / "api.json")
        server.add_node("node-a", netns=namespaces[0], labels={"pool": "scan"})
        server.add_node("node-b", netns=namespaces[1], labels={"pool": "scan"})
        server.add_node("node-c", labels={"pool": "scan"})
        server.pod_behaviour["node-c"] = "never-starts"
        with server:
            kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"test": server.url})
            proc = subprocess.run(
                [sys.executable, "-m", "kubectl_proxydoctor", "scan", "--kubeconfig", str(kubeconfig),
                 "-l", "pool=scan", "--concurrency", "2", "-o", "json"],
                capture_output=True, text=True, timeout=240, cwd=Path(__file__).parents[1],
                env={**__import__("os").environ, "PROXYDOCTOR_POD_START_TIMEOUT": "2"})
        assert proc.returncode == 1, proc.stderr
        report = json.loads(proc.stdout)
        nodes = {n["node"]: n for n in report["nodes"]}
        assert set(nodes) == {"node-a", "node-b", "node-c"}
        # both stand-in nodes carry pdnode1's Local-policy endpoints (the same errors on both);
        # node-a also still sends default/web to the removed 10.244.0.12
        assert "stale-endpoint" in nodes["node-a"]["codes"]
        assert nodes["node-a"]["errors"] == nodes["node-b"]["errors"] + 1
        assert "did not start" in nodes["node-c"]["failure"]
        assert [d["service_port"] for d in report["cross_node_drift"]] == ["default/web:http/TCP"]
        assert server.pods() == [] and len(server.deleted) == 3
    finally:
        for name in namespaces:
            subprocess.run(["ip", "netns", "del", name], check=False)
