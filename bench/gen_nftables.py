"""Generate the nftables ruleset kube-proxy writes (pkg/proxy/nftables/proxier.go) for a generated
cluster (bench/generate.py's service model), as an ``nft -f`` script of ``add`` commands in the
order kube-proxy's transaction uses (chains, then sets/maps and elements, then rules).

Two layouts (modes/nftables/layout.py): ``v1.30`` (every service port has endpoint chains, jumps
to ``mark-for-masquerade``) and ``v1.36`` (the newest: services without session affinity DNAT
straight from ``numgen random mod N map { i : ip . port }`` with no endpoint chains; marks inline;
``hairpin-connections`` set; pre-DNAT filter chains), as tests/fixtures/upstream/nftables/master.

    from bench.generate import generate_cluster
    from bench.gen_nftables import nft_script, expected_ports
    cluster = generate_cluster(services=1000, endpoints=10, seed=1)
    text = nft_script(cluster)          # load with: nft -f FILE (inside a network namespace)
    newest = nft_script(cluster, layout="v1.36")

Command line: ``python bench/gen_nftables.py --services 1000 --endpoints 10 [--layout v1.36] --out FILE``.
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
SERVICE_CIDR = "10.96.0.0/12"  # bench/generate.py's cluster IPs start at 10.96.0.10
LAYOUTS = ("v1.30", "v1.36")

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


_V130_ONLY = ("kube-proxy filter-", "mark-for-masquerade", "kube-proxy masquerading ",
              "kube-proxy cluster-ips-check ", "kube-proxy services ip")
SKELETON_V136 = "\n".join([
    *(line for line in SKELETON.splitlines() if line and not any(k in line for k in _V130_ONLY)),
    'add chain ip kube-proxy filter-prerouting-pre-dnat { type filter hook prerouting '
    'priority dstnat - 10 ; }',
    'add chain ip kube-proxy filter-output-pre-dnat { type filter hook output priority -110 ; }',
    'add chain ip kube-proxy filter-forward { type filter hook forward priority filter ; }',
    'add chain ip kube-proxy filter-input { type filter hook input priority filter ; }',
    'add chain ip kube-proxy filter-output { type filter hook output priority filter ; }',
    'add set ip kube-proxy hairpin-connections { type ipv4_addr . ipv4_addr . inet_proto . inet_service ; '
    'comment "service hairpin connections" ; }',
    'add rule ip kube-proxy filter-prerouting-pre-dnat ct state new jump firewall-check',
    'add rule ip kube-proxy filter-output-pre-dnat ct state new jump firewall-check',
    'add rule ip kube-proxy filter-forward ct state new jump service-endpoints-check',
    'add rule ip kube-proxy filter-forward ct state new jump cluster-ips-check',
    'add rule ip kube-proxy filter-input ct state new jump nodeport-endpoints-check',
    'add rule ip kube-proxy filter-input ct state new jump service-endpoints-check',
    'add rule ip kube-proxy filter-output ct state new jump service-endpoints-check',
    'add rule ip kube-proxy filter-output ct state new jump cluster-ips-check',
    f'add rule ip kube-proxy masquerading meta mark & {MARK} != 0 meta mark set meta mark ^ {MARK} '
    'masquerade fully-random',
    'add rule ip kube-proxy masquerading ct status dnat ip saddr . ip daddr . meta l4proto . th dport '
    '@hairpin-connections masquerade fully-random',
    'add rule ip kube-proxy cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic '
    'to invalid ports of ClusterIPs"',
    f'add rule ip kube-proxy cluster-ips-check ip daddr {SERVICE_CIDR} drop comment "Drop traffic to '
    'unallocated ClusterIPs"',
    "", "",
])


def chain_base(svc: GenService, port: GenPort, endpoint: str | None = None) -> str:
    """kube-proxy's hashAndTruncate name: HASH-ns/svc/proto/port[__ip/port]."""
    name = f"{svc.namespace}/{svc.name}/{port.protocol.lower()}/{port.name}"
    if endpoint is not None:
        name += f"__{endpoint}"
    digest = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()[:8]
    return f"{digest}-{name}"


