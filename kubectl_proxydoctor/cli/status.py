"""`kubectl proxydoctor status`: one screen about the node (modes, backends, kernel, kube-proxy)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import typer

from kubectl_proxydoctor.cli.app import app
from kubectl_proxydoctor.cli.common import (
    ContextOpt,
    FromOpt,
    ImageOpt,
    KubeconfigOpt,
    NodeOpt,
    OutputOpt,
    SampleOpt,
    check_output,
    load_node,
    offline_state,
)
from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.exit_status import status_of
from kubectl_proxydoctor.sources import read_failures

if TYPE_CHECKING:
    from kubectl_proxydoctor.node_state import NodeState
    from kubectl_proxydoctor.snapshot import NodeSnapshot

_MODES = ("iptables", "nftables", "ipvs")


def is_read_failure(reason: str) -> bool:
    """True when an unavailable source could not be read (privilege, tool, error), as opposed to
    "there is nothing there" (sources.classify decides)."""
    from kubectl_proxydoctor.sources import Readability, classify

    return classify(reason)[0] is Readability.UNREADABLE


def rules_unknown(snapshot, found_rules: bool) -> list[str]:
    """Modes whose rules are not known (sources.unknown_rule_lines)."""
    from kubectl_proxydoctor.sources import unknown_rule_lines

    return unknown_rule_lines(snapshot, _MODES, found_rules)


# ------------------------------------------------------------------------------- rule counts


def _count_iptables(text: str) -> dict[str, int] | None:
    chains = re.findall(r"^:(KUBE-(?:SVC|SVL|SEP)-[A-Z0-9]+)\s", text, re.M)
    if not any(line.startswith(":KUBE-") for line in text.splitlines()):
        return None
    return {"service_ports": sum(1 for c in chains if not c.startswith("KUBE-SEP-")),
            "endpoints": sum(1 for c in chains if c.startswith("KUBE-SEP-"))}


def _count_nftables(text: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return out
    for obj in doc.get("nftables", []) if isinstance(doc, dict) else []:
        if not isinstance(obj, dict):
            continue
        chain = obj.get("chain") or obj.get("table")
        if not isinstance(chain, dict) or chain.get("table", chain.get("name")) != "kube-proxy":
            continue
        counts = out.setdefault(f"nftables-{chain.get('family')}", {"service_ports": 0, "endpoints": 0})
        name = str(chain.get("name", "")) if "chain" in obj else ""
        if name.startswith("service-"):
            counts["service_ports"] += 1
        elif name.startswith("endpoint-"):
            counts["endpoints"] += 1
    return out


def _count_ipvs(text: str) -> dict[str, int] | None:
    lines = text.splitlines()
    vs = sum(1 for line in lines if re.match(r"^(TCP|UDP|SCTP|FWM)\s", line))
    rs = sum(1 for line in lines if line.strip().startswith("->") and "RemoteAddress" not in line)
    return {"virtual_servers": vs, "real_servers": rs} if vs else None


def _fallback_counts(snapshot, modes: tuple[str, ...] = _MODES) -> dict[str, list[dict[str, Any]]]:
    """Rules per mode (of ``modes``) counted from the files (when a mode interpreter is not available)."""
    found: dict[str, list[dict[str, Any]]] = {}
    if "iptables" in modes:
        found.update(_fallback_iptables(snapshot))
    text = snapshot.text("nft-ruleset.json") if "nftables" in modes else None
    for source, nft_counts in (_count_nftables(text) if text else {}).items():
        found.setdefault("nftables", []).append({"source": source, **nft_counts})
    text = snapshot.text("ipvsadm.txt") if "ipvs" in modes else None
    ipvs_counts = _count_ipvs(text) if text else None
    if ipvs_counts is not None:
        found.setdefault("ipvs", []).append({"source": "ipvs", **ipvs_counts})
    return found


def _fallback_iptables(snapshot) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for name in ("iptables-nft-save.txt", "iptables-legacy-save.txt", "ip6tables-nft-save.txt",
                 "ip6tables-legacy-save.txt"):
        text = snapshot.text(name)
        counts = _count_iptables(text) if text else None
        if counts is not None:
            found.setdefault("iptables", []).append({"source": name.removesuffix("-save.txt"), **counts})
    if not any(snapshot.has(f"ip{v}tables-{b}-save.txt") for v in ("", "6") for b in ("nft", "legacy")):
        for name in ("iptables-save.txt", "ip6tables-save.txt"):
            text = snapshot.text(name)
            counts = _count_iptables(text) if text else None
            if counts is not None:
                found.setdefault("iptables", []).append({"source": name.removesuffix("-save.txt"), **counts})
    return found


def _interpreted_counts(state: NodeState, notes: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Rules per mode from the state's interpretation; counted from the files for a mode whose
    interpreter is missing or whose rules it could not understand (a note says why)."""
    from kubectl_proxydoctor.node_state import Outcome

    found: dict[str, list[dict[str, Any]]] = {}
    for mode, rules in state.rules.items():
        if rules.failed:
            notes.append(f"{mode} rules could not be read: {rules.label.removeprefix('unreadable: ')}"
                         + ("; counted from the files" if rules.outcome is Outcome.FAILED else ""))
        for view in rules.views:
            found.setdefault(mode, []).append({
                "source": view.source,
                "services": len({name.service for name, _ in view.ports}),
                "service_ports": len(view.ports),
                "endpoints": view.endpoint_count,
            })
        if mode not in found and (rules.failed or rules.outcome is Outcome.NOT_BUILT):
            fallback = _fallback_counts(state.snapshot, (mode,))
            if mode in fallback:
                found[mode] = fallback[mode]
    return found


