"""Structural IPVS checks (no API needed): kube-ipvs0 vs virtual servers, ipsets, weights,
kernel modules and the sysctls kube-proxy's IPVS proxier sets (pkg/proxy/ipvs/proxier.go, v1.30).

kube-proxy binds every ClusterIP, external IP and load-balancer IP to kube-ipvs0 (IPVS only sees
packets delivered locally), keeps each frontend in its ipsets (masquerade and KUBE-IPVS-FILTER read
them) and, when an endpoint goes away, sets its real server's weight to 0 and deletes it once its
connections are gone (TCP; UDP/SCTP at once) - checked every minute (graceful_termination.go).
"""

from __future__ import annotations

from collections.abc import Iterator

from kubectl_proxydoctor import nodeinfo
from kubectl_proxydoctor.checks import CheckContext, check
from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.formats.ipvs_table import VirtualServer
from kubectl_proxydoctor.kube_proxy_pod import for_context
from kubectl_proxydoctor.model import Finding, FrontendKind
from kubectl_proxydoctor.modes.ipvs.cleanup import PROTOCOL_FLAGS
from kubectl_proxydoctor.modes.ipvs.ipset import IpSet, member_key, port_members, set_name
from kubectl_proxydoctor.modes.ipvs.state import DUMMY_INTERFACE, IpvsState, read_state
from kubectl_proxydoctor.modes.ipvs.view import classify

REQUIRED_MODULES = ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack")
FRONTEND_SETS = ("KUBE-CLUSTER-IP", "KUBE-EXTERNAL-IP", "KUBE-EXTERNAL-IP-LOCAL", "KUBE-LOAD-BALANCER",
                 "KUBE-LOAD-BALANCER-LOCAL", "KUBE-LOAD-BALANCER-FW", "KUBE-LOAD-BALANCER-SOURCE-CIDR",
                 "KUBE-LOAD-BALANCER-SOURCE-IP", "KUBE-NODE-PORT-SCTP-HASH", "KUBE-NODE-PORT-LOCAL-SCTP-HASH")
BITMAP_NODE_PORT_SETS = {"KUBE-NODE-PORT-TCP": "TCP", "KUBE-NODE-PORT-LOCAL-TCP": "TCP",
                         "KUBE-NODE-PORT-UDP": "UDP", "KUBE-NODE-PORT-LOCAL-UDP": "UDP"}
MAX_LISTED = 10
GRACEFUL_PROTOCOLS = {"TCP"}  # utilipvs.IsRsGracefulTerminationNeeded: not UDP, not SCTP


def _state(ctx: CheckContext) -> IpvsState | None:
    if ctx.cache.ipvs_state is None:
        try:
            ctx.cache.ipvs_state = read_state(ctx.snapshot)
        except ProxyDoctorError as e:
            ctx.cache.ipvs_state = e
    value = ctx.cache.ipvs_state
    return value if isinstance(value, IpvsState) else None


def _names(ctx: CheckContext) -> dict:
    """Frontend -> (ServicePortName, kind) from the API, when it was read."""
    if ctx.cluster is None:
        return {}
    if ctx.cache.ipvs_names is None:
        from kubectl_proxydoctor.modes.ipvs.labels import frontend_index

        ctx.cache.ipvs_names = frontend_index(ctx.cluster)
    return ctx.cache.ipvs_names


def _finding(ctx: CheckContext, code: str, severity: str, message: str, vs: VirtualServer | None = None,
             **kw) -> Finding:
    finding = Finding(code, severity, message, mode="ipvs", **kw)  # type: ignore[arg-type]
    if vs is not None and vs.ip is not None:
        names = _names(ctx)
        found = names.get((vs.ip, vs.protocol, vs.port)) or names.get((None, vs.protocol, vs.port))
        if found is not None:
            name = found[0]
            finding.service, finding.port, finding.protocol = name.service, name.port, name.protocol
    return finding


