"""Generate realistic kube-proxy state: API objects (a v1 List like api.json) and the matching
iptables-save text kube-proxy v1.30 would leave (pkg/proxy/iptables/proxier.go layout).

Function API (other generators, e.g. nftables, reuse the service model):

    cluster = generate_cluster(services=1000, endpoints=10, seed=1)   # or endpoints=(1, 100)
    api = api_list(cluster)              # dict: v1 List of Services, EndpointSlices, Node
    text = iptables_save(cluster)        # str: what `iptables-save` prints after kube-proxy synced
    write_capture(cluster, "out/dir")    # a capture directory (api.json, iptables-*-save.txt, ...)

Command line: ``python bench/generate.py --services 1000 --endpoints 10 --out DIR``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import ipaddress
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

NODE = "bench-node-1"
NODE_IP = "192.168.0.10"
POD_CIDR = "10.128.0.0/9"
SERVICE_CIDR_START = "10.96.0.10"
MASQ_MARK = "0x4000"
LARGE_CLUSTER_ENDPOINTS = 1000  # kube-proxy drops endpoint comments above this many endpoints


@dataclass
class GenEndpoint:
    """One pod behind a service: address, node, readiness."""

    ip: str
    node: str
    ready: bool = True


@dataclass
class GenPort:
    name: str
    port: int
    target_port: int
    protocol: str = "TCP"
    node_port: int | None = None


@dataclass
class GenService:
    """One Service with its endpoints, in the shape both the API and the rules are made from."""

    namespace: str
    name: str
    cluster_ip: str
    type: str = "ClusterIP"  # ClusterIP | NodePort | LoadBalancer
    ports: list[GenPort] = field(default_factory=list)
    endpoints: list[GenEndpoint] = field(default_factory=list)
    external_policy: str = "Cluster"
    internal_policy: str = "Cluster"
    external_ips: list[str] = field(default_factory=list)
    lb_ips: list[str] = field(default_factory=list)
    source_ranges: list[str] = field(default_factory=list)
    affinity_seconds: int | None = None

    def port_name(self, port: GenPort) -> str:
        return f"{self.namespace}/{self.name}:{port.name}" if port.name else f"{self.namespace}/{self.name}"


@dataclass
class GenCluster:
    services: list[GenService]
    node: str = NODE
    node_ip: str = NODE_IP
    pod_cidr: str = POD_CIDR

    @property
    def endpoint_count(self) -> int:
        return sum(len(s.ports) * len(ready(s)) for s in self.services)


def ready(svc: GenService) -> list[GenEndpoint]:
    return [e for e in svc.endpoints if e.ready]


def generate_cluster(
    services: int,
    endpoints: int | tuple[int, int] = 10,
    seed: int = 0,
    nodes: int = 10,
    nodeport_share: float = 0.2,
    lb_share: float = 0.08,
    local_share: float = 0.3,
    affinity_share: float = 0.05,
    udp_share: float = 0.05,
    empty_share: float = 0.02,
    namespaces: int = 20,
) -> GenCluster:
    """N services with M endpoints each (an int, or a (low, high) range drawn per service)."""
    rnd = random.Random(seed)
    svc_ip = int(ipaddress.ip_address(SERVICE_CIDR_START))
    pod_ip = int(ipaddress.ip_network(POD_CIDR).network_address) + 2
    lb_ip = int(ipaddress.ip_address("203.0.113.0")) << 0
    ext_ip = int(ipaddress.ip_address("198.51.100.0"))
    node_port = 30000
    lb_count = 0
    out: list[GenService] = []
    for i in range(services):
        ns = f"ns-{i % namespaces}"
        svc = GenService(ns, f"svc-{i}", str(ipaddress.ip_address(svc_ip + i)))
        roll = rnd.random()
        if roll < lb_share:
            svc.type = "LoadBalancer"
            lb_count += 1
            svc.lb_ips = [str(ipaddress.ip_address(lb_ip + lb_count % 60000))]
            if rnd.random() < 0.5:
                svc.source_ranges = ["172.16.0.0/12"]
        elif roll < lb_share + nodeport_share:
            svc.type = "NodePort"
        if svc.type != "ClusterIP" and rnd.random() < local_share:
            svc.external_policy = "Local"
        if rnd.random() < 0.01:
            svc.external_ips = [str(ipaddress.ip_address(ext_ip + 1 + i % 250))]
        if rnd.random() < affinity_share:
            svc.affinity_seconds = 10800
        if rnd.random() < udp_share:
            svc.ports = [GenPort("dns", 53, 5353, "UDP"), GenPort("dns-tcp", 53, 5353, "TCP")]
        else:
            svc.ports = [GenPort("http", 80, 8080, "TCP")]
        if svc.type in ("NodePort", "LoadBalancer"):
            for p in svc.ports:
                p.node_port = node_port
                node_port += 1
        count = endpoints if isinstance(endpoints, int) else rnd.randint(*endpoints)
        if rnd.random() < empty_share:
            count = 0
        for _ in range(count):
            node = NODE if rnd.random() < 1.0 / nodes else f"bench-node-{rnd.randint(2, nodes)}"
            svc.endpoints.append(GenEndpoint(str(ipaddress.ip_address(pod_ip)), node, rnd.random() > 0.02))
            pod_ip += 1
        out.append(svc)
    return GenCluster(out)


# -- API objects -----------------------------------------------------------------------------------


def api_list(cluster: GenCluster) -> dict:
    """Services, EndpointSlices (≤ 100 endpoints each) and this Node as `kubectl get -o json`."""
    items: list[dict] = []
    for svc in cluster.services:
        spec: dict = {
            "type": svc.type,
            "clusterIP": svc.cluster_ip,
            "clusterIPs": [svc.cluster_ip],
            "ipFamilies": ["IPv4"],
            "sessionAffinity": "ClientIP" if svc.affinity_seconds else "None",
            "internalTrafficPolicy": svc.internal_policy,
            "ports": [
                {
                    "name": p.name,
                    "port": p.port,
                    "targetPort": p.target_port,
                    "protocol": p.protocol,
                    **({"nodePort": p.node_port} if p.node_port else {}),
                }
                for p in svc.ports
            ],
        }
        if svc.type != "ClusterIP":
            spec["externalTrafficPolicy"] = svc.external_policy
        if svc.affinity_seconds:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": svc.affinity_seconds}}
        if svc.external_ips:
            spec["externalIPs"] = list(svc.external_ips)
        if svc.source_ranges:
            spec["loadBalancerSourceRanges"] = list(svc.source_ranges)
        status = {"loadBalancer": {"ingress": [{"ip": ip} for ip in svc.lb_ips]}} if svc.lb_ips else {}
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"namespace": svc.namespace, "name": svc.name},
                "spec": spec,
                "status": status,
            }
        )
        for n, start in enumerate(range(0, max(len(svc.endpoints), 1), 100)):
            chunk = svc.endpoints[start : start + 100]
            items.append(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "addressType": "IPv4",
                    "metadata": {
                        "namespace": svc.namespace,
                        "name": f"{svc.name}-{n:05d}",
                        "labels": {"kubernetes.io/service-name": svc.name},
                    },
                    "ports": [
                        {"name": p.name, "port": p.target_port, "protocol": p.protocol} for p in svc.ports
                    ],
                    "endpoints": [
                        {
                            "addresses": [e.ip],
                            "nodeName": e.node,
                            "conditions": {"ready": e.ready, "serving": e.ready, "terminating": False},
                        }
                        for e in chunk
                    ],
                }
            )
    items.append(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": cluster.node},
            "status": {"addresses": [{"type": "InternalIP", "address": cluster.node_ip}]},
        }
    )
    return {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}


# -- iptables-save text ----------------------------------------------------------------------------


def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def _probability(n: int) -> str:
    """kube-proxy writes %0.10f of 1/n; the kernel keeps it as a u32 and iptables-save prints %.11f."""
    p = float(f"{1.0 / n:0.10f}")
    return f"{round(p * 0x80000000) / 0x80000000:.11f}"


class _Tables:
    def __init__(self) -> None:
        self.chains: dict[str, dict[str, list[str]]] = {"mangle": {}, "filter": {}, "nat": {}}
        self.builtin = {
            "mangle": ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
            "filter": ["INPUT", "FORWARD", "OUTPUT"],
            "nat": ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        }
        for table, names in self.builtin.items():
            for name in names:
                self.chains[table][name] = []

    def chain(self, table: str, name: str) -> list[str]:
        return self.chains[table].setdefault(name, [])

    def add(self, table: str, chain: str, rule: str) -> None:
        self.chain(table, chain).append(f"-A {chain} {rule}")

    def render(self, version: str = "v1.8.9 (nf_tables)") -> str:
        out: list[str] = []
        stamp = "Mon Nov 23 10:00:00 2026"
        for table in ("mangle", "filter", "nat"):
            chains = self.chains[table]
            users = sorted(c for c in chains if c not in self.builtin[table])
            out.append(f"# Generated by iptables-save {version} on {stamp}")
            out.append(f"*{table}")
            out.extend(f":{c} ACCEPT [0:0]" for c in self.builtin[table])
            out.extend(f":{c} - [0:0]" for c in users)
            for c in [*self.builtin[table], *users]:
                out.extend(chains[c])
            out.append("COMMIT")
            out.append(f"# Completed on {stamp}")
        return "\n".join(out) + "\n"


def _skeleton(t: _Tables) -> None:
    t.chain("mangle", "KUBE-PROXY-CANARY")
    for c in (
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FIREWALL",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-CANARY",
        "KUBE-PROXY-FIREWALL",
        "KUBE-SERVICES",
    ):
        t.chain("filter", c)
    for c in ("KUBE-MARK-MASQ", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-PROXY-CANARY", "KUBE-SERVICES"):
        t.chain("nat", c)
    new = "-m conntrack --ctstate NEW"
    t.add("filter", "INPUT", "-j KUBE-FIREWALL")
    t.add(
        "filter",
        "INPUT",
        f'{new} -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
    )
    t.add("filter", "INPUT", '-m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS')
    t.add(
        "filter",
        "INPUT",
        f'{new} -m comment --comment "kubernetes externally-visible service portals" '
        "-j KUBE-EXTERNAL-SERVICES",
    )
    t.add(
        "filter",
        "FORWARD",
        f'{new} -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
    )
    t.add("filter", "FORWARD", '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD')
    t.add("filter", "FORWARD", f'{new} -m comment --comment "kubernetes service portals" -j KUBE-SERVICES')
    t.add(
        "filter",
        "FORWARD",
        f'{new} -m comment --comment "kubernetes externally-visible service portals" '
        "-j KUBE-EXTERNAL-SERVICES",
    )
    t.add("filter", "OUTPUT", "-j KUBE-FIREWALL")
    t.add(
        "filter",
        "OUTPUT",
        f'{new} -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
    )
    t.add("filter", "OUTPUT", f'{new} -m comment --comment "kubernetes service portals" -j KUBE-SERVICES')
    t.add(
        "filter",
        "KUBE-FIREWALL",
        '! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming '
        'localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT '
        "-j DROP",
    )
    t.add("filter", "KUBE-FORWARD", "-m conntrack --ctstate INVALID -j DROP")
    t.add(
        "filter",
        "KUBE-FORWARD",
        f'-m comment --comment "kubernetes forwarding rules" -m mark --mark '
        f"{MASQ_MARK}/{MASQ_MARK} -j ACCEPT",
    )
    t.add(
        "filter",
        "KUBE-FORWARD",
        '-m comment --comment "kubernetes forwarding conntrack rule" -m conntrack '
        "--ctstate RELATED,ESTABLISHED -j ACCEPT",
    )
    t.add("nat", "PREROUTING", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES')
    t.add("nat", "OUTPUT", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES')
    t.add("nat", "POSTROUTING", '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING')
    t.add("nat", "KUBE-MARK-MASQ", f"-j MARK --set-xmark {MASQ_MARK}/{MASQ_MARK}")
    t.add("nat", "KUBE-POSTROUTING", f"-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN")
    t.add("nat", "KUBE-POSTROUTING", f"-j MARK --set-xmark {MASQ_MARK}/0x0")
    t.add(
        "nat",
        "KUBE-POSTROUTING",
        '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    )


def iptables_save(cluster: GenCluster, version: str = "v1.8.9 (nf_tables)") -> str:
    """The iptables-save text after kube-proxy synced ``cluster`` on its node (IPv4)."""
    t = _Tables()
    _skeleton(t)
    large = cluster.endpoint_count > LARGE_CLUSTER_ENDPOINTS
    for svc in cluster.services:
        for port in svc.ports:
            _service_port(t, cluster, svc, port, large)
    t.add(
        "nat",
        "KUBE-SERVICES",
        '-m comment --comment "kubernetes service nodeports; NOTE: this must be the '
        'last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
    )
    return t.render(version)


def _service_port(t: _Tables, cluster: GenCluster, svc: GenService, port: GenPort, large: bool) -> None:
    name = svc.port_name(port)
    proto = port.protocol.lower()
    h = _hash(name + proto)
    svc_chain, svl_chain, ext_chain, fw_chain = (f"KUBE-{p}-{h}" for p in ("SVC", "SVL", "EXT", "FW"))
    eps = ready(svc)
    local = [e for e in eps if e.node == cluster.node]
    has_eps = bool(eps)
    ext_local = svc.external_policy == "Local"
    has_ext_eps = has_eps and (bool(local) if ext_local else True)
    externally = svc.type != "ClusterIP" or bool(svc.external_ips)

    def dst(ip: str, p: int) -> str:
        return f"-d {ip}/32 -p {proto}"

    if has_eps:
        t.add(
            "nat",
            "KUBE-SERVICES",
            f'{dst(svc.cluster_ip, port.port)} -m comment --comment "{name} cluster IP" '
            f"-m {proto} --dport {port.port} -j {svc_chain}",
        )
    else:
        t.add(
            "filter",
            "KUBE-SERVICES",
            f'{dst(svc.cluster_ip, port.port)} -m comment --comment "{name} has no '
            f'endpoints" -m {proto} --dport {port.port} -j REJECT --reject-with '
            "icmp-port-unreachable",
        )
    no_ext = f'"{name} has no endpoints"' if not has_eps else f'"{name} has no local endpoints"'
    no_ext_target = "REJECT --reject-with icmp-port-unreachable" if not has_eps else "DROP"
    for ip in svc.external_ips:
        if has_eps:
            t.add(
                "nat",
                "KUBE-SERVICES",
                f'{dst(ip, port.port)} -m comment --comment "{name} external IP" '
                f"-m {proto} --dport {port.port} -j {ext_chain}",
            )
        if not has_ext_eps:
            t.add(
                "filter",
                "KUBE-EXTERNAL-SERVICES",
                f"{dst(ip, port.port)} -m comment --comment {no_ext} "
                f"-m {proto} --dport {port.port} -j {no_ext_target}",
            )
    uses_fw = has_eps and bool(svc.lb_ips) and bool(svc.source_ranges)
    for ip in svc.lb_ips:
        if has_eps:
            t.add(
                "nat",
                "KUBE-SERVICES",
                f'{dst(ip, port.port)} -m comment --comment "{name} loadbalancer IP" '
                f"-m {proto} --dport {port.port} -j {fw_chain if uses_fw else ext_chain}",
            )
        if uses_fw:
            t.add(
                "filter",
                "KUBE-PROXY-FIREWALL",
                f'{dst(ip, port.port)} -m comment --comment "{name} traffic '
                f'not accepted by {fw_chain}" -m {proto} --dport {port.port} '
                "-j DROP",
            )
        if not has_ext_eps:
            t.add(
                "filter",
                "KUBE-EXTERNAL-SERVICES",
                f"{dst(ip, port.port)} -m comment --comment {no_ext} "
                f"-m {proto} --dport {port.port} -j {no_ext_target}",
            )
    if port.node_port:
        if has_eps:
            t.add(
                "nat",
                "KUBE-NODEPORTS",
                f'-p {proto} -m comment --comment "{name}" -m {proto} '
                f"--dport {port.node_port} -j {ext_chain}",
            )
        if not has_ext_eps:
            t.add(
                "filter",
                "KUBE-EXTERNAL-SERVICES",
                f"-p {proto} -m comment --comment {no_ext} -m addrtype "
                f"--dst-type LOCAL -m {proto} --dport {port.node_port} "
                f"-j {no_ext_target}",
            )
    if not has_eps:
        return
    t.add(
        "nat",
        svc_chain,
        f"! -s {cluster.pod_cidr} {dst(svc.cluster_ip, port.port)} -m comment --comment "
        f'"{name} cluster IP" -m {proto} --dport {port.port} -j KUBE-MARK-MASQ',
    )
    if externally:
        t.chain("nat", ext_chain)
        if not ext_local:
            t.add(
                "nat",
                ext_chain,
                f'-m comment --comment "masquerade traffic for {name} external destinations" '
                "-j KUBE-MARK-MASQ",
            )
        else:
            t.add(
                "nat",
                ext_chain,
                f'-s {cluster.pod_cidr} -m comment --comment "pod traffic for {name} '
                f'external destinations" -j {svc_chain}',
            )
            t.add(
                "nat",
                ext_chain,
                f'-m comment --comment "masquerade LOCAL traffic for {name} external '
                'destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ',
            )
            t.add(
                "nat",
                ext_chain,
                f'-m comment --comment "route LOCAL traffic for {name} external destinations" '
                f"-m addrtype --src-type LOCAL -j {svc_chain}",
            )
        if has_ext_eps:
            t.add("nat", ext_chain, f"-j {svl_chain if ext_local else svc_chain}")
    if uses_fw:
        for cidr in svc.source_ranges:
            t.add("nat", fw_chain, f'-s {cidr} -m comment --comment "{name} loadbalancer IP" -j {ext_chain}')
        t.add(
            "nat",
            fw_chain,
            f'-m comment --comment "other traffic to {name} will be dropped by KUBE-PROXY-FIREWALL"',
        )
    _endpoint_rules(t, svc, port, name, svc_chain, eps, large)
    if ext_local and local:
        _endpoint_rules(t, svc, port, name, svl_chain, local, large, seps=False)


def _endpoint_rules(
    t: _Tables,
    svc: GenService,
    port: GenPort,
    name: str,
    chain: str,
    eps: list[GenEndpoint],
    large: bool,
    seps: bool = True,
) -> None:
    proto = port.protocol.lower()
    t.chain("nat", chain)

    def comment(text: str) -> str:
        return "" if large else f'-m comment --comment "{text}" '

    sep_names = []
    for e in eps:
        ep = f"{e.ip}:{port.target_port}"
        sep_names.append((f"KUBE-SEP-{_hash(name + proto + ep)}", ep, e))
    if svc.affinity_seconds:
        for sep, ep, _e in sep_names:
            t.add(
                "nat",
                chain,
                f"{comment(f'{name} -> {ep}')}-m recent --rcheck --seconds {svc.affinity_seconds} "
                f"--reap --name {sep} --mask 255.255.255.255 --rsource -j {sep}",
            )
    n = len(sep_names)
    for i, (sep, ep, _e) in enumerate(sep_names):
        stat = f"-m statistic --mode random --probability {_probability(n - i)} " if i < n - 1 else ""
        t.add("nat", chain, f"{comment(f'{name} -> {ep}')}{stat}-j {sep}".replace("  ", " "))
    if not seps:
        return
    for sep, ep, e in sep_names:
        t.add("nat", sep, f"-s {e.ip}/32 {comment(name)}-j KUBE-MARK-MASQ")
        recent = (
            f"-m recent --set --name {sep} --mask 255.255.255.255 --rsource " if svc.affinity_seconds else ""
        )
        t.add("nat", sep, f"-p {proto} {comment(name)}{recent}-m {proto} -j DNAT --to-destination {ep}")


# -- a capture directory ---------------------------------------------------------------------------


def ip_addr_json(cluster: GenCluster) -> str:
    return json.dumps(
        [
            {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
            {"ifname": "eth0", "addr_info": [{"family": "inet", "local": cluster.node_ip, "prefixlen": 24}]},
        ]
    )


def write_capture(cluster: GenCluster, path: str | Path, iptables_text: str | None = None) -> Path:
    """A capture directory for ``cluster``: api.json, iptables dumps, ip-addr.json, meta.json."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    text = iptables_text if iptables_text is not None else iptables_save(cluster)
    (path / "api.json").write_text(json.dumps(api_list(cluster)))
    (path / "iptables-nft-save.txt").write_text(text)
    (path / "iptables-legacy-save.txt").write_text("")
    (path / "ip-addr.json").write_text(ip_addr_json(cluster))
    (path / "kube-proxy-mode.txt").write_text("iptables")
    (path / "meta.json").write_text(json.dumps({"node": cluster.node, "mode": "iptables", "generated": True}))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", default="10", help="N, or LOW-HIGH for a range per service")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="capture directory to write")
    args = ap.parse_args()
    if "-" in args.endpoints:
        lo, hi = (int(x) for x in args.endpoints.split("-", 1))
        eps: int | tuple[int, int] = (lo, hi)
    else:
        eps = int(args.endpoints)
    cluster = generate_cluster(args.services, eps, seed=args.seed)
    out = write_capture(cluster, args.out)
    print(f"{out}: {len(cluster.services)} services, {cluster.endpoint_count} endpoints")


if __name__ == "__main__":
    main()
