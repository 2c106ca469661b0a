"""The reconciliation itself: each service port's programmed view against what the API expects.

``compare(ctx)`` runs once per CheckContext (cached in ``ctx.cache.drift``) and yields every drift
Finding; the registered checks in ``drift.py`` each hand out their own codes. Codes:
not-programmed, stale-service, wrong-protocol, missing-endpoint, stale-endpoint, chain-missing,
missing-frontend, stale-frontend, wrong-port, source-ranges-mismatch, traffic-policy-mismatch,
no-endpoints-verdict, uneven-probability, uneven-weights, affinity-mismatch, local-blackhole.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache

from kubectl_proxydoctor.checks import CheckContext, DriftResult
from kubectl_proxydoctor.clip import clip_lines
from kubectl_proxydoctor.expected import ExpectedFrontend, ExpectedNode, ExpectedPort
from kubectl_proxydoctor.kube_proxy_pod import KubeProxyPod, for_context
from kubectl_proxydoctor.model import (
    Endpoint,
    Finding,
    Frontend,
    ProgrammedPort,
    ProgrammedView,
    ServicePortName,
)
from kubectl_proxydoctor.primary_views import split_views

PROBABILITY_TOLERANCE = 0.01


def sync_fix(kube_proxy: KubeProxyPod) -> str:
    """The fix for a change kube-proxy has not programmed: this node's pod, its log, its restart."""
    return (
        "kube-proxy has not synced this change: check it is running and syncing "
        f"(`{kube_proxy.show}`, then `{kube_proxy.logs}` for sync/restore errors); restarting the "
        f"kube-proxy pod on this node (`{kube_proxy.restart}`) rewrites every rule."
    )


@lru_cache(maxsize=65536)
def _norm_ip(ip: str | None) -> str | None:
    """IPv6 in canonical form (rules and API may spell it differently); IPv4 as is."""
    if ip is None or ":" not in ip:
        return ip
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


def _norm_net(cidr: str) -> str:
    try:
        return str(ipaddress.ip_network(cidr, strict=False))
    except ValueError:
        return cidr


def _eps(endpoints: Iterable[Endpoint]) -> str:
    return ", ".join(str(e) for e in sorted(endpoints, key=Endpoint.sort_key)) or "none"


def _frontends_text(frontends: Iterable[Frontend | ExpectedFrontend]) -> str:
    return ", ".join(f.address for f in frontends) or "no frontend"


def _active_targets(frontend: Frontend) -> dict[Endpoint, list]:
    """Endpoints a frontend sends new connections to (IPVS weight 0 excluded)."""
    out: dict[Endpoint, list] = {}
    for t in frontend.targets:
        if t.weight == 0:
            continue
        out.setdefault(t.endpoint, []).extend(t.evidence)
    return out


def _chain_name(mode: str, name: ServicePortName, policy: str, frontend: Frontend) -> str:
    if mode == "iptables":
        from kubectl_proxydoctor.modes.iptables.hashes import port_name_string, service_chain

        prefix = "KUBE-SVL-" if policy == "local" else "KUBE-SVC-"
        return (
            service_chain(port_name_string(name.namespace, name.name, name.port), name.protocol, prefix)
            + " (nat)"
        )
    if mode == "nftables":
        from kubectl_proxydoctor.modes.nftables.interpreter import chain_hash

        base = f"{name.namespace}/{name.name}/{name.protocol.lower()}/{name.port}"
        prefix = "local" if policy == "local" else "service"
        return f"chain {prefix}-{chain_hash(base)}-{base} (table kube-proxy)"
    return f"the virtual server {frontend.address}"


def _frontend_key(kind: str, ip: str | None) -> tuple[str, str | None]:
    """Match key of a frontend. External and load-balancer IPs share one class: kube-proxy's
    "has no endpoints" REJECT/DROP rules for the two are identical, so a view may not tell them apart."""
    if kind == "node-port":
        return (kind, None)
    return ("external" if kind in ("external-ip", "load-balancer") else kind, _norm_ip(ip))


