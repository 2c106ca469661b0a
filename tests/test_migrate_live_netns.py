"""migrate-check on a live read: rules from real captures loaded into a throw-away network
namespace ("pd-mig-*"), collected with the read-only node collector, then checked."""

from __future__ import annotations

import shutil

import pytest

from kubectl_proxydoctor.collect.node import collect_node
from kubectl_proxydoctor.migrate.engine import check_readiness
from tests.conftest import ns_run
from tests.test_migrate_helpers import FIX, cluster, only

pytestmark = pytest.mark.skipif(shutil.which("iptables-nft-restore") is None or shutil.which("nft") is None,
                                reason="needs iptables-nft-restore and nft")

HOSTFW = """table inet hostfw {
    chain prerouting {
        type filter hook prerouting priority raw; policy accept;
        tcp dport 30080 counter drop
    }
}
"""


def test_live_node_with_third_party_rules_and_a_host_firewall(netns):
    ns = netns("pd-mig-")
    rules = (FIX / "iptables" / "third-party-rules" / "iptables-nft-save.txt").read_text()
    ns_run(ns, "iptables-nft-restore", input=rules)
    ns_run(ns, "nft", "-f", "-", input=HOSTFW)
    snap = collect_node(netns=ns, node_name="pdnode1")
    assert "KUBE-SERVICES" in (snap.text("iptables-nft-save.txt") or "")

    readiness = check_readiness("nftables", cluster("iptables/third-party-rules"), [snap])
    assert readiness.verdict == "not ready"
    third = only(readiness.results, "third-party-rules")
    assert third.status == "fail" and any("added-by-hand" in e for e in third.evidence)
    firewall = only(readiness.results, "host-firewall")
    assert firewall.status == "fail"
    assert any("table inet hostfw chain prerouting" in e and "30080" in e for e in firewall.evidence)


def test_live_node_with_only_kube_proxy_rules_passes(netns):
    ns = netns("pd-mig-")
    rules = (FIX / "iptables" / "healthy" / "iptables-nft-save.txt").read_text()
    ns_run(ns, "iptables-nft-restore", input=rules)
    snap = collect_node(netns=ns, node_name="pdnode1")
    readiness = check_readiness("nftables", cluster("iptables/healthy"), [snap])
    assert only(readiness.results, "third-party-rules").status == "pass"
    assert only(readiness.results, "host-firewall").status == "pass"
