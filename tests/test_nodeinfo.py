from pathlib import Path

import pytest

from kubectl_proxydoctor import nodeinfo
from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIX = Path(__file__).parent / "fixtures"


def test_local_addresses_and_kernel():
    snap = NodeSnapshot.load(FIX / "iptables" / "healthy")
    local = nodeinfo.local_addresses(snap)
    assert {"172.30.0.1", "10.244.0.1", "127.0.0.1"} <= local
    assert "10.96.100.10" not in local
    assert nodeinfo.kernel_version(nodeinfo.kernel_release(snap)) >= (5, 13, 0)


def test_module_state_never_missing_without_evidence():
    snap = NodeSnapshot.from_files({"kernel-config.txt": "CONFIG_NETFILTER=y\n"})
    assert nodeinfo.module_state(snap, "ip_vs").state == "unknown"
    snap = NodeSnapshot.from_files({"kernel-config.txt": "# CONFIG_IP_VS is not set\n"})
    assert nodeinfo.module_state(snap, "ip_vs").state == "missing"
    ipvs = NodeSnapshot.load(FIX / "ipvs" / "healthy")
    assert nodeinfo.module_state(ipvs, "ip_vs_rr").state == "loaded"


def test_sync_figures_of_a_failing_kube_proxy():
    snap = NodeSnapshot.load(FIX / "iptables" / "sync-failing")
    figures = nodeinfo.sync_figures(nodeinfo.kube_proxy_metrics(snap))
    assert figures.restore_failures == 3
    assert figures.partial_restore_failures == 1
    assert figures.stuck_seconds == pytest.approx(4.18, abs=0.01)
    assert nodeinfo.kube_proxy_healthz(snap).node_eligible is True


def test_metrics_parse_error_names_the_line():
    with pytest.raises(ParseError, match=r"metrics.txt:2"):
        nodeinfo.parse_metrics("a 1\n{broken\n", source="metrics.txt")


def test_sysctl_lines():
    assert nodeinfo.parse_sysctl("net.ipv4.ip_forward = 1\nbad line\nx=2\n") == {
        "net.ipv4.ip_forward": "1", "x": "2"}
