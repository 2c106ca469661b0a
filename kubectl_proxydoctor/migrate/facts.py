"""kube-proxy's configuration as the migration checks need it, and each node's current mode.

Read from the kube-system/kube-proxy ConfigMap (``config.conf``, a KubeProxyConfiguration) and
DaemonSet (image tag, command-line flags, which override the file), or from a capture's meta.json
and metrics. Missing pieces stay None: "not known", never a guessed default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kubectl_proxydoctor import nodeinfo
from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.migrate.versions import parse_version
from kubectl_proxydoctor.snapshot import NodeSnapshot

# KubeProxyConfiguration defaults for the settings that stop mattering (v1alpha1)
IPTABLES_DEFAULTS: dict[str, object] = {
    "masqueradeAll": False, "masqueradeBit": None, "minSyncPeriod": "0s", "syncPeriod": "0s",
    "localhostNodePorts": None,
}
IPVS_DEFAULTS: dict[str, object] = {
    "excludeCIDRs": None, "minSyncPeriod": "0s", "scheduler": "", "strictARP": False,
    "syncPeriod": "0s", "tcpFinTimeout": "0s", "tcpTimeout": "0s", "udpTimeout": "0s",
}
@dataclass
class ProxyFacts:
    """What is known of kube-proxy's configuration, each fact with where it came from."""

    mode: str | None = None  # "" = unset (iptables on Linux today); None = not known
    mode_source: str = ""
    version: tuple[int, int, int] | None = None
    version_text: str = ""
    version_source: str = ""
    feature_gates: dict[str, bool] = field(default_factory=dict)
    node_port_addresses: list[str] | None = None
    tcp_be_liberal: bool | None = None
    iptables: dict[str, object] = field(default_factory=dict)  # settings that differ from the defaults
    ipvs: dict[str, object] = field(default_factory=dict)
    nftables: dict[str, object] = field(default_factory=dict)  # as written (for the plan)
    flags: list[str] = field(default_factory=list)
    config_read: bool = False
    problems: list[str] = field(default_factory=list)
    evidence: dict[str, str] = field(default_factory=dict)  # setting -> where its value came from

    @property
    def localhost_node_ports(self) -> bool | None:
        value = self.iptables.get("localhostNodePorts")
        return value if isinstance(value, bool) else None


def _differs(section: dict, defaults: dict[str, object]) -> dict[str, object]:
    out = {}
    for key, value in (section or {}).items():
        if key in defaults and value not in (defaults[key], None, "", [], {}):
            out[key] = value
    return out


def from_cluster(cluster) -> ProxyFacts:
    """Facts from the kube-proxy ConfigMap and DaemonSet in a ClusterState (None-safe)."""
    facts = ProxyFacts()
    if cluster is None:
        return facts
    from kubectl_proxydoctor import kubeproxy_config

    cfg = kubeproxy_config.from_cluster(cluster)
    if not cfg.found:
        return facts
    facts.config_read = True
    facts.problems = list(cfg.problems)
    facts.mode = cfg.mode
    facts.mode_source = cfg.evidence.get("mode", "")
    version = parse_version(cfg.version)
    if version:
        facts.version, facts.version_text = version, cfg.version
        facts.version_source = cfg.evidence.get("version", f"image {cfg.image}")
    facts.feature_gates = dict(cfg.feature_gates)
    facts.node_port_addresses = list(cfg.node_port_addresses) or None
    liberal = cfg.conntrack.get("tcpBeLiberal")
    facts.tcp_be_liberal = liberal if isinstance(liberal, bool) else None
    facts.iptables = _differs(cfg.iptables, IPTABLES_DEFAULTS)
    if cfg.iptables.get("localhostNodePorts") is False:
        facts.iptables["localhostNodePorts"] = False
    facts.ipvs = _differs(cfg.ipvs, IPVS_DEFAULTS)
    facts.nftables = dict(cfg.nftables)
    facts.flags = list(cfg.args)
    facts.evidence = dict(cfg.evidence)
    return facts


def add_node_facts(facts: ProxyFacts, snapshot: NodeSnapshot) -> None:
    """Fill what the API did not say from a capture: version (meta, build_info) and cmdline flags."""
    if facts.version is None:
        text = snapshot.meta.get("kube_proxy_version")
        source = "meta.json kube_proxy_version"
        if not text:
            metrics = _metrics(snapshot)
            for labels, _ in (metrics.samples.get("kubernetes_build_info", []) if metrics else []):
                text, source = labels.get("git_version"), "kube-proxy metrics kubernetes_build_info"
                break
        version = parse_version(str(text)) if text else None
        if version:
            facts.version, facts.version_text, facts.version_source = version, str(text), source
    from kubectl_proxydoctor.kube_proxy_process import kube_proxy_process

    process = kube_proxy_process(snapshot)
    cmdline = process.cmdline
    if cmdline and facts.mode is None:
        from kubectl_proxydoctor.kubeproxy_config import parse_flags

        flags = parse_flags(str(cmdline).split())
        if "proxy-mode" in flags and "config" not in flags:
            where = process.evidence.split(":")[0]
            facts.mode, facts.mode_source = flags["proxy-mode"], f"kube-proxy command line ({where})"


def _metrics(snapshot: NodeSnapshot):
    try:
        return nodeinfo.kube_proxy_metrics(snapshot)
    except ParseError:
        return None


def current_mode(snapshot: NodeSnapshot, facts: ProxyFacts | None,
                 state: Any = None) -> tuple[str | None, str]:
    """The mode kube-proxy runs in on this node, and how that is known: the node's NodeState
    decision (proxy_mode.decide, as `check` and `status` say) when it names one of kube-proxy's
    modes; the capture's weaker hints below only for a node without one."""
    mode = getattr(state, "kube_proxy_mode", None)
    if mode is not None:
        evidence = [str(e) for e in state.decision.evidence]
        return mode, next((e for e in evidence if mode in e), "; ".join(evidence[:1]) or "proxy_mode.decide")
    answered = nodeinfo.kube_proxy_mode(snapshot)
    if answered:
        return answered, f"kube-proxy /proxyMode answered {answered!r}"
    if snapshot.meta.get("mode"):
        return str(snapshot.meta["mode"]), "meta.json mode"
    if snapshot.text("ipvsadm.txt") and "->" in (snapshot.text("ipvsadm.txt") or ""):
        return "ipvs", "IPVS virtual servers in ipvsadm.txt"
    text = snapshot.text("nft-ruleset.json")
    if text and '"kube-proxy"' in text:
        try:
            json.loads(text)
            return "nftables", "table kube-proxy in nft-ruleset.json"
        except json.JSONDecodeError:
            pass
    if any(snapshot.text(f) and "KUBE-SVC-" in (snapshot.text(f) or "")
           for f in ("iptables-save.txt", "iptables-nft-save.txt", "iptables-legacy-save.txt")):
        return "iptables", "KUBE-SVC-* chains in the iptables dump"
    if facts is not None and facts.mode is not None:
        shown = facts.mode or "unset"
        return facts.mode or "iptables", f"{facts.mode_source} (mode {shown})"
    return None, "not known"
