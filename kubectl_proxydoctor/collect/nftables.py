"""Read-only nftables collector: kube-proxy's tables plus the tables that could sit in front.

Asks narrowly (listing is kernel-bound and slow at scale): ``list table ip kube-proxy`` and
``list table ip6 kube-proxy``, plus ``list chains`` in text (cheap: no rules, no set elements;
``list tables`` is slower on nft 1.0.6 as it fills its whole cache) to find every other
ip/ip6/inet table with a base chain at a hook kube-proxy uses (a host firewall such as firewalld or
a hand-made ``inet`` table), which is listed too, except iptables-nft's own compat tables (``ip
filter``, ``ip nat``, ...), which the iptables collectors capture and which are huge on an
iptables-mode node. The listings are merged as text (no JSON round trip) into one
``{"nftables": [...]}`` document in the shape of ``nft -j list ruleset``, stored as
``nft-ruleset.json``. Only single ``list`` commands are run (the runners refuse anything else).

Each listing is parsed while nft prints it (formats/nft_stream.py); the parsed ruleset is handed
to the snapshot with the text, so interpreting does not decode the 10 MB again.

kube-proxy's own tables are read over netlink first (collect/nft_nlread.py: one rule dump per
chain, linear where nft's one dump is quadratic in the kernel), decoded into exactly the items nft
prints; a table holding anything that reader does not decode is listed with nft as before, and
meta.json (``nftables_reader``) and stderr say why.

No fixed time limit: a listing of the ``nft`` binary may take as long as its table's size needs
(``time_limit``: the kernel's rule dump grows with the square of the table), and a read over a few
seconds says on stderr what it is waiting for (``Watch``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.collect.libnftables import read_only
from kubectl_proxydoctor.collect.nft_netlink import NetlinkError
from kubectl_proxydoctor.collect.nft_nlread import read_table_with
from kubectl_proxydoctor.collect.nft_nlvalues import Json, Undecoded
from kubectl_proxydoctor.collect.nft_watch import Watch
from kubectl_proxydoctor.collect.pipes import pump
from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.formats.nft_model import NftRuleset
from kubectl_proxydoctor.formats.nft_parse import (
    FILENAME,
    RULESET_KEY,
    ChainHook,
    RulesetBuilder,
    live_chain_hook,
)
from kubectl_proxydoctor.formats.nft_stream import ItemStream
from kubectl_proxydoctor.gcpause import gc_paused

SOURCE = "nftables"
KUBE_PROXY_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))
IPTABLES_COMPAT_TABLES = {"filter", "nat", "mangle", "raw", "security"}
KUBE_PROXY_HOOKS = {"prerouting", "input", "forward", "output", "postrouting"}
FIREWALL_FAMILIES = ("ip", "ip6", "inet")

Sink = Callable[[str], None]
# (command, output sink, JSON output?) -> (exit status, error text); runners with ``watched`` also
# take ``watch=`` (a Watch to stop the listing at its time limit)
Runner = Callable[..., tuple[int, str]]


class _Unavailable(Exception):
    pass


def collect(ctx: CollectContext) -> None:
    """Store kube-proxy's nftables tables (and possible firewalls in front) as nft-ruleset.json,
    and their parsed ruleset as the snapshot's."""
    try:
        runner = _runner(ctx.netns)
        # the netlink reader reads the kernel the runner would list (not a runner's stand-in)
        reader = (NetlinkReader(ctx.netns, parse=ctx.parse)
                  if getattr(runner, "kernel", False) and has_net_admin() else None)
        doc, ruleset = read_tables(runner, alongside(runner, ctx.netns), netlink=reader)
    except _Unavailable as e:
        ctx.unavailable(SOURCE, str(e))
        return
    if reader is not None:
        ctx.meta["nftables_reader"] = reader.summary()
        for note in reader.fallbacks:
            print(f"proxydoctor: {note}", file=sys.stderr)
    ctx.ok(SOURCE, FILENAME, doc)
    if ruleset is not None:
        ctx.seeds[RULESET_KEY] = ((FILENAME,), ruleset)


def alongside(runner: Runner, netns: str | None = None) -> Runner | None:
    """A runner for discovery while ``runner`` lists the big table, when ``runner``'s calls take
    turns (libnftables in this process): the ``nft`` binary, a process of its own. None when
    ``runner`` can run listings at once itself, or when there is no ``nft`` binary."""
    if getattr(runner, "parallel", True) or shutil.which("nft") is None:
        return None
    return cli_runner(netns)


