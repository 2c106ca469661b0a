"""Node facts parsed from a snapshot's capture files: addresses, kernel, modules, sysctls,
kube-proxy metrics and health. Each parser reads one capture file's text; none reads the kernel.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from dataclasses import dataclass, field

from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.snapshot import NodeSnapshot

# ---------------------------------------------------------------------------------- addresses


@dataclass(frozen=True)
class Address:
    ifname: str
    ip: str
    prefixlen: int
    family: int  # 4 or 6
    scope: str = ""


def parse_ip_addr_json(text: str, source: str = "ip-addr.json") -> list[Address]:
    """Addresses from `ip -j addr show` output."""
    return addresses_of(_decode(text), source)


def _decode(text: str) -> object:
    """The decoded JSON, or the JSONDecodeError (kept, so a lenient reader can ignore it)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        return e


def ip_addr_doc(snapshot: NodeSnapshot) -> object:
    """ip-addr.json decoded once per snapshot (None when not captured, a JSONDecodeError when it
    is not JSON): every reader of the node's interfaces starts here."""
    text = snapshot.text("ip-addr.json")
    if not text:
        return None
    return snapshot.derived("nodeinfo.ip-addr", ("ip-addr.json",), lambda: _decode(text))


def addresses_of(doc: object, source: str = "ip-addr.json") -> list[Address]:
    """Addresses from the decoded `ip -j addr show` document."""
    if isinstance(doc, json.JSONDecodeError):
        raise ParseError(source, f"not valid JSON: {doc.msg}", doc.lineno) from doc
    if not isinstance(doc, list):
        raise ParseError(source, "expected the JSON list `ip -j addr show` prints")
    out: list[Address] = []
    for link in doc:
        if not isinstance(link, dict):
            raise ParseError(source, "expected an object per interface")
        for info in link.get("addr_info") or []:
            if not isinstance(info, dict) or "local" not in info:
                continue
            family = 6 if info.get("family") == "inet6" else 4
            try:
                prefix = int(info.get("prefixlen", 32 if family == 4 else 128))
            except (TypeError, ValueError) as e:
                raise ParseError(source, f"bad prefixlen {info.get('prefixlen')!r}") from e
            out.append(Address(str(link.get("ifname", "")), str(info["local"]), prefix, family,
                               str(info.get("scope", ""))))
    return out


def addresses(snapshot: NodeSnapshot) -> list[Address]:
    """Every address on the node (empty when ip-addr.json was not captured)."""
    doc = ip_addr_doc(snapshot)
    return addresses_of(doc) if doc is not None else []


def local_addresses(snapshot: NodeSnapshot) -> set[str]:
    """Addresses `-m addrtype --dst-type LOCAL` / `fib daddr type local` match on this node."""
    return {a.ip for a in addresses(snapshot)}


def interface_addresses(snapshot: NodeSnapshot, ifname: str) -> list[Address]:
    return [a for a in addresses(snapshot) if a.ifname == ifname]


# ---------------------------------------------------------------------------------- kernel

_RELEASE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def kernel_release(snapshot: NodeSnapshot) -> str | None:
    text = snapshot.text("kernel.txt")
    return text.strip() or None if text is not None else None