def _claimed(ctx: CheckContext, vs: VirtualServer) -> bool:
    """Whether a Service asks for this virtual server (True when the API was not read): a
    leftover no Service claims is reported, with its removal, as stale-service instead."""
    if ctx.cluster is None or ctx.expected is None:
        return True
    names = _names(ctx)
    return (vs.ip, vs.protocol, vs.port) in names or (None, vs.protocol, vs.port) in names


def _is_ipvs_node(ctx: CheckContext, state: IpvsState | None) -> bool:
    if state is not None and state.table.services:
        return True
    if ctx.decision is not None:  # NodeState's one decision
        return ctx.mode == "ipvs"
    return (nodeinfo.kube_proxy_mode(ctx.snapshot) or "").lower() == "ipvs"


@check("ipvs-kube-ipvs0")
def kube_ipvs0(ctx: CheckContext) -> Iterator[Finding]:
    """Virtual servers whose address is not on kube-ipvs0, and kube-ipvs0 addresses no virtual server uses."""
    state = _state(ctx)
    if state is None or state.ipvs0 is None or not state.table.services:
        return
    used: set[str] = set()
    unbound: list[tuple[VirtualServer, FrontendKind, str]] = []
    for vs in state.table.services:
        if vs.ip is None:
            continue
        used.add(vs.ip)
        kind, _, why = classify(state, vs)
        if kind != "node-port" and vs.ip not in state.ipvs0 and _claimed(ctx, vs):
            unbound.append((vs, kind, why))
    src = state.table.source
    if unbound and (not state.ipvs0_exists or len(unbound) > MAX_LISTED):
        what = (f"{DUMMY_INTERFACE} does not exist" if not state.ipvs0_exists
                else f"{len(unbound)} virtual server addresses are not on {DUMMY_INTERFACE}")
        yield _finding(
            ctx, "ipvs-vip-unbound", "error",
            f"{what}: packets to {len(unbound)} ClusterIP/external/load-balancer virtual servers are not "
            f"delivered locally, so IPVS never balances them (first: "
            f"{', '.join(vs.address for vs, _, _ in unbound[:MAX_LISTED])})",
            evidence=[f"{src}: {vs.evidence}" for vs, _, _ in unbound[:MAX_LISTED]]
            + [f"ip-addr.json: {what}"],
            fix=f"restart this node's kube-proxy (`{for_context(ctx).restart}`): it recreates kube-ipvs0 and "
                "binds every service address")
        unbound = []
    for vs, kind, why in unbound:
        yield _finding(
            ctx, "ipvs-vip-unbound", "error",
            f"virtual server {vs.address}/{vs.protocol.lower()} ({kind}, {why}) has no address on "
            f"{DUMMY_INTERFACE}: packets to it are not delivered locally, so IPVS never balances them",
            vs, evidence=[f"{src}: {vs.evidence}", f"ip-addr.json: {vs.ip} not on {DUMMY_INTERFACE}"],
            fix=f"restart this node's kube-proxy so it re-binds the address (`{for_context(ctx).restart}`; "
                f"`ip addr add {vs.ip}/{128 if ':' in (vs.ip or '') else 32} dev {DUMMY_INTERFACE}` "
                "restores it by "
                "hand until then)")
    for ip in sorted(state.ipvs0 - used):
        yield _finding(
            ctx, "ipvs-address-leftover", "warning",
            f"{ip} is on {DUMMY_INTERFACE} but no virtual server uses it: left over after its Service was "
            "deleted (kubernetes#78421); the node answers for that address itself",
            evidence=[f"ip-addr.json: {ip}/32 on {DUMMY_INTERFACE}", f"{src}: no virtual server on {ip}"],
            fix=f"ip addr del {ip}/32 dev {DUMMY_INTERFACE} (kube-proxy removes unused addresses on its next "
                "full sync; if it keeps coming back, check kube-proxy's logs)")


