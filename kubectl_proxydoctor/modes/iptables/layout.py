"""Every iptables layout kube-proxy has shipped (v1.28 to master), in one place.

Read from kubernetes/kubernetes pkg/proxy/iptables/proxier.go and the expected rulesets of
proxier_test.go (the fixtures under tests/fixtures/upstream/iptables name the versions read):

- **every generation**: nat ``KUBE-SERVICES`` (one rule per frontend -> ``KUBE-SVC-``/``KUBE-SVL-``
  /``KUBE-EXT-``/``KUBE-FW-``, last rule -> ``KUBE-NODEPORTS``), ``KUBE-NODEPORTS`` (-> ``KUBE-EXT-``),
  ``KUBE-POSTROUTING`` (RETURN unmarked, clear the mark, ``MASQUERADE`` with ``--random-fully`` when
  iptables has it), ``KUBE-MARK-MASQ``; service chains ``KUBE-SVC-`` (masquerade off-cluster traffic,
  ``-m statistic --mode random`` and ``-m recent --rcheck`` jumps to ``KUBE-SEP-``), ``KUBE-SVL-``,
  ``KUBE-EXT-`` (pod / LOCAL-source short-cuts, masquerade, policy chain), ``KUBE-FW-`` (allowed
  source ranges, then a comment-only rule: the rest is dropped by filter ``KUBE-PROXY-FIREWALL``),
  ``KUBE-SEP-`` (hairpin masquerade, ``[-m recent --set] DNAT``); filter ``KUBE-SERVICES`` /
  ``KUBE-EXTERNAL-SERVICES`` (REJECT "has no endpoints", DROP "has no local endpoints"),
  ``KUBE-NODEPORTS`` (health-check ACCEPT), ``KUBE-FORWARD``, ``KUBE-PROXY-FIREWALL``,
  ``KUBE-FIREWALL`` (the localnet DROP, shared with kubelet); mangle/nat/filter ``KUBE-PROXY-CANARY``.
  Above 1000 endpoints (large-cluster mode) endpoint rules carry no comments.
- **before v1.31** (the v1.30.3 captures' layout): ``KUBE-FORWARD -m conntrack --ctstate INVALID -j
  DROP`` (left out when nf_conntrack_tcp_be_liberal is set, 1.29+); one NodePort rule per port.
- **v1.31+**: nfacct counters when the kernel has nfnetlink_acct: the INVALID drop counts into
  ``ct_state_invalid_dropped_pkts``, and each IPv4 NodePort gets a ``-d 127.0.0.0/8 -m nfacct
  --nfacct-name localhost_nps_accepted_pkts`` copy. Unchanged through master (1.33+ and a
  2026 fork's proxier_test.go expect the same ruleset).

A rule of a kube-proxy service chain with a kube-proxy target but a shape the interpreter does not
model (an unknown match, a goto, a DNAT it cannot read, another statistic or recent mode), and a
frontend jump to a ``KUBE-`` chain of no known kind, is "unknown layout": a warning with the rule,
and the frontends it reaches are not compared as drift.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field

from kubectl_proxydoctor.model import Frontend, ProgrammedPort, ProgrammedView, ServicePortName
from kubectl_proxydoctor.modes.iptables.parse import PLAIN_MODULES

NFACCT_LOCALHOST = "localhost_nps_accepted_pkts"
NFACCT_INVALID = "ct_state_invalid_dropped_pkts"
LARGE_CLUSTER_ENDPOINTS = 1000  # kube-proxy's largeClusterEndpointsThreshold

SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")
# kube-proxy's fixed chains per table (its own, and KUBE-FIREWALL it shares with kubelet)
FIXED_CHAINS = {
    "nat": frozenset({"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ",
                      "KUBE-PROXY-CANARY"}),
    "filter": frozenset({"KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-FORWARD",
                         "KUBE-PROXY-FIREWALL", "KUBE-FIREWALL", "KUBE-PROXY-CANARY"}),
    "mangle": frozenset({"KUBE-PROXY-CANARY"}),
}
_PROTOS = frozenset({"tcp", "udp", "sctp"})
# -m modules kube-proxy writes in each chain kind; targets it jumps to (prefixes); rules with another
# target are not kube-proxy's (the foreign-rule check reports those)
_MODULES = {
    "KUBE-SVC-": _PROTOS | {"comment", "statistic", "recent"},
    "KUBE-SVL-": _PROTOS | {"comment", "statistic", "recent"},
    "KUBE-EXT-": frozenset({"comment", "addrtype"}),
    "KUBE-FW-": frozenset({"comment"}),
    "KUBE-SEP-": _PROTOS | {"comment", "recent"},
    "KUBE-SERVICES": _PROTOS | {"comment", "addrtype"},
    "KUBE-NODEPORTS": _PROTOS | {"comment", "nfacct", "addrtype"},  # addrtype: no release read, harmless
}
_TARGETS = {
    "KUBE-SVC-": ("KUBE-MARK-MASQ", "KUBE-SEP-"),
    "KUBE-SVL-": ("KUBE-MARK-MASQ", "KUBE-SEP-"),
    "KUBE-EXT-": ("KUBE-MARK-MASQ", "KUBE-SVC-", "KUBE-SVL-"),
    "KUBE-FW-": ("KUBE-EXT-", "KUBE-SVC-", "KUBE-SVL-"),
    "KUBE-SEP-": ("KUBE-MARK-MASQ", "DNAT"),
}
_RECENT = {"KUBE-SVC-": "rcheck", "KUBE-SVL-": "rcheck", "KUBE-SEP-": "set"}
_FRONTEND_KINDS = {" cluster IP": "cluster-ip", " external IP": "external-ip",
                   " loadbalancer IP": "load-balancer"}


@dataclass(frozen=True)
class Generation:
    """The layout generation a dump shows, with the rules that show it."""

    name: str
    min_version: tuple[int, int] | None
    large_cluster: bool = False
    evidence: list[str] = field(default_factory=list)
    # a KUBE-FORWARD INVALID drop without nfacct: kube-proxy wrote it without a counter
    invalid_drop_uncounted: str | None = None


@dataclass(frozen=True)
class UnknownRule:
    """A rule of kube-proxy's chains in a shape no known generation writes."""

    table: str
    chain: str
    text: str
    why: str

    @property
    def message(self) -> str:
        return f"unknown layout: {self.why}"