class Comparison:
    """Compares one mode's programmed views (the active backend) with the expected node."""

    def __init__(
        self,
        expected: ExpectedNode,
        mode: str,
        views: list[ProgrammedView],
        label: str = "",
        families: set[int] | None = None,
        kube_proxy: KubeProxyPod | None = None,
        namespace: str | None = None,
    ) -> None:
        self.expected = expected
        self.namespace = namespace  # compare only this namespace's ports (the others are not reported)
        self.kube_proxy = kube_proxy or KubeProxyPod(expected.node)
        self.families = families  # IP families this proxy runs on the node (None: from the views)
        self.mode = mode
        self.views = views
        self.label = label  # e.g. "iptables-legacy" for a second backend; "" for the active one
        self._ipvs_addresses_removed: set[str] = set()  # kube-ipvs0 addresses an earlier fix removes
        self.findings: list[Finding] = []

    # -- helpers -----------------------------------------------------------------------------------

    def _add(
        self,
        name: ServicePortName,
        code: str,
        severity: str,
        message: str,
        evidence: Iterable[str] = (),
        fix: str | None = None,
    ) -> None:
        if fix is None:
            fix = sync_fix(self.kube_proxy)
        if self.label:
            message = f"[{self.label}] {message}"
        self.findings.append(
            Finding.for_port(
                name,
                code=code,
                severity=severity,
                message=message,
                evidence=list(evidence),
                fix=fix,
                mode=self.label or self.mode,
            )
        )

    def programmed(self) -> dict[tuple[ServicePortName, int], ProgrammedPort]:
        ports: dict[tuple[ServicePortName, int], ProgrammedPort] = {}
        for view in self.views:
            for key, port in view.ports.items():
                ports.setdefault(key, port)
        return ports

    def _shown(self, name: ServicePortName) -> bool:
        return not self.namespace or name.namespace == self.namespace

    # -- the comparison ----------------------------------------------------------------------------

    def run(self, *, report_missing: bool = True) -> list[Finding]:
        programmed = self.programmed()
        expected = self.expected.ports
        families = self.families or ({fam for (_, fam) in programmed} or {4})
        for key, exp in expected.items():  # findings are sorted by run_checks
            if key[1] not in families or not self._shown(key[0]):
                continue  # this proxy does not run that IP family on the node, or not asked
            prog = programmed.get(key)
            if prog is None:
                if report_missing:
                    self._not_programmed(exp)
            else:
                self._compare_port(exp, prog)
        for key, prog in programmed.items():
            if key not in expected and self._shown(key[0]):
                self._stale_service(prog)
        self._merge_protocol_changes()
        return self.findings

    def _not_programmed(self, exp: ExpectedPort) -> None:
        eps = exp.reachable_endpoints
        self._add(
            exp.name,
            "not-programmed",
            "error",
            f"{exp.name} ({exp.name.protocol}) is in the API but {self.mode} has no rules for it: "
            f"{_frontends_text(exp.frontends)} (endpoint{'s' if len(eps) != 1 else ''} {_eps(eps)}) "
            "is not reachable from this node",
            evidence=[
                f"API: Service {exp.name.service} port {exp.name.port or '(unnamed)'} "
                f"{exp.port}/{exp.name.protocol}, cluster IP {exp.cluster_ip}"
            ],
        )

    def _stale_service(self, prog: ProgrammedPort) -> None:
        why = self.expected.skipped.get(prog.name.service)
        if not prog.name.namespace:
            reason = "no Service in the API has this frontend any more"
        elif why:
            reason = f"kube-proxy must not proxy it: {why}"
        elif prog.name.service in self.expected.services:
            reason = f"the Service has no port {prog.name.port or '(unnamed)'}/{prog.name.protocol} any more"
        else:
            reason = "the Service no longer exists in the API"
        ports = [f"{f.address}" for f in prog.frontends]
        self._add(
            prog.name,
            "stale-service",
            "error",
            f"{prog.name} is still programmed ({', '.join(ports) or 'no frontend'}; endpoints "
            f"{_eps(prog.all_endpoints)}) but {reason}",
            evidence=prog.evidence[:20] or [e for f in prog.frontends for e in f.evidence][:20],
            fix=self._ipvs_leftover_fix(prog),
        )

    def _ipvs_leftover_fix(self, prog: ProgrammedPort) -> str | None:
        """For IPVS, the commands removing what the capture shows is left (None: the sync fix)."""
        if self.mode != "ipvs" or self.label:
            return None
        from kubectl_proxydoctor.modes.ipvs.cleanup import leftover_commands
        from kubectl_proxydoctor.modes.ipvs.state import IpvsState

        state = next((v.raw for v in self.views if isinstance(v.raw, IpvsState)), None)
        if state is None:
            return None
        unclaimed = [fe for (name, _), port in self.programmed().items() if not name.namespace
                     for fe in port.frontends]  # IPVS ports the API names none of
        commands = leftover_commands(state, prog.frontends, unclaimed, self._ipvs_addresses_removed)
        if not commands:
            return None
        return (
            "kube-proxy normally removes these on its next sync; it has not (kubernetes#78421), so remove "
            f"them by hand on the node: {'; '.join(f'`{c}`' for c in commands)}. If they come back, "
            f"check kube-proxy: `{self.kube_proxy.logs}`."
        )

    def _merge_protocol_changes(self) -> None:
        """A not-programmed X/UDP next to a stale X/TCP is one protocol change (wrong-protocol)."""
        missing = {(f.service, f.port): f for f in self.findings if f.code == "not-programmed"}
        for f in list(self.findings):
            if f.code != "stale-service" or (f.service, f.port) not in missing:
                continue
            other = missing[(f.service, f.port)]
            if other.protocol == f.protocol:
                continue
            other.code = "wrong-protocol"
            other.message = (
                f"{f.service}:{f.port} is programmed for {f.protocol} but the Service now says "
                f"{other.protocol}: {other.message}"
            )
            other.evidence = clip_lines(other.evidence + f.evidence)
            self.findings.remove(f)

    def _match_frontends(
        self, exp: ExpectedPort, prog: ProgrammedPort
    ) -> list[tuple[ExpectedFrontend, list[Frontend]]]:
        by_key: dict[tuple[str, str | None], list[Frontend]] = defaultdict(list)
        for f in prog.frontends:
            by_key[_frontend_key(f.kind, f.ip)].append(f)
        used: set[int] = set()
        pairs: list[tuple[ExpectedFrontend, list[Frontend]]] = []
        for ef in exp.frontends:
            key = _frontend_key(ef.kind, ef.ip)
            matches = [f for f in by_key.get(key, []) if f.port == ef.port]
            wrong = [f for f in by_key.get(key, []) if f.port != ef.port and id(f) not in used]
            if not matches and wrong:
                self._add(
                    exp.name,
                    "wrong-port",
                    "error",
                    f"{exp.name}: {ef.kind} {ef.address} is programmed on port "
                    f"{', '.join(str(f.port) for f in wrong)} instead of {ef.port}",
                    evidence=[e for f in wrong for e in f.evidence],
                )
                used.update(id(f) for f in wrong)
            elif not matches:
                self._add(
                    exp.name,
                    "missing-frontend",
                    "error",
                    f"{exp.name}: {ef.kind} frontend {ef.address} is in the API but not programmed "
                    f"(programmed: {_frontends_text(prog.frontends)})",
                    evidence=prog.evidence[:10],
                )
            used.update(id(f) for f in matches)
            pairs.append((ef, matches))
        for f in prog.frontends:
            if id(f) not in used:
                self._add(
                    exp.name,
                    "stale-frontend",
                    "error",
                    f"{exp.name}: {f.kind} frontend {f.address} is programmed but the Service no longer has "
                    f"it (API frontends: {_frontends_text(exp.frontends)})",
                    evidence=f.evidence,
                )
        return pairs

    def _compare_port(self, exp: ExpectedPort, prog: ProgrammedPort) -> None:
        stale: dict[Endpoint, tuple[list[str], list[str], str]] = {}
        missing: dict[Endpoint, tuple[list[str], list[str], str]] = {}
        flushed: list[tuple[ExpectedFrontend, Frontend]] = []
        for ef, frontends in self._match_frontends(exp, prog):
            want = set(exp.endpoints_for(ef.policy))
            for f in frontends:
                if f.unknown_layout:
                    continue  # rules not understood: reported as unknown layout, not as drift
                self._frontend_attributes(exp, ef, f)
                if ef.policy == "local" and self.expected.node is None:
                    continue  # which endpoints are local is unknown without the node's name
                if want and not f.targets and f.no_endpoints is None:
                    flushed.append((ef, f))
                active = {t.endpoint for t in f.targets if t.weight != 0}
                if active != want:  # else (the common case) nothing is stale and nothing missing
                    self._endpoint_drift(exp, ef, f, active, want, stale, missing)
                if not want and not active:
                    self._no_endpoints(exp, ef, f)
                self._balance(exp, f)
        if flushed:
            ef, f = flushed[0]
            addrs = ", ".join(x.address for _, x in flushed)
            self._add(
                exp.name,
                "chain-missing",
                "error",
                (
                    f"{_chain_name(self.mode, exp.name, ef.policy, f)} has no real servers: {addrs} "
                    if self.mode == "ipvs"
                    else f"{_chain_name(self.mode, exp.name, ef.policy, f)} flushed: no endpoint rules, "
                    f"{addrs} "
                )
                + f"is not DNATed (the API has {_eps(exp.endpoints_for(ef.policy))})",
                evidence=[e for _, x in flushed for e in x.evidence][:10] or prog.evidence[:10],
                fix="Something flushed kube-proxy's chain (a host firewall reload, iptables -F, "
                "a config-management run). kube-proxy rewrites everything on its next full sync; "
                f"restart it now: `{self.kube_proxy.restart}`, and stop whatever flushes the rules.",
            )
        for ep, (where, evidence, why) in sorted(stale.items()):
            self._add(
                exp.name,
                "stale-endpoint",
                "error",
                f"{exp.name}: endpoint {ep} still takes new connections via {', '.join(where)}, but {why}",
                evidence=evidence,
            )
        for ep, (where, evidence, why) in sorted(missing.items()):
            api = exp.api_endpoint(ep)
            cond = f" ({api.conditions}, node {api.node or '?'})" if api else ""
            extra = " - its IPVS weight is 0, so it gets no new connections (kubernetes#92019)" if why else ""
            self._add(
                exp.name,
                "missing-endpoint",
                "error",
                f"{exp.name}: endpoint {ep}{cond} is in the API but not programmed for "
                f"{', '.join(where)}{extra}",
                evidence=evidence,
            )
        self._local_blackhole(exp)

    @staticmethod
    def _endpoint_drift(exp: ExpectedPort, ef: ExpectedFrontend, f: Frontend, active: set[Endpoint],
                        want: set[Endpoint], stale: dict, missing: dict) -> None:
        """Note the frontend's stale and missing endpoints (with its evidence) for _compare_port."""
        have = _active_targets(f)
        for ep in sorted(active - want):
            entry = stale.setdefault(ep, ([], [], exp.why_not_used(ep, ef.policy)))
            entry[0].append(f.address)
            entry[1].extend(have[ep])
        for ep in sorted(want - active):
            weight0 = any(t.endpoint == ep and t.weight == 0 for t in f.targets)
            entry = missing.setdefault(ep, ([], [], "weight 0" if weight0 else ""))
            entry[0].append(f.address)
            entry[1].extend(f.evidence[:5])

    def _frontend_attributes(self, exp: ExpectedPort, ef: ExpectedFrontend, f: Frontend) -> None:
        if f.policy != ef.policy and f.targets:
            self._add(
                exp.name,
                "traffic-policy-mismatch",
                "error",
                f"{exp.name}: {f.address} uses the {f.policy} endpoints but the Service's "
                f"{'internal' if ef.kind == 'cluster-ip' else 'external'}TrafficPolicy says {ef.policy}",
                evidence=f.evidence,
            )
        if f.affinity_seconds != exp.affinity_seconds and f.targets:  # no endpoints: nothing to stick to
            want = f"ClientIP for {exp.affinity_seconds}s" if exp.affinity_seconds else "no session affinity"
            have = f"ClientIP for {f.affinity_seconds}s" if f.affinity_seconds else "no session affinity"
            self._add(
                exp.name,
                "affinity-mismatch",
                "error",
                f"{exp.name}: {f.address} has {have}, the Service asks for {want}",
                evidence=f.evidence,
            )
        if ef.kind == "load-balancer" and f.targets and (self.mode != "ipvs" or f.source_ranges):
            # no endpoints: kube-proxy writes no firewall chain (usesFWChain needs endpoints); IPVS
            # enforces source ranges in ipsets, outside the virtual server the view holds
            # kube-proxy also admits the LB IPs themselves when a range holds the node IP (allowFromNode)
            own = {_norm_net(ip) for ip in exp.load_balancer_ips}
            want_ranges = sorted({_norm_net(c) for c in ef.source_ranges} - own)
            have_ranges = sorted({_norm_net(c) for c in f.source_ranges} - own)
            if want_ranges != have_ranges:
                self._add(
                    exp.name,
                    "source-ranges-mismatch",
                    "error",
                    f"{exp.name}: {f.address} admits {', '.join(have_ranges) or 'every source'} but "
                    f"loadBalancerSourceRanges is {', '.join(want_ranges) or 'empty (every source)'}",
                    evidence=f.evidence,
                )

    def _no_endpoints(self, exp: ExpectedPort, ef: ExpectedFrontend, f: Frontend) -> None:
        want = exp.no_endpoints_verdict(ef.policy)
        if f.no_endpoints and want and f.no_endpoints != want:
            self._add(
                exp.name,
                "no-endpoints-verdict",
                "warning",
                f"{exp.name}: {f.address} has no endpoints and {f.no_endpoints}s new connections; "
                f"kube-proxy should {want} them "
                f"({'endpoints exist on other nodes' if want == 'drop' else 'the service has none at all'})",
                evidence=f.evidence,
            )

    def _balance(self, exp: ExpectedPort, f: Frontend) -> None:
        targets = [t for t in f.targets if t.weight != 0]
        if len(targets) < 2:
            return
        weights = [t.weight for t in targets if t.weight is not None]
        if weights:
            if len(set(weights)) > 1:
                self._add(
                    exp.name,
                    "uneven-weights",
                    "warning",
                    f"{exp.name}: {f.address} real servers have unequal weights "
                    f"({', '.join(f'{t.endpoint}={t.weight}' for t in targets)}); kube-proxy gives every "
                    "endpoint weight 1",
                    evidence=[e for t in targets for e in t.evidence],
                )
            return
        share = 1.0 / len(targets)
        chances = [t.probability for t in targets]
        if max(chances) - share <= PROBABILITY_TOLERANCE and share - min(chances) <= PROBABILITY_TOLERANCE:
            return  # every one within the tolerance (the common case: no per-target test)
        off = [t for t in targets if abs(t.probability - share) > PROBABILITY_TOLERANCE]
        if off:
            self._add(
                exp.name,
                "uneven-probability",
                "warning",
                f"{exp.name}: {f.address} splits new connections unevenly "
                f"({', '.join(f'{t.endpoint} {t.probability:.0%}' for t in targets)}); with "
                f"{len(targets)} endpoints each should get {share:.0%}",
                evidence=[e for t in targets for e in t.evidence],
            )

    def _local_blackhole(self, exp: ExpectedPort) -> None:
        """externalTrafficPolicy Local with no endpoint here and nothing telling clients to avoid the
        node: a real blackhole. internalTrafficPolicy Local, or a health check node port that answers
        503, is the documented behaviour and not reported."""
        if self.label or exp.local_endpoints or not exp.has_any_endpoints or self.expected.node is None:
            return
        node = self.expected.node
        if exp.external_local and exp.externally_accessible and not exp.health_check_node_port:
            external = [f.address for f in exp.frontends if f.kind != "cluster-ip"]
            self._add(
                exp.name,
                "local-blackhole",
                "warning",
                f"{exp.name}: externalTrafficPolicy Local and no endpoint on {node}: "
                f"{', '.join(external)} drop every connection sent to this node (no health check "
                "node port tells clients to avoid it)",
                fix="Send traffic only to nodes that run an endpoint, schedule an endpoint on every "
                "node (DaemonSet), or set externalTrafficPolicy: Cluster.",
            )


def compare(ctx: CheckContext) -> list[Finding]:
    """Every drift finding for the context, computed once (``ctx.cache.drift``)."""
    if ctx.cache.drift is not None:
        return ctx.cache.drift.findings
    result = ctx.cache.drift = DriftResult()
    expected = ctx.expected
    if expected is not None and not ctx.skip_kube_proxy:
        mode = ctx.mode
        primary, secondary = split_views(ctx.views, mode)
        if mode is None:
            mode = primary[0].mode if primary else "unknown"
        kube_proxy = for_context(ctx)
        result.findings.extend(Comparison(expected, mode, primary, families=ctx.families,
                                          kube_proxy=kube_proxy, namespace=ctx.namespace).run())
        for label, views in secondary.items():
            extra = Comparison(expected, mode, views, label=label, kube_proxy=kube_proxy,
                               namespace=ctx.namespace).run(report_missing=False)
            result.secondary.extend(extra)
            result.findings.extend(extra)
    return result.findings


def by_codes(ctx: CheckContext, codes: Iterable[str]) -> list[Finding]:
    wanted = set(codes)
    return [f for f in compare(ctx) if f.code in wanted]