@dataclass
class Listing:
    """One ``nft -j list ...``: its status, its text and (``parse``) its items parsed on the fly."""

    cmd: str
    parse: bool = False
    on_chain_done: ChainHook | None = None
    rc: int = 0
    err: str = ""
    chunks: list[str] = field(default_factory=list)
    size: int = 0  # characters read so far (for progress)
    _builder: RulesetBuilder | None = None
    _stream: ItemStream | None = None

    def __post_init__(self) -> None:
        if self.parse:
            # chains may also be walked as they complete, while nft is still printing
            self._builder = RulesetBuilder(FILENAME, on_chain_done=self.on_chain_done)
            self._stream = ItemStream(self._builder.add, FILENAME)

    def feed(self, chunk: str) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
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


def list_with(runner: Runner, cmd: str, parse: bool = False, json: bool = True,
              on_chain_done: ChainHook | None = None, sizes: Sizes | None = None) -> Listing:
    """Run one listing, parsing it while it is printed when ``parse``. ``sizes`` (chains per
    table, once discovery has counted them) sets the time limit and progress of a table listing."""
    listing = Listing(cmd, parse, on_chain_done)
    with Watch(cmd, lambda: listing.size, sizes.chains_of(cmd) if sizes else lambda: None) as watch:
        # a runner that can stop its listing says so (``watched``); progress is shown for any
        extra = {"watch": watch} if getattr(runner, "watched", False) else {}
        listing.rc, listing.err = runner(cmd, listing.feed, json=json, **extra)
    return listing


NETLINK_META = {"metainfo": {"json_schema_version": 1, "reader": "proxydoctor netlink"}}


class NetlinkReader:
    """kube-proxy's tables read over netlink (nft_nlread) in ``netns``; what fell back and why.
    ``parse``: also build each table's ruleset (for a caller that interprets it in this process)."""

    def __init__(self, netns: str | None = None, parse: bool = True) -> None:
        self.netns = netns
        self.parse = parse
        self.read: list[str] = []
        self.fallbacks: list[str] = []

    def listing(self, table: tuple[str, str], on_chain_done: ChainHook | None) -> Listing | None | bool:
        """The table as a Listing; None when there is no such table; False when nft must list it
        (the reason is kept in ``fallbacks``)."""
        family, name = table
        try:
            listing = read_table_with(family, name, lambda items: DecodedListing(
                f"list table {family} {name}", items, on_chain_done if self.parse else None, self.parse),
                self.netns)
        except (Undecoded, NetlinkError) as e:
            self.fallbacks.append(f"table {family} {name} listed with nft: the netlink reader "
                                  f"{'does not decode' if isinstance(e, Undecoded) else 'failed:'} {e}")
            return False
        except ParseError as e:
            self.fallbacks.append(f"table {family} {name} listed with nft: its netlink items did not "
                                  f"parse: {e}")
            return False
        if listing is None:
            return None
        self.read.append(f"{family} {name}")
        return listing

    def summary(self) -> dict:
        return {"netlink": self.read, "nft_fallbacks": self.fallbacks}


class DecodedListing(Listing):
    """A table read over netlink: its text made from the decoded items as they come (nft's
    compact JSON layout, item by item: no table of items is held), and (``parse``) its ruleset
    built from the items themselves (no JSON decode)."""

    def __init__(self, cmd: str, items: Iterator[Json], on_chain_done: ChainHook | None,
                 parse: bool = True) -> None:
        super().__init__(cmd)
        builder = RulesetBuilder(FILENAME, on_chain_done=on_chain_done) if parse else None
        encode = json.JSONEncoder().encode  # as json.dumps with its defaults
        parts = [encode(NETLINK_META)]
        for item in items:
            if builder is not None:
                builder.add(item)
            parts.append(encode(item))
        self._decoded = builder.finish() if builder is not None else None
        self.feed('{"nftables": [' + ", ".join(parts) + "]}")

    def ruleset(self) -> NftRuleset | None:
        return self._decoded


