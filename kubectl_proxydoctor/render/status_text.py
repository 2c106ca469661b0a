"""Render `status` data (cli.status.build_status) as one screen of aligned lines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubectl_proxydoctor.words import plural

LABEL_WIDTH = 16


def _ts(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(text: str | None) -> str:
    """'2026-11-22 09:03:18.75 +0000 UTC m=+0.6' -> '2026-11-22T09:03:18Z'."""
    if not text:
        return "?"
    parts = text.split()
    return f"{parts[0]}T{parts[1].split('.')[0]}Z" if len(parts) >= 2 else text


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def _rule_line(entry: dict[str, Any]) -> str:
    if "virtual_servers" in entry:
        return (f"{entry['source']}: {plural(entry['virtual_servers'], 'virtual server')}, "
                f"{plural(entry['real_servers'], 'real server')}")
    if not entry.get("service_ports"):
        return f"{entry['source']}: KUBE-* chains / tables but no service ports"
    parts = []
    if "services" in entry:
        parts.append(plural(entry["services"], "service"))
    parts.append(plural(entry["service_ports"], "service port"))
    parts.append(plural(entry["endpoints"], "endpoint"))
    return f"{entry['source']}: " + ", ".join(parts)


def _version_rows(kp: dict[str, Any]) -> list[tuple[str, str, str]]:
    """kube-proxy's version with each source's evidence, the rule layout, and disagreements."""
    rows: list[tuple[str, str, str]] = []
    version = kp.get("version")
    evidence = kp.get("version_evidence") or []
    if version:
        rows.append(("Version", f"kube-proxy {version} (from {kp.get('version_source')})", "ok"))
    else:
        rows.append(("Version", "kube-proxy version unknown (no build_info metric, /statusz, command line "
                     "or DaemonSet image)", "warn"))
    for item in evidence:
        rows.append(("", f"{item['source']}: {item['detail']}", ""))
    layout = kp.get("layout")
    if layout:
        large = ", large-cluster mode (no rule comments)" if layout.get("large_cluster_mode") else ""
        rows.append(("Layout", f"{layout['generation']}{large}", "ok"))
        for line in layout.get("evidence") or []:
            rows.append(("", line, ""))
    if kp.get("semantics"):
        basis = "" if version else " (assumed from the layout)" if (layout or {}).get("min_version") else ""
        rows.append(("Semantics", kp["semantics"] + basis, ""))
    for note in kp.get("version_notes") or []:
        if not version and note.startswith("kube-proxy version unknown"):
            continue  # the Version and Semantics rows already say it
        rows.append(("", note, "warn"))
    return rows


def status_lines(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, text, style) rows; style is "", "ok", "warn" or "bad"."""
    rows: list[tuple[str, str, str]] = []
    node = data.get("node") or "?"
    origin = data.get("origin")
    where = "live" if origin == "live" else f"capture {origin}"
    when = f", captured {data['captured_at']}" if data.get("captured_at") else ""
    rows.append(("Node", f"{node} ({where}{when})", ""))

    kp = data.get("kube_proxy") or {}
    mode = data.get("mode", "unknown")
    said = f" (kube-proxy /proxyMode: {kp['mode']})" if kp.get("mode") else ""
    rows.append(("Proxy mode", f"{mode}{said}", "" if mode != "unknown" else "warn"))

    rules = data.get("rules") or {}
    unknown = data.get("rules_unknown") or []
    if not rules and unknown:
        rows.append(("Rules", "unknown (not read: not the same as no rules)", "bad"))
    elif not rules:
        rows.append(("Rules", "no kube-proxy rules found in any mode", "warn"))
    for line in unknown:
        rows.append(("", line, "bad"))
    first = True
    for m in sorted(rules, key=lambda m: (m != mode, m)):
        tag = "" if m == mode else "  [leftover of another mode]"
        for entry in rules[m]:
            line = _rule_line(entry)
            if entry.get("source") != m:  # "ipvs: ipvs: ..." says the mode once
                line = f"{m}: {line}"
            rows.append(("Rules" if first else "", f"{line}{tag}", "warn" if tag else "ok"))
            first = False

    for entry in data.get("ipvs_iptables_chains") or []:
        rows.append(("Rules" if first else "", f"ipvs: {entry['source']}: IPVS mode's own KUBE-* chains "
                     "(masquerade, firewall, ipset matches)", "ok"))
        first = False

    backends = data.get("iptables_backends") or {}
    first = True
    for name, info in sorted(backends.items()):
        tables = ", ".join(info["tables"]) or "no tables"
        kube = info["kube_proxy_tables"]
        extra = f" (KUBE-* chains in {', '.join(kube)})" if kube else ""
        rows.append(("iptables" if first else "", f"{name}: {tables}{extra}", ""))
        first = False
    in_use = [n for n, i in backends.items() if i["kube_proxy_tables"] and not n.startswith("ip6")]
    if len(in_use) > 1:
        rows.append(("", f"kube-proxy chains in {len(in_use)} backends: {', '.join(sorted(in_use))}", "warn"))

    kernel = data.get("kernel") or {}
    release = kernel.get("release") or "unknown"
    nft = kernel.get("nftables") or {}
    if kernel.get("nftables_ready"):
        nft_text, nft_style = f"nftables mode ready (>= 5.13; nf_tables {nft.get('state')})", "ok"
    elif kernel.get("nftables_ready") is None:
        nft_text, nft_style = "nftables readiness unknown", "warn"
    else:
        why = "kernel < 5.13" if nft.get("kernel_ok") is False else f"nf_tables {nft.get('state')}"
        nft_text, nft_style = f"nftables mode NOT ready ({why})", "bad"
    rows.append(("Kernel", f"{release}: {nft_text}", nft_style))
    ipvs = kernel.get("ipvs") or {}
    ipvs_style = {"missing": "bad", "unknown": "warn"}.get(ipvs.get("state", ""), "ok")
    rows.append(("", f"IPVS: {ipvs.get('state')} ({ipvs.get('evidence')})", ipvs_style))

    rows.extend(_version_rows(kp))
    if not kp.get("answered"):
        rows.append(("kube-proxy", "not captured: metrics and /healthz did not answer", "warn"))
    else:
        health = kp.get("healthz")
        if health:
            code = health.get("status")
            style = "ok" if code == 200 else "bad"
            text = (f"/healthz {code or '?'} (lastUpdated {_short(health.get('last_updated'))}, "
                    f"currentTime {_short(health.get('current_time'))})")
            rows.append(("kube-proxy", text, style))
        sync = kp.get("sync")
        if sync:
            stuck = sync.get("stuck_seconds")
            age = sync.get("pending_age_seconds")
            style = "bad" if (stuck or 0) > 0 or (sync.get("restore_failures") or 0) > 0 else "ok"
            text = f"last sync {_ts(sync.get('last_sync'))}, last queued {_ts(sync.get('last_queued'))}"
            if stuck:
                text += (f" (a change queued {age:.0f} s before the capture is not synced)" if age is not None
                         else " (a queued change is not synced yet)")
            rows.append(("" if health else "kube-proxy", text, style))
            failures = (f"pending changes {_num(sync.get('pending_changes'))}, restore failures "
                        f"{_num(sync.get('restore_failures'))} "
                        f"(partial {_num(sync.get('partial_restore_failures'))})")
            if sync.get("sync_failures") is not None:
                failures += f", sync failures {_num(sync.get('sync_failures'))}"
            rows.append(("", failures, style))

    ct = data.get("conntrack")
    if ct:
        pct = ct.get("percent")
        style = "bad" if pct is not None and pct >= 90 else "ok"
        rows.append(("Conntrack", f"{ct['count']} / {ct['max']} entries ({pct}%)", style))

    unavailable = data.get("unavailable") or {}
    first = True
    for source, reason in sorted(unavailable.items()):
        text = f"{source}: {reason.removeprefix('unavailable: ')}"
        rows.append(("Unavailable" if first else "", text, "warn"))
        first = False
    for note in data.get("notes") or []:
        rows.append(("Note", note, "warn"))
    return rows


def render_status(data: dict[str, Any]) -> None:
    """Print the status screen (colours only on a terminal)."""
    from rich.console import Console
    from rich.text import Text

    styles = {"ok": "green", "warn": "yellow", "bad": "bold red", "": ""}
    console = Console(highlight=False, soft_wrap=True)
    for label, text, style in status_lines(data):
        line = Text(f"{(label + ':') if label else '':<{LABEL_WIDTH}}", style="bold")
        line.append(text, style=styles[style])
        console.print(line)
