"""Read-only nftables collector: kube-proxy's tables plus the tables that could sit in front.

Asks narrowly (listing is kernel-bound and slow at scale): ``list chains`` (cheap: no rules, no
set elements; ``list tables`` is slower on nft 1.0.6 as it fills its whole cache) to find the
tables, then ``list table ip kube-proxy`` / ``list table ip6 kube-proxy`` and every other
ip/ip6/inet table with a base chain at a hook kube-proxy uses (a host firewall such as firewalld or
a hand-made ``inet`` table), except iptables-nft's own compat tables (``ip filter``, ``ip nat``,
...), which the iptables collectors capture and which are huge on an iptables-mode node. The
listings are merged as text (no JSON round trip) into one ``{"nftables": [...]}`` document in the
shape of ``nft -j list ruleset``, stored as ``nft-ruleset.json``. Only ``list`` commands are run.

Each listing is parsed while nft prints it (modes/nftables/stream.py); the parsed ruleset is handed
to the snapshot with the text, so interpreting does not decode the 10 MB again.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.collect.pipes import pump
from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.gcpause import gc_paused
from kubectl_proxydoctor.modes.nftables.model import NftRuleset
from kubectl_proxydoctor.modes.nftables.parse import FILENAME, RULESET_KEY, RulesetBuilder
from kubectl_proxydoctor.modes.nftables.stream import ItemStream

SOURCE = "nftables"
KUBE_PROXY_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))
IPTABLES_COMPAT_TABLES = {"filter", "nat", "mangle", "raw", "security"}
KUBE_PROXY_HOOKS = {"prerouting", "input", "forward", "output", "postrouting"}
FIREWALL_FAMILIES = ("ip", "ip6", "inet")
TIMEOUT = 120

Sink = Callable[[str], None]
Runner = Callable[[str, Sink], tuple[int, str]]  # (command, output sink) -> (exit status, error text)


class _Unavailable(Exception):
    pass


def collect(ctx: CollectContext) -> None:
    """Store kube-proxy's nftables tables (and possible firewalls in front) as nft-ruleset.json,
    and their parsed ruleset as the snapshot's."""
    try:
        runner = _runner(ctx.netns)
        doc, ruleset = read_tables(runner)
    except _Unavailable as e:
        ctx.unavailable(SOURCE, str(e))
        return
    ctx.ok(SOURCE, FILENAME, doc)
    if ruleset is not None:
        ctx.seeds[RULESET_KEY] = ((FILENAME,), ruleset)


@dataclass
class Listing:
    """One ``nft -j list ...``: its status, its text and (``parse``) its items parsed on the fly."""

    cmd: str
    parse: bool = False
    rc: int = 0
    err: str = ""
    chunks: list[str] = field(default_factory=list)
    _builder: RulesetBuilder | None = None
    _stream: ItemStream | None = None

    def __post_init__(self) -> None:
        if self.parse:
            self._builder = RulesetBuilder(FILENAME)
            self._stream = ItemStream(self._builder.add, FILENAME)

    def feed(self, chunk: str) -> None:
        self.chunks.append(chunk)
        if self._stream is not None:
            try:
                self._stream.feed(chunk)
            except ParseError:
                self._stream = None  # not parsed here: interpreting the text says what is wrong

    @property
    def out(self) -> str:
        if len(self.chunks) > 1:
            self.chunks[:] = ["".join(self.chunks)]
        return self.chunks[0] if self.chunks else ""

    def ruleset(self) -> NftRuleset | None:
        """What was parsed, or None when it could not be (the text is still kept)."""
        if self._stream is None or self._builder is None or self.rc != 0:
            return None
        try:
            self._stream.close()
            return self._builder.finish()
        except ParseError:
            return None


def list_with(runner: Runner, cmd: str, parse: bool = False) -> Listing:
    """Run one listing, parsing it while it is printed when ``parse``."""
    listing = Listing(cmd, parse)
    listing.rc, listing.err = runner(cmd, listing.feed)
    return listing