class Sizes:
    """Chains per table as discovery (``list chains``) counted them; unknown until it has."""

    def __init__(self) -> None:
        self.chains: dict[tuple[str, str], int] | None = None

    def chains_of(self, cmd: str) -> Callable[[], int | None]:
        parts = cmd.split()
        table = (parts[2], parts[3]) if len(parts) == 4 and parts[:2] == ["list", "table"] else None
        return lambda: (self.chains or {}).get(table) if table else None


def read_tables(runner: Runner, alongside: Runner | None = None,
                on_chain_done: ChainHook | None = None,
                netlink: NetlinkReader | None = None) -> tuple[str, NftRuleset | None]:
    """kube-proxy's two tables and ``list chains`` (to find the other tables), then the other
    wanted tables, merged into one document in the shape of ``nft -j list ruleset``; with it, the
    ruleset parsed while the listings were read (None if some part could not be parsed that way).
    ``alongside``: see ``_kube_proxy_tables``; ``on_chain_done``: called with each chain once its
    rules are read (default: the registered ``live_chain_hook``, the interpreter's early walk);
    ``netlink``: reads kube-proxy's tables first (nft lists those it cannot)."""
    on_chain_done = on_chain_done or live_chain_hook()
    with gc_paused():
        sizes = Sizes()
        if netlink is not None:
            listings, hooked = _kube_proxy_tables_netlink(runner, alongside, on_chain_done, sizes, netlink)
        else:
            listings, hooked = _kube_proxy_tables(runner, alongside, on_chain_done, sizes)
        others = [t for t in hooked if t not in KUBE_PROXY_TABLES and _may_sit_in_front(t)]
        listings += [(t, list_with(runner, f"list table {t[0]} {t[1]}", True, True, on_chain_done, sizes))
                     for t in others]
        return _document(listings)


Listings = list[tuple[tuple[str, str], Listing]]
Tables = list[tuple[str, str]]


def _kube_proxy_tables(runner: Runner, alongside: Runner | None, on_chain_done: ChainHook | None,
                       sizes: Sizes) -> tuple[Listings, list[tuple[str, str]]]:
    """The kube-proxy tables' listings, and the tables discovery found hooked where kube-proxy is.

    Discovery runs while the big table is listed when it can (nft spends most of a listing
    building it before printing; ``list chains`` alone takes 0.05 s at 1k services, 0.3-0.5 s at
    5k):
    - a runner that can run listings at once (the nft binary) lists both kube-proxy tables and
      runs discovery at the same time;
    - one whose calls take turns (libnftables) lists ``ip kube-proxy`` on this thread (measured
      10-12% faster than on a pool thread) while ``alongside`` (an nft process) runs discovery,
      then ``ip6 kube-proxy`` only if it exists (no failing listing on a single-stack node);
    - with no ``alongside`` (or if it fails), discovery first, then only the kube-proxy tables
      that exist.
    """
    # text, not JSON, for discovery: only table names and hooks are needed; nft prints text 2-3x faster
    chains_cmd = "list chains"
    kube_proxy = [(t, f"list table {t[0]} {t[1]}") for t in KUBE_PROXY_TABLES]
    def table_listing(cmd: str) -> Listing:
        return list_with(runner, cmd, True, True, on_chain_done, sizes)

    if getattr(runner, "parallel", True):
        with ThreadPoolExecutor(max_workers=3) as pool:
            jobs = {t: pool.submit(table_listing, cmd) for t, cmd in kube_proxy}
            present, hooked = _tables(_checked(list_with(runner, chains_cmd, False, False)), sizes)
            return [(t, job.result()) for t, job in jobs.items()], hooked
    listings: Listings = []
    chains: Listing | None = None
    if alongside is not None:
        with ThreadPoolExecutor(max_workers=1) as pool:
            discovery = pool.submit(list_with, alongside, chains_cmd, False, False)
            # the big listing's progress and limit know its size as soon as discovery is done
            discovery.add_done_callback(lambda done: _count_chains(done, sizes))
            first, cmd = kube_proxy.pop(0)
            listings.append((first, table_listing(cmd)))
            try:
                chains = discovery.result()
            except (_Unavailable, OSError):
                chains = None
    if chains is None or chains.rc != 0:  # no nft binary, or it failed here: libnftables asks
        chains = list_with(runner, chains_cmd, False, False)
    present, hooked = _tables(_checked(chains), sizes)
    listings += [(t, table_listing(cmd)) for t, cmd in kube_proxy if t in present]
    return listings, hooked