@check("ipvs-weights")
def weights(ctx: CheckContext) -> Iterator[Finding]:
    """Real servers at weight 0: draining while connections remain, else stuck (should be deleted)."""
    state = _state(ctx)
    if state is None:
        return
    for vs in state.table.services:
        zero = [r for r in vs.reals if r.weight <= 0]
        if not zero:
            continue
        src = state.table.source
        evidence = [f"{src}: {vs.evidence}", *(f"{src}: {r.evidence}" for r in zero)]
        if len(zero) == len(vs.reals):
            yield _finding(
                ctx, "ipvs-all-weights-zero", "error",
                f"every real server of {vs.address}/{vs.protocol.lower()} has weight 0: new connections find "
                "no destination and fail", vs, evidence=evidence,
                fix="check the Service's endpoints (all terminating?) and kube-proxy's logs; kube-proxy sets "
                    "weight 1 again for ready endpoints on its next sync")
        for real in zero:
            conns = real.active + real.inactive
            if vs.protocol in GRACEFUL_PROTOCOLS and conns > 0:
                yield _finding(
                    ctx, "ipvs-draining", "info",
                    f"real server {real.address} of {vs.address}/{vs.protocol.lower()} is draining: weight 0 "
                    f"(no new connections), {real.active} active and {real.inactive} inactive connections; "
                    "kube-proxy deletes it when they are gone", vs,
                    evidence=[f"{src}: {vs.evidence}", f"{src}: {real.evidence}"])
            else:
                why = ("with no connections left" if vs.protocol in GRACEFUL_PROTOCOLS
                       else f"although {vs.protocol} real servers are deleted at once")
                yield _finding(
                    ctx, "ipvs-weight-stuck", "warning",
                    f"real server {real.address} of {vs.address}/{vs.protocol.lower()} is stuck at weight 0 "
                    f"{why}: kube-proxy's graceful termination should have deleted it within a minute "
                    "(kubernetes#92019)",
                    vs, evidence=[f"{src}: {vs.evidence}", f"{src}: {real.evidence}"],
                    fix="check kube-proxy's logs for graceful-termination errors; if the endpoint is gone, "
                        f"ipvsadm -d -{'t' if vs.protocol == 'TCP' else 'u'} {vs.address} -r {real.address} "
                        "removes it")


def _vs_keys(state: IpvsState) -> set[tuple[str, str, int]]:
    return {(vs.ip, vs.protocol, vs.port) for vs in state.table.services if vs.ip is not None}


def _orphans(state: IpvsState, sets: dict[str, IpSet]) -> Iterator[tuple[str, str, int]]:
    """(set name, entry, line) of ipset entries no virtual server backs (IPv6 sets: KUBE-6-...)."""
    keys = _vs_keys(state)
    ipvs0 = state.ipvs0 if state.ipvs0 is not None else set()
    vips = {vs.ip for vs in state.table.services}
    for family in (4, 6):
        for base in FRONTEND_SETS:
            name = set_name(base, family)
            for member in sets[name].members if name in sets else []:
                key = member_key(member)
                if key is not None and key not in keys:
                    yield name, member.raw, member.line
        for base, proto in BITMAP_NODE_PORT_SETS.items():
            name = set_name(base, family)
            if name not in sets:
                continue
            node_ports = {vs.port for vs in state.table.services if vs.protocol == proto
                          and vs.family == family and vs.ip is not None and vs.ip not in ipvs0}
            for port in sorted(port_members(sets[name], proto) - node_ports):
                member = next(m for m in sets[name].members if m.raw.strip() == str(port))
                yield name, member.raw, member.line
        # KUBE-LOOP-BACK is not compared: it holds every local endpoint, also not-ready ones (no real server)
        name = set_name("KUBE-IPVS-IPS", family)
        if state.ipvs0 is not None and name in sets:
            for member in sets[name].members:
                ip = member.parts[0][1] if member.parts else ""
                if ip not in state.ipvs0 and ip not in vips:
                    yield name, member.raw, member.line