def read_tables(runner: Runner) -> tuple[str, NftRuleset | None]:
    """``list chains`` and kube-proxy's two tables (at the same time: listing the big table is the
    cost, discovery overlaps it), then the other wanted tables, merged into one document in the
    shape of ``nft -j list ruleset``; with it, the ruleset parsed while the listings were read
    (None if some part could not be parsed that way)."""
    # a runner whose calls take turns (libnftables) runs them one by one, the big table first
    workers = 1 + len(KUBE_PROXY_TABLES) if getattr(runner, "parallel", True) else 1
    with gc_paused(), ThreadPoolExecutor(max_workers=workers) as pool:
        table_jobs = {t: pool.submit(list_with, runner, f"list table {t[0]} {t[1]}", True)
                      for t in KUBE_PROXY_TABLES}
        chains_job = pool.submit(list_with, runner, "list chains")
        meta, hooked = _discover(_checked(chains_job.result()))
        listings = [(t, job.result()) for t, job in table_jobs.items()]
        others = [t for t in hooked if t not in KUBE_PROXY_TABLES and _may_sit_in_front(t)]
        listings += [(t, list_with(runner, f"list table {t[0]} {t[1]}", True)) for t in others]
        parts = [json.dumps(meta)]
        rulesets: list[NftRuleset | None] = []
        for (family, name), listing in listings:
            if (family, name) in KUBE_PROXY_TABLES and listing.rc != 0 and _missing(listing):
                continue  # no such table (kube-proxy is not in this mode / family)
            body = _items_text(_checked(listing), listing.cmd)
            if body:
                parts.append(body)
                rulesets.append(listing.ruleset())
        ruleset = _merged(meta, rulesets)
    return '{"nftables": [' + ", ".join(parts) + "]}\n", ruleset


def _may_sit_in_front(table: tuple[str, str]) -> bool:
    family, name = table
    return family in FIREWALL_FAMILIES and not (family in ("ip", "ip6") and name in IPTABLES_COMPAT_TABLES)


def _merged(meta: dict, parts: list[NftRuleset | None]) -> NftRuleset | None:
    """One ruleset from the metainfo and each listing's tables, as parsing the merged text gives."""
    builder = RulesetBuilder(FILENAME)
    try:
        builder.add(meta)
    except ParseError:
        return None
    merged = builder.finish()
    for part in parts:
        if part is None or any(key in merged.tables for key in part.tables):
            return None
        merged.tables.update(part.tables)
    return merged


def _missing(listing: Listing) -> bool:
    return "No such file or directory" in (listing.err or listing.out)


BASE_CHAIN_RE = re.compile(r'\{"chain": \{"family": "(\w+)", "table": "((?:[^"\\]|\\.)*)", "name": '
                           r'"(?:[^"\\]|\\.)*", "handle": \d+, "type": "\w+", "hook": "(\w+)"')
HOOK_KEY = '"hook": "'  # never inside a JSON string: its quotes would be escaped there
CHAIN_START = '{"chain": {"family": "'


def _discover(out: str) -> tuple[dict, list[tuple[str, str]]]:
    """From `nft -j list chains`: its metainfo, and the tables (in listing order) with a base
    chain at a hook kube-proxy uses.

    In the layout nft prints, only the base chains are looked at (found by their ``"hook"`` key);
    anything else is decoded as JSON.
    """
    hooked: list[tuple[str, str]] = []
    idx = out.find(HOOK_KEY)
    fast = out.lstrip().startswith('{"nftables": [{"metainfo": ')
    while fast and idx >= 0:
        m = BASE_CHAIN_RE.match(out, max(out.rfind(CHAIN_START, 0, idx), 0))
        if m is None or m.start(3) != idx + len(HOOK_KEY):
            fast = False
            break
        key = (m[1], m[2])
        if m[3] in KUBE_PROXY_HOOKS and key not in hooked:
            hooked.append(key)
        idx = out.find(HOOK_KEY, m.end())
    if fast:
        try:
            meta = json.loads(out[out.index("[") + 1:out.find("}}") + 2])
        except (ValueError, json.JSONDecodeError):
            meta = {"metainfo": {}}
        return meta, hooked
    try:
        doc = json.loads(out)
    except json.JSONDecodeError as e:
        raise _Unavailable(f"`nft -j list chains` printed no valid JSON ({e.msg})") from e
    items = doc.get("nftables") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise _Unavailable("`nft -j list chains` printed an unexpected document")
    meta = next((i for i in items if isinstance(i, dict) and "metainfo" in i), {"metainfo": {}})
    hooked = []
    for item in items:
        c = item.get("chain") if isinstance(item, dict) else None
        if isinstance(c, dict) and c.get("hook") in KUBE_PROXY_HOOKS:
            key = (str(c.get("family")), str(c.get("table")))
            if key not in hooked:
                hooked.append(key)
    return meta, hooked


