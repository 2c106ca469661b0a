"""Which kube-proxy release runs on the node, and which rule-layout generation its rules show.

Version evidence, strongest first: the running process's ``kubernetes_build_info{git_version}``
metric, its ``/statusz`` page (``Binary version:``, 1.33+), a version in its captured command line,
the kube-proxy DaemonSet's image tag from the API, and a ``kube_proxy_version`` the capture's
meta.json records. The layout generation is read from the rules themselves: in iptables, the
generation ``modes.iptables.layout`` names (nfacct counters from 1.31, rules without comments in
large-cluster mode); in nftables, the
generation ``modes.nftables.layout`` names (filter chains reworked in 1.34 and backported to 1.33.x,
endpoint-less DNAT maps from 1.36). Where they disagree
the report says so; the version (or, without one, the layout) decides which API semantics apply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.expected import Semantics
from kubectl_proxydoctor.kubeproxy_config import image_version

STATUSZ_FILE = "kube-proxy-statusz.txt"
CMDLINE_FILES = ("kube-proxy-cmdline.txt", "kube-proxy-cmdline")
# the oldest release writing each nftables layout generation (modes.nftables.layout.GENERATIONS)
NFT_MIN_VERSION = {"v1.29-v1.33": (1, 29), "v1.34-v1.35": (1, 33), "v1.36+": (1, 36)}

NFACCT_SINCE = (1, 31)  # kube-proxy's iptables rules count with nfacct from this release
_VERSION = re.compile(r"\bv?(\d+)\.(\d+)(?:\.(\d+))?([-+][0-9A-Za-z.+-]*)?")
_BUILD_INFO = "kubernetes_build_info"


@dataclass(frozen=True)
class VersionEvidence:
    """One source's word on the version: where it came from and what it said."""

    source: str
    version: str
    detail: str

    @property
    def minor(self) -> tuple[int, int] | None:
        return minor_of(self.version)

    def to_json(self) -> dict:
        return {"source": self.source, "version": self.version, "detail": self.detail}


@dataclass
class Layout:
    """The iptables layout generation the rules show, with the rules that show it."""

    generation: str  # e.g. "iptables >= 1.31 (nfacct counters ...)", "nftables v1.36+ (...)"
    min_version: tuple[int, int] | None = None
    large_cluster: bool = False
    evidence: list[str] = field(default_factory=list)
    # iptables: kube-proxy's KUBE-FORWARD INVALID drop written without its nfacct counter
    invalid_drop_uncounted: str | None = None

    def to_json(self) -> dict:
        return {
            "generation": self.generation,
            "min_version": "{}.{}".format(*self.min_version) if self.min_version else None,
            "large_cluster_mode": self.large_cluster,
            "evidence": list(self.evidence),
        }


@dataclass
class KubeProxyIdentity:
    """The node's kube-proxy release as far as the evidence shows, and its rule layout."""

    version: str | None = None
    source: str | None = None
    evidence: list[VersionEvidence] = field(default_factory=list)
    layout: Layout | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def minor(self) -> tuple[int, int] | None:
        return minor_of(self.version) if self.version else None

    @property
    def semantics(self) -> Semantics:
        """The API reading to apply: the version's, else the oldest the layout allows, else v1.30."""
        if self.minor is not None:
            return Semantics(self.minor)
        if self.layout is not None and self.layout.min_version is not None:
            return Semantics(self.layout.min_version)
        return Semantics()

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "version_source": self.source,
            "version_evidence": [e.to_json() for e in self.evidence],
            "layout": self.layout.to_json() if self.layout else None,
            "semantics": self.semantics.describe(),
            "notes": list(self.notes),
        }


