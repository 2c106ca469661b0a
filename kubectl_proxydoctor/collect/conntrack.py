"""conntrack collector (optional, --conntrack): `conntrack -L -o extended` -> conntrack.txt.

Bounded: at most MAX_BYTES of output is kept (whole lines); when cut, meta.json says so.
"""

from __future__ import annotations

from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.collect.node import run_tool

MAX_BYTES = 64 * 1024 * 1024


def collect(ctx: CollectContext, max_bytes: int = MAX_BYTES) -> None:
    """Store the conntrack table (read-only listing)."""
    res = run_tool(["conntrack", "-L", "-o", "extended"], ctx.netns, timeout=60, max_bytes=max_bytes)
    if not res.ok:
        ctx.unavailable("conntrack.txt", res.error or "failed", res.why)
        return
    ctx.ok("conntrack.txt", "conntrack.txt", res.stdout)
    if res.truncated:
        ctx.sources["conntrack.txt"] = (f"ok (truncated: the table is larger than {max_bytes} bytes; only "
                                        "its first whole entries up to that size were kept, so conntrack "
                                        "checks saw part of it)")
        ctx.meta["conntrack_truncated"] = True