def kernel_version(release: str | None) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a `uname -r` string, or None when it cannot be read."""
    if not release:
        return None
    m = _RELEASE.match(release.strip())
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def kernel_config(snapshot: NodeSnapshot) -> dict[str, str]:
    """CONFIG_* options from kernel-config.txt (y, m, or a value); '# ... is not set' -> 'n'."""
    text = snapshot.text("kernel-config.txt")
    if text is None:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            out[key] = value.strip('"')
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            out[line[2:-len(" is not set")]] = "n"
    return out


def loaded_modules(snapshot: NodeSnapshot) -> set[str] | None:
    """Module names from modules.txt (/proc/modules, plus modules.builtin paths); None if absent."""
    text = snapshot.text("modules.txt")
    if text is None:
        return None
    names: set[str] = set()
    for line in text.splitlines():
        word = line.split(maxsplit=1)[0] if line.strip() else ""
        if not word or word.startswith("#"):
            continue
        if word.endswith(".ko"):  # a modules.builtin line: kernel/net/netfilter/ipvs/ip_vs.ko
            word = word.rsplit("/", 1)[-1][: -len(".ko")]
        names.add(word.replace("-", "_"))
    return names


# module -> the CONFIG_ option that builds it
MODULE_CONFIG = {
    "ip_vs": "CONFIG_IP_VS",
    "ip_vs_rr": "CONFIG_IP_VS_RR",
    "ip_vs_wrr": "CONFIG_IP_VS_WRR",
    "ip_vs_sh": "CONFIG_IP_VS_SH",
    "ip_vs_lc": "CONFIG_IP_VS_LC",
    "ip_vs_wlc": "CONFIG_IP_VS_WLC",
    "ip_vs_lblc": "CONFIG_IP_VS_LBLC",
    "ip_vs_lblcr": "CONFIG_IP_VS_LBLCR",
    "ip_vs_dh": "CONFIG_IP_VS_DH",
    "ip_vs_sed": "CONFIG_IP_VS_SED",
    "ip_vs_nq": "CONFIG_IP_VS_NQ",
    "ip_vs_mh": "CONFIG_IP_VS_MH",
    "nf_conntrack": "CONFIG_NF_CONNTRACK",
    "nf_tables": "CONFIG_NF_TABLES",
    "nft_numgen": "CONFIG_NFT_NUMGEN",
    "nft_fib": "CONFIG_NFT_FIB",
    "nft_fib_ipv4": "CONFIG_NFT_FIB_IPV4",
    "nft_nat": "CONFIG_NFT_NAT",
    "nft_ct": "CONFIG_NFT_CT",
    "nft_masq": "CONFIG_NFT_MASQ",
    "ip_tables": "CONFIG_IP_NF_IPTABLES",
    "xt_statistic": "CONFIG_NETFILTER_XT_MATCH_STATISTIC",
    "xt_recent": "CONFIG_NETFILTER_XT_MATCH_RECENT",
    "br_netfilter": "CONFIG_BRIDGE_NETFILTER",
}


@dataclass(frozen=True)
class ModuleState:
    """Whether a kernel feature is usable, and how we know."""

    name: str
    state: str  # "loaded" | "built-in" | "module" (can be loaded) | "missing" | "unknown"
    evidence: str

    @property
    def available(self) -> bool | None:
        if self.state in ("loaded", "built-in", "module"):
            return True
        return False if self.state == "missing" else None


def module_state(snapshot: NodeSnapshot, name: str) -> ModuleState:
    """Decide from modules.txt and kernel-config.txt; never "missing" without positive evidence."""
    modules = loaded_modules(snapshot)
    if modules is not None and name in modules:
        return ModuleState(name, "loaded", f"{name} listed in modules.txt (/proc/modules)")
    config = kernel_config(snapshot)
    option = MODULE_CONFIG.get(name)
    if option and option in config:
        value = config[option]
        if value == "y":
            return ModuleState(name, "built-in", f"{option}=y in kernel-config.txt")
        if value == "m":
            return ModuleState(name, "module", f"{option}=m in kernel-config.txt (loadable)")
        if value == "n":
            return ModuleState(name, "missing", f"{option} is not set in kernel-config.txt")
    if option and config and option not in config and _config_is_complete(config):
        return ModuleState(name, "missing", f"{option} absent from a full kernel-config.txt")
    return ModuleState(name, "unknown",
                       "built-in or unknown: neither modules.txt nor kernel-config.txt tells")


def _config_is_complete(config: dict[str, str]) -> bool:
    # a real /proc/config.gz has thousands of options; a hand-made subset must not imply "missing"
    return len(config) > 1500


def decompress_config(data: bytes) -> str:
    """Text of /proc/config.gz (or already-plain text)."""
    try:
        return gzip.decompress(data).decode()
    except OSError:
        return data.decode(errors="replace")


# ---------------------------------------------------------------------------------- sysctls


def parse_sysctl(text: str) -> dict[str, str]:
    """`sysctl -a` lines `key = value` (also `key=value`); other lines are ignored."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if "=" not in line or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


def sysctls(snapshot: NodeSnapshot) -> dict[str, str]:
    text = snapshot.text("sysctl.txt")
    return parse_sysctl(text) if text else {}


