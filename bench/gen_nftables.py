"""Generate the nftables ruleset kube-proxy v1.30 writes (pkg/proxy/nftables/proxier.go) for a
generated cluster (bench/generate.py's service model), as an ``nft -f`` script of ``add`` commands
in the order kube-proxy's transaction uses (chains, then sets/maps and elements, then rules).

    from bench.generate import generate_cluster
    from bench.gen_nftables import nft_script, expected_ports
    cluster = generate_cluster(services=1000, endpoints=10, seed=1)
    text = nft_script(cluster)          # load with: nft -f FILE (inside a network namespace)

Command line: ``python bench/gen_nftables.py --services 1000 --endpoints 10 --out FILE``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.generate import NODE, GenCluster, GenPort, GenService, generate_cluster, ready  # noqa: E402

TABLE = "ip kube-proxy"
MARK = "0x00004000"

SKELETON = "\n".join([
    'add table ip kube-proxy { comment "rules for kube-proxy" ; }',
    'add chain ip kube-proxy filter-prerouting { type filter hook prerouting priority dstnat - 10 ; }',
    'add chain ip kube-proxy filter-input { type filter hook input priority -110 ; }',
    'add chain ip kube-proxy filter-forward { type filter hook forward priority -110 ; }',
    'add chain ip kube-proxy filter-output { type filter hook output priority -110 ; }',
    'add chain ip kube-proxy filter-output-post-dnat { type filter hook output priority -90 ; }',
    'add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority dstnat ; }',
    'add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }',
    'add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority srcnat ; }',
    'add chain ip kube-proxy nodeport-endpoints-check',
    'add chain ip kube-proxy service-endpoints-check',
    'add chain ip kube-proxy firewall-check',
    'add chain ip kube-proxy services',
    'add chain ip kube-proxy masquerading',
    'add chain ip kube-proxy cluster-ips-check',
    'add chain ip kube-proxy mark-for-masquerade',
    'add chain ip kube-proxy reject-chain { comment "helper for @no-endpoint-services / '
    '@no-endpoint-nodeports" ; }',
    'add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }',
    'add set ip kube-proxy nodeport-ips { type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }',
    'add map ip kube-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : '
    'verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }',
    'add map ip kube-proxy no-endpoint-nodeports { type inet_proto . inet_service : verdict ; '
    'comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }',
    'add map ip kube-proxy firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; '
    'comment "destinations that are subject to LoadBalancerSourceRanges" ; }',
    'add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; '
    'comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }',
    'add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; comment '
    '"NodePort traffic" ; }',
    'add rule ip kube-proxy filter-prerouting ct state new jump firewall-check',
    'add rule ip kube-proxy filter-input ct state new jump nodeport-endpoints-check',
    'add rule ip kube-proxy filter-input ct state new jump service-endpoints-check',
    'add rule ip kube-proxy filter-forward ct state new jump service-endpoints-check',
    'add rule ip kube-proxy filter-forward ct state new jump cluster-ips-check',
    'add rule ip kube-proxy filter-output ct state new jump service-endpoints-check',
    'add rule ip kube-proxy filter-output ct state new jump firewall-check',
    'add rule ip kube-proxy filter-output-post-dnat ct state new jump cluster-ips-check',
    'add rule ip kube-proxy nat-prerouting jump services',
    'add rule ip kube-proxy nat-output jump services',
    'add rule ip kube-proxy nat-postrouting jump masquerading',
    'add rule ip kube-proxy nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport '
    'vmap @no-endpoint-nodeports',
    'add rule ip kube-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap '
    '@no-endpoint-services',
    'add rule ip kube-proxy firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips',
    'add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips',
    'add rule ip kube-proxy services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports',
    'add rule ip kube-proxy masquerading meta mark & 0x00004000 == 0 return',
    'add rule ip kube-proxy masquerading meta mark set meta mark ^ 0x00004000',
    'add rule ip kube-proxy masquerading masquerade fully-random',
    'add rule ip kube-proxy cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic '
    'to invalid ports of ClusterIPs"',
    'add rule ip kube-proxy mark-for-masquerade meta mark set meta mark | 0x00004000',
    'add rule ip kube-proxy reject-chain reject',
    '',
    "",
])


def chain_base(svc: GenService, port: GenPort, endpoint: str | None = None) -> str:
    """kube-proxy's hashAndTruncate name: HASH-ns/svc/proto/port[__ip/port]."""
    name = f"{svc.namespace}/{svc.name}/{port.protocol.lower()}/{port.name}"
    if endpoint is not None:
        name += f"__{endpoint}"
    digest = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()[:8]
    return f"{digest}-{name}"