def _kube_proxy_tables_netlink(runner: Runner, alongside: Runner | None, on_chain_done: ChainHook | None,
                               sizes: Sizes, netlink: NetlinkReader) -> tuple[Listings, Tables]:
    """As ``_kube_proxy_tables``, the kube-proxy tables read over netlink while discovery runs; nft
    lists only those the reader gave up on."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        job = pool.submit(lambda: [(t, netlink.listing(t, on_chain_done)) for t in KUBE_PROXY_TABLES])
        chains: Listing | None = None
        if alongside is not None:
            try:
                chains = list_with(alongside, "list chains", False, False)
            except (_Unavailable, OSError):
                chains = None
        if chains is None or chains.rc != 0:
            chains = list_with(runner, "list chains", False, False)
        read = job.result()
    present, hooked = _tables(_checked(chains), sizes)
    listings: Listings = []
    for table, listing in read:
        if isinstance(listing, Listing):
            listings.append((table, listing))
        elif listing is False and table in present:
            listings.append((table, list_with(runner, f"list table {table[0]} {table[1]}", True, True,
                                              on_chain_done, sizes)))
    return listings, hooked


def _count_chains(done: Future[Listing], sizes: Sizes) -> None:
    """Fill ``sizes`` from a finished discovery (nothing when it failed: the caller says why)."""
    try:
        _tables(_checked(done.result()), sizes)
    except (_Unavailable, OSError):
        pass


def _document(listings: Listings) -> tuple[str, NftRuleset | None]:
    """The listings merged as text into one ``{"nftables": [...]}`` document, and their rulesets
    merged (None if one could not be parsed while read)."""
    meta: dict | None = None
    parts: list[str] = []
    rulesets: list[NftRuleset | None] = []
    whole: str | None = None  # a listing's own text, when it is the only part, in nft's layout
    for (family, name), listing in listings:
        if (family, name) in KUBE_PROXY_TABLES and listing.rc != 0 and _missing(listing):
            continue  # no such table (kube-proxy is not in this mode / family)
        out = _checked(listing)
        listing_meta, body, nft_layout = _split_listing(out, listing.cmd)
        meta = meta or listing_meta
        if body:
            parts.append(body)
            rulesets.append(listing.ruleset())
            whole = out if nft_layout and len(parts) == 1 and listing_meta is meta else None
    meta = meta or {"metainfo": {}}
    ruleset = _merged(meta, rulesets)
    if whole is not None:  # no copies of a large listing
        return (whole if whole.endswith("\n") else whole + "\n"), ruleset
    return '{"nftables": [' + ", ".join([json.dumps(meta), *parts]) + "]}\n", ruleset


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


TABLE_OR_HOOK_RE = re.compile(r'^table (\w+) ("(?:[^"\\]|\\.)*"|\S+) \{$|^\t\ttype \S+ hook (\w+) ', re.M)


def _tables(out: str, sizes: Sizes | None = None) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """From `nft list chains` (text): every table, and those with a base chain at a hook kube-proxy
    uses, in listing order. Only table headers and base-chain ``type ... hook ...`` lines are
    matched. ``sizes`` gets the number of chains of each table."""
    if out.strip() and not out.lstrip().startswith("table "):
        raise _Unavailable(f"`nft list chains` printed something else than tables: {out.strip()[:60]!r}")
    present: list[tuple[str, str]] = []
    hooked: list[tuple[str, str]] = []
    starts: list[int] = []
    for m in TABLE_OR_HOOK_RE.finditer(out):
        if m[1]:
            starts.append(m.start())
            name = m[2]
            present.append((m[1], json.loads(name) if name.startswith('"') else name))
        elif present and m[3] in KUBE_PROXY_HOOKS and present[-1] not in hooked:
            hooked.append(present[-1])
    if sizes is not None:
        ends = [*starts[1:], len(out)] if starts else []
        spans = zip(present, starts, ends, strict=True)
        sizes.chains = {t: out.count("\n\tchain ", a, b) for t, a, b in spans}
    return present, hooked


_ITEMS_START_RE = re.compile(r'\s*\{"nftables": \[(\{"metainfo": \{[^{}]*\}\})\s*(,\s*)?')


def _split_listing(out: str, cmd: str) -> tuple[dict | None, str, bool]:
    """A listing's metainfo item, the JSON text of its other items (no decode of a large listing,
    and one copy of it), and whether the text is in nft's own compact layout (then it is already
    the document, should it be the only part)."""
    m = _ITEMS_START_RE.match(out)
    close = out.rfind("]}")
    if m and close >= m.end() and not out[close + 2:].strip():
        try:
            meta = json.loads(m[1])
        except json.JSONDecodeError:
            meta = None
        if meta is not None and m[2] is None and not out[m.end():close].strip():
            return meta, "", True
        body = out[m.end():close].rstrip()
        if meta is not None and m[2] is not None and body.startswith("{") and body.endswith("}"):
            return meta, body, True
    # another layout (other nft version): decode and re-encode, slower but exact
    try:
        doc = json.loads(out)
    except json.JSONDecodeError as e:
        raise _Unavailable(f"`nft -j {cmd}` printed no valid JSON ({e.msg})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("nftables"), list):
        raise _Unavailable(f"`nft -j {cmd}` printed an unexpected document")
    items = doc["nftables"]
    meta = next((i for i in items if isinstance(i, dict) and "metainfo" in i), None)
    body = ", ".join(json.dumps(i) for i in items if not (isinstance(i, dict) and "metainfo" in i))
    return meta, body, False


def _checked(listing: Listing) -> str:
    """The listing's text; a failed listing is _Unavailable with nft's reason."""
    if listing.rc != 0:
        text = (listing.err or listing.out).strip()
        reason = text.splitlines()[0] if text else f"exit status {listing.rc}"
        if "Operation not permitted" in reason or "Permission denied" in reason:
            raise _Unavailable(f"not permitted to read nftables ({reason}); run as root / CAP_NET_ADMIN")
        raise _Unavailable(f"`nft {listing.cmd}` failed: {reason}")
    return listing.out


CAP_NET_ADMIN = 12


def has_net_admin(status_path: str = "/proc/self/status") -> bool:
    """Whether this process holds CAP_NET_ADMIN (True when it cannot tell)."""
    try:
        with open(status_path) as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return True


def _runner(netns: str | None) -> Runner:
    """libnftables in-process when possible, else the ``nft -j`` binary (always inside a netns).

    Without CAP_NET_ADMIN, libnftables would print "Operation not permitted (you must be root)"
    straight to this process's stderr: the binary runs instead, its stderr captured as the reason."""
    if netns is None and has_net_admin():
        try:
            from kubectl_proxydoctor.collect.libnftables import LibNftables

            return LibNftables()
        except OSError:
            pass  # libnftables.so.1 is not installed
    return cli_runner(netns)