@check("ipvs-ipsets")
def ipsets(ctx: CheckContext) -> Iterator[Finding]:
    """ipset entries with no virtual server behind them; kube-ipvs0 virtual servers not in the ipsets."""
    state = _state(ctx)
    if state is None or not state.ipsets or not any(
            set_name("KUBE-CLUSTER-IP", family) in state.ipsets for family in (4, 6)):
        return
    orphans = list(_orphans(state, state.ipsets))
    if orphans:
        listed = ", ".join(f"{name} {entry}" for name, entry, _ in orphans[:MAX_LISTED])
        more = f" and {len(orphans) - MAX_LISTED} more" if len(orphans) > MAX_LISTED else ""
        yield _finding(
            ctx, "ipvs-ipset-leftover", "warning",
            f"{len(orphans)} ipset entr{'y' if len(orphans) == 1 else 'ies'} with no virtual server behind "
            f"{'it' if len(orphans) == 1 else 'them'} (left over from deleted Services): {listed}{more}",
            evidence=[f"ipset-save.txt:{line}: add {name} {entry}"
                      for name, entry, line in orphans[:MAX_LISTED]],
            fix="kube-proxy rewrites its ipsets on every sync: leftovers mean its syncs stop early; check "
                f"its log (`{for_context(ctx).logs}`); by hand, on the node: "
                + "; ".join(f"`ipset del {name} {entry}`" for name, entry, _ in orphans[:MAX_LISTED]))
    if state.ipvs0 is None:
        return
    for vs in state.table.services:
        if vs.ip is None or (vs.ip not in state.ipvs0 and vs.ip not in state.node_ips):
            continue
        _, _, why = classify(state, vs)
        if why.startswith("in ipset"):
            continue
        if vs.ip not in state.ipvs0:
            suffix = f"{vs.protocol}-HASH" if vs.protocol == "SCTP" else vs.protocol
            sets = "/".join(set_name(f"KUBE-NODE-PORT-{p}{suffix}", vs.family) for p in ("", "LOCAL-"))
            yield _finding(
                ctx, "ipvs-frontend-not-in-ipset", "warning",
                f"virtual server {vs.address}/{vs.protocol.lower()} is on a node address (a NodePort) but "
                f"port {vs.port} is in none of {sets}: kube-proxy's nat rules do not treat it as a NodePort "
                "(no masquerade), or it was not made by kube-proxy", vs,
                evidence=[f"{state.table.source}: {vs.evidence}", "ipset-save.txt: no matching entry"],
                fix="restart this node's kube-proxy so it resyncs its ipsets "
                    f"(`{for_context(ctx).restart}`); if no Service has this NodePort, delete the virtual "
                    "server "
                    f"(`ipvsadm -D {PROTOCOL_FLAGS.get(vs.protocol, '-t')} {vs.address}`)")
            continue
        yield _finding(
            ctx, "ipvs-frontend-not-in-ipset", "warning",
            f"virtual server {vs.address}/{vs.protocol.lower()} is on {DUMMY_INTERFACE} but in none of "
            "KUBE-CLUSTER-IP, KUBE-EXTERNAL-IP, KUBE-LOAD-BALANCER: it is not masqueraded like a service and "
            "KUBE-IPVS-FILTER rejects new connections to it when its address is in KUBE-IPVS-IPS", vs,
            evidence=[f"{state.table.source}: {vs.evidence}", "ipset-save.txt: no matching entry"],
            fix=f"restart this node's kube-proxy so it resyncs its ipsets (`{for_context(ctx).restart}`); if "
                "the Service is gone, delete the virtual server "
                f"(`ipvsadm -D {PROTOCOL_FLAGS.get(vs.protocol, '-t')} {vs.address}`)")


