"""Structural IPVS checks on the fixtures, and on copies of them with one thing broken."""

import json
from pathlib import Path

import pytest

from kubectl_proxydoctor.checks import CheckContext, run_checks
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIX = Path(__file__).parent / "fixtures"


def _real(addr: str, weight: int, active: int = 0, inactive: int = 0) -> str:
    """A real-server line laid out like the fixture's ipvsadm.txt."""
    return f"  -> {addr:<28}Masq    {weight}      {active}          {inactive}"

IPVS_CHECKS = ["ipvs-kube-ipvs0", "ipvs-weights", "ipvs-ipsets", "ipvs-kernel-modules", "ipvs-sysctls"]


def _snap(name="ipvs/healthy") -> NodeSnapshot:
    return NodeSnapshot.load(FIX / name)


def _run(snap, cluster=None):
    return run_checks(CheckContext(snap, cluster=cluster), only=IPVS_CHECKS)


def _codes(findings):
    return sorted(f.code for f in findings)


def _edit_ipvsadm(snap, old, new):
    text = snap.files["ipvsadm.txt"]
    assert old in text
    snap.files["ipvsadm.txt"] = text.replace(old, new, 1)


@pytest.mark.parametrize("name", ["ipvs/healthy", "ipvs/stale-endpoint", "iptables/healthy",
                                  "nftables/healthy"])
def test_fixtures_have_no_structural_findings(name):
    assert _run(_snap(name)) == []


def _set_ipvs0(snap, change):
    doc = json.loads(snap.files["ip-addr.json"])
    link = next(link for link in doc if link["ifname"] == "kube-ipvs0")
    change(link["addr_info"])
    snap.files["ip-addr.json"] = json.dumps(doc)


def test_virtual_server_without_kube_ipvs0_address_and_leftover_address():
    snap = _snap()
    _set_ipvs0(snap, lambda infos: infos.remove(next(i for i in infos if i["local"] == "10.96.100.10")))
    _set_ipvs0(snap, lambda infos: infos.append({"family": "inet", "local": "10.96.100.99", "prefixlen": 32}))
    api = ClusterState.from_json_text(snap.text("api.json"))
    findings = _run(snap, api)
    assert _codes(findings) == ["ipvs-address-leftover", "ipvs-vip-unbound"]
    unbound = next(f for f in findings if f.code == "ipvs-vip-unbound")
    assert unbound.severity == "error" and "10.96.100.10:80" in unbound.message
    assert (unbound.service, unbound.port) == ("default/web", "http")  # named through the API
    assert "ip addr add 10.96.100.10/32 dev kube-ipvs0" in unbound.fix
    leftover = next(f for f in findings if f.code == "ipvs-address-leftover")
    assert "10.96.100.99" in leftover.message and "#78421" in leftover.message


def test_weight_zero_draining_stuck_and_all_zero():
    snap = _snap()
    # web: one real server draining with connections, one stuck without any
    _edit_ipvsadm(snap, "TCP  10.96.100.10:80 rr\n" + _real("10.244.0.11:8080", 1, 0, 0),
                  "TCP  10.96.100.10:80 rr\n" + _real("10.244.0.11:8080", 0, 4, 2))
    _edit_ipvsadm(snap, "  -> 10.244.0.12:8080            Masq    1      0          0\n"
                        "  -> 10.244.0.13:8080            Masq    1      0          0\nTCP  10.96.100.11",
                  "  -> 10.244.0.12:8080            Masq    0      0          0\n"
                  "  -> 10.244.0.13:8080            Masq    1      0          0\nTCP  10.96.100.11")
    # terminating: its only real server at weight 0
    _edit_ipvsadm(snap, "TCP  10.96.100.20:80 rr\n" + _real("10.244.0.11:8080", 1, 0, 0),
                  "TCP  10.96.100.20:80 rr\n" + _real("10.244.0.11:8080", 0, 1, 0))
    # dns over UDP: weight 0 is deleted at once, connections or not
    _edit_ipvsadm(snap, "UDP  10.96.100.16:53 rr\n" + _real("10.244.0.11:5353", 1, 0, 0),
                  "UDP  10.96.100.16:53 rr\n" + _real("10.244.0.11:5353", 0, 3, 0))
    findings = _run(snap)
    by = {(f.code, next(w for w in f.message.split() if w.count(":") == 1 and w[0].isdigit())): f
          for f in findings}
    assert set(by) == {("ipvs-draining", "10.244.0.11:8080"), ("ipvs-weight-stuck", "10.244.0.12:8080"),
                       ("ipvs-all-weights-zero", "10.96.100.20:80/tcp"),
                       ("ipvs-weight-stuck", "10.244.0.11:5353")}
    assert _codes(findings).count("ipvs-draining") == 2
    stuck = by[("ipvs-weight-stuck", "10.244.0.12:8080")]
    assert stuck.severity == "warning" and "#92019" in stuck.message
    assert by[("ipvs-all-weights-zero", "10.96.100.20:80/tcp")].severity == "error"
    assert "UDP real servers are deleted at once" in by[("ipvs-weight-stuck", "10.244.0.11:5353")].message