# -- generation ------------------------------------------------------------------------------------


def generation(rulesets: list) -> Generation | None:
    """The generation the dumps show (None when they hold no kube-proxy service chain)."""
    nfacct: list[str] = []
    uncounted = None
    service_chains = sep_rules = uncommented = 0
    for rs in rulesets:
        nat = rs.tables.get("nat")
        flt = rs.tables.get("filter")
        if nat is not None:
            nodeports = nat.chains.get("KUBE-NODEPORTS")
            for rule in nodeports.rules if nodeports else ():
                if rule.nfacct == NFACCT_LOCALHOST:
                    nfacct.append(rule.text)
                    break
            for name, chain in nat.chains.items():
                if name.startswith("KUBE-SVC-"):
                    service_chains += 1
                elif name.startswith("KUBE-SEP-"):
                    items = chain.items  # plain rules (kept as text) have no comment
                    sep_rules += len(items)
                    uncommented += len(items) - (chain.parsed and sum(
                        1 for item in items if not isinstance(item, str) and item.comment is not None))
        forward = flt.chains.get("KUBE-FORWARD") if flt is not None else None
        for rule in forward.rules if forward else ():
            if rule.ctstate == "INVALID" and rule.target == "DROP":
                if rule.nfacct == NFACCT_INVALID:
                    nfacct.append(rule.text)
                elif uncounted is None:
                    uncounted = rule.text
                break
    if not service_chains:
        return None
    large = sep_rules > 0 and uncommented == sep_rules
    evidence = list(nfacct)
    if large:
        evidence.append(f"{sep_rules} KUBE-SEP rules, none with a comment: large-cluster mode "
                        f"(more than {LARGE_CLUSTER_ENDPOINTS} endpoints)")
    if nfacct:
        return Generation("iptables >= 1.31 (nfacct counters in the rules)", (1, 31), large, evidence)
    evidence.append("no nfacct counter rules (kube-proxy < 1.31, or the kernel lacks nfnetlink_acct)")
    return Generation("iptables without nfacct counters (the v1.30 layout)", None, large, evidence,
                      uncounted)


# -- rules not understood --------------------------------------------------------------------------


def _kind(chain: str) -> str | None:
    for prefix in SERVICE_CHAIN_PREFIXES:
        if chain.startswith(prefix):
            return prefix
    return chain if chain in ("KUBE-SERVICES", "KUBE-NODEPORTS") else None


