"""Everything IPVS mode programs on a node, read from a snapshot: the IPVS table, kube-ipvs0
addresses, kube-proxy's ipsets, and the node's own addresses."""

from __future__ import annotations

from dataclasses import dataclass, field

from kubectl_proxydoctor import nodeinfo
from kubectl_proxydoctor.formats import ipvs_procfs as procfs
from kubectl_proxydoctor.formats import ipvsadm
from kubectl_proxydoctor.formats.ipvs_table import IpvsTable
from kubectl_proxydoctor.modes.ipvs import ipset
from kubectl_proxydoctor.snapshot import NodeSnapshot

DUMMY_INTERFACE = "kube-ipvs0"


@dataclass
class IpvsState:
    table: IpvsTable
    ipsets: dict[str, ipset.IpSet] | None = None  # None when ipset-save.txt was not captured
    ipvs0: set[str] | None = None  # kube-ipvs0 addresses; None when ip-addr.json was not captured
    node_ips: set[str] = field(default_factory=set)  # local addresses not on kube-ipvs0
    ipvs0_exists: bool = True  # False when ip-addr.json lists no kube-ipvs0 interface
    notes: list[str] = field(default_factory=list)

    def ipset_has(self, base: str, values: list[str], family: int = 4) -> bool:
        """Whether kube-proxy's set ``base`` (KUBE-6-... for IPv6) holds these values."""
        name = ipset.set_name(base, family)
        return bool(self.ipsets and name in self.ipsets and self.ipsets[name].contains(values))


def read_table(snapshot: NodeSnapshot) -> IpvsTable | None:
    """The IPVS table from ipvsadm.txt (either format), else /proc/net/ip_vs; None if neither."""
    text = snapshot.text("ipvsadm.txt")
    if text is not None and text.strip():
        return ipvsadm.parse(text, "ipvsadm.txt")
    text = snapshot.text("proc-net-ip_vs.txt")
    if text is not None and text.strip():
        hz = nodeinfo.kernel_config(snapshot).get("CONFIG_HZ")
        return procfs.parse(text, "proc-net-ip_vs.txt", int(hz) if hz and hz.isdigit() else None)
    return None


_INPUTS = ("ipvsadm.txt", "proc-net-ip_vs.txt", "ipset-save.txt", "ip-addr.json", "kernel-config.txt")


def read_state(snapshot: NodeSnapshot) -> IpvsState | None:
    """The node's IPVS state, or None when no IPVS table was captured (read once per snapshot
    while its capture files stay the same)."""
    return snapshot.derived("ipvs.state", _INPUTS, lambda: _read_state(snapshot))


def _read_state(snapshot: NodeSnapshot) -> IpvsState | None:
    table = read_table(snapshot)
    if table is None:
        return None
    state = IpvsState(table)
    text = snapshot.text("ipset-save.txt")
    if text is not None:
        state.ipsets = ipset.parse(text, "ipset-save.txt")
    else:
        state.notes.append("ipset-save.txt not captured: frontend kinds guessed from addresses")
    if snapshot.has("ip-addr.json"):
        addresses = nodeinfo.addresses(snapshot)
        state.ipvs0 = {a.ip for a in addresses if a.ifname == DUMMY_INTERFACE}
        state.ipvs0_exists = _has_link(nodeinfo.ip_addr_doc(snapshot), DUMMY_INTERFACE)
        state.node_ips = {a.ip for a in addresses
                          if a.ifname != DUMMY_INTERFACE and a.scope != "link"
                          and not a.ip.startswith("fe80:")}
    else:
        state.notes.append("ip-addr.json not captured: kube-ipvs0 and node addresses unknown")
    return state


def _has_link(doc: object, ifname: str) -> bool:
    """Whether `ip -j addr` (decoded: nodeinfo.ip_addr_doc) lists the interface (with or without
    addresses)."""
    links = doc if isinstance(doc, list) else []
    return any(isinstance(link, dict) and link.get("ifname") == ifname for link in links)
