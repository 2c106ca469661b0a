"""Kernel and nft userspace: can this node (or every node) run the target mode at all?

nftables mode needs Linux >= 5.13 (kube-proxy refuses older kernels), the nf_tables features it
programs (numgen for endpoint choice, fib for local-address matching, nat, concatenated verdict
maps) and an nft binary >= 1.0.1. The cluster answer uses the Node objects'
``status.nodeInfo.kernelVersion``, so it needs no node access.
"""

from __future__ import annotations

import json

from kubectl_proxydoctor import nodeinfo
from kubectl_proxydoctor.migrate.result import CheckResult, MigrateContext, NodeInput, Status, result
from kubectl_proxydoctor.migrate.versions import NFT_MIN_USERSPACE, NFTABLES_MIN_KERNEL, parse_version, show
from kubectl_proxydoctor.words import plural

# feature -> kernel modules that provide it (any one is enough)
NFT_FEATURES: dict[str, tuple[str, ...]] = {
    "nf_tables": ("nf_tables",),
    "numgen (random endpoint choice)": ("nft_numgen",),
    "fib (local-address match)": ("nft_fib", "nft_fib_ipv4"),
    "nat (dnat / masquerade)": ("nft_nat",),
    "ct (conntrack state)": ("nft_ct",),
}
IPTABLES_FEATURES: dict[str, tuple[str, ...]] = {
    "statistic match (random endpoint choice)": ("xt_statistic",),
    "recent match (session affinity)": ("xt_recent",),
}


def node_kernel_versions(cluster) -> list[tuple[str, str]]:
    """(node name, status.nodeInfo.kernelVersion) for every Node object ("" when not reported)."""
    out = []
    for node in getattr(cluster, "nodes", None) or []:
        info = (node.get("status") or {}).get("nodeInfo") or {}
        out.append((str(node["metadata"].get("name", "?")), str(info.get("kernelVersion") or "")))
    return out


def cluster_kernel(ctx: MigrateContext) -> list[CheckResult]:
    """Every node's kernel from the Node objects against the target mode's minimum."""
    title = "Kernel version (Node objects)"
    if ctx.target == "iptables":
        return [result("kernel-version", title, "cluster", "pass",
                       "iptables mode has no kernel minimum beyond what kube-proxy already runs on")]
    if ctx.cluster is None:
        return [result("kernel-version", title, "cluster", "unknown",
                       "the API was not read, so the nodes' kernels are not known",
                       action="run with --kubeconfig/--context, or give a capture with api.json",
                       essential=not ctx.nodes)]
    versions = node_kernel_versions(ctx.cluster)
    if not versions:
        return [result("kernel-version", title, "cluster", "unknown", "no Node objects were read",
                       [f"API sources: {ctx.cluster.sources}"], "grant 'list nodes' or check node by node",
                       essential=not ctx.nodes)]
    old, unknown, ok = [], [], []
    for name, release in versions:
        version = nodeinfo.kernel_version(release)
        if version is None:
            unknown.append(name)
        elif version < NFTABLES_MIN_KERNEL:
            old.append(f"{name}: {release}")
        else:
            ok.append(f"{name}: {release}")
    evidence = [f"status.nodeInfo.kernelVersion {e}" for e in old + ok]
    evidence += [f"status.nodeInfo.kernelVersion of {n} is empty" for n in unknown]
    need = show(NFTABLES_MIN_KERNEL)
    if old:
        return [result("kernel-version", title, "cluster", "fail",
                       f"{len(old)} of {plural(len(versions), 'node')} "
                       f"{'runs' if len(old) == 1 else 'run'} a kernel older than {need}",
                       evidence, f"upgrade those nodes' kernels to >= {need} first (kube-proxy refuses "
                       "to start in nftables mode on them), or keep them out of the rollout", True)]
    if unknown:
        covered = {n.name for n in ctx.nodes if nodeinfo.kernel_release(n.snapshot)}
        missing = [n for n in unknown if n not in covered]
        status: Status = "unknown" if missing else "pass"
        summary = (f"{plural(len(missing), 'node')} {'does' if len(missing) == 1 else 'do'} not report "
                   "their kernel in the Node object" if missing
                   else "kernels not in the Node objects were read from the node captures")
        return [result("kernel-version", title, "cluster", status, summary, evidence,
                       "check `uname -r` on those nodes (or give their captures with --from)" if missing
                       else "", essential=bool(missing))]
    return [result("kernel-version", title, "cluster", "pass",
                   f"all {len(versions)} nodes run Linux >= {need}", evidence)]


