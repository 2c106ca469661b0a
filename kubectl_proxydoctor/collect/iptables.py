"""iptables collector: which backends hold rules, and each backend's save output (read-only).

Backends are found without side effects: ``/proc/net/ip_tables_names`` (legacy x_tables loaded
and which tables exist) and the nftables table list (tables iptables-nft made), read over netlink
(collect/nft_netlink.py: ``nft list tables`` reads every rule first, 34 s on a 10k-service node).
The save commands run without ``-t`` (naming a table creates it). A legacy save is only run when
the legacy module is loaded (the names file exists): with the module loaded and no tables it
prints nothing and creates nothing (tests/test_readonly.py proves it); without the module it would
try to load it.
"""

from __future__ import annotations

from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.collect.nft_netlink import NetlinkError, list_tables
from kubectl_proxydoctor.collect.nft_watch import UNKNOWN_SIZE_LIMIT
from kubectl_proxydoctor.collect.node import NEEDS_ROOT, read_files, run_tool
from kubectl_proxydoctor.sources import Why

NOT_LOADED = "not loaded"
IPTABLES_TABLES = {"filter", "nat", "mangle", "raw", "security"}
NAMES_FILES = {4: ("/proc/net/ip_tables_names", "ip_tables_names.txt"),
               6: ("/proc/net/ip6_tables_names", "ip6_tables_names.txt")}


def nft_iptables_tables(nft_list_tables: str) -> dict[int, set[str]]:
    """Tables iptables-nft would show, from `nft list tables` (family ip -> 4, ip6 -> 6)."""
    out: dict[int, set[str]] = {4: set(), 6: set()}
    for line in nft_list_tables.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table" and parts[1] in ("ip", "ip6") \
                and parts[2] in IPTABLES_TABLES:
            out[4 if parts[1] == "ip" else 6].add(parts[2])
    return out


def _tool(family: int, backend: str) -> str:
    return f"{'ip6tables' if family == 6 else 'iptables'}-{backend}-save"


def _default_backend(ctx: CollectContext) -> str | None:
    """The backend `iptables -V` reports ("nft" or "legacy"); None when it cannot tell."""
    res = run_tool(["iptables", "-V"], ctx.netns, timeout=5)
    if not res.ok:
        return None
    text = res.stdout + res.stderr
    if "nf_tables" in text:
        return "nft"
    if "legacy" in text:
        return "legacy"
    return None


def collect(ctx: CollectContext) -> None:
    """Store ip(6)_tables_names.txt and ip(6)tables-{nft,legacy}-save.txt (+ the default backend's)."""
    reads = read_files([path for path, _ in NAMES_FILES.values()], ctx.netns)
    legacy: dict[int, str | None] = {}  # family -> None (loaded) or why the legacy save is not run
    for family, (path, filename) in NAMES_FILES.items():
        got = reads[path]
        if got.text is not None:
            ctx.ok(filename, filename, got.text)
            legacy[family] = None
        elif got.missing:
            # no x_tables module, so no legacy table can exist: an empty list is the truth
            ctx.ok(filename, filename, "")
            ctx.sources[filename] = f"ok ({path} does not exist: legacy x_tables not loaded)"
            legacy[family] = NOT_LOADED
        else:
            denied = got.errno in (1, 13)  # EPERM, EACCES
            reason = f"{path}: {got.error or 'unreadable'}"
            if denied:
                reason = f"{NEEDS_ROOT}: {reason}"
            ctx.unavailable(filename, reason, Why.NEEDS_ROOT if denied else None)
            legacy[family] = f"not run: {reason}"

    nft_tables = _nft_tables(ctx)

    default = _default_backend(ctx)
    ctx.meta.setdefault("iptables_backends", {})
    for family in (4, 6):
        prefix = "ip6tables" if family == 6 else "iptables"
        for backend in ("nft", "legacy"):
            tool = _tool(family, backend)
            filename = f"{prefix}-{backend}-save.txt"
            if backend == "legacy" and legacy[family] == NOT_LOADED:
                ctx.ok(filename, filename, "")  # not run: it could load the module; no tables exist
                ctx.sources[filename] = "ok (not run: legacy x_tables not loaded, so no legacy tables)"
                continue
            if backend == "legacy" and legacy[family] is not None:
                ctx.unavailable(filename, str(legacy[family]))
                continue
            res = run_tool([tool], ctx.netns)
            if not res.ok:
                ctx.unavailable(filename, res.error or "failed", res.why)
                continue
            ctx.ok(filename, filename, res.stdout)
            if backend == default:
                ctx.files[f"{prefix}-save.txt"] = res.stdout
            tables = _tables_in(res.stdout)
            ctx.meta["iptables_backends"][f"{prefix}-{backend}"] = sorted(tables)
        if nft_tables is not None:
            ctx.meta["iptables_backends"].setdefault(f"{prefix}-nft", sorted(nft_tables[family]))
    if default:
        ctx.meta["iptables_default_backend"] = default


def _nft_tables(ctx: CollectContext) -> dict[int, set[str]] | None:
    """iptables-nft's tables from the kernel's table list (netlink); ``nft list tables`` only when
    netlink cannot be used here (not for want of permission: nft would be refused too)."""
    try:
        listed = "".join(f"table {family} {name}\n" for family, name in list_tables(ctx.netns))
    except NetlinkError as e:
        if e.errno in (1, 13):  # EPERM, EACCES
            ctx.unavailable("nft list tables", f"{NEEDS_ROOT}: {e.strerror}")
            return None
        # no size to scale a limit by: the most a listing of unknown size is given
        res = run_tool(["nft", "list", "tables"], ctx.netns, timeout=UNKNOWN_SIZE_LIMIT)
        if not res.ok:
            ctx.unavailable("nft list tables", res.error or "failed")
            return None
        listed = res.stdout
    ctx.sources["nft list tables"] = "ok"
    return nft_iptables_tables(listed)


def _tables_in(save_text: str) -> set[str]:
    return {line[1:].strip() for line in save_text.splitlines() if line.startswith("*")}