# chains of kube-proxy's IPVS mode and of releases before 1.24 (the mode-leftover and
# version-leftover checks name those): known, not a new layout
IPVS_CHAINS = frozenset({"KUBE-LOAD-BALANCER", "KUBE-NODE-PORT", "KUBE-LOOP-BACK", "KUBE-IPVS-FILTER",
                         "KUBE-IPVS-OUT-FILTER", "KUBE-SOURCE-RANGES-FIREWALL", "KUBE-FIRE-WALL",
                         "KUBE-LOAD-BALANCER-LOCAL", "KUBE-LOAD-BALANCER-FW", "KUBE-LOAD-BALANCER-MASQ"})
OLD_CHAINS = ("KUBE-XLB-", "KUBE-MARK-DROP")


def _known_chain(target: str) -> bool:
    return (target.startswith(SERVICE_CHAIN_PREFIXES) or target in FIXED_CHAINS["nat"]
            or target in IPVS_CHAINS or target.startswith(OLD_CHAINS))


def unknown_rule(rule) -> str | None:
    """Why a nat rule of a kube-proxy service / frontend chain is not understood (None: it is, or it
    is not kube-proxy's at all: another target is the foreign-rule check's)."""
    kind = _kind(rule.chain)
    if kind is None:
        return None
    target = rule.target or ""
    if kind in ("KUBE-SERVICES", "KUBE-NODEPORTS"):
        if target.startswith("KUBE-") and not _known_chain(target):
            return f"{rule.chain} jumps to {target}, a chain of no known kube-proxy layout"
        if not target.startswith(SERVICE_CHAIN_PREFIXES):
            return None
    elif target and not target.startswith(_TARGETS[kind]):
        return None
    elif not target and kind != "KUBE-FW-":
        return None
    modules = _MODULES[kind]
    odd = [m for m in rule.matches if m not in modules]
    if odd:
        return f"{rule.chain}: match {', '.join('-m ' + m for m in odd)} in a {kind.rstrip('-')} rule"
    if rule.unknown:
        return f"{rule.chain}: options {' '.join(rule.unknown)} not in any known layout"
    if rule.goto:
        return f"{rule.chain}: a goto (-g {target}) where kube-proxy jumps (-j)"
    if rule.out_iface or rule.sport or rule.target_args:
        what = ("an output interface" if rule.out_iface else "a source port" if rule.sport
                else "target options " + " ".join(rule.target_args or []))
        return f"{rule.chain}: {what} in a {kind.rstrip('-')} rule"
    if rule.stat_mode not in (None, "random"):
        return f"{rule.chain}: statistic mode {rule.stat_mode} (kube-proxy uses random)"
    if rule.recent_mode is not None and rule.recent_mode != _RECENT.get(kind):
        return f"{rule.chain}: recent --{rule.recent_mode} in a {kind.rstrip('-')} rule"
    if target == "DNAT" and not _endpoint(rule.to_destination):
        return f"{rule.chain}: DNAT to {rule.to_destination or 'nothing'} (kube-proxy DNATs to one ip:port)"
    return None


def _endpoint(value: str | None) -> bool:
    """Is a DNAT --to-destination one ip:port (not a range, not an address alone)?"""
    from kubectl_proxydoctor.modes.iptables.view import split_endpoint

    ep = split_endpoint(value) if value else None
    if ep is None:
        return False
    try:
        ipaddress.ip_address(ep.ip)
    except ValueError:
        return False
    return True


def unknown_rules(ruleset) -> list[UnknownRule]:
    """Every nat rule of kube-proxy's service and frontend chains that no known generation writes.

    Fast at 300k rules: the parser shares one ``matches`` tuple per combination of modules, so the
    module test is one dict lookup per rule, and only rules with more (options the parser does not
    model, a goto, an output interface, a source port, target options, another statistic or recent
    mode, a DNAT range, a jump to another KUBE- chain) get a closer look.
    """
    nat = ruleset.tables.get("nat")
    if nat is None:
        return []
    found = []
    shapes: dict[str, dict[tuple[str, ...], int]] = {}  # kind -> matches -> _BAD / _PLAIN / _MODES
    for name, chain in nat.chains.items():
        kind = _KIND_BY_HEAD.get(name[:9]) or _kind(name)
        if kind is None:
            continue
        # rules kept as text (parse._plain) need no closer look when this kind has their modules
        plain_ok = not chain.shapes & ~_PLAIN_OK[kind]
        frontends = kind in ("KUBE-SERVICES", "KUBE-NODEPORTS")
        if plain_ok and not chain.parsed and not frontends:
            continue  # only plain rules, all in this kind's shapes (nearly every chain of a big node)
        seen = shapes.setdefault(kind, {})
        recent = _RECENT.get(kind)
        sep = kind == "KUBE-SEP-"
        targets = chain.targets
        for i, item in enumerate(chain.items):
            if isinstance(item, str):
                target = targets[i]
                if plain_ok and not (frontends and target and target.startswith("KUBE-")
                                     and not _known_chain(target)):
                    continue
                rule = chain.rule(i)
            else:
                rule = item
            shape = seen.get(rule.matches)
            if shape is None:
                shape = seen[rule.matches] = _shape(kind, rule.matches)
            if shape and rule.unknown is None and not (
                    rule.goto or rule.out_iface or rule.sport or rule.target_args) and (
                    shape == _PLAIN or (rule.stat_mode is None or rule.stat_mode == "random")
                    and (rule.recent_mode is None or rule.recent_mode == recent)) and not (
                    sep and rule.to_destination is not None and "-" in rule.to_destination) and not (
                    frontends and rule.target and rule.target.startswith("KUBE-")
                    and not _known_chain(rule.target)):
                continue
            why = unknown_rule(rule)
            if why:
                found.append(UnknownRule("nat", name, rule.text, why))
    return found


