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
