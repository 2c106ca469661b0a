"""Fixes are safe and work as written (issue 16 items 4 and 7): the cleanup commands a finding
shows are run for real in a network namespace holding the captured rules."""

from __future__ import annotations

from pathlib import Path

from kubectl_proxydoctor.checks import CheckContext, run_checks
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.proxy_mode import decide, leftovers
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.conftest import ns_run

FIXTURES = Path(__file__).parent / "fixtures"
SWITCHED = "nftables/after-switch-from-iptables"
LOCALNET_RULE = '"block incoming localnet connections"'


def _load(scenario: str) -> tuple[NodeSnapshot, ClusterState]:
    snap = NodeSnapshot.load(FIXTURES / scenario)
    return snap, ClusterState.from_json_text((FIXTURES / scenario / "api.json").read_text())


def _sysctl_with_localnet(scenario: str, value: str | None) -> str:
    lines = (FIXTURES / scenario / "sysctl.txt").read_text().splitlines()
    kept = [line for line in lines if "route_localnet" not in line]
    if value is not None:
        kept.append(f"net.ipv4.conf.all.route_localnet = {value}")
    return "\n".join(kept) + "\n"


def _mode_leftover_fixes(snap: NodeSnapshot, cluster: ClusterState) -> list[str]:
    found = run_checks(CheckContext(snapshot=snap, cluster=cluster), only=("proxy-mode-leftover",))
    return [f.fix for f in found if f.code == "mode-leftover"]


def _iptables_leftover(snap: NodeSnapshot):
    (left,) = [x for x in leftovers(snap, decide(snap)) if x.source == "iptables"]
    return left


def test_mode_leftover_keeps_kube_firewall_while_route_localnet_is_1():
    snap, cluster = _load(SWITCHED)
    assert "net.ipv4.conf.all.route_localnet = 1" in snap.text("sysctl.txt")
    left = _iptables_leftover(snap)
    assert not [c for c in left.commands if "KUBE-FIREWALL" in c]
    assert left.commands  # the rest is still cleaned up
    ipv4, ipv6 = _mode_leftover_fixes(snap, cluster)
    assert "KUBE-FIREWALL is kept" in ipv4 and "CVE-2020-8558" in ipv4 and "route_localnet = 1" in ipv4
    assert "iptables-nft -t filter -X KUBE-FIREWALL" not in ipv4  # the nf_tables dump's own binary
    # ip6tables' KUBE-FIREWALL is empty: no protection to keep, it goes with the rest
    assert "ip6tables-nft -t filter -X KUBE-FIREWALL" in ipv6 and "is kept" not in ipv6


def test_mode_leftover_keeps_kube_firewall_when_route_localnet_is_unknown():
    snap, cluster = _load(SWITCHED)
    del snap.files["sysctl.txt"]
    left = _iptables_leftover(snap)
    assert not [c for c in left.commands if "KUBE-FIREWALL" in c]
    assert any("route_localnet was not captured" in k for k in left.kept)


def test_mode_leftover_removes_kube_firewall_when_route_localnet_is_0():
    snap, _ = _load(SWITCHED)
    snap.files["sysctl.txt"] = _sysctl_with_localnet(SWITCHED, "0")
    left = _iptables_leftover(snap)
    assert "iptables-nft -t filter -D INPUT -j KUBE-FIREWALL" in left.commands
    assert left.commands.index("iptables-nft -t filter -F KUBE-FIREWALL") < left.commands.index(
        "iptables-nft -t filter -X KUBE-FIREWALL")
    assert not left.kept


def test_mode_leftover_cleanup_run_for_real_leaves_the_localnet_drop(netns):
    """The commands, run as written against the captured rules in a namespace, succeed and leave
    KUBE-FIREWALL and its hooks in place."""
    ns = netns("pd-fix-")
    dump = (FIXTURES / SWITCHED / "iptables-nft-save.txt").read_text()
    ns_run(ns, "iptables-nft-restore", input=dump)
    snap, _ = _load(SWITCHED)
    left = _iptables_leftover(snap)
    for command in left.commands:
        binary, *args = command.split()
        assert binary == "iptables-nft"  # the backend the dump came from, never a bare iptables
        ns_run(ns, binary, *args)
    after = ns_run(ns, "iptables-nft-save").stdout
    assert "-A INPUT -j KUBE-FIREWALL" in after and "-A OUTPUT -j KUBE-FIREWALL" in after
    assert LOCALNET_RULE in after
    assert "KUBE-PROXY-CANARY" not in after and "KUBE-MARK-MASQ" not in after