_KIND_BY_HEAD = {p: p for p in SERVICE_CHAIN_PREFIXES if len(p) == 9}
# the plain shapes (parse.PLAIN_MODULES: the modules each one matches) every rule of which passes
# unknown_rules' quick test in a chain of each kind
_PLAIN_OK = {kind: sum(bit for bit, modules in PLAIN_MODULES.items() if modules <= kind_modules)
             for kind, kind_modules in _MODULES.items()}
_BAD, _PLAIN, _MODES = 0, 1, 2


def _shape(kind: str, matches: tuple[str, ...]) -> int:
    """_BAD: a module this chain kind never has; _MODES: statistic or recent (modes to look at)."""
    if not all(m in _MODULES[kind] for m in matches):
        return _BAD
    return _MODES if "statistic" in matches or "recent" in matches else _PLAIN


def mark_unknown(view: ProgrammedView, ruleset) -> list[UnknownRule]:
    """Set ``unknown_layout`` on every frontend whose rules include one not understood (and add the
    frontends that jump to a chain of no known kind): not compared as drift. Returns the rules."""
    unknown = unknown_rules(ruleset)
    if not unknown:
        return unknown
    by_chain: dict[str, UnknownRule] = {}
    for u in unknown:
        if u.chain in ("KUBE-SERVICES", "KUBE-NODEPORTS"):
            _unknown_frontend(view, ruleset, u)
        else:
            by_chain.setdefault(u.chain, u)
    for port in view.ports.values():
        for fe in port.frontends:
            if fe.unknown_layout:
                continue
            for text in _walked(fe):
                hit = by_chain.get(_chain_of(text))
                if hit is not None:
                    fe.unknown_layout = f"{hit.message}: {hit.text}"
                    break
    return unknown


def _walked(fe: Frontend) -> Iterator[str]:
    yield from fe.evidence
    for t in fe.targets:
        yield from t.evidence


def _chain_of(text: str) -> str:
    parts = text.split(" ", 2)
    return parts[1] if len(parts) > 1 and parts[0] == "-A" else ""


def _unknown_frontend(view: ProgrammedView, ruleset, u: UnknownRule) -> None:
    """A frontend rule jumping to an unknown chain kind: its frontend, marked unknown (by comment)."""
    from kubectl_proxydoctor.modes.iptables.view import parse_port_name

    rule = next((r for r in ruleset.rules("nat", u.chain) if r.text == u.text), None)
    if rule is None or not rule.comment or not rule.dport or not rule.dport.isdigit():
        return
    proto = rule.proto or "tcp"
    kind, text = "node-port", rule.comment
    for suffix, k in _FRONTEND_KINDS.items():
        if rule.comment.endswith(suffix):
            kind, text = k, rule.comment[: -len(suffix)]
    name: ServicePortName | None = parse_port_name(text, proto)
    if name is None:
        return
    ip = None if kind == "node-port" else (rule.dst or "").split("/")[0] or None
    port = view.add(ProgrammedPort(name, ruleset.family))
    number = int(rule.dport)
    fe = next((f for f in port.frontends if f.kind == kind and f.ip == ip and f.port == number), None)
    if fe is None:
        fe = Frontend(kind=kind, ip=ip, port=number, protocol=name.protocol)  # type: ignore[arg-type]
        port.frontends.append(fe)
    fe.evidence.append(rule.text)
    fe.unknown_layout = f"{u.message}: {u.text}"