def minor_of(version: str | None) -> tuple[int, int] | None:
    m = _VERSION.search(version or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _clean(version: str) -> str | None:
    m = _VERSION.search(version)
    if not m:
        return None
    text = m.group(0)
    return text if text.startswith("v") else "v" + text


# -- sources ---------------------------------------------------------------------------------------


def from_metrics(text: str | None) -> VersionEvidence | None:
    """``kubernetes_build_info{git_version="v1.33.1"}`` from kube-proxy's /metrics."""
    if not text or _BUILD_INFO not in text:
        return None
    from kubectl_proxydoctor.nodeinfo import parse_metrics

    try:
        metrics = parse_metrics(text)
    except ProxyDoctorError:
        return None
    for labels, _value in metrics.samples.get(_BUILD_INFO, []):
        raw = labels.get("git_version", "")
        version = _clean(raw)
        if version:
            return VersionEvidence("kube-proxy-metrics.txt", version, f'{_BUILD_INFO}{{git_version="{raw}"}}')
    return None


def from_statusz(text: str | None) -> VersionEvidence | None:
    """``Binary version: 1.33.0`` from kube-proxy's /statusz (1.33+)."""
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "binary version":
            version = _clean(value.strip())
            if version:
                return VersionEvidence(STATUSZ_FILE, version, line.strip())
    return None


def from_cmdline(name: str, text: str | None) -> VersionEvidence | None:
    """A version in the process's command line (an image or binary path such as kube-proxy:v1.33.1)."""
    words = (text or "").replace("\0", " ").split()
    for word in words:
        m = re.search(r"kube-proxy[:\-_/@]v?(\d+\.\d+(?:\.\d+)?)", word)
        if m:
            return VersionEvidence(name, "v" + m.group(1), word)
    return None


def from_daemonsets(daemonsets: list[dict]) -> VersionEvidence | None:
    """The kube-proxy DaemonSet's container image tag (e.g. registry.k8s.io/kube-proxy:v1.33.1)."""
    for ds in daemonsets:
        meta = ds.get("metadata") or {}
        pod_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
        containers = pod_spec.get("containers") or []
        for c in containers:
            image = c.get("image") if isinstance(c, dict) else None
            if not isinstance(image, str) or "kube-proxy" not in image:
                continue
            tag = image_version(image)
            version = _clean(tag) if tag else None
            if version:
                where = f"DaemonSet {meta.get('namespace', '')}/{meta.get('name', '')}"
                return VersionEvidence("api (kube-proxy DaemonSet)", version, f"{where} image {image}")
    return None


def from_meta(meta: dict) -> VersionEvidence | None:
    raw = meta.get("kube_proxy_version")
    version = _clean(raw) if isinstance(raw, str) else None
    return VersionEvidence("meta.json", version, f"kube_proxy_version {raw}") if version else None


# -- the iptables layout -----------------------------------------------------------------------------


def iptables_layout(rulesets: list) -> Layout | None:
    """The layout generation an iptables dump shows (None when it holds no kube-proxy service rules);
    the knowledge per release is ``modes.iptables.layout``'s."""
    from kubectl_proxydoctor.modes.iptables.layout import generation

    gen = generation(rulesets)
    if gen is None:
        return None
    layout = Layout(gen.name, gen.min_version, gen.large_cluster, list(gen.evidence))
    layout.invalid_drop_uncounted = gen.invalid_drop_uncounted
    return layout


def nftables_layout(snapshot) -> Layout | None:
    """The layout generation kube-proxy's nftables tables show (None without a known one)."""
    from kubectl_proxydoctor.modes.nftables import layout_generations

    try:
        generations = layout_generations(snapshot)
    except ProxyDoctorError:
        return None
    for family in ("ip", "ip6"):
        gen = generations.get(family)
        if gen is not None:
            evidence = [f"table {family} kube-proxy: {e}" for e in gen.evidence]
            return Layout(f"nftables {gen.name} ({gen.description})", NFT_MIN_VERSION.get(gen.name),
                          False, evidence)
    return None


# -- putting it together ---------------------------------------------------------------------------


def version_evidence(snapshot, cluster=None) -> list[VersionEvidence]:
    """Every source's word on kube-proxy's version, strongest first (the first one is used)."""
    found = [from_metrics(snapshot.text("kube-proxy-metrics.txt")), from_statusz(snapshot.text(STATUSZ_FILE))]
    found += [from_cmdline(name, snapshot.text(name)) for name in CMDLINE_FILES]
    daemonsets = list(getattr(cluster, "daemonsets", None) or []) or _api_daemonsets(snapshot)
    found.append(from_daemonsets(daemonsets))
    found.append(from_meta(snapshot.meta or {}))
    return [e for e in found if e is not None]


def identify(snapshot, cluster=None, rulesets: list | None = None,
             mode: str | None = None) -> KubeProxyIdentity:
    """Every piece of version evidence in the snapshot (and API), the layout of the rules of ``mode``
    (iptables first when the mode is not known), and their agreement."""
    ident = KubeProxyIdentity()
    ident.evidence = version_evidence(snapshot, cluster)
    if ident.evidence:
        ident.version, ident.source = ident.evidence[0].version, ident.evidence[0].source
        minors = {e.minor for e in ident.evidence if e.minor}
        if len(minors) > 1:
            ident.notes.append("version sources disagree: " + ", ".join(
                f"{e.source} says {e.version}" for e in ident.evidence) + f"; {ident.source} is used")
    if rulesets is None:
        rulesets = _rulesets(snapshot)
    ident.layout = None if mode == "nftables" else iptables_layout(rulesets)
    if ident.layout is None and mode in (None, "nftables", "unknown"):
        ident.layout = nftables_layout(snapshot)
    layout = ident.layout
    if layout is not None and layout.min_version and ident.minor and ident.minor < layout.min_version:
        ident.notes.append(
            f"version {ident.version} ({ident.source}) disagrees with the rules: they show the "
            f"{layout.generation} layout; the rules may be from another kube-proxy (a leftover, or a "
            "newer binary than the version source says)")
    if (layout is not None and layout.invalid_drop_uncounted and ident.minor
            and ident.minor >= NFACCT_SINCE):
        ident.notes.append(
            f"kube-proxy {ident.version} ({ident.source}) counts dropped INVALID packets with nfacct since "
            f"1.31, but its rule has no counter ('{layout.invalid_drop_uncounted}'): the kernel lacks "
            "nfnetlink_acct (or kube-proxy could not create the counter), so "
            "kubeproxy_iptables_ct_state_invalid_dropped_packets_total does not count these drops")
    if ident.version is None:
        basis = (f"the oldest release with the {layout.generation} layout is assumed"
                 if layout is not None and layout.min_version else "v1.30 is assumed")
        ident.notes.append("kube-proxy version unknown (no kubernetes_build_info metric, /statusz, "
                           f"command line or DaemonSet image): {basis} ({ident.semantics.describe()})")
    return ident


def _rulesets(snapshot) -> list:
    from kubectl_proxydoctor.modes.iptables.sources import dumps

    try:
        return [d.ruleset for d in dumps(snapshot)]
    except ProxyDoctorError:
        return []


def _api_daemonsets(snapshot) -> list[dict]:
    """kube-proxy DaemonSets from the capture's api.json (the ClusterState decoded once per
    snapshot, cluster.of_capture), for a run whose cluster is not used or has none."""
    text = snapshot.text("api.json")
    if not text or '"DaemonSet"' not in text:
        return []
    from kubectl_proxydoctor.cluster import of_capture

    try:
        cluster = of_capture(snapshot)
    except ProxyDoctorError:
        return []
    return list(cluster.daemonsets) if cluster is not None else []