# ------------------------------------------------------------------------------- status


def _backends(snapshot) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for family in ("iptables", "ip6tables"):
        for backend in ("nft", "legacy"):
            text = snapshot.text(f"{family}-{backend}-save.txt")
            if text is None:
                continue
            tables = [line[1:].strip() for line in text.splitlines() if line.startswith("*")]
            kube = sorted({t for t, body in _tables_with_bodies(text) if ":KUBE-" in body})
            out[f"{family}-{backend}"] = {"tables": tables, "kube_proxy_tables": kube}
    return out


def _tables_with_bodies(text: str) -> list[tuple[str, str]]:
    parts = re.split(r"^\*(\S+)\s*$", text, flags=re.M)
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def _kernel(snapshot) -> dict[str, Any]:
    from kubectl_proxydoctor import nodeinfo

    release = nodeinfo.kernel_release(snapshot)
    version = nodeinfo.kernel_version(release)
    nft = nodeinfo.module_state(snapshot, "nf_tables")
    ipvs = nodeinfo.module_state(snapshot, "ip_vs")
    ipvs_runtime = snapshot.text("proc-net-ip_vs.txt")
    ipvs_info = {"state": ipvs.state, "evidence": ipvs.evidence}
    if ipvs_runtime is not None:
        ipvs_info = {"state": "loaded", "evidence": "/proc/net/ip_vs exists (proc-net-ip_vs.txt)"}
    nft_info = {"state": nft.state, "evidence": nft.evidence}
    if snapshot.sources.get("nft-ruleset.json", "").startswith("ok") and snapshot.has("nft-ruleset.json"):
        nft_info = {"state": "loaded", "evidence": "nft answered (nft-ruleset.json captured)"}
    nft_ready = None if version is None else version >= (5, 13, 0) and nft_info["state"] != "missing"
    return {
        "release": release,
        "nftables_ready": nft_ready,
        "nftables": {**nft_info,
                     "kernel_ok": None if version is None else version >= (5, 13, 0)},
        "ipvs": ipvs_info,
    }