def nft_script(cluster: GenCluster) -> str:
    """The ``nft -f`` script for ``table ip kube-proxy`` after kube-proxy synced ``cluster``."""
    chains: list[str] = []
    sets: list[str] = []
    elements: list[str] = []
    rules: list[str] = []
    elements.append(f"add element {TABLE} nodeport-ips {{ {cluster.node_ip} }}")
    for svc in cluster.services:
        for port in svc.ports:
            _service_port(cluster, svc, port, chains, sets, elements, rules)
    return SKELETON + "\n".join([*chains, *sets, *_unique_keys(elements), *rules]) + "\n"


def _unique_keys(elements: list[str]) -> list[str]:
    """Drop map elements whose key an earlier service already took (the generator can give two
    services the same external IP and port; nft refuses a duplicate key, as for kube-proxy)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for line in elements:
        head, _, rest = line.partition(" { ")
        key = (head, rest.split(" : ")[0].split(" comment ")[0])
        if key in seen:
            continue
        seen.add(key)
        out.append(line)
    return out


def _service_port(cluster: GenCluster, svc: GenService, port: GenPort, chains: list[str], sets: list[str],
                  elements: list[str], rules: list[str]) -> None:
    proto = port.protocol.lower()
    name = svc.port_name(port)
    eps = ready(svc)
    local = [e for e in eps if e.node == NODE]
    has_endpoints = bool(eps)
    external = bool(port.node_port or svc.lb_ips or svc.external_ips)
    etp_local = svc.external_policy == "Local" and external
    svc_chain = f"service-{chain_base(svc, port)}"
    local_chain = f"local-{chain_base(svc, port)}"
    ext_chain = f"external-{chain_base(svc, port)}"
    fw_chain = f"firewall-{chain_base(svc, port)}"
    uses_cluster = bool(eps)
    uses_local = bool(local) and etp_local
    has_external = bool(local) if etp_local else has_endpoints
    uses_ext = has_endpoints and external
    ext_verdict = "goto reject-chain" if not has_endpoints else "drop"
    ep_chains = {e.ip: f"endpoint-{chain_base(svc, port, f'{e.ip}/{port.target_port}')}" for e in eps}
    aff_sets = {ip: c.replace("endpoint-", "affinity-", 1) for ip, c in ep_chains.items()}

    # kube-proxy's order (ensureChain in syncProxyRules): the endpoint chains, then the service,
    # local and external chains, then the firewall chain; nft lists rules in this chain order
    chains.extend(f"add chain {TABLE} {c}" for c in ep_chains.values())
    for used, chain in ((uses_cluster, svc_chain), (uses_local, local_chain), (uses_ext, ext_chain)):
        if used:
            chains.append(f"add chain {TABLE} {chain}")
    uses_fw = bool(svc.lb_ips and svc.source_ranges)
    if uses_fw:
        chains.append(f"add chain {TABLE} {fw_chain}")

    elements.append(f"add element {TABLE} cluster-ips {{ {svc.cluster_ip} }}")
    key = f"{svc.cluster_ip} . {proto} . {port.port}"
    if has_endpoints:
        elements.append(f"add element {TABLE} service-ips {{ {key} : goto {svc_chain} }}")
    else:
        elements.append(f'add element {TABLE} no-endpoint-services {{ {key} comment "{name}" '
                        ': goto reject-chain }')
    for ip in [*svc.external_ips, *svc.lb_ips]:
        k = f"{ip} . {proto} . {port.port}"
        if has_endpoints:
            elements.append(f"add element {TABLE} service-ips {{ {k} : goto {ext_chain} }}")
        if not has_external:
            elements.append(f'add element {TABLE} no-endpoint-services {{ {k} comment "{name}" '
                            f': {ext_verdict} }}')
        if uses_fw and ip in svc.lb_ips:
            elements.append(f"add element {TABLE} firewall-ips {{ {k} : goto {fw_chain} }}")
    if port.node_port:
        k = f"{proto} . {port.node_port}"
        if has_endpoints:
            elements.append(f"add element {TABLE} service-nodeports {{ {k} : goto {ext_chain} }}")
        if not has_external:
            elements.append(f'add element {TABLE} no-endpoint-nodeports {{ {k} comment "{name}" '
                            f': {ext_verdict} }}')

    if has_endpoints:
        rules.append(f"add rule {TABLE} {svc_chain} ip daddr {svc.cluster_ip} {proto} dport {port.port} "
                     f"ip saddr != {cluster.pod_cidr} jump mark-for-masquerade")
    if uses_ext:
        if not etp_local:
            rules.append(f"add rule {TABLE} {ext_chain} jump mark-for-masquerade")
        else:
            rules.append(f'add rule {TABLE} {ext_chain} ip saddr {cluster.pod_cidr} goto {svc_chain} '
                         f'comment "short-circuit pod traffic"')
            rules.append(f'add rule {TABLE} {ext_chain} fib saddr type local jump mark-for-masquerade '
                         f'comment "masquerade local traffic"')
            rules.append(f'add rule {TABLE} {ext_chain} fib saddr type local goto {svc_chain} '
                         f'comment "short-circuit local traffic"')
        if has_external:
            rules.append(f"add rule {TABLE} {ext_chain} goto {local_chain if etp_local else svc_chain}")
    if uses_fw:
        rules.append(f"add rule {TABLE} {fw_chain} ip saddr != {{ {', '.join(svc.source_ranges)} }} drop")
    if svc.affinity_seconds:
        sets.extend(f"add set {TABLE} {s} {{ type ipv4_addr ; flags dynamic,timeout ; "
                    f"timeout {svc.affinity_seconds}s ; }}" for s in aff_sets.values())
    policy_chains = ((svc_chain, eps if uses_cluster else []), (local_chain, local if uses_local else []))
    for chain, members in policy_chains:
        if not members:
            continue
        if svc.affinity_seconds:
            rules.extend(f"add rule {TABLE} {chain} ip saddr @{aff_sets[e.ip]} goto {ep_chains[e.ip]}"
                         for e in members)
        vmap = ", ".join(f"{i} : goto {ep_chains[e.ip]}" for i, e in enumerate(members))
        rules.append(f"add rule {TABLE} {chain} numgen random mod {len(members)} vmap {{ {vmap} }}")
    for e in eps:
        chain = ep_chains[e.ip]
        rules.append(f"add rule {TABLE} {chain} ip saddr {e.ip} jump mark-for-masquerade")
        if svc.affinity_seconds:
            rules.append(f"add rule {TABLE} {chain} update @{aff_sets[e.ip]} {{ ip saddr }}")
        rules.append(f"add rule {TABLE} {chain} meta l4proto {proto} dnat to {e.ip}:{port.target_port}")


def expected_ports(cluster: GenCluster) -> dict[str, set[str]]:
    """``ns/svc:port/PROTO`` -> the cluster-IP endpoints ("ip:port") the script programs."""
    return {f"{svc.port_name(p)}/{p.protocol}": {f"{e.ip}:{p.target_port}" for e in ready(svc)}
            for svc in cluster.services for p in svc.ports}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="nft script file to write")
    args = ap.parse_args()
    cluster = generate_cluster(args.services, args.endpoints, seed=args.seed)
    Path(args.out).write_text(nft_script(cluster))
    print(f"{args.out}: {len(cluster.services)} services, {cluster.endpoint_count} endpoints")


if __name__ == "__main__":
    main()
