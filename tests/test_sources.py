"""The one decision whether a capture file was read (sources.py), and the finding it leads to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.snapshot import NodeSnapshot
from kubectl_proxydoctor.sources import Readability, Why, classify, rules_state, source_state

FIXTURES = Path(__file__).parent / "fixtures"
API = json.loads((FIXTURES / "iptables" / "healthy" / "api.json").read_text())


@pytest.mark.parametrize("reason, state, why", [
    ("ok", Readability.OK, None),
    ("ok (HTTP 503: kube-proxy reports itself unhealthy)", Readability.OK, None),
    ("unavailable: needs root (CAP_NET_ADMIN): nft: Operation not permitted", Readability.UNREADABLE,
     Why.NEEDS_ROOT),
    ("unavailable: iptables-save v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission "
     "denied (you must be root)", Readability.UNREADABLE, Why.NEEDS_ROOT),
    ("unavailable: iptables-nft-save not found", Readability.UNREADABLE, Why.TOOL_MISSING),
    ("unavailable: conntrack timed out after 60 s", Readability.UNREADABLE, Why.FAILED),
    ("unavailable: kernel has no IP_VS (/proc/net/ip_vs missing)", Readability.ABSENT, None),
    ("unavailable: 127.0.0.1:10249/metrics: nothing listens on 127.0.0.1:10249", Readability.ABSENT, None),
    ("unavailable: ip6tables-nft-save failed: ip6tables-nft-save v1.8.9 (nf_tables): can't initialize "
     "ip6tables table `filter': Address family not supported by protocol", Readability.ABSENT, None),
])
def test_classify(reason, state, why):
    assert classify(reason) == (state, why)


def test_collect_node_sh_keys_name_the_same_files():
    meta = {"sources": {"iptables-nft": "unavailable: iptables-nft-save: Permission denied",
                        "nftables": "unavailable: Operation not permitted (you must be root)",
                        "ipvs": "unavailable: kernel has no IP_VS (/proc/net/ip_vs missing)"}}
    snap = NodeSnapshot.from_files({"meta.json": json.dumps(meta)})
    assert source_state(snap, "iptables-nft-save.txt").why is Why.NEEDS_ROOT
    assert source_state(snap, "nft-ruleset.json").state is Readability.UNREADABLE
    assert rules_state(snap, "ipvs").known  # no IP_VS: nothing there, known
    assert not rules_state(snap, "iptables").known and not rules_state(snap, "nftables").known
    assert source_state(snap, "conntrack.txt").state is Readability.NOT_CAPTURED


def test_an_empty_dump_is_read_and_a_missing_one_is_not():
    assert rules_state(NodeSnapshot.from_files({"iptables-nft-save.txt": ""}), "iptables").known
    assert not rules_state(NodeSnapshot.from_files({}), "iptables").captured


@pytest.mark.parametrize("reason, words", [
    ("unavailable: needs root (CAP_NET_ADMIN): iptables-nft-save: Permission denied", "needs root"),
    ("unavailable: iptables-nft-save not found", "the tool that lists them is missing"),
])
def test_rules_unknown_says_why(reason, words):
    meta = {"node": "pdnode1", "sources": {"iptables-nft-save.txt": reason}}
    report = analyse(NodeSnapshot.from_files({"meta.json": json.dumps(meta)}), ClusterState.from_list(API))
    [finding] = [f for f in report.findings if f.code == "rules-unknown"]
    assert words in finding.message and report.findings[0] is finding
    assert report.services == [] and report.exit_code == 3


def test_scan_counts_a_node_with_unknown_rules_as_not_read():
    from kubectl_proxydoctor.remote.scan import scan

    healthy = FIXTURES / "iptables" / "healthy"
    cluster = ClusterState.from_list(API)
    captures = {"pdnode1": NodeSnapshot.load(healthy),
                "blind": NodeSnapshot.from_files({"meta.json": json.dumps({"node": "pdnode1"})})}
    result = scan(list(captures), captures.__getitem__,
                  lambda snap, node: analyse(snap, cluster, node_name="pdnode1"), concurrency=2)
    by_node = {n.node: n for n in result.nodes}
    assert by_node["pdnode1"].failure is None
    assert "rules were not captured" in (by_node["blind"].failure or "")
    assert result.drift == [] and result.exit_code == 3


def test_a_fallback_read_makes_the_rules_known():
    """ipvsadm missing but /proc/net/ip_vs read; iptables-nft-save missing while the default
    iptables-save dump is of the nf_tables backend: the rules are known (check compares them).
    nft-ruleset.json proves nothing (the collector leaves iptables-nft's own tables out of it)."""
    healthy = FIXTURES / "iptables" / "healthy"
    meta = json.dumps({"sources": {"ipvsadm.txt": "unavailable: ipvsadm not found"}})
    ipvs = NodeSnapshot.from_files({"proc-net-ip_vs.txt": "IP Virtual Server version 1.2.1 (size=4096)\n",
                                    "meta.json": meta})
    assert rules_state(ipvs, "ipvs").known
    assert not rules_state(NodeSnapshot.from_files({"meta.json": meta}), "ipvs").known
    sources = {"iptables-nft-save.txt": "unavailable: iptables-nft-save not found"}
    default = (healthy / "iptables-save.txt").read_text()
    assert "(nf_tables)" in default.splitlines()[0]
    files = {"iptables-save.txt": default, "meta.json": json.dumps({"node": "pdnode1", "sources": sources}),
             "nft-ruleset.json": '{"nftables": [{"metainfo": {}}]}'}
    covered = NodeSnapshot.from_files(files)
    assert rules_state(covered, "iptables").known
    report = analyse(covered, ClusterState.from_list(API))
    assert report.exit_code != 3 and report.services
    legacy_default = default.replace("(nf_tables)", "(legacy)", 1)
    assert not rules_state(NodeSnapshot.from_files({**files, "iptables-save.txt": legacy_default}),
                           "iptables").known