def nft_script(cluster: GenCluster, layout: str = "v1.30") -> str:
    """The ``nft -f`` script for ``table ip kube-proxy`` after kube-proxy (``layout``: one of
    LAYOUTS) synced ``cluster``."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (one of {', '.join(LAYOUTS)})")
    newest = layout == "v1.36"
    chains: list[str] = []
    sets: list[str] = []
    elements: list[str] = []
    rules: list[str] = []
    elements.append(f"add element {TABLE} nodeport-ips {{ {cluster.node_ip} }}")
    for svc in cluster.services:
        for port in svc.ports:
            _service_port(cluster, svc, port, chains, sets, elements, rules, newest)
    if newest:
        rules.insert(0, f"add rule {TABLE} services ip daddr @cluster-ips ip saddr != {cluster.pod_cidr} "
                        f'meta mark set meta mark | {MARK} comment "masquerade clusterIP traffic from '
                        'outside cluster"')
        rules[1:1] = [f"add rule {TABLE} services ip daddr . meta l4proto . th dport vmap @service-ips",
                      f"add rule {TABLE} services ip daddr @nodeport-ips meta l4proto . th dport vmap "
                      "@service-nodeports"]
    skeleton = SKELETON_V136 if newest else SKELETON
    return skeleton + "\n".join([*chains, *sets, *_unique_keys(elements), *rules]) + "\n"


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
                  elements: list[str], rules: list[str], newest: bool = False) -> None:
    """One service port's chains, sets, elements and rules (``newest``: the v1.36 layout)."""
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
    # v1.36: endpoint chains only for session affinity (the others DNAT from a numgen map)
    ep_chains = {e.ip: f"endpoint-{chain_base(svc, port, f'{e.ip}/{port.target_port}')}" for e in eps
                 if svc.affinity_seconds or not newest}
    masq = f'meta mark set meta mark | {MARK} comment "masquerade"' if newest else "jump mark-for-masquerade"
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

    if newest:  # hairpin: a local endpoint reaching itself through the service is masqueraded
        elements.extend(f"add element {TABLE} hairpin-connections {{ {e.ip} . {e.ip} . {proto} . "
                        f"{port.target_port} }}" for e in local)
    if has_endpoints and not newest:  # v1.36: one rule in the services chain for every cluster IP
        rules.append(f"add rule {TABLE} {svc_chain} ip daddr {svc.cluster_ip} {proto} dport {port.port} "
                     f"ip saddr != {cluster.pod_cidr} jump mark-for-masquerade")
    if uses_ext:
        if not etp_local:
            rules.append(f"add rule {TABLE} {ext_chain} {masq}")
        else:
            rules.append(f'add rule {TABLE} {ext_chain} ip saddr {cluster.pod_cidr} goto {svc_chain} '
                         f'comment "short-circuit pod traffic"')
            local_masq = f"meta mark set meta mark | {MARK}" if newest else "jump mark-for-masquerade"
            rules.append(f'add rule {TABLE} {ext_chain} fib saddr type local {local_masq} '
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
        if newest and not svc.affinity_seconds:
            targets = ", ".join(f"{i} : {e.ip} . {port.target_port}" for i, e in enumerate(members))
            rules.append(f"add rule {TABLE} {chain} meta l4proto {proto} dnat ip to numgen random mod "
                         f"{len(members)} map {{ {targets} }}")
            continue
        if svc.affinity_seconds:
            rules.extend(f"add rule {TABLE} {chain} ip saddr @{aff_sets[e.ip]} goto {ep_chains[e.ip]}"
                         for e in members)
        vmap = ", ".join(f"{i} : goto {ep_chains[e.ip]}" for i, e in enumerate(members))
        rules.append(f"add rule {TABLE} {chain} numgen random mod {len(members)} vmap {{ {vmap} }}")
    for e in eps:
        if e.ip not in ep_chains:
            continue
        chain = ep_chains[e.ip]
        if not newest:
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
    ap.add_argument("--layout", choices=LAYOUTS, default="v1.30")
    ap.add_argument("--out", required=True, help="nft script file to write")
    args = ap.parse_args()
    cluster = generate_cluster(args.services, args.endpoints, seed=args.seed)
    Path(args.out).write_text(nft_script(cluster, args.layout))
    print(f"{args.out}: {len(cluster.services)} services, {cluster.endpoint_count} endpoints")


if __name__ == "__main__":
    main()