def _kube_proxy(state: NodeState, notes: list[str]) -> dict[str, Any]:
    from kubectl_proxydoctor import nodeinfo

    snapshot = state.snapshot
    info: dict[str, Any] = {"mode": nodeinfo.kube_proxy_mode(snapshot)}
    info.update(_identity(state))
    try:
        metrics = nodeinfo.kube_proxy_metrics(snapshot)
        health = nodeinfo.kube_proxy_healthz(snapshot)
    except ProxyDoctorError as e:
        notes.append(str(e))
        return info
    info["answered"] = metrics is not None or health is not None
    if health is not None:
        from kubectl_proxydoctor.checks.kube_proxy_health import healthz_status

        info["healthz"] = {"status": healthz_status(snapshot, health), "last_updated": health.last_updated,
                           "current_time": health.current_time, "node_eligible": health.node_eligible}
    if metrics is not None:
        figures = nodeinfo.sync_figures(metrics)
        info["sync"] = {k: v for k, v in vars(figures).items()}
        info["sync"]["stuck_seconds"] = figures.stuck_seconds
        from kubectl_proxydoctor.checks.kube_proxy_health import pending_age

        info["sync"]["pending_age_seconds"] = pending_age(snapshot, figures, health)
    return info


def _identity(state: NodeState) -> dict[str, Any]:
    """version, version_source, version_evidence, layout, semantics and version_notes."""
    data = state.identity.to_json()
    data["version_notes"] = data.pop("notes")
    return data


def _conntrack(snapshot) -> dict[str, Any] | None:
    from kubectl_proxydoctor import nodeinfo

    values = nodeinfo.sysctls(snapshot)
    try:
        count = int(values["net.netfilter.nf_conntrack_count"])
        limit = int(values["net.netfilter.nf_conntrack_max"])
    except (KeyError, ValueError):
        return None
    return {"count": count, "max": limit, "percent": round(100.0 * count / limit, 1) if limit else None}


def build_status(snapshot: NodeSnapshot, state: NodeState | None = None,
                 notes: list[str] | None = None) -> dict[str, Any]:
    """Everything `status` shows, as the JSON `-o json` prints: from the node's NodeState (built
    here when not given, as `status` builds it: the capture's api.json, when it has one and it can
    be used, is the cluster; no live API is read), so `status` and `check` name the same mode."""
    notes = [] if notes is None else notes
    if state is None:
        state = offline_state(snapshot, notes)
    modes = _interpreted_counts(state, notes)
    kube_proxy = _kube_proxy(state, notes)
    active = state.kube_proxy_mode
    helpers: list[dict[str, Any]] = []
    if active == "ipvs" and not any(v.get("service_ports") for v in modes.get("iptables", [])):
        # IPVS mode writes KUBE-* iptables chains itself (masquerade, firewall, ipset matches)
        helpers = modes.pop("iptables", [])
    leftovers = sorted(m for m in modes if m != active)
    sources = dict(snapshot.sources)
    return {
        "node": snapshot.node,
        "origin": snapshot.origin,
        "captured_at": snapshot.meta.get("captured_at"),
        "mode": state.mode,
        "modes_found": sorted(modes),
        "leftover_modes": leftovers,
        "rules": modes,
        "ipvs_iptables_chains": helpers,
        "iptables_backends": _backends(snapshot),
        "kernel": _kernel(snapshot),
        "kube_proxy": kube_proxy,
        "conntrack": _conntrack(snapshot),
        "sources": sources,
        "unavailable": {k: v for k, v in sources.items() if not v.startswith("ok")},
        "rules_unknown": rules_unknown(snapshot, bool(modes)) + [
            f"{m} rules could not be read: {why}" for m, why in state.failed_rules.items()],
        "notes": notes,
    }


@app.command()
def status(
    from_path: FromOpt = None,
    sample: SampleOpt = False,
    output: OutputOpt = "table",
    node: NodeOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    image: ImageOpt = None,
) -> None:
    """One screen about the node: proxy modes with rules, backends, kernel, kube-proxy health."""
    check_output(output)
    snapshot = load_node(from_path, sample, node, kubeconfig=kubeconfig, context=context, image=image)
    notes: list[str] = []
    state = offline_state(snapshot, notes)
    data = build_status(snapshot, state, notes)
    if output == "json":
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        from kubectl_proxydoctor.render.status_text import render_status

        render_status(data)
    live = snapshot.origin == "live" or snapshot.origin.startswith("node/")
    unknown = (live and bool(read_failures(snapshot))) or (
        not data["rules"] and bool(data["rules_unknown"])) or bool(state.failed_rules)
    raise typer.Exit(status_of(unknown=unknown))
