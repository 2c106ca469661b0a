"""IPVS text formats: ipvsadm -Ln, ipvsadm-save -n, /proc/net/ip_vs, ipset save."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.formats import ipvs_procfs as procfs
from kubectl_proxydoctor.formats import ipvsadm
from kubectl_proxydoctor.modes.ipvs import ipset

FIX = Path(__file__).parent / "fixtures" / "ipvs"


def _shape(table):
    return [(vs.protocol, vs.ip, vs.port, vs.scheduler, vs.persistent,
             [(r.ip, r.port, r.forward, r.weight) for r in vs.reals]) for vs in table.services]


def test_ipvsadm_list_fixture():
    table = ipvsadm.parse((FIX / "healthy" / "ipvsadm.txt").read_text())
    assert len(table.services) == 24
    vs = table.find("TCP", "10.96.100.13", 80)
    assert vs.scheduler == "rr" and vs.persistent == 600
    assert [(r.ip, r.port, r.weight) for r in vs.reals] == [
        ("10.244.0.11", 8080, 1), ("10.244.0.13", 8080, 1)]
    assert table.find("TCP", "10.96.100.14", 80).reals == []
    assert table.find("UDP", "10.96.100.16", 53).reals[1].evidence.startswith("-> 10.244.0.13:5353")


def test_proc_net_ip_vs_matches_ipvsadm():
    listed = ipvsadm.parse((FIX / "healthy" / "ipvsadm.txt").read_text())
    # the fixture's /proc copy prints seconds; with hz=1 ticks are seconds
    proc = procfs.parse((FIX / "healthy" / "proc-net-ip_vs.txt").read_text(), hz=1)
    assert _shape(proc) == _shape(listed)


def test_proc_net_ip_vs_kernel_format_ipv6_jiffies_and_mask():
    text = (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n"
        "TCP  0A60640D:0050 rr persistent 150000 FFFFFFFF\n"
        "  -> 0AF4000B:1F90      Masq    0      3          1         \n"
        "UDP  [fd00:0000:0000:0000:0000:0000:0000:0010]:0035 wrr \n"
        "  -> [fd00:0000:0000:0000:0000:0000:0001:0002]:14E9      Masq    2      0          0\n"
    )
    table = procfs.parse(text, hz=250)
    v4, v6 = table.services
    assert (v4.ip, v4.port, v4.persistent, v4.netmask) == ("10.96.100.13", 80, 600, "255.255.255.255")
    assert (v4.reals[0].ip, v4.reals[0].port, v4.reals[0].weight, v4.reals[0].active) == (
        "10.244.0.11", 8080, 0, 3)
    assert (v6.ip, v6.port, v6.family, v6.scheduler) == ("fd00::10", 53, 6, "wrr")
    assert (v6.reals[0].ip, v6.reals[0].port, v6.reals[0].weight) == ("fd00::1:2", 5353, 2)
    unscaled = procfs.parse(text).services[0]
    assert unscaled.persistent == 150000 and "persistent-timeout-unscaled" in unscaled.flags


def test_ipvsadm_save_format():
    text = (
        "-A -t 10.96.0.10:53 -s rr -p 10800\n"
        "-a -t 10.96.0.10:53 -r 10.244.1.5:53 -m -w 1\n"
        "-a -t 10.96.0.10:53 -r 10.244.2.7:53 -m -w 0\n"
        "-A -u [fd00::10]:53 -s sh\n"
        "-a -u [fd00::10]:53 -r [fd00::1:5]:53 -m -w 1\n"
    )
    table = ipvsadm.parse(text)
    tcp, udp = table.services
    assert (tcp.protocol, tcp.ip, tcp.port, tcp.scheduler, tcp.persistent) == (
        "TCP", "10.96.0.10", 53, "rr", 10800)
    assert [(r.ip, r.weight, r.forward) for r in tcp.reals] == [
        ("10.244.1.5", 1, "Masq"), ("10.244.2.7", 0, "Masq")]
    assert (udp.ip, udp.family, udp.scheduler, udp.reals[0].ip) == ("fd00::10", 6, "sh", "fd00::1:5")


def test_render_round_trips():
    listed = ipvsadm.parse((FIX / "healthy" / "ipvsadm.txt").read_text())
    again = ipvsadm.parse(ipvsadm.render_list(listed))
    assert _shape(again) == _shape(listed)
    rendered = ipvsadm.render_list(listed).splitlines()
    assert rendered[0].startswith("IP Virtual Server version")
    assert "TCP  10.96.100.13:80 rr persistent 600" in rendered


@pytest.mark.parametrize(("text", "where"), [
    ("TCP  10.96.0.1:443 rr\n  -> nothost:80 Masq 1 0 0\n", "ipvsadm.txt:2"),
    ("  -> 10.0.0.1:80 Masq 1 0 0\n", "ipvsadm.txt:1"),
    ("TCP  10.96.0.1 rr\n", "ipvsadm.txt:1"),
    ("garbage here\n", "ipvsadm.txt:1"),
    ("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.2:80 -r 10.1.1.1:80 -m -w 1\n", "ipvsadm.txt:2"),
    ("-A -t 10.0.0.1:80 -s rr --bogus\n", "ipvsadm.txt:1"),
])
def test_ipvsadm_errors_name_file_and_line(text, where):
    with pytest.raises(ParseError, match=where):
        ipvsadm.parse(text)


def test_proc_errors_name_line():
    with pytest.raises(ParseError, match=r"proc-net-ip_vs.txt:2"):
        procfs.parse("TCP  0A600001:01BB rr\nTCP  0AZZ0001:01BB rr\n")


def test_ipset_save_and_membership():
    sets = ipset.parse((FIX / "healthy" / "ipset-save.txt").read_text())
    assert sets["KUBE-CLUSTER-IP"].contains(["10.96.100.16", "udp:53"])
    assert not sets["KUBE-CLUSTER-IP"].contains(["10.96.100.16", "tcp:54"])
    assert sets["KUBE-LOOP-BACK"].contains(["10.244.0.11", "tcp:8080", "10.244.0.11"])
    assert not sets["KUBE-LOOP-BACK"].contains(["10.244.0.11", "tcp:8080", "10.244.0.12"])
    assert sets["KUBE-LOAD-BALANCER-SOURCE-CIDR"].contains(["203.0.113.10", "tcp:80", "172.30.0.77"])
    assert not sets["KUBE-LOAD-BALANCER-SOURCE-CIDR"].contains(["203.0.113.10", "tcp:80", "192.0.2.1"])
    assert sets["KUBE-NODE-PORT-TCP"].contains(["tcp:30080"])
    assert ipset.port_members(sets["KUBE-NODE-PORT-LOCAL-TCP"], "TCP") == {30081}
    assert sets["KUBE-IPVS-IPS"].contains(["203.0.113.10"])


def test_ipset_errors():
    with pytest.raises(ParseError, match=r"ipset-save.txt:1: entry for set"):
        ipset.parse("add KUBE-CLUSTER-IP 10.0.0.1,tcp:80\n")
    with pytest.raises(ParseError, match=r"ipset-save.txt:2: .*does not fit"):
        ipset.parse("create S hash:ip,port family inet\nadd S 10.0.0.1\n")
    with pytest.raises(ParseError, match=r"ipset-save.txt:2: bad ip"):
        ipset.parse("create S hash:ip,port family inet\nadd S 10.0.0.300,tcp:80\n")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["tcp", "udp"]), st.integers(1, 4),
                          st.integers(0, 3)), max_size=12),
       st.tuples(st.integers(0, 3), st.sampled_from(["tcp", "udp"]), st.integers(1, 4), st.integers(0, 3)))
def test_indexed_membership_agrees_with_a_scan(entries, query):
    text = ["create L hash:ip,port,ip family inet", "create N hash:ip,port,net family inet",
            "create P bitmap:port range 0-65535"]
    for a, proto, port, b in entries:
        text += [f"add L 10.0.0.{a},{proto}:{port},10.1.0.{b}",
                 f"add N 10.0.0.{a},{proto}:{port},10.1.{b}.0/24", f"add P {port}"]
    sets = ipset.parse("\n".join(text) + "\n")
    a, proto, port, b = query
    for name, values in (("L", [f"10.0.0.{a}", f"{proto}:{port}", f"10.1.0.{b}"]),
                         ("N", [f"10.0.0.{a}", f"{proto}:{port}", f"10.1.{b}.7"]),
                         ("P", [f"{proto}:{port}"])):
        scan = next((m for m in sets[name].members if ipset._member_matches(m, values)), None)
        assert (sets[name].contains(values) is None) == (scan is None)