@check("ipvs-kernel-modules")
def kernel_modules(ctx: CheckContext) -> Iterator[Finding]:
    """ip_vs, ip_vs_rr/wrr/sh, nf_conntrack and each scheduler's module on an IPVS node."""
    state = _state(ctx)
    if not _is_ipvs_node(ctx, state):
        return
    schedulers = sorted({vs.scheduler for vs in state.table.services} if state else set())
    wanted = list(REQUIRED_MODULES)
    wanted += [f"ip_vs_{s}" for s in schedulers if f"ip_vs_{s}" not in REQUIRED_MODULES]
    unknown = []
    for name in wanted:
        st = nodeinfo.module_state(ctx.snapshot, name)
        if st.state == "missing":
            sched = name[len("ip_vs_"):] if name.startswith("ip_vs_") else None
            what = (f"scheduler {sched!r} used by virtual servers" if sched in schedulers
                    else "required by kube-proxy's IPVS mode")
            yield _finding(
                ctx, "ipvs-module-missing", "error",
                f"kernel module {name} is missing ({what}): kube-proxy cannot program IPVS with it "
                "(older kube-proxy versions fall back to iptables silently, kubernetes#63801)",
                evidence=[st.evidence],
                fix=f"install a kernel with {name} (CONFIG_{name.upper()}) or use another proxy mode "
                    "(nftables; IPVS mode is deprecated since Kubernetes 1.35)")
        elif st.state == "unknown":
            unknown.append(name)
    if unknown:
        yield _finding(ctx, "ipvs-module-unknown", "info",
                       f"cannot tell whether {', '.join(unknown)} are available: neither modules.txt nor "
                       "kernel-config.txt says",
                       evidence=["modules.txt / kernel-config.txt do not list them"])


SYSCTLS = (
    # key, wanted, severity, why
    ("net.ipv4.vs.conntrack", "1", "error",
     "IPVS traffic must keep conntrack entries for kube-proxy's masquerade rules"),
    ("net.ipv4.vs.expire_nodest_conn", "1", "warning",
     "connections to deleted real servers are kept instead of reset, so clients hang"),
    ("net.ipv4.vs.expire_quiescent_template", "1", "warning",
     "persistence templates keep sending clients to weight-0 real servers"),
    ("net.ipv4.ip_forward", "1", "error", "the node cannot forward service traffic to other nodes' pods"),
)


def _conn_reuse_applies(ctx: CheckContext) -> bool:
    version = nodeinfo.kernel_version(nodeinfo.kernel_release(ctx.snapshot))
    return version is not None and (4, 1, 0) <= version < (5, 9, 0)


@check("ipvs-sysctls")
def sysctls(ctx: CheckContext) -> Iterator[Finding]:
    """Sysctls kube-proxy's IPVS mode sets: vs.conntrack, expire_nodest_conn, conn_reuse_mode, strictARP."""
    state = _state(ctx)
    if not _is_ipvs_node(ctx, state):
        return
    values = nodeinfo.sysctls(ctx.snapshot)
    if not values:
        return
    wanted = list(SYSCTLS)
    if _conn_reuse_applies(ctx):
        wanted.append(("net.ipv4.vs.conn_reuse_mode", "0", "warning",
                       "on kernels 4.1-5.8 mode 1 stalls new connections reusing a port (kubernetes#81775)"))
    strict = _strict_arp(ctx)
    if strict:
        wanted += [("net.ipv4.conf.all.arp_ignore", "1", "warning",
                    "strictARP is on: the node must not answer ARP for kube-ipvs0 addresses"),
                   ("net.ipv4.conf.all.arp_announce", "2", "warning",
                    "strictARP is on: ARP must announce the best local address only")]
    for key, want, severity, why in wanted:
        have = values.get(key)
        if have is None or have.strip() == want:
            continue
        yield _finding(ctx, "ipvs-sysctl", severity,
                       f"{key} is {have}, kube-proxy's IPVS mode sets {want}: {why}",
                       evidence=[f"sysctl.txt: {key} = {have}"] + ([strict] if "arp" in key else []),
                       fix=f"sysctl -w {key}={want} (kube-proxy sets it at start; something reset it since)")


def _strict_arp(ctx: CheckContext) -> str:
    """Evidence that kube-proxy runs with strictARP, or "" (needs the kube-proxy ConfigMap)."""
    if ctx.cluster is None:
        return ""
    try:
        from kubectl_proxydoctor.kubeproxy_config import from_cluster

        cfg = from_cluster(ctx.cluster)
    except ProxyDoctorError:
        return ""
    if cfg.ipvs.get("strictARP") is True:
        return f"kube-proxy config: ipvs.strictARP true ({cfg.evidence.get('ipvs.strictARP', 'ConfigMap')})"
    return ""
