"""Which proxy runs this node, decided from evidence and showing it.

Sources, strongest first: what kube-proxy says it runs (``/proxyMode``, its log's "Using X
Proxier"), which mode's service rules exist on the node (iptables KUBE-SVC-* chains, the nftables
``kube-proxy`` tables, IPVS virtual servers), the metrics it exports (only the iptables proxier
sets ``kubeproxy_sync_proxy_rules_iptables_total``; only nftables has ``..._nftables_*``), and
kube-proxy's configured ``mode`` (empty means iptables). Cilium's kube-proxy replacement (a
``cilium`` DaemonSet, ``kube-proxy-replacement`` in ``cilium-config``, no kube-proxy rules) means
Cilium owns services on the node. ``userspace`` and Windows ``kernelspace`` are unsupported.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from itertools import chain as _chain
from typing import Any

from kubectl_proxydoctor.snapshot import NodeSnapshot
from kubectl_proxydoctor.words import plural

KUBE_PROXY_MODES = ("iptables", "nftables", "ipvs")
UNSUPPORTED = {
    "userspace": "kube-proxy's userspace mode was removed in Kubernetes 1.26 (kube-proxy >= 1.26 refuses to "
                 "start with it) and is not supported by proxydoctor",
    "kernelspace": "kernelspace is kube-proxy's Windows (HNS) mode: it programs HNS load balancers, not "
                   "netfilter, and is not supported by proxydoctor",
}
# Cilium's kube-proxy-replacement values that take over every service (1.14+: "true"; older: "strict")
CILIUM_FULL_REPLACEMENT = ("true", "strict")
# chains kubelet owns (pkg/kubelet/kubelet_network_linux.go); KUBE-FIREWALL is kubelet's too when
# kubelet manages iptables (its canary exists), kube-proxy only keeps a duplicate of it
KUBELET_CHAINS = ("KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")
IPTABLES_SERVICE_CHAIN = re.compile(r"^KUBE-(SVC|SVL|SEP|EXT|FW)-[A-Z2-7]{16}$")
IPTABLES_MODE_ONLY_CHAINS = ("KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES")  # not made by IPVS mode
IPVS_LINE = re.compile(r"^(TCP|UDP|SCTP)\s+\S+:\S+|^FWM\s+\d+")


@dataclass(slots=True)
class ChainInfo:
    """One iptables chain in one table of one dump."""

    table: str
    name: str
    rules: int = 0
    jumps_from: list[str] = field(default_factory=list)  # chains (not per-service ones) jumping here
    service_jumps: int = 0  # rules in per-service chains (KUBE-SVC-*, KUBE-SEP-*, ...) jumping here
    jump_rules: list[str] = field(default_factory=list)  # "-A INPUT -j KUBE-FIREWALL" lines


@dataclass
class IptablesDump:
    """The KUBE-* part of one iptables-save file (one backend, one family)."""

    label: str  # "iptables", "iptables-legacy", "ip6tables", ...
    file: str
    chains: list[ChainInfo] = field(default_factory=list)  # KUBE-*/CILIUM* chains in dump order

    def kube(self) -> list[ChainInfo]:
        return [c for c in self.chains if c.name.startswith("KUBE-")]

    def service_chains(self) -> list[ChainInfo]:
        return [c for c in self.chains if IPTABLES_SERVICE_CHAIN.match(c.name)]

    def names(self) -> Iterable[tuple[str, str]]:
        """(table, name) of every KUBE-*/CILIUM* chain (what the mode decision reads: no ChainInfo
        needs building for it)."""
        return ((c.table, c.name) for c in self.chains)

    def has_chain(self, name: str) -> bool:
        """Whether a KUBE-*/CILIUM* chain of this name is in any table of the dump."""
        return any(n == name for _, n in self.names())

    def service_chain_count(self, prefixes: tuple[str, ...]) -> int:
        """How many per-service chains (IPTABLES_SERVICE_CHAIN) have a name starting with ``prefixes``."""
        service = IPTABLES_SERVICE_CHAIN.match
        return sum(1 for _, n in self.names() if n.startswith(prefixes) and service(n))

    def has_iptables_mode(self) -> bool:
        service = IPTABLES_SERVICE_CHAIN.match
        return any(service(n) for _, n in self.names()) or any(
            n in IPTABLES_MODE_ONLY_CHAINS and t == "nat" for t, n in self.names())

    def has_kubelet(self) -> bool:
        return any(n in KUBELET_CHAINS for _, n in self.names())


class _RulesetDump(IptablesDump):
    """An IptablesDump read from a parsed Ruleset (dump_from_ruleset): the names, counts and tests
    above come from the ruleset's chain tables, and ``chains`` (one ChainInfo per KUBE-* chain: 115k
    at 10k services) is built on first read, by the leftover and cleanup paths that list them."""

    def __init__(self, ruleset: Any, label: str, file: str) -> None:
        super().__init__(label, file)
        self._ruleset = ruleset
        self._chains: list[ChainInfo] | None = None

    @property
    def chains(self) -> list[ChainInfo]:
        if self._chains is None:
            self._chains = _chain_infos(self._ruleset)
        return self._chains

    @chains.setter
    def chains(self, value: list[ChainInfo]) -> None:
        self._chains = value

    def names(self) -> Iterable[tuple[str, str]]:
        if self._chains is not None:
            return super().names()
        kube = ("KUBE-", "CILIUM")
        return ((t.name, n) for t in self._ruleset.tables.values() for n in t.chains if n.startswith(kube))

    def has_chain(self, name: str) -> bool:
        return name.startswith(("KUBE-", "CILIUM")) and any(
            name in t.chains for t in self._ruleset.tables.values())


@dataclass
class ModeRules:
    """What one proxy mode has programmed on the node."""

    mode: str
    services: int = 0  # service-level objects: KUBE-SVC-* chains, service- chains, virtual servers
    evidence: list[str] = field(default_factory=list)


@dataclass
class Leftover:
    """Rules another mode (or a previous kube-proxy) left behind on the node."""

    mode: str  # the mode the rules belong to
    source: str  # "iptables", "ip6tables-legacy", "nftables", "ipvs", ...
    items: list[str]
    service_rules: bool  # still holds per-service rules that can catch traffic
    evidence: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # how to remove them by hand
    kept: list[str] = field(default_factory=list)  # what the commands leave in place, and why

    @property
    def detail(self) -> str:
        return f"{self.source}: {', '.join(self.items)}"


@dataclass
class ProxyModeDecision:
    """Which proxy runs the node, the evidence for it, and whether proxydoctor can check it."""

    mode: str  # iptables | nftables | ipvs | cilium | userspace | kernelspace | unknown
    modes_found: list[str] = field(default_factory=list)  # modes with service rules on the node
    evidence: list[str] = field(default_factory=list)
    unsupported: str | None = None
    reported_mode: str | None = None  # /proxyMode or the kube-proxy log
    config_mode: str | None = None  # from the API (ConfigMap/DaemonSet), "" resolved to iptables
    metrics_mode: str | None = None
    conflicts: list[str] = field(default_factory=list)
    cilium_replacement: str | None = None  # cilium-config kube-proxy-replacement value
    rules: dict[str, ModeRules] = field(default_factory=dict)
    dumps: list[IptablesDump] | None = field(default=None, repr=False)  # parsed once, reused

    @property
    def kube_proxy_checks_apply(self) -> bool:
        """False when kube-proxy does not own services here (Cilium, unsupported, unknown)."""
        return self.mode in KUBE_PROXY_MODES

    def to_json(self) -> dict:
        return {
            "mode": self.mode,
            "modes_found": list(self.modes_found),
            "evidence": list(self.evidence),
            "unsupported": self.unsupported,
            "conflicts": list(self.conflicts),
        }


# -- node-side readers --------------------------------------------------------------------------


IPTABLES_FILES = (  # (label, file); per-backend files first, the default dump only as a fallback
    ("iptables", "iptables-nft-save.txt"),
    ("iptables-legacy", "iptables-legacy-save.txt"),
    ("ip6tables", "ip6tables-nft-save.txt"),
    ("ip6tables-legacy", "ip6tables-legacy-save.txt"),
)
DEFAULT_IPTABLES_FILES = (("iptables", "iptables-save.txt"), ("ip6tables", "ip6tables-save.txt"))


def parse_iptables_save(text: str, label: str = "iptables", file: str = "") -> IptablesDump:
    """The KUBE-* and CILIUM* chains of an iptables-save dump, with rule counts and who jumps to them.

    Tolerant of anything (it never raises); a 10k-service dump is mostly per-service rules, so the
    loop is kept lean: one chain dict per table, one regex match per chain.
    """
    dump = IptablesDump(label=label, file=file)
    found = dump.chains
    table = ""
    by_table: dict[str, dict[str, ChainInfo]] = {}
    chains = by_table.setdefault(table, {})  # the KUBE-*/CILIUM* chains of the current table
    is_service = IPTABLES_SERVICE_CHAIN.match
    kube = ("KUBE-", "CILIUM")
    prefix = "\0"  # "-A OWNER " of the line before: iptables-save lists a chain's rules together
    owner = ""
    info: ChainInfo | None = None
    service: bool | None = None
    for line in text.splitlines():
        if line.startswith("-A "):
            if not chains:
                continue  # no KUBE-*/CILIUM* chain declared in this table (yet)
            if not line.startswith(prefix):
                end = line.find(" ", 3)
                if end >= 0:
                    owner, prefix = line[3:end], line[:end + 1]
                else:
                    owner, prefix = line[3:], "\0"
                info = chains.get(owner)
                service = None
            if info is not None:
                info.rules += 1
            # the chain it jumps (-j) or goes (-g) to: the last such option (a comment comes first)
            at = line.rfind(" -j ")
            goto = line.rfind(" -g ", at + 1)
            if goto > at:
                at = goto
            if at < 0 or not line.startswith(kube, at + 4):
                continue
            end = line.find(" ", at + 4)
            target = chains.get(line[at + 4:end] if end >= 0 else line[at + 4:])
            if target is None:
                continue
            if service is None:
                service = is_service(owner) is not None
            if service:
                target.service_jumps += 1  # goes away with that chain's flush
                continue
            if owner not in target.jumps_from:
                target.jumps_from.append(owner)
            if len(target.jump_rules) < 50:  # rules to undo by hand
                target.jump_rules.append(line.strip())
            continue
        first = line[:1]
        if first == ":":
            name = line[1:].split(" ", 1)[0]
            if name.startswith(kube):
                chains[name] = ChainInfo(table, name)
                found.append(chains[name])
                prefix = "\0"  # a chain declared between its rules (not iptables-save's layout)
        elif first == "*":
            table = line[1:].strip()
            chains = by_table.setdefault(table, {})
            prefix = "\0"
    return dump


chain_from_iterable = _chain.from_iterable


def dump_from_ruleset(ruleset: Any, label: str = "iptables", file: str = "") -> IptablesDump:
    """What parse_iptables_save finds in a dump, read from the rules the iptables parser already
    built from it (modes/iptables/parse.Ruleset) instead of scanning the text again; its ChainInfos
    are built when first read (_RulesetDump)."""
    return _RulesetDump(ruleset, label, file)


def _chain_infos(ruleset: Any) -> list[ChainInfo]:
    """The ChainInfo of every KUBE-*/CILIUM* chain of a parsed Ruleset, in dump order."""
    kube = ("KUBE-", "CILIUM")
    is_service = IPTABLES_SERVICE_CHAIN.match
    declared: list[tuple[int, ChainInfo]] = []
    jumps: list[tuple[int, str, ChainInfo, str]] = []  # (line, owner, target, rule) outside service chains
    for table in ruleset.tables.values():
        chains = table.chains
        infos = {name: ChainInfo(table.name, name, len(chain.items)) for name, chain in chains.items()
                 if name.startswith(kube)}
        if not infos:
            continue
        declared.extend([(chains[name].line, info) for name, info in infos.items()])
        get = infos.get
        service = [is_service(name) is not None for name in chains]
        # jumps from per-service chains only count (each rule's target: no Rule is built)
        service_targets = [chain.targets for chain, s in zip(chains.values(), service, strict=True) if s]
        for (name, chain), s in zip(chains.items(), service, strict=True):
            if s:
                continue
            for i, target in enumerate(chain.targets):
                info = get(target)
                if info is not None:
                    rule = chain.rule(i)
                    jumps.append((rule.line, name, info, rule.text))
        # (they go away with that chain's flush)
        for target, n in Counter(chain_from_iterable(service_targets)).items():
            info = get(target)
            if info is not None:
                info.service_jumps += n
    declared.sort(key=lambda d: d[0])  # dump order, as the text scan meets the declarations
    jumps.sort(key=lambda j: j[0])
    for _, owner, info, text in jumps:
        if owner not in info.jumps_from:
            info.jumps_from.append(owner)
        if len(info.jump_rules) < 50:  # rules to undo by hand
            info.jump_rules.append(text)
    return [info for _, info in declared]


def _scan_cached(snapshot: NodeSnapshot, label: str, name: str, text: str) -> IptablesDump:
    """parse_iptables_save of one capture file, once per snapshot (decide() and leftovers() both
    ask; the cache lives as long as the file's text is the same)."""
    return snapshot.derived(f"proxy_mode.iptables:{name}", (name,),
                            partial(_scan, snapshot, label, name, text))


def _scan(snapshot: NodeSnapshot, label: str, name: str, text: str) -> IptablesDump:
    """From the rules the iptables interpreter already parsed (check, svc, trace: one parse per
    dump), else a scan of the text (decide() alone, or a dump the parser rejected)."""
    from kubectl_proxydoctor.modes.iptables.sources import parsed

    ruleset = parsed(snapshot, name)
    if ruleset is not None:
        return dump_from_ruleset(ruleset, label, name)
    return parse_iptables_save(text, label, name)


def iptables_dumps(snapshot: NodeSnapshot) -> list[IptablesDump]:
    """One dump per backend and family in the snapshot (the default dump when no per-backend file).

    Each file is scanned once per snapshot: a second call returns the same IptablesDump objects
    (treat them as read-only)."""
    dumps: list[IptablesDump] = []
    for label, name in IPTABLES_FILES:
        text = snapshot.text(name)
        if text is not None:
            dumps.append(_scan_cached(snapshot, label, name, text))
    for label, name in DEFAULT_IPTABLES_FILES:
        text = snapshot.text(name)
        if text is None or snapshot.has(f"{label}-nft-save.txt"):
            continue
        legacy_name = f"{label}-legacy-save.txt"
        legacy = snapshot.text(legacy_name)
        if legacy is None or not snapshot.derived(  # the default dump is a copy of the legacy one
                f"proxy_mode.iptables-same:{name}", (name, legacy_name),
                partial(_same_rules, legacy, text)):
            dumps.append(_scan_cached(snapshot, label, name, text))
    return dumps


def _same_rules(a: str, b: str) -> bool:
    return a == b or _rules_only(a) == _rules_only(b)


def _rules_only(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@dataclass
class NftTable:
    family: str
    name: str
    chains: int = 0
    service_chains: int = 0


def nft_kube_proxy_tables(snapshot: NodeSnapshot) -> list[NftTable]:
    """kube-proxy's nftables tables (``kube-proxy`` in ip/ip6) from nft-ruleset.json (or .txt).

    From the ruleset the nftables interpreter parsed (once per snapshot, or while collecting), so
    the JSON is not decoded again; a file it cannot parse (ParseError) is scanned leniently
    instead, so decide() still sees the tables a malformed or unexpected listing holds."""
    json_text = snapshot.text("nft-ruleset.json")
    if json_text is not None:
        return list(snapshot.derived("proxy_mode.nft-tables", ("nft-ruleset.json",),
                                     partial(_nft_tables_from_ruleset, snapshot, json_text)))
    tables: dict[tuple[str, str], NftTable] = {}
    text = snapshot.text("nft-ruleset.txt")
    if text is not None:
        current: NftTable | None = None
        for line in text.splitlines():
            m = re.match(r"^table (\S+) (\S+) \{", line)
            if m:
                current = NftTable(m.group(1), m.group(2)) if m.group(2) == "kube-proxy" else None
                if current is not None:
                    tables[(current.family, current.name)] = current
                continue
            m = re.match(r"^\s+chain (\S+) \{", line)
            if m and current is not None:
                current.chains += 1
                if m.group(1).startswith("service-"):
                    current.service_chains += 1
    return list(tables.values())


def _nft_tables_from_ruleset(snapshot: NodeSnapshot, text: str) -> list[NftTable]:
    from kubectl_proxydoctor.errors import ParseError
    from kubectl_proxydoctor.modes.nftables.interpreter import load_ruleset

    try:
        ruleset = load_ruleset(snapshot)
    except ParseError:
        return _nft_tables_from_json(text)
    if ruleset is None:
        return []
    return [NftTable(t.family, t.name, len(t.chains), sum(1 for c in t.chains if c.startswith("service-")))
            for t in ruleset.tables.values() if t.name == "kube-proxy"]


def _nft_tables_from_json(text: str) -> list[NftTable]:
    """kube-proxy's tables in nft -j JSON, whatever else the document holds (no ParseError)."""
    tables: dict[tuple[str, str], NftTable] = {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    items = doc.get("nftables", []) if isinstance(doc, dict) else []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("table"), dict) and item["table"].get("name") == "kube-proxy":
            key = (str(item["table"].get("family")), "kube-proxy")
            tables.setdefault(key, NftTable(*key))
        chain = item.get("chain")
        if isinstance(chain, dict) and chain.get("table") == "kube-proxy":
            key = (str(chain.get("family")), "kube-proxy")
            t = tables.setdefault(key, NftTable(*key))
            t.chains += 1
            if str(chain.get("name", "")).startswith("service-"):
                t.service_chains += 1
    return list(tables.values())


@dataclass
class IpvsState:
    virtual_servers: int = 0
    source: str = ""
    ipvs0_addresses: int | None = None  # None: no kube-ipvs0 interface
    kube_ipsets: list[str] = field(default_factory=list)


def ipvs_state(snapshot: NodeSnapshot) -> IpvsState:
    """IPVS virtual servers (ipvsadm or /proc/net/ip_vs), kube-ipvs0 addresses and KUBE-* ipsets."""
    state = IpvsState()
    for name in ("ipvsadm.txt", "proc-net-ip_vs.txt"):
        text = snapshot.text(name)
        if text is not None:
            state.virtual_servers = sum(1 for line in text.splitlines() if IPVS_LINE.match(line))
            state.source = name
            break
    from kubectl_proxydoctor.nodeinfo import ip_addr_doc

    links = ip_addr_doc(snapshot)  # decoded once per snapshot; not JSON: no kube-ipvs0 seen
    if links is not None:
        for link in links if isinstance(links, list) else []:
            if isinstance(link, dict) and link.get("ifname") == "kube-ipvs0":
                state.ipvs0_addresses = len(link.get("addr_info") or [])
    text = snapshot.text("ipset-save.txt")
    if text:
        state.kube_ipsets = [line.split()[1] for line in text.splitlines()
                             if line.startswith("create KUBE-") and len(line.split()) > 1]
    return state


def reported_mode(snapshot: NodeSnapshot) -> tuple[str | None, str | None]:
    """(mode, evidence) from /proxyMode, else from kube-proxy's log ("Using iptables Proxier")."""
    known = (*KUBE_PROXY_MODES, *UNSUPPORTED)
    text = snapshot.text("kube-proxy-mode.txt")
    ignored = None
    if text and text.strip():
        mode = text.strip().split()[0].lower()
        if mode in known:
            return mode, f"kube-proxy /proxyMode says {mode!r} (kube-proxy-mode.txt)"
        ignored = f"kube-proxy-mode.txt holds {text.strip()[:40]!r}, not a proxy mode (ignored)"
    log = snapshot.text("kube-proxy.log")
    if log:
        found = [a or b for a, b in re.findall(r'"Using (\w+) [Pp]roxier"|Using (\w+) [Pp]roxier', log)]
        found = [m.lower() for m in found if m.lower() in known]
        if found:
            why = f"kube-proxy's log says \"Using {found[-1]} Proxier\" (kube-proxy.log)"
            return found[-1], f"{ignored}; {why}" if ignored else why
    return None, ignored


def metrics_mode(snapshot: NodeSnapshot) -> tuple[str | None, str | None]:
    """(mode, evidence) from the metric names kube-proxy exports."""
    text = snapshot.text("kube-proxy-metrics.txt")
    if not text:
        return None, None
    names = {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines()
             if line.startswith("kubeproxy_")}
    iptables = sorted(n for n in names if n in ("kubeproxy_sync_proxy_rules_iptables_total",
                                                "kubeproxy_sync_proxy_rules_iptables_last"))
    if iptables:
        return "iptables", f"metrics: {', '.join(iptables)} (set only by the iptables proxier)"
    nft = sorted(n for n in names if n.startswith("kubeproxy_sync_proxy_rules_nftables_"))
    if nft:
        return "nftables", f"metrics: {', '.join(nft)} (nftables proxier)"
    if names:
        return None, "metrics: kube-proxy exports no iptables rule counters (not iptables mode)"
    return None, None


def rules_by_mode(snapshot: NodeSnapshot, views: list[Any] | None = None,
                  dumps: list[IptablesDump] | None = None) -> dict[str, ModeRules]:
    """Which modes have service rules on the node, with what."""
    out: dict[str, ModeRules] = {}
    for dump in iptables_dumps(snapshot) if dumps is None else dumps:
        if dump.has_iptables_mode():
            rules = out.setdefault("iptables", ModeRules("iptables"))
            svc = dump.service_chain_count(("KUBE-SVC-", "KUBE-SVL-"))
            rules.services += svc
            if svc or not rules.evidence:
                rules.evidence.append(f"{dump.file}: {svc} KUBE-SVC/SVL service chains")
    for table in nft_kube_proxy_tables(snapshot):
        if table.chains:
            rules = out.setdefault("nftables", ModeRules("nftables"))
            rules.services += table.service_chains
            rules.evidence.append(f"nftables table {table.family} kube-proxy: {table.chains} chains, "
                                  f"{table.service_chains} service chains")
    ipvs = ipvs_state(snapshot)
    if ipvs.virtual_servers:
        out["ipvs"] = ModeRules("ipvs", ipvs.virtual_servers,
                                [f"{ipvs.source}: {ipvs.virtual_servers} IPVS virtual servers"])
    for view in views or []:
        mode = getattr(view, "mode", None)
        ports = len(getattr(view, "ports", {}) or {})
        if mode in KUBE_PROXY_MODES and ports:
            rules = out.setdefault(mode, ModeRules(mode))
            rules.evidence.append(f"{view.source} rules hold {plural(ports, 'service port')}")
    return out


# -- API-side readers ---------------------------------------------------------------------------


def _kube_system(objects: list[dict], name: str) -> dict | None:
    for obj in objects:
        meta = obj.get("metadata") or {}
        if meta.get("name") == name and meta.get("namespace", "kube-system") == "kube-system":
            return obj
    return None


def cilium_replacement(cluster: Any) -> tuple[str | None, list[str]]:
    """(kube-proxy-replacement value or None, evidence) from the cilium DaemonSet and cilium-config."""
    if cluster is None:
        return None, []
    evidence: list[str] = []
    ds = _kube_system(cluster.daemonsets, "cilium")
    cm = _kube_system(cluster.configmaps, "cilium-config")
    if ds is not None:
        evidence.append("DaemonSet kube-system/cilium exists")
    value = None
    if cm is not None:
        data = cm.get("data") or {}
        value = data.get("kube-proxy-replacement")
        if value is not None:
            value = str(value).strip().lower()
            evidence.append(f"ConfigMap kube-system/cilium-config kube-proxy-replacement: {value}")
    if ds is None and value is None:
        return None, []
    return value or "", evidence


def _node_os(cluster: Any, node: str | None) -> str | None:
    if cluster is None or not node:
        return None
    obj = cluster.node(node)
    if obj is None:
        return None
    info = ((obj.get("status") or {}).get("nodeInfo") or {}).get("operatingSystem")
    return str(info or (obj["metadata"].get("labels") or {}).get("kubernetes.io/os") or "").lower() or None


# -- the decision -------------------------------------------------------------------------------


def decide(snapshot: NodeSnapshot, cluster: Any = None, views: list[Any] | None = None,
           config: Any = None) -> ProxyModeDecision:
    """Decide which proxy programs this node's services, and say why."""
    from kubectl_proxydoctor.kubeproxy_config import from_cluster

    if config is None:
        from kubectl_proxydoctor.kube_proxy_process import kube_proxy_process

        config = from_cluster(cluster, kube_proxy_process(snapshot).cmdline)
    decision = ProxyModeDecision(mode="unknown")
    ev = decision.evidence

    reported, why = reported_mode(snapshot)
    if why:
        ev.append(why)
    decision.reported_mode = reported
    if config is not None and config.mode_known:
        decision.config_mode = config.effective_mode
        ev.append(f"config: mode {config.mode or '(unset)'} -> {config.effective_mode} "
                  f"({config.evidence.get('mode', 'kube-proxy config')})")
    mmode, why = metrics_mode(snapshot)
    decision.metrics_mode = mmode
    if why:
        ev.append(why)
    decision.dumps = iptables_dumps(snapshot)
    decision.rules = rules_by_mode(snapshot, views, decision.dumps)
    decision.modes_found = [m for m in KUBE_PROXY_MODES if m in decision.rules]
    for m in decision.modes_found:
        ev.extend(f"rules: {line}" for line in decision.rules[m].evidence)
    if not decision.modes_found:
        ev.append("rules: no kube-proxy service rules in iptables, nftables or IPVS")
    cilium, cilium_ev = cilium_replacement(cluster)
    decision.cilium_replacement = cilium
    ev.extend(cilium_ev)
    cilium_chains = sorted({name for d in decision.dumps for _, name in d.names()
                            if name.startswith("CILIUM")})

    node_os = _node_os(cluster, snapshot.node)
    if node_os == "windows" and reported is None and not decision.modes_found:
        ev.append(f"node {snapshot.node} runs Windows (Node nodeInfo.operatingSystem / kubernetes.io/os)")
        reported = "kernelspace"
    for candidate in (reported, decision.config_mode):
        if candidate in UNSUPPORTED:
            decision.mode = candidate
            decision.unsupported = UNSUPPORTED[candidate]
            return decision

    no_kube_proxy = (cluster is not None and _kube_system(cluster.daemonsets, "kube-proxy") is None
                     and reported is None and mmode is None)
    if reported in KUBE_PROXY_MODES:
        decision.mode = reported
    elif cilium in CILIUM_FULL_REPLACEMENT and no_kube_proxy:
        # kube-proxy's rules without a kube-proxy: left over from before Cilium took over
        decision.mode = "cilium"
        ev.append("no kube-proxy DaemonSet and no kube-proxy answering on this node")
        return decision
    elif len(decision.modes_found) == 1:
        decision.mode = decision.modes_found[0]
    elif len(decision.modes_found) > 1:
        # two modes' rules: the one kube-proxy is configured for (or whose metrics it exports)
        for candidate in (decision.config_mode, mmode):
            if candidate in decision.modes_found:
                decision.mode = candidate
                break
        else:
            decision.mode = max(decision.modes_found, key=lambda m: decision.rules[m].services)
    elif cilium in CILIUM_FULL_REPLACEMENT or (cilium is None and cilium_chains and mmode is None):
        decision.mode = "cilium"
        if cilium is None:
            ev.append(f"rules: Cilium chains ({', '.join(cilium_chains[:3])}) and no kube-proxy rules")
        return decision
    elif mmode in KUBE_PROXY_MODES:
        decision.mode = mmode
    elif decision.config_mode in KUBE_PROXY_MODES:
        decision.mode = decision.config_mode

    for name, value in (("/proxyMode", reported), ("config", decision.config_mode), ("metrics", mmode)):
        if value and value in KUBE_PROXY_MODES and value != decision.mode:
            decision.conflicts.append(f"{name} says {value} but this node runs {decision.mode}")
    if decision.mode in KUBE_PROXY_MODES and decision.mode not in decision.rules and decision.modes_found:
        decision.conflicts.append(f"kube-proxy runs {decision.mode} but only "
                                  f"{', '.join(decision.modes_found)} rules exist on the node")
    if cilium in CILIUM_FULL_REPLACEMENT and decision.mode in KUBE_PROXY_MODES:
        decision.conflicts.append(f"Cilium's kube-proxy replacement ({cilium}) is on while kube-proxy "
                                  f"({decision.mode}) also programs services")
    return decision


# -- leftovers ----------------------------------------------------------------------------------


def _count(n: int, word: str) -> str:
    plural = word + ("es" if word.endswith("s") else "s")
    return f"{n} {word}" if n == 1 else f"{n} {plural}"


def leftovers(snapshot: NodeSnapshot, decision: ProxyModeDecision) -> list[Leftover]:
    """Rules of kube-proxy modes other than the one running (none when the mode is unknown)."""
    running = decision.mode
    if running not in (*KUBE_PROXY_MODES, "cilium"):
        return []
    found: list[Leftover] = []
    if running in ("nftables", "cilium", "ipvs"):
        localnet = route_localnet(snapshot)
        for dump in iptables_dumps(snapshot) if decision.dumps is None else decision.dumps:
            item = _iptables_leftover(dump, running, localnet)
            if item is not None:
                found.append(item)
    if running != "nftables":
        tables = nft_kube_proxy_tables(snapshot)
        if tables:
            found.append(Leftover(
                "nftables", "nftables",
                [f"table {t.family} kube-proxy ({_count(t.chains, 'chain')}, "
                 f"{_count(t.service_chains, 'service chain')})" for t in tables],
                service_rules=any(t.service_chains for t in tables),
                evidence=["nft-ruleset: " + ", ".join(f"table {t.family} kube-proxy" for t in tables)],
                commands=[f"nft delete table {t.family} kube-proxy" for t in tables]))
    if running != "ipvs":
        ipvs = ipvs_state(snapshot)
        items = []
        if ipvs.virtual_servers:
            items.append(f"{_count(ipvs.virtual_servers, 'virtual server')} ({ipvs.source})")
        if ipvs.ipvs0_addresses is not None:
            items.append(f"interface kube-ipvs0 ({_count(ipvs.ipvs0_addresses, 'address')})")
        if ipvs.kube_ipsets:
            items.append(f"ipsets {', '.join(ipvs.kube_ipsets)}")
        if items:
            commands = []
            if ipvs.virtual_servers:
                commands.append("ipvsadm -C   # clears every IPVS virtual server on the node")
            if ipvs.ipvs0_addresses is not None:
                commands.append("ip link delete kube-ipvs0")
            commands += [f"ipset destroy {name}" for name in ipvs.kube_ipsets]
            found.append(Leftover("ipvs", "ipvs", items, service_rules=bool(ipvs.virtual_servers),
                                  evidence=[f"{ipvs.source or 'ip-addr.json/ipset-save.txt'}: "
                                            + ", ".join(items)], commands=commands))
    return found


def route_localnet(snapshot: NodeSnapshot) -> str | None:
    """net.ipv4.conf.all.route_localnet as captured ("0", "1"), None when not captured or unreadable."""
    from kubectl_proxydoctor.errors import ProxyDoctorError
    from kubectl_proxydoctor.nodeinfo import sysctls

    try:
        return sysctls(snapshot).get("net.ipv4.conf.all.route_localnet")
    except ProxyDoctorError:
        return None


MANY_CHAINS = 24  # above this many chains a cleanup flushes and deletes through a loop per table


def localnet_guard_reason(localnet: str | None) -> str | None:
    """Why KUBE-FIREWALL must stay, or None when removing it re-opens nothing (route_localnet 0).

    KUBE-FIREWALL holds the 'block incoming localnet connections' DROP (CVE-2020-8558) that kubelet
    maintains; with route_localnet=1 a node without it accepts packets for 127.0.0.0/8 from outside.
    """
    if localnet == "0":
        return None
    state = ("net.ipv4.conf.all.route_localnet = 1" if localnet == "1" else
             f"net.ipv4.conf.all.route_localnet = {localnet}" if localnet is not None else
             "route_localnet was not captured (sysctl.txt), so it may be 1")
    return (f"KUBE-FIREWALL is kept: it holds the 'block incoming localnet connections' rule "
            f"(CVE-2020-8558) that kubelet maintains, and {state}; removing it would let other hosts "
            "reach services bound to 127.0.0.1")


def _iptables_leftover(dump: IptablesDump, running: str, localnet: str | None = None) -> Leftover | None:
    kubelet = dump.has_kubelet()
    guard = localnet_guard_reason(localnet)
    chains = []
    for c in dump.kube():
        if c.name in KUBELET_CHAINS or (kubelet and c.name == "KUBE-FIREWALL"):
            continue  # kubelet's, not kube-proxy's
        iptables_only = IPTABLES_SERVICE_CHAIN.match(c.name) or c.name in IPTABLES_MODE_ONLY_CHAINS
        if running == "ipvs" and not iptables_only:
            continue  # IPVS mode uses KUBE-SERVICES, KUBE-MARK-MASQ, ... itself
        chains.append(c)
    if not chains:
        return None
    table_order: dict[str, int] = {}
    for c in dump.chains:  # tables in the order the dump lists them
        table_order.setdefault(c.table, len(table_order))
    chains.sort(key=lambda c: (table_order[c.table], c.name))
    services = [c for c in chains if IPTABLES_SERVICE_CHAIN.match(c.name)]
    if len(services) > 8:  # summarise per-service chains, keep the named ones
        named = [c for c in chains if not IPTABLES_SERVICE_CHAIN.match(c.name)]
        items = [_describe(c) for c in named] + [f"{len(services)} KUBE-SVC/SEP/EXT/FW service chains"]
    else:
        items = [_describe(c) for c in chains]
    hooks = [f"{c.table} {c.name} <- {'/'.join(c.jumps_from)}" for c in chains
             if any(not j.startswith(("KUBE-", "CILIUM")) for j in c.jumps_from)]
    # a fix never re-opens a protection: the localnet DROP stays while route_localnet may be 1 (an
    # empty KUBE-FIREWALL, as in ip6tables, protects nothing and goes with the rest)
    removable = [c for c in chains if not (guard and c.name == "KUBE-FIREWALL" and c.rules)]
    kept = [f"{dump.label}: {guard}"] if len(removable) < len(chains) else []
    return Leftover("iptables", dump.label, items, service_rules=bool(services),
                    evidence=[f"{dump.file}: {len(chains)} kube-proxy chains", *hooks],
                    commands=_cleanup_commands(dump, removable), kept=kept)


def cleanup_binary(snapshot: NodeSnapshot, label: str) -> str:
    """The command that acts on the backend of the dump labelled ``label`` (``iptables-nft``, ...)."""
    dump = next((d for d in iptables_dumps(snapshot) if d.label == label), None)
    return CLEANUP_BINARY.get(dump.file, label) if dump is not None else label


def backend_cleanup(snapshot: NodeSnapshot, label: str) -> Leftover | None:
    """Every kube-proxy chain in one iptables dump (``label`` as ``iptables-legacy``), with the
    commands that unhook, flush and delete them (KUBE-FIREWALL kept while route_localnet may be 1)."""
    dump = next((d for d in iptables_dumps(snapshot) if d.label == label), None)
    return _iptables_leftover(dump, "nftables", route_localnet(snapshot)) if dump is not None else None


# the binary that acts on the backend a dump was read from (the default dump's backend is whatever
# `iptables` is on that host: its commands name chains one by one, never a loop over the table)
CLEANUP_BINARY = {
    "iptables-nft-save.txt": "iptables-nft", "ip6tables-nft-save.txt": "ip6tables-nft",
    "iptables-legacy-save.txt": "iptables-legacy", "ip6tables-legacy-save.txt": "ip6tables-legacy",
}


def _cleanup_commands(dump: IptablesDump, chains: list[ChainInfo]) -> list[str]:
    """The cleanup of ``chains`` with the binary of the dump's own backend: a bare `iptables` may be
    the other backend on the host, where kube-proxy's live chains carry the same names."""
    binary = CLEANUP_BINARY.get(dump.file)
    if binary is None:
        return _iptables_cleanup(dump.label, chains)
    return _iptables_cleanup(binary, chains, list(dump.kube()))


def _iptables_cleanup(binary: str, chains: list[ChainInfo], kube: list[ChainInfo] | None = None) -> list[str]:
    """Unhook, flush, then delete each chain (jumps between leftover chains go with the flush). Above
    MANY_CHAINS the flush and delete are one shell loop per table over the table's KUBE-* chains,
    less those of ``kube`` (every KUBE-* chain of the dump) that are not removed, so the fix stays
    a few lines that work as written at any number of services."""
    names = {(c.table, c.name) for c in chains}
    unhook = [f"{binary} -t {c.table} -D {rule[3:]}" for c in chains for rule in c.jump_rules
              if (c.table, rule.split()[1]) not in names]
    if len(chains) <= MANY_CHAINS or kube is None:
        flush = [f"{binary} -t {c.table} -F {c.name}" for c in chains]
        delete = [f"{binary} -t {c.table} -X {c.name}" for c in chains]
        return [*unhook, *flush, *delete]
    loops: list[str] = []
    for table in dict.fromkeys(c.table for c in chains):
        keep = sorted({c.name for c in kube if c.table == table} - {n for t, n in names if t == table})
        pick = (f"$({binary}-save -t {table} | sed -n 's/^:\\(KUBE-[^ ]*\\) .*/\\1/p'"
                + (" | grep -vx" + "".join(f" -e {k}" for k in keep) if keep else "") + ")")
        loops += [f'for c in {pick}; do {binary} -t {table} -{op} "$c"; done' for op in ("F", "X")]
    flush_all = [c for c in loops if ' -F "$c"' in c]
    return [*unhook, *flush_all, *(c for c in loops if c not in flush_all)]


def _describe(c: ChainInfo) -> str:
    text = f"{c.table} {c.name} ({_count(c.rules, 'rule')}"
    if c.jumps_from:
        text += f", jumped to from {'/'.join(c.jumps_from[:6])}"
        if len(c.jumps_from) > 6:
            text += f" and {len(c.jumps_from) - 6} more chains"
    if c.service_jumps:
        text += f", jumped to from {_count(c.service_jumps, 'rule')} in service chains"
    return text + ")"