# ---------------------------------------------------------------------------------- metrics

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*(?:\\.[^"\\]*)*)"')  # unrolled: linear, fast


@dataclass
class Metrics:
    """Prometheus text samples: name -> list of (labels, value)."""

    samples: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)

    def value(self, name: str, **labels: str) -> float | None:
        """The first sample of ``name`` whose labels include ``labels`` (None when absent)."""
        for sample_labels, value in self.samples.get(name, []):
            if all(sample_labels.get(k) == v for k, v in labels.items()):
                return value
        return None

    def total(self, name: str) -> float | None:
        values = self.samples.get(name)
        return sum(v for _, v in values) if values else None

    def names(self) -> set[str]:
        return set(self.samples)


def parse_metrics(text: str, source: str = "kube-proxy-metrics.txt") -> Metrics:
    """Parse Prometheus exposition text; a line that is not a sample raises ParseError."""
    metrics = Metrics()
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ParseError(source, f"not a metrics sample: {line[:80]!r}", number)
        raw = m.group(3)
        try:
            value = float(raw)
        except ValueError as e:
            raise ParseError(source, f"bad sample value {raw!r}", number) from e
        if math.isnan(value) and raw.lower() != "nan":
            raise ParseError(source, f"bad sample value {raw!r}", number)
        labels = dict(_LABEL.findall(m.group(2) or ""))
        metrics.samples.setdefault(m.group(1), []).append((labels, value))
    return metrics


def kube_proxy_metrics(snapshot: NodeSnapshot) -> Metrics | None:
    text = snapshot.text("kube-proxy-metrics.txt")
    return parse_metrics(text) if text is not None else None


@dataclass
class SyncFigures:
    """kube-proxy's sync health from its metrics (seconds since epoch; counters)."""

    last_sync: float | None = None
    last_queued: float | None = None
    pending_changes: float | None = None
    restore_failures: float | None = None
    partial_restore_failures: float | None = None
    sync_failures: float | None = None  # nftables / ipvs: sync_proxy_rules errors if exported

    @property
    def stuck_seconds(self) -> float | None:
        """How long a queued change has waited beyond the last completed sync."""
        if self.last_sync is None or self.last_queued is None:
            return None
        return max(0.0, self.last_queued - self.last_sync)


def sync_figures(metrics: Metrics) -> SyncFigures:
    pending = metrics.total("kubeproxy_sync_proxy_rules_endpoint_changes_pending")
    svc_pending = metrics.total("kubeproxy_sync_proxy_rules_service_changes_pending")
    if pending is not None or svc_pending is not None:
        pending = (pending or 0) + (svc_pending or 0)
    return SyncFigures(
        last_sync=metrics.total("kubeproxy_sync_proxy_rules_last_timestamp_seconds"),
        last_queued=metrics.total("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"),
        pending_changes=pending,
        restore_failures=metrics.total("kubeproxy_sync_proxy_rules_iptables_restore_failures_total"),
        partial_restore_failures=metrics.total("kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total"),
        sync_failures=metrics.total("kubeproxy_sync_proxy_rules_nftables_sync_failures_total"),
    )


# ---------------------------------------------------------------------------------- healthz


@dataclass
class Healthz:
    """kube-proxy's /healthz answer."""

    last_updated: str | None
    current_time: str | None
    node_eligible: bool | None
    raw: dict


def parse_healthz(text: str, source: str = "kube-proxy-healthz.json") -> Healthz:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ParseError(source, f"not valid JSON: {e.msg}", e.lineno) from e
    if not isinstance(doc, dict):
        raise ParseError(source, "expected a JSON object")
    eligible = doc.get("nodeEligible")
    return Healthz(doc.get("lastUpdated"), doc.get("currentTime"),
                   eligible if isinstance(eligible, bool) else None, doc)


def kube_proxy_healthz(snapshot: NodeSnapshot) -> Healthz | None:
    text = snapshot.text("kube-proxy-healthz.json")
    return parse_healthz(text) if text is not None else None


def kube_proxy_mode(snapshot: NodeSnapshot) -> str | None:
    """What kube-proxy's /proxyMode answered (kube-proxy-mode.txt), if captured."""
    text = snapshot.text("kube-proxy-mode.txt")
    return text.strip() or None if text is not None else None
