"""IPv6: table ip6 kube-proxy loaded into a namespace, read back, interpreted and traced."""

from __future__ import annotations

import subprocess

from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.collect import nftables as nftcollect
from kubectl_proxydoctor.model import Endpoint, Packet
from kubectl_proxydoctor.modes.nftables import interpret, trace
from kubectl_proxydoctor.modes.nftables.interpreter import chain_hash
from kubectl_proxydoctor.snapshot import NodeSnapshot


def _names() -> tuple[str, str, str]:
    base = "default/web6/tcp/http"
    svc = f"service-{chain_hash(base)}-{base}"
    eps = []
    for ip in ("fd00.10..1", "fd00.10..2"):
        ep = f"{base}__{ip}/8080"
        eps.append(f"endpoint-{chain_hash(ep)}-{ep}")
    return svc, eps[0], eps[1]


def script() -> str:
    svc, ep1, ep2 = _names()
    t = "ip6 kube-proxy"
    return f"""add table {t} {{ comment "rules for kube-proxy" ; }}
add chain {t} nat-prerouting {{ type nat hook prerouting priority dstnat ; }}
add chain {t} nat-output {{ type nat hook output priority -100 ; }}
add chain {t} nat-postrouting {{ type nat hook postrouting priority srcnat ; }}
add chain {t} masquerading
add chain {t} services
add chain {t} mark-for-masquerade
add chain {t} {svc}
add chain {t} {ep1}
add chain {t} {ep2}
add set {t} cluster-ips {{ type ipv6_addr ; }}
add map {t} service-ips {{ type ipv6_addr . inet_proto . inet_service : verdict ; }}
add element {t} cluster-ips {{ fd00:96::10 }}
add element {t} service-ips {{ fd00:96::10 . tcp . 80 : goto {svc} }}
add rule {t} nat-prerouting jump services
add rule {t} nat-output jump services
add rule {t} services ip6 daddr . meta l4proto . th dport vmap @service-ips
add rule {t} mark-for-masquerade meta mark set meta mark | 0x4000
add rule {t} nat-postrouting jump masquerading
add rule {t} masquerading meta mark & 0x4000 == 0 return
add rule {t} masquerading meta mark set meta mark ^ 0x4000
add rule {t} masquerading masquerade fully-random
add rule {t} {svc} ip6 daddr fd00:96::10 tcp dport 80 ip6 saddr != fd00:10::/64 jump mark-for-masquerade
add rule {t} {svc} numgen random mod 2 vmap {{ 0 : goto {ep1}, 1 : goto {ep2} }}
add rule {t} {ep1} ip6 saddr fd00:10::1 jump mark-for-masquerade
add rule {t} {ep1} meta l4proto tcp dnat to [fd00:10::1]:8080
add rule {t} {ep2} ip6 saddr fd00:10::2 jump mark-for-masquerade
add rule {t} {ep2} meta l4proto tcp dnat to [fd00:10::2]:8080
"""


def test_ipv6_table_round_trip(netns):
    ns = netns("pd-nft-")
    load = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script(), capture_output=True,
                          text=True)
    assert load.returncode == 0, load.stderr
    ctx = CollectContext(netns=ns)
    nftcollect.collect(ctx)
    snapshot = NodeSnapshot.from_files(ctx.files)
    [view] = interpret(snapshot)
    assert view.source == "nftables-ip6"
    [(key, port)] = view.ports.items()
    assert key[1] == 6 and str(port.name) == "default/web6:http"
    [fe] = port.frontends
    assert (fe.kind, fe.ip, fe.port) == ("cluster-ip", "fd00:96::10", 80)
    assert port.endpoints == [Endpoint("fd00:10::1", 8080), Endpoint("fd00:10::2", 8080)]
    assert fe.masquerade == "from sources outside fd00:10::/64 (off-cluster traffic)"
    assert any("dnat to [fd00:10::1]:8080" in e for t in fe.targets for e in t.evidence)
    [result] = trace(snapshot, Packet("fd00:96::10", 80, "TCP", "fd00:10::1"))
    outs = {str(o.destination): o.masquerade for o in result.outcomes}
    assert outs == {"[fd00:10::1]:8080": True, "[fd00:10::2]:8080": False}
    assert trace(snapshot, Packet("10.0.0.1", 80, "TCP")) == []