def test_ipset_entries_without_virtual_server_and_frontend_missing_from_ipsets():
    snap = _snap()
    text = snap.files["ipset-save.txt"]
    text = text.replace("add KUBE-CLUSTER-IP 10.96.100.10,tcp:80\n", "")
    text = text.replace("add KUBE-NODE-PORT-TCP 30080\n", "")
    text = text.replace("add KUBE-NODE-PORT-TCP 30082\n",
                        "add KUBE-NODE-PORT-TCP 30082\nadd KUBE-NODE-PORT-TCP 30099\n")
    text += "add KUBE-CLUSTER-IP 10.96.100.99,tcp:80\nadd KUBE-EXTERNAL-IP 198.51.100.20,udp:80\n"
    snap.files["ipset-save.txt"] = text
    findings = _run(snap)
    assert sorted(set(_codes(findings))) == ["ipvs-frontend-not-in-ipset", "ipvs-ipset-leftover"]
    leftover = next(f for f in findings if f.code == "ipvs-ipset-leftover")
    assert leftover.message.startswith("3 ipset entries")
    for entry in ("KUBE-CLUSTER-IP 10.96.100.99,tcp:80", "KUBE-NODE-PORT-TCP 30099",
                  "KUBE-EXTERNAL-IP 198.51.100.20,udp:80"):
        assert entry in leftover.message
    assert any(e.startswith("ipset-save.txt:") for e in leftover.evidence)
    missing = [f.message for f in findings if f.code == "ipvs-frontend-not-in-ipset"]
    assert len(missing) == 3 and "10.96.100.10:80" in missing[0]
    assert any("10.244.0.1:30080/tcp is on a node address" in m
               and "KUBE-NODE-PORT-TCP/KUBE-NODE-PORT-LOCAL-TCP" in m for m in missing)


def test_missing_and_unknown_kernel_modules():
    snap = _snap()
    snap.files["modules.txt"] = "\n".join(line for line in snap.files["modules.txt"].splitlines()
                                          if not line.startswith("ip_vs_sh"))
    snap.files["kernel-config.txt"] = snap.files["kernel-config.txt"].replace(
        "CONFIG_IP_VS_SH=m", "# CONFIG_IP_VS_SH is not set")
    _edit_ipvsadm(snap, "TCP  10.96.0.1:443 rr", "TCP  10.96.0.1:443 lc")
    findings = _run(snap)
    assert _codes(findings) == ["ipvs-module-missing", "ipvs-module-unknown"]
    missing = next(f for f in findings if f.code == "ipvs-module-missing")
    assert "ip_vs_sh" in missing.message and missing.severity == "error"
    assert missing.evidence == ["CONFIG_IP_VS_SH is not set in kernel-config.txt"]
    assert "ip_vs_lc" in next(f for f in findings if f.code == "ipvs-module-unknown").message


def test_modules_checked_when_kube_proxy_says_ipvs_but_kernel_has_none():
    config = "# CONFIG_IP_VS is not set\nCONFIG_NF_CONNTRACK=y\n"
    snap = NodeSnapshot.from_files({"kube-proxy-mode.txt": "ipvs", "kernel-config.txt": config})
    findings = _run(snap)
    assert [f.code for f in findings if f.severity == "error"] == ["ipvs-module-missing"]
    assert "ip_vs " in findings[0].message


def test_sysctls_kube_proxy_sets():
    snap = _snap()
    snap.files["kernel.txt"] = "5.4.0-150-generic\n"
    snap.files["sysctl.txt"] = ("net.ipv4.vs.conntrack = 0\nnet.ipv4.vs.expire_nodest_conn = 1\n"
                                "net.ipv4.vs.conn_reuse_mode = 1\nnet.ipv4.ip_forward = 1\n"
                                "net.ipv4.conf.all.arp_ignore = 0\nnet.ipv4.conf.all.arp_announce = 2\n")
    findings = _run(snap)
    assert sorted((f.code, f.severity, f.message.split()[0]) for f in findings) == [
        ("ipvs-sysctl", "error", "net.ipv4.vs.conntrack"),
        ("ipvs-sysctl", "warning", "net.ipv4.vs.conn_reuse_mode")]
    # conn_reuse_mode is left alone on kernels >= 5.9; arp_ignore matters once strictARP is on
    snap.files["kernel.txt"] = "6.1.0\n"
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
          "data": {"config.conf": "kind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: true\n"}}
    findings = _run(snap, ClusterState.from_list({"items": [cm]}))
    assert sorted(f.message.split()[0] for f in findings) == [
        "net.ipv4.conf.all.arp_ignore", "net.ipv4.vs.conntrack"]
    arp = next(f for f in findings if "arp_ignore" in f.message)
    assert any("strictARP" in e for e in arp.evidence)
    assert arp.fix.startswith("sysctl -w net.ipv4.conf.all.arp_ignore=1")


def test_missing_kube_ipvs0_is_one_finding():
    snap = _snap()
    doc = [link for link in json.loads(snap.files["ip-addr.json"]) if link["ifname"] != "kube-ipvs0"]
    snap.files["ip-addr.json"] = json.dumps(doc)
    findings = _run(snap)
    assert _codes(findings) == ["ipvs-vip-unbound"]
    assert findings[0].message.startswith("kube-ipvs0 does not exist: packets to 18 ")  # 24 - 6 NodePort
