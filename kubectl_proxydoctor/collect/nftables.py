"""Read-only nftables collector: kube-proxy's tables plus the tables that could sit in front.

Asks narrowly (listing is kernel-bound and slow at scale): ``list tables``, then
``list table ip kube-proxy`` / ``list table ip6 kube-proxy`` and every other ip/ip6/inet table
(a host firewall such as firewalld or a hand-made ``inet`` table), except iptables-nft's own
compat tables (``ip filter``, ``ip nat``, ...), which the iptables collectors capture and which are
huge on an iptables-mode node. The result is one ``{"nftables": [...]}`` document in the shape of
``nft -j list ruleset``, stored as ``nft-ruleset.json``. Only ``list`` commands are ever run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable

from kubectl_proxydoctor.collect import CollectContext

SOURCE = "nftables"
FILENAME = "nft-ruleset.json"
KUBE_PROXY_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))
IPTABLES_COMPAT_TABLES = {"filter", "nat", "mangle", "raw", "security"}
FIREWALL_FAMILIES = ("ip", "ip6", "inet")
TIMEOUT = 120

Runner = Callable[[str], tuple[int, str, str]]


class _Unavailable(Exception):
    pass


def collect(ctx: CollectContext) -> None:
    """Store kube-proxy's nftables tables (and possible firewalls in front) as nft-ruleset.json."""
    try:
        runner = _runner(ctx.netns)
        doc = read_tables(runner)
    except _Unavailable as e:
        ctx.unavailable(SOURCE, str(e))
        return
    ctx.ok(SOURCE, FILENAME, json.dumps(doc, separators=(",", ":")) + "\n")


def read_tables(runner: Runner) -> dict:
    """``list tables`` then each wanted table, merged into one ``nft -j list ruleset`` document."""
    listing = _items(runner("list tables"), "list tables")
    meta = [i for i in listing if "metainfo" in i][:1]
    present = [(t["table"]["family"], t["table"]["name"]) for t in listing if "table" in t]
    wanted = [t for t in KUBE_PROXY_TABLES if t in present]
    wanted += [t for t in present if t not in KUBE_PROXY_TABLES and t[0] in FIREWALL_FAMILIES
               and not (t[0] in ("ip", "ip6") and t[1] in IPTABLES_COMPAT_TABLES)]
    items: list[dict] = list(meta)
    for family, name in wanted:
        cmd = f"list table {family} {name}"
        items.extend(i for i in _items(runner(cmd), cmd) if "metainfo" not in i)
    return {"nftables": items}


def _items(result: tuple[int, str, str], cmd: str) -> list[dict]:
    rc, out, err = result
    if rc != 0:
        reason = (err or out).strip().splitlines()[0] if (err or out).strip() else f"exit status {rc}"
        if "Operation not permitted" in reason or "Permission denied" in reason:
            raise _Unavailable(f"not permitted to read nftables ({reason}); run as root / CAP_NET_ADMIN")
        raise _Unavailable(f"`nft {cmd}` failed: {reason}")
    try:
        doc = json.loads(out)
    except json.JSONDecodeError as e:
        raise _Unavailable(f"`nft -j {cmd}` printed no valid JSON ({e.msg})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("nftables"), list):
        raise _Unavailable(f"`nft -j {cmd}` printed an unexpected document")
    return doc["nftables"]


def _runner(netns: str | None) -> Runner:
    """libnftables in-process when possible, else the ``nft -j`` binary (always inside a netns)."""
    if netns is None:
        try:
            import nftables  # libnftables bindings

            nft = nftables.Nftables()
            nft.set_json_output(True)
            nft.set_handle_output(True)

            def lib_run(cmd: str) -> tuple[int, str, str]:
                rc, out, err = nft.cmd(cmd)
                return rc, out or "", err or ""

            return lib_run
        except (ImportError, OSError):
            pass
    nft_bin = shutil.which("nft")
    if nft_bin is None:
        raise _Unavailable("nft is not installed and the libnftables python module is not available")
    prefix = ["ip", "netns", "exec", netns] if netns else []

    def cli_run(cmd: str) -> tuple[int, str, str]:
        try:
            proc = subprocess.run([*prefix, nft_bin, "-j", *cmd.split()], capture_output=True, text=True,
                                  timeout=TIMEOUT, check=False)
        except FileNotFoundError as e:
            raise _Unavailable(f"cannot run {e.filename}") from e
        except subprocess.TimeoutExpired as e:
            raise _Unavailable(f"`nft -j {cmd}` did not finish in {TIMEOUT} s") from e
        return proc.returncode, proc.stdout, proc.stderr

    return cli_run
