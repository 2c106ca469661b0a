"""Addresses collector: `ip -j addr show` -> ip-addr.json (node addresses and kube-ipvs0's /32s)."""

from __future__ import annotations

import json

from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.collect.node import run_tool


def collect(ctx: CollectContext) -> None:
    """Store the JSON `ip -j addr show` prints (validated as a JSON list)."""
    res = run_tool(["ip", "-j", "addr", "show"], ctx.netns, timeout=10)
    if not res.ok:
        ctx.unavailable("ip-addr.json", res.error or "failed", res.why)
        return
    try:
        doc = json.loads(res.stdout)
    except json.JSONDecodeError as e:
        ctx.unavailable("ip-addr.json", f"ip -j addr show printed no valid JSON ({e.msg})")
        return
    if not isinstance(doc, list):
        ctx.unavailable("ip-addr.json", "ip -j addr show did not print a JSON list")
        return
    ctx.ok("ip-addr.json", "ip-addr.json", res.stdout if res.stdout.endswith("\n") else res.stdout + "\n")
