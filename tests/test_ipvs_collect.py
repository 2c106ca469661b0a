"""Integration: kube-ipvs0 and kube-proxy's ipsets in a namespace, read back by the IPVS collector."""

from __future__ import annotations

import os
import shutil

import pytest

from kubectl_proxydoctor import nodeinfo
from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.collect import addresses as addresses_collector
from kubectl_proxydoctor.collect import ipvs as ipvs_collector
from kubectl_proxydoctor.formats import ipvsadm
from kubectl_proxydoctor.modes.ipvs import interpret, ipset
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.conftest import FIXTURES, ns_run

pytestmark = pytest.mark.integration
HEALTHY = FIXTURES / "ipvs" / "healthy"
HAS_IPVS = os.path.exists("/proc/net/ip_vs")


def _kube_ipvs0_addresses() -> list[str]:
    snap = NodeSnapshot.load(HEALTHY)
    return [a.ip for a in nodeinfo.interface_addresses(snap, "kube-ipvs0")]


def _setup(ns: str) -> None:
    if shutil.which("ipset") is None:
        pytest.skip("ipset not installed")
    # this kernel has no dummy driver: a bridge holds /32 addresses just the same
    ns_run(ns, "ip", "link", "add", "kube-ipvs0", "type", "bridge")
    for addr in _kube_ipvs0_addresses():
        ns_run(ns, "ip", "addr", "add", f"{addr}/32", "dev", "kube-ipvs0")
    res = ns_run(ns, "ipset", "restore", input=(HEALTHY / "ipset-save.txt").read_text(), check=False)
    if res.returncode != 0:
        pytest.skip(f"kernel lacks ip_set in a namespace: {res.stderr.strip()}")


def _members(sets: dict[str, ipset.IpSet]) -> dict[str, set[str]]:
    return {name: {m.raw for m in s.members} for name, s in sets.items()}


def test_collector_reads_kube_ipvs0_and_ipsets(netns):
    ns = netns("pd-ipvs-")
    _setup(ns)
    ctx = CollectContext(netns=ns)
    addresses_collector.collect(ctx)
    ipvs_collector.collect(ctx)

    assert ctx.sources["ipset"] == "ok"
    collected = ipset.parse(ctx.files["ipset-save.txt"])
    assert _members(collected) == _members(ipset.parse((HEALTHY / "ipset-save.txt").read_text()))
    snap = NodeSnapshot.from_files(dict(ctx.files))
    on_ipvs0 = sorted(a.ip for a in nodeinfo.interface_addresses(snap, "kube-ipvs0"))
    assert on_ipvs0 == sorted(_kube_ipvs0_addresses())
    if not HAS_IPVS:
        assert ctx.sources["ipvs"].startswith("unavailable: kernel has no IP_VS")
        assert "ipvsadm.txt" not in ctx.files
        assert interpret(snap) == []
    # with the fixture's IPVS table next to what was collected, the view is complete
    snap.files["ipvsadm.txt"] = (HEALTHY / "ipvsadm.txt").read_text()
    (view,) = interpret(snap)
    kinds = {f.address: f.kind for p in view.ports.values() for f in p.frontends}
    assert kinds["203.0.113.10:80"] == "load-balancer" and kinds["10.96.100.10:80"] == "cluster-ip"


@pytest.mark.skipif(not HAS_IPVS, reason="kernel has no IP_VS")
def test_live_ipvs_table_through_netlink(netns):  # pragma: no cover - needs a kernel with IP_VS
    ns = netns("pd-ipvs-")
    if shutil.which("ipvsadm") is None:
        pytest.skip("ipvsadm not installed (needed to program the test namespace)")
    ns_run(ns, "ipvsadm", "-A", "-t", "10.96.100.13:80", "-s", "rr", "-p", "600")
    ns_run(ns, "ipvsadm", "-a", "-t", "10.96.100.13:80", "-r", "10.244.0.11:8080", "-m", "-w", "1")
    ns_run(ns, "ipvsadm", "-a", "-t", "10.96.100.13:80", "-r", "10.244.0.13:8080", "-m", "-w", "0")
    ctx = CollectContext(netns=ns)
    ipvs_collector.collect(ctx)
    assert ctx.sources["ipvs"] == "ok"
    table = ipvsadm.parse(ctx.files["ipvsadm.txt"])
    stock = ipvsadm.parse(ns_run(ns, "ipvsadm", "-Ln", "--exact").stdout)

    def shape(t):
        return [(v.protocol, v.ip, v.port, v.scheduler, v.persistent,
                 [(r.ip, r.port, r.weight) for r in v.reals]) for v in t.services]

    assert shape(table) == shape(stock)
    assert "proc-net-ip_vs.txt" in ctx.files


def test_absence_reason_is_one_line():
    reason = ipvs_collector.absence_reason()
    assert "\n" not in reason and reason


def test_netlink_reader_in_a_namespace_restores_ours(netns):
    from kubectl_proxydoctor.collect.ipvs_netlink import read_live
    from kubectl_proxydoctor.errors import SourceUnavailable

    ns = netns("pd-ipvs-")
    before = os.readlink("/proc/self/ns/net")
    if HAS_IPVS:  # pragma: no cover - needs a kernel with IP_VS
        assert read_live(ns).services == []  # a fresh namespace has no virtual servers
    else:
        with pytest.raises(SourceUnavailable, match="IPVS netlink family not available"):
            read_live(ns)
    assert os.readlink("/proc/self/ns/net") == before