_ITEMS_START_RE = re.compile(r'\s*\{"nftables": \[\{"metainfo": \{[^{}]*\}\}\s*(,\s*)?')


def _items_text(out: str, cmd: str) -> str:
    """The items of one listing after its metainfo, as JSON text (no decode of a large listing,
    and one copy of it)."""
    m = _ITEMS_START_RE.match(out)
    close = out.rfind("]}")
    if m and close >= m.end() and not out[close + 2:].strip():
        if m[1] is None:
            if not out[m.end():close].strip():
                return ""
        else:
            body = out[m.end():close].rstrip()
            if body.startswith("{") and body.endswith("}"):
                return body
    # another layout (other nft version): decode and re-encode, slower but exact
    try:
        doc = json.loads(out)
    except json.JSONDecodeError as e:
        raise _Unavailable(f"`nft -j {cmd}` printed no valid JSON ({e.msg})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("nftables"), list):
        raise _Unavailable(f"`nft -j {cmd}` printed an unexpected document")
    return ", ".join(json.dumps(i) for i in doc["nftables"] if not (isinstance(i, dict) and "metainfo" in i))


def _checked(listing: Listing) -> str:
    """The listing's text; a failed listing is _Unavailable with nft's reason."""
    if listing.rc != 0:
        text = (listing.err or listing.out).strip()
        reason = text.splitlines()[0] if text else f"exit status {listing.rc}"
        if "Operation not permitted" in reason or "Permission denied" in reason:
            raise _Unavailable(f"not permitted to read nftables ({reason}); run as root / CAP_NET_ADMIN")
        raise _Unavailable(f"`nft {listing.cmd}` failed: {reason}")
    return listing.out


def _runner(netns: str | None) -> Runner:
    """libnftables in-process when possible, else the ``nft -j`` binary (always inside a netns)."""
    if netns is None:
        try:
            from kubectl_proxydoctor.collect.libnftables import LibNftables

            return LibNftables()
        except OSError:
            pass  # libnftables.so.1 is not installed
    nft_bin = shutil.which("nft")
    if nft_bin is None:
        raise _Unavailable("nft is not installed and libnftables (libnftables1) is not available")
    prefix = ["ip", "netns", "exec", netns] if netns else []

    def cli_run(cmd: str, sink: Sink) -> tuple[int, str]:
        with tempfile.TemporaryFile() as errors:
            try:
                proc = subprocess.Popen([*prefix, nft_bin, "-j", *cmd.split()], stdout=subprocess.PIPE,
                                        stderr=errors, stdin=subprocess.DEVNULL)
            except FileNotFoundError as e:
                raise _Unavailable(f"cannot run {e.filename}") from e
            assert proc.stdout is not None
            expired = threading.Event()
            timer = threading.Timer(TIMEOUT, lambda: (expired.set(), proc.kill()))
            timer.start()
            try:
                failure = pump(proc.stdout.fileno(), sink)
            finally:
                timer.cancel()
                proc.stdout.close()
                proc.wait()
            if expired.is_set():
                raise _Unavailable(f"`nft -j {cmd}` did not finish in {TIMEOUT} s")
            if failure is not None:
                raise failure
            errors.seek(0)
            return proc.returncode, errors.read().decode("utf-8", "replace")

    return cli_run