def node_kernel(ctx: MigrateContext, node: NodeInput) -> list[CheckResult]:
    """The node's own kernel (kernel.txt), its nft/xtables features and its nft userspace."""
    out: list[CheckResult] = []
    release = nodeinfo.kernel_release(node.snapshot)
    version = nodeinfo.kernel_version(release)
    if ctx.target == "nftables":
        need = show(NFTABLES_MIN_KERNEL)
        if version is None:
            out.append(result("kernel-version", "Kernel version", node.scope, "unknown",
                              "kernel.txt (uname -r) was not captured", action="capture `uname -r`",
                              essential=True))
        elif version < NFTABLES_MIN_KERNEL:
            out.append(result("kernel-version", "Kernel version", node.scope, "fail",
                              f"Linux {release} is older than {need}", [f"kernel.txt: {release}"],
                              f"upgrade the kernel to >= {need}; kube-proxy will not start in nftables mode "
                              "(KUBE_PROXY_NFTABLES_SKIP_KERNEL_VERSION_CHECK bypasses the check, at your "
                              "own risk)", True))
        else:
            out.append(result("kernel-version", "Kernel version", node.scope, "pass",
                              f"Linux {release} >= {need}", [f"kernel.txt: {release}"], essential=True))
        out.append(_features(node, NFT_FEATURES, "nft-features", "nf_tables features kube-proxy uses"))
        out.append(_nft_userspace(node))
    else:
        out.append(_features(node, IPTABLES_FEATURES, "iptables-features",
                             "xtables features kube-proxy uses"))
    return out


def _kube_proxy_nft_tables(snapshot) -> list[str]:
    """Families of the ``kube-proxy`` nftables tables in nft-ruleset.json (proof the features work)."""
    text = snapshot.text("nft-ruleset.json")
    if not text:
        return []
    from kubectl_proxydoctor.errors import ParseError
    from kubectl_proxydoctor.modes.nftables.interpreter import load_ruleset

    try:  # the ruleset parsed once per snapshot; decoded here only when it does not parse
        ruleset = load_ruleset(snapshot)
        tables = ruleset.tables.values() if ruleset is not None else ()
        return sorted({t.family for t in tables if t.name == "kube-proxy"})
    except ParseError:
        pass
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return []
    items = doc.get("nftables", []) if isinstance(doc, dict) else []
    return sorted({i["table"].get("family", "?") for i in items
                   if isinstance(i, dict) and isinstance(i.get("table"), dict)
                   and i["table"].get("name") == "kube-proxy"})


def _features(node: NodeInput, features: dict[str, tuple[str, ...]], check: str, title: str) -> CheckResult:
    if check == "nft-features":
        families = _kube_proxy_nft_tables(node.snapshot)
        if families:
            return result(check, title, node.scope, "pass",
                          "kube-proxy's nftables tables are already programmed on this node",
                          [f"nft-ruleset.json: table {f} kube-proxy" for f in families])
    missing, unknown, evidence = [], [], []
    for feature, modules in features.items():
        states = [nodeinfo.module_state(node.snapshot, m) for m in modules]
        usable = next((s for s in states if s.available), None)
        if usable is not None:
            evidence.append(f"{feature}: {usable.evidence}")
        elif all(s.state == "missing" for s in states):
            missing.append(feature)
            evidence.append(f"{feature}: {states[0].evidence}")
        else:
            unknown.append(feature)
    if check == "nft-features" and "nf_tables" not in missing + unknown:
        evidence.append("concatenated maps: part of nf_tables itself (set concatenation, Linux >= 4.1)")
    if missing:
        return result(check, title, node.scope, "fail", f"missing: {', '.join(missing)}", evidence,
                      "use a kernel built with these options (or load the modules) before switching")
    if unknown:
        return result(check, title, node.scope, "unknown",
                      f"cannot tell whether the kernel has: {', '.join(unknown)}", evidence,
                      "capture /proc/modules and /proc/config.gz (kernel-config.txt) from the node")
    return result(check, title, node.scope, "pass", "every feature is built in or loadable", evidence)


def _nft_userspace(node: NodeInput) -> CheckResult:
    title = "nft userspace version"
    raw = node.snapshot.meta.get("nft_version")
    version = parse_version(str(raw)) if raw else None
    need = show(NFT_MIN_USERSPACE)
    note = "(the host's nft; kube-proxy's container brings its own)"
    if version is None:
        return result("nft-version", title, node.scope, "unknown", "`nft --version` was not captured",
                      action=f"check `nft --version` >= {need} where kube-proxy runs {note}")
    evidence = [f"meta.json nft_version: {raw} {note}"]
    if version < NFT_MIN_USERSPACE:
        return result("nft-version", title, node.scope, "fail", f"nft {show(version)} is older than {need}",
                      evidence + ["kube-proxy's rules can make a host nft <= 0.9.8 unusable "
                                  "(pkg/proxy/nftables: issue 122743)"],
                      f"upgrade the host's nft to >= {need} before switching")
    return result("nft-version", title, node.scope, "pass", f"nft {show(version)} >= {need}", evidence)
