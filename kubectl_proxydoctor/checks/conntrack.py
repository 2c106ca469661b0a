"""Conntrack checks: UDP flows still DNATed to removed endpoints, and a conntrack table near full.

kube-proxy deletes UDP conntrack entries after it syncs an endpoint removal (pkg/proxy/conntrack:
``conntrack -D -p udp --orig-dst <service IP> --reply-src <endpoint IP>``, and ``--orig-port-dst``
for NodePorts) for every endpoint that was serving before and is not serving now. When kube-proxy
does not get there (stopped, failing), existing UDP flows stay on the removed endpoint
(kubernetes#125467).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING

from kubectl_proxydoctor import nodeinfo
from kubectl_proxydoctor.checks import CheckContext, check
from kubectl_proxydoctor.conntrack import ConntrackEntry, parse_conntrack
from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.model import Endpoint, Finding

if TYPE_CHECKING:
    from kubectl_proxydoctor.expected import ExpectedNode

NEAR_FULL_PERCENT = 90.0
MAX_EVIDENCE = 10


def _expected(ctx: CheckContext) -> ExpectedNode:
    if ctx.expected is not None:
        return ctx.expected
    assert ctx.cluster is not None  # the check runs with the API's objects or their expected view
    from kubectl_proxydoctor.expected import expected_for_node

    return expected_for_node(ctx.cluster, ctx.snapshot.node)


def _frontend_index(expected) -> tuple[dict, dict]:
    """(ip, port) -> ExpectedPort for UDP service IPs, and nodePort -> ExpectedPort."""
    by_addr: dict[tuple[str, int], object] = {}
    by_node_port: dict[int, object] = {}
    for port in expected.ports.values():
        if port.name.protocol != "UDP":
            continue
        for fe in port.frontends:
            if fe.kind == "node-port":
                if fe.ip is None:
                    by_node_port[fe.port] = port
                else:
                    by_addr[(fe.ip, fe.port)] = port
            elif fe.ip:
                by_addr[(fe.ip, fe.port)] = port
    return by_addr, by_node_port


def _serving(port, ep: Endpoint) -> tuple[bool, object]:
    api = port.api_endpoint(ep)
    return (api is not None and api.serving), api


def _sources(entries: list[ConntrackEntry]) -> str:
    by_client: dict[str, list[int]] = defaultdict(list)
    for e in entries:
        by_client[e.original.src].append(e.original.sport or 0)
    return "; ".join(f"{client} sport {','.join(str(p) for p in sorted(ports))}"
                     for client, ports in sorted(by_client.items()))


@check("stale-conntrack", needs_api=True)
def stale_conntrack(ctx: CheckContext) -> Iterator[Finding]:
    """UDP conntrack entries for a service still DNATed to an endpoint the API no longer serves."""
    text = ctx.snapshot.text("conntrack.txt")
    if not text or ctx.cluster is None and ctx.expected is None:
        return
    try:
        entries = parse_conntrack(text, proto="udp")
    except ProxyDoctorError as e:
        yield Finding("conntrack-unreadable", "warning", f"conntrack.txt could not be read: {e}")
        return
    expected = _expected(ctx)
    try:
        local = nodeinfo.local_addresses(ctx.snapshot)
    except ProxyDoctorError:
        local = set()
    by_addr, by_node_port = _frontend_index(expected)
    groups: dict[tuple, list[ConntrackEntry]] = defaultdict(list)
    for entry in entries:
        if entry.proto != "udp" or not entry.dnat:
            continue
        if entry.original.dport is None or entry.reply.sport is None:
            continue
        dst = (entry.original.dst, entry.original.dport)
        port = by_addr.get(dst)
        node_port = False
        on_node = not local or entry.original.dst in local
        if port is None and entry.original.dport in by_node_port and on_node:
            port, node_port = by_node_port[entry.original.dport], True
        if port is None:
            continue
        endpoint = Endpoint(entry.reply.src, entry.reply.sport)
        serving, api = _serving(port, endpoint)
        if serving:
            continue
        groups[(port.name, dst, node_port, endpoint, api is None)].append(entry)

    for (name, (ip, dport), node_port, endpoint, removed), group in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1], str(kv[0][3]))):
        what = "the removed endpoint" if removed else "the endpoint (no longer serving)"
        target = f"nodePort {dport} on {ip}" if node_port else f"{ip}:{dport}"
        message = (f"{len(group)} UDP conntrack entr{'y' if len(group) == 1 else 'ies'} for {target} still "
                   f"DNATed to {what} {endpoint} (reply src={endpoint.ip} sport={endpoint.port}): "
                   f"from {_sources(group)}")
        match = f"--orig-port-dst {dport}" if node_port else f"--orig-dst {ip}"
        fix = (f"kube-proxy deletes these after it syncs the endpoint removal: restart or repair kube-proxy; "
               f"or delete them now: conntrack -D -p udp {match} --reply-src {endpoint.ip}")
        yield Finding.for_port(name, code="stale-conntrack", severity="error", message=message,
                               evidence=[e.text for e in group[:MAX_EVIDENCE]], fix=fix)


@check("conntrack-table-near-full")
def conntrack_table_near_full(ctx: CheckContext) -> Iterator[Finding]:
    """nf_conntrack_count at or above 90% of nf_conntrack_max: new connections get dropped when full."""
    values = nodeinfo.sysctls(ctx.snapshot)
    try:
        count = int(values["net.netfilter.nf_conntrack_count"])
        limit = int(values["net.netfilter.nf_conntrack_max"])
    except (KeyError, ValueError):
        return
    if limit <= 0:
        return
    percent = 100.0 * count / limit
    if percent < NEAR_FULL_PERCENT:
        return
    full = count >= limit
    yield Finding(
        "conntrack-table-full" if full else "conntrack-table-near-full",
        "error" if full else "warning",
        f"conntrack table {'full' if full else 'nearly full'}: {count} of {limit} entries ({percent:.0f}%)"
        + ("; the kernel drops packets of new connections ('nf_conntrack: table full')" if full else ""),
        evidence=[f"net.netfilter.nf_conntrack_count = {count}", f"net.netfilter.nf_conntrack_max = {limit}"],
        fix="Raise nf_conntrack_max (kube-proxy's conntrack.maxPerCore / conntrack.min) or find what opens "
            "so many connections (conntrack -L | sort by source)",
    )
