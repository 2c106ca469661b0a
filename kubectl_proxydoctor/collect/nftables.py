"""Read-only nftables collector: kube-proxy's tables plus the tables that could sit in front.

Asks narrowly (listing is kernel-bound and slow at scale): ``list chains`` (cheap: no rules, no
set elements; ``list tables`` is slower on nft 1.0.6 as it fills its whole cache) to find the
tables, then ``list table ip kube-proxy`` / ``list table ip6 kube-proxy`` and every other
ip/ip6/inet table with a base chain at a hook kube-proxy uses (a host firewall such as firewalld or
a hand-made ``inet`` table), except iptables-nft's own compat tables (``ip filter``, ``ip nat``,
...), which the iptables collectors capture and which are huge on an iptables-mode node. The
listings are merged as text (no JSON round trip) into one ``{"nftables": [...]}`` document in the
shape of ``nft -j list ruleset``, stored as ``nft-ruleset.json``. Only ``list`` commands are run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from kubectl_proxydoctor.collect import CollectContext

SOURCE = "nftables"
FILENAME = "nft-ruleset.json"
KUBE_PROXY_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))
IPTABLES_COMPAT_TABLES = {"filter", "nat", "mangle", "raw", "security"}
KUBE_PROXY_HOOKS = {"prerouting", "input", "forward", "output", "postrouting"}
FIREWALL_FAMILIES = ("ip", "ip6", "inet")
TIMEOUT = 120

Runner = Callable[[str], tuple[int, str, str]]
_LIBNFTABLES_LOCK = threading.Lock()


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
    ctx.ok(SOURCE, FILENAME, doc)


def read_tables(runner: Runner) -> str:
    """``list chains`` and kube-proxy's two tables (at the same time: listing the big table is the
    cost, discovery overlaps it), then the other wanted tables, merged into one document in the
    shape of ``nft -j list ruleset``."""
    with ThreadPoolExecutor(max_workers=1 + len(KUBE_PROXY_TABLES)) as pool:
        chains_job = pool.submit(runner, "list chains")
        table_jobs = {t: pool.submit(runner, f"list table {t[0]} {t[1]}") for t in KUBE_PROXY_TABLES}
        meta, present, hooked = _discover(_checked(chains_job.result(), "list chains"))
        results = {t: job.result() for t, job in table_jobs.items()}
    parts = [json.dumps(meta)]
    for (family, name), result in results.items():
        cmd = f"list table {family} {name}"
        if result[0] != 0 and (family, name) not in present and _missing(result):
            continue  # no such table (kube-proxy is not in this mode / family)
        body = _items_text(_checked(result, cmd), cmd)
        if body:
            parts.append(body)
    others = [t for t in present if t in hooked and t not in KUBE_PROXY_TABLES and t[0] in FIREWALL_FAMILIES
              and not (t[0] in ("ip", "ip6") and t[1] in IPTABLES_COMPAT_TABLES)]
    for family, name in others:
        cmd = f"list table {family} {name}"
        body = _items_text(_checked(runner(cmd), cmd), cmd)
        if body:
            parts.append(body)
    return '{"nftables": [' + ", ".join(parts) + "]}\n"


def _missing(result: tuple[int, str, str]) -> bool:
    return "No such file or directory" in (result[2] or result[1])


CHAIN_RE = re.compile(r'\{"chain": \{"family": "(\w+)", "table": "((?:[^"\\]|\\.)*)", "name": '
                      r'"(?:[^"\\]|\\.)*", "handle": \d+(?:, "type": "\w+", "hook": "(\w+)")?')


def _discover(out: str) -> tuple[dict, list[tuple[str, str]], set[tuple[str, str]]]:
    """From `nft -j list chains`: its metainfo, the tables in order, and those with kube-proxy hooks.

    Large listings are scanned with a regular expression (the layout nft prints); anything else
    is decoded as JSON.
    """
    present: list[tuple[str, str]] = []
    hooked: set[tuple[str, str]] = set()
    found = CHAIN_RE.findall(out)
    if found and len(found) == out.count('{"chain": '):
        seen: set[tuple[str, str]] = set()
        for family, table, hook in found:
            key = (family, table)
            if key not in seen:
                seen.add(key)
                present.append(key)
            if hook in KUBE_PROXY_HOOKS:
                hooked.add(key)
        meta_end = out.find("}}")
        try:
            meta = json.loads(out[out.index("[") + 1:meta_end + 2])
        except (ValueError, json.JSONDecodeError):
            meta = {"metainfo": {}}
        return meta, present, hooked
    try:
        doc = json.loads(out)
    except json.JSONDecodeError as e:
        raise _Unavailable(f"`nft -j list chains` printed no valid JSON ({e.msg})") from e
    items = doc.get("nftables") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise _Unavailable("`nft -j list chains` printed an unexpected document")
    meta = next((i for i in items if isinstance(i, dict) and "metainfo" in i), {"metainfo": {}})
    for item in items:
        c = item.get("chain") if isinstance(item, dict) else None
        if not isinstance(c, dict):
            continue
        key = (str(c.get("family")), str(c.get("table")))
        if key not in present:
            present.append(key)
        if c.get("hook") in KUBE_PROXY_HOOKS:
            hooked.add(key)
    return meta, present, hooked


def _items_text(out: str, cmd: str) -> str:
    """The items of one listing after its metainfo, as JSON text (no decode of a large listing)."""
    text = out.strip()
    prefix = '{"nftables": [{"metainfo": '
    end = text.find("}}", len(prefix))
    if text.startswith(prefix) and text.endswith("]}") and end > 0:
        rest = text[end + 2:-2].strip()
        if not rest:
            return ""
        if rest.startswith(",") and rest[1:].lstrip().startswith("{"):
            return rest[1:].strip()
    # another layout (other nft version): decode and re-encode, slower but exact
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise _Unavailable(f"`nft -j {cmd}` printed no valid JSON ({e.msg})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("nftables"), list):
        raise _Unavailable(f"`nft -j {cmd}` printed an unexpected document")
    return ", ".join(json.dumps(i) for i in doc["nftables"] if not (isinstance(i, dict) and "metainfo" in i))


def _checked(result: tuple[int, str, str], cmd: str) -> str:
    rc, out, err = result
    if rc != 0:
        reason = (err or out).strip().splitlines()[0] if (err or out).strip() else f"exit status {rc}"
        if "Operation not permitted" in reason or "Permission denied" in reason:
            raise _Unavailable(f"not permitted to read nftables ({reason}); run as root / CAP_NET_ADMIN")
        raise _Unavailable(f"`nft {cmd}` failed: {reason}")
    return out


def _runner(netns: str | None) -> Runner:
    """libnftables in-process when possible, else the ``nft -j`` binary (always inside a netns)."""
    if netns is None:
        try:
            import nftables  # libnftables bindings

            # libnftables 1.0.x is not safe to call from two threads at once, even with a context
            # each (seen: "json.c:71: set_dtype_json: Assertion `__out' failed", an abort): the
            # in-process calls take turns; the nft binary fallback still runs them in parallel.
            lock = _LIBNFTABLES_LOCK
            local = threading.local()

            def lib_run(cmd: str) -> tuple[int, str, str]:
                with lock:
                    nft = getattr(local, "nft", None)
                    if nft is None:
                        nft = local.nft = nftables.Nftables()
                        nft.set_json_output(True)
                        nft.set_handle_output(True)
                    rc, out, err = nft.cmd(cmd)
                return rc, out or "", err or ""

            nftables.Nftables()  # fails here (OSError) when libnftables.so is missing

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