def cli_runner(netns: str | None = None) -> Runner:
    """The ``nft -j`` binary (in ``netns`` when given); output streamed to the sink."""
    nft_bin = shutil.which("nft")
    if nft_bin is None:
        raise _Unavailable("nft is not installed and libnftables (libnftables1) is not available")
    prefix = ["ip", "netns", "exec", netns] if netns else []

    def cli_run(cmd: str, sink: Sink, json: bool = True, watch: Watch | None = None) -> tuple[int, str]:
        read_only(cmd)
        with tempfile.TemporaryFile() as errors:
            try:
                proc = subprocess.Popen([*prefix, nft_bin, *(["-j"] if json else []), *cmd.split()],
                                        stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL)
            except FileNotFoundError as e:
                raise _Unavailable(f"cannot run {e.filename}") from e
            assert proc.stdout is not None
            expired = threading.Event()

            def stop() -> None:
                expired.set()
                proc.kill()

            if watch is not None:
                watch.on_expiry(stop)
            try:
                failure = pump(proc.stdout.fileno(), sink)
            finally:
                proc.stdout.close()
                proc.wait()
            if expired.is_set() and watch is not None:
                raise _Unavailable(f"`nft -j {cmd}` did not finish in {watch.limit_text()}")
            if failure is not None:
                raise failure
            errors.seek(0)
            return proc.returncode, errors.read().decode("utf-8", "replace")

    cli_run.watched = True  # type: ignore[attr-defined]
    cli_run.kernel = True  # type: ignore[attr-defined]
    return cli_run
