"""`nft -j` JSON (schema version 1) into an NftRuleset; anything malformed is a ParseError."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any

from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.formats.nft_model import (
    PROTO_NUMBERS,
    KeyPart,
    NftChain,
    NftElement,
    NftRule,
    NftRuleset,
    NftSet,
    NftTable,
)
from kubectl_proxydoctor.gcpause import gc_paused

SUPPORTED_SCHEMA = 1
FILENAME = "nft-ruleset.json"  # the capture file
RULESET_KEY = "nftables.ruleset"  # its parsed NftRuleset, cached on the snapshot
# object kinds a listing may hold that we keep verbatim (not used for kube-proxy's layout)
OTHER_KINDS = {"flowtable", "counter", "quota", "ct helper", "ct timeout", "ct expectation", "limit",
               "secmark", "synproxy", "tunnel"}
KNOWN_FAMILIES = {"ip", "ip6", "inet", "arp", "bridge", "netdev"}

ChainHook = Callable[[NftTable, NftChain], None]
# the hook a live listing's RulesetBuilder calls as each chain completes (on_chain_done): the
# interpreter registers its early walk here when imported, as collect/ may not import modes/
_live_chain_hook: list[ChainHook] = []


def register_live_chain_hook(hook: ChainHook) -> None:
    """Make ``hook`` the on_chain_done of listings parsed while read (see live_chain_hook)."""
    _live_chain_hook[:] = [hook]


def live_chain_hook() -> ChainHook | None:
    """The registered hook for listings parsed while read, or None."""
    return _live_chain_hook[0] if _live_chain_hook else None


def parse_ruleset_text(text: str, source: str = "nft-ruleset.json",
                       on_chain_done: ChainHook | None = None) -> NftRuleset:
    """Parse the text `nft -j list ruleset` (or `list table ...`) prints.

    Each top-level item is decoded on its own, straight from ``text``, and goes to the builder at
    once: the whole document is never held decoded, and a rule whose chain ``on_chain_done``
    summed up (NftChain.facts) keeps only where it is in ``text``. Anything the item-by-item read
    does not take (another layout of the document, malformed JSON or structure) is parsed the
    whole-document way, which gives the same ruleset or the same ParseError.
    """
    with gc_paused():
        try:
            return _parse_items(text, source, on_chain_done)
        except (_NotItemByItem, ParseError):
            pass
        builder = RulesetBuilder(source, on_chain_done)
        for item in decode_items(text, source):
            builder.add(item)
        return builder.finish()


class _NotItemByItem(Exception):
    """The text is not read item by item; the whole-document parse decides."""


# JSON's whitespace is these four (re's \s takes more)
_HEAD_RE = re.compile(r'[ \t\n\r]*\{[ \t\n\r]*"nftables"[ \t\n\r]*:[ \t\n\r]*\[[ \t\n\r]*')
_SEP_RE = re.compile(r"[ \t\n\r]*([,\]])[ \t\n\r]*")
_TAIL_RE = re.compile(r"[ \t\n\r]*\}[ \t\n\r]*\Z")
_raw_decode = json.JSONDecoder().raw_decode


def _parse_items(text: str, source: str, on_chain_done: ChainHook | None) -> NftRuleset:
    head = _HEAD_RE.match(text)
    if head is None:
        raise _NotItemByItem
    builder = RulesetBuilder(source, on_chain_done, text)
    pos, add, decode, sep = head.end(), builder.add, _raw_decode, _SEP_RE.match
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            try:
                item, end = decode(text, pos)
            except json.JSONDecodeError:
                raise _NotItemByItem from None
            add(item, pos)
            m = sep(text, end)
            if m is None:
                raise _NotItemByItem
            pos = m.end()
            if m.group(1) == "]":
                break
    if _TAIL_RE.match(text, pos) is None:
        raise _NotItemByItem
    return builder.finish()


def decode_items(text: str, source: str = "nft-ruleset.json") -> list:
    """The items of the ``{"nftables": [...]}`` document in ``text`` (ParseError if it is not one)."""
    if not text.strip():
        raise ParseError(source, "empty file (expected the JSON `nft -j list ruleset` prints)")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        hint = " (truncated?)" if e.pos >= len(text.rstrip()) - 1 else ""
        raise ParseError(source, f"not valid JSON{hint}: {e.msg}", e.lineno) from e
    return _items(doc, source)


def _items(doc: object, source: str) -> list:
    if not isinstance(doc, dict) or not isinstance(doc.get("nftables"), list):
        raise ParseError(source, 'expected a JSON object {"nftables": [...]} as `nft -j` prints')
    return doc["nftables"]


def parse_ruleset(doc: object, source: str = "nft-ruleset.json") -> NftRuleset:
    """Build the ruleset from a decoded ``{"nftables": [...]}`` document."""
    builder = RulesetBuilder(source)
    for item in _items(doc, source):
        builder.add(item)
    return builder.finish()


class RulesetBuilder:
    """Builds an NftRuleset one top-level item at a time, in the order nft prints them (so a
    listing can be parsed while it is still being read); ``finish()`` returns the ruleset.

    Anything malformed is a ParseError naming the item.
    """

    def __init__(self, source: str = "nft-ruleset.json",
                 on_chain_done: ChainHook | None = None, src: str | None = None) -> None:
        self.rs = NftRuleset(source=source)
        # the text the items are decoded from (add's ``pos`` is where each starts): a rule of a
        # chain on_chain_done summed up then drops its decoded expressions (NftRule.drop_expr)
        self.src = src
        # called with each chain (and its table) once its rules are complete (nft lists the rules
        # chain by chain, in the order the chains were created)
        self.on_chain_done = on_chain_done
        self._last_chain: NftChain | None = None
        self.source = source
        self.count = 0
        # rules and elements whose chain or set is not listed yet wait for finish(); once one
        # waits, every later one does too, so each chain keeps its rules in listing order
        self._pending_rules: list[tuple[int, dict]] = []
        self._pending_elements: list[tuple[int, dict]] = []
        self._chains: dict[tuple, NftChain] = {}  # (family, table, name) -> chain, for rules

    def add(self, item: object, pos: int = 0) -> None:
        """Add one item of the ``nftables`` array (starting at ``pos`` of ``src``, when given)."""
        i = self.count
        self.count = i + 1
        # fast path for the bulk of a listing: a well-formed rule of a chain already listed
        body = item.get("rule") if type(item) is dict and len(item) == 1 else None
        if type(body) is dict and not self._pending_rules:
            key = (body.get("family"), body.get("table"), body.get("chain"))
            chain = self._chains.get(key) if all(type(k) is str for k in key) else None
            expr = body.get("expr")
            if chain is not None and type(expr) is list and all(type(e) is dict and len(e) == 1
                                                                for e in expr):
                chain.rules.append(NftRule(chain.family, chain.table, chain.name, body.get("handle"), expr,
                                           body.get("comment"), self.src, pos))
                if chain is not self._last_chain:
                    if self._last_chain is not None and self.on_chain_done is not None:
                        self._chain_done(self._last_chain)
                    self._last_chain = chain
                return
        try:
            self._add(i, item)
        except ParseError:
            raise
        except (TypeError, AttributeError, KeyError, ValueError, IndexError) as e:
            raise _structure_error(self.source, e) from e

    def finish(self) -> NftRuleset:
        """Attach what waited for its chain or set; the ruleset."""
        try:
            for i, body in self._pending_rules:
                self._rule(i, body, pend=False)
            for i, body in self._pending_elements:
                self._element(i, body)
        except ParseError:
            raise
        except (TypeError, AttributeError, KeyError, ValueError, IndexError) as e:
            raise _structure_error(self.source, e) from e
        self._pending_rules, self._pending_elements = [], []
        if self._last_chain is not None and self.on_chain_done is not None:
            self._chain_done(self._last_chain)
        self._last_chain = None
        return self.rs

    def _chain_done(self, chain: NftChain) -> None:
        table = self.rs.tables.get((chain.family, chain.table))
        if table is not None and self.on_chain_done is not None:
            self.on_chain_done(table, chain)
            if chain.facts is not None and self.src is not None:
                for rule in chain.rules:
                    rule.drop_expr()

    def _add(self, i: int, item: object) -> None:
        source, rs = self.source, self.rs
        if not isinstance(item, dict) or len(item) != 1:
            raise ParseError(source, f"item {i}: expected an object with exactly one key")
        kind, body = next(iter(item.items()))
        if kind == "rule":
            if not isinstance(body, dict):
                raise ParseError(source, f"item {i} ({kind}): expected an object")
            self._rule(i, body, pend=True)
            return
        if kind == "metainfo":
            _metainfo(rs, body, source)
            return
        if not isinstance(body, dict):
            raise ParseError(source, f"item {i} ({kind}): expected an object")
        if kind == "table":
            family, name = _family(body, i, kind, source), _str(body, "name", i, kind, source)
            rs.tables[(family, name)] = NftTable(family, name, body.get("handle"), body.get("comment"))
        elif kind == "chain":
            table = _table(rs, body, i, kind, source)
            chain = _chain(table, body, i, source)
            table.chains[chain.name] = chain
            self._chains[(table.family, table.name, chain.name)] = chain
        elif kind in ("set", "map"):
            table = _table(rs, body, i, kind, source)
            nset = _set(body, kind, i, source)
            table.sets[nset.name] = nset
        elif kind == "element":
            self._pending_elements.append((i, body))
        elif kind in OTHER_KINDS:
            _table(rs, body, i, kind, source).others.append(item)
        else:
            raise ParseError(source, f"item {i}: unknown object kind {kind!r} (another nft version?)")

    def _rule(self, i: int, body: dict, pend: bool) -> None:
        source = self.source
        if pend and self._pending_rules:
            self._pending_rules.append((i, body))
            return
        table = self.rs.tables.get((body.get("family"), body.get("table")))  # type: ignore[arg-type]
        chain_name = body.get("chain")
        chain = table.chains.get(chain_name) if table is not None and isinstance(chain_name, str) else None
        if chain is None:
            if pend:
                self._pending_rules.append((i, body))
                return
            if table is None:
                table = _table(self.rs, body, i, "rule", source)  # raises the precise error
            chain_name = _str(body, "chain", i, "rule", source)
            raise ParseError(source, f"item {i}: rule for chain {chain_name!r}, which {table.label} "
                                     "does not list")
        expr = body.get("expr")
        if not isinstance(expr, list) or not all(isinstance(e, dict) and len(e) == 1 for e in expr):
            raise ParseError(source, f"item {i}: rule in {chain_name!r} has no 'expr' list")
        chain.rules.append(NftRule(chain.family, chain.table, chain.name, body.get("handle"), expr,
                                   body.get("comment")))
        chain.facts = None  # summed up before this rule came (a rule listed before its chain)

    def _element(self, i: int, body: dict) -> None:
        source = self.source
        table = _table(self.rs, body, i, "element", source)
        name = _str(body, "name", i, "element", source)
        nset = table.sets.get(name)
        if nset is None:
            raise ParseError(source, f"item {i}: elements for set {name!r}, which {table.label} does "
                                     "not list")
        nset.elements.extend(_elements(body.get("elem"), nset, i, source))


def _structure_error(source: str, e: Exception) -> ParseError:
    return ParseError(source, f"unexpected structure ({type(e).__name__}: {e}); written by another "
                              "nft version or edited by hand?")


# -- pieces ------------------------------------------------------------------------------------


def _metainfo(rs: NftRuleset, body: object, source: str) -> None:
    if not isinstance(body, dict):
        raise ParseError(source, "metainfo: expected an object")
    rs.version = body.get("version")
    schema = body.get("json_schema_version")
    if schema is not None and schema != SUPPORTED_SCHEMA:
        raise ParseError(source, f"nft JSON schema version {schema} (nft {rs.version}) is not supported; "
                                 f"this tool reads schema version {SUPPORTED_SCHEMA}")
    rs.schema_version = schema


def _str(body: dict, key: str, i: int, kind: str, source: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ParseError(source, f"item {i} ({kind}): missing or bad {key!r}")
    return value


def _family(body: dict, i: int, kind: str, source: str) -> str:
    family = _str(body, "family", i, kind, source)
    if family not in KNOWN_FAMILIES:
        raise ParseError(source, f"item {i} ({kind}): unknown family {family!r}")
    return family


def _table(rs: NftRuleset, body: dict, i: int, kind: str, source: str) -> NftTable:
    family = _family(body, i, kind, source)
    name = _str(body, "table", i, kind, source)
    table = rs.tables.get((family, name))
    if table is None:
        raise ParseError(source, f"item {i} ({kind}): table {family} {name} is not listed before it")
    return table


def _int_or_none(value: object, what: str, i: int, source: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParseError(source, f"item {i}: {what} must be an integer, not {value!r}")
    return value


def _chain(table: NftTable, body: dict, i: int, source: str) -> NftChain:
    chain = NftChain(table.family, table.name, _str(body, "name", i, "chain", source),
                     body.get("handle"), body.get("type"), body.get("hook"), None, body.get("policy"),
                     body.get("comment"))
    if chain.hook is not None:
        prio = body.get("prio")
        if isinstance(prio, dict):  # very old nft printed {"prio": {"offset": .., "name": ..}}
            raise ParseError(source, f"item {i}: chain {chain.name!r} priority {prio!r} in a format this "
                                     "tool does not read (schema of another nft version)")
        chain.prio = _int_or_none(prio, f"chain {chain.name!r} 'prio'", i, source)
        if chain.prio is None:
            raise ParseError(source, f"item {i}: base chain {chain.name!r} has a hook but no 'prio'")
    return chain


def _set(body: dict, kind: str, i: int, source: str) -> NftSet:
    name = _str(body, "name", i, kind, source)
    ktype = body.get("type")
    if isinstance(ktype, str):
        key_type: tuple[str, ...] = (ktype,)
    elif isinstance(ktype, list) and ktype and all(isinstance(t, str) for t in ktype):
        key_type = tuple(ktype)
    elif isinstance(ktype, dict) and "typeof" in ktype:
        key_type = ("typeof",)
    else:
        raise ParseError(source, f"item {i}: {kind} {name!r} has no readable 'type'")
    data = body.get("map")
    if kind == "map" and data is None:
        raise ParseError(source, f"item {i}: map {name!r} has no 'map' (data type)")
    flags = body.get("flags") or []
    if isinstance(flags, str):
        flags = [flags]
    if not isinstance(flags, list):
        raise ParseError(source, f"item {i}: {kind} {name!r} has unreadable 'flags' {flags!r}")
    nset = NftSet(body["family"], body["table"], name, kind, key_type,
                  data if isinstance(data, str) else (None if data is None else json.dumps(data)),
                  tuple(str(f) for f in flags),
                  _int_or_none(body.get("timeout"), f"{name} timeout", i, source),
                  body.get("size"), body.get("comment"))
    nset.elements = _elements(body.get("elem"), nset, i, source)
    return nset


def _elements(raw: object, nset: NftSet, i: int, source: str) -> list[NftElement]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ParseError(source, f"item {i}: elements of {nset.name!r} must be a list")
    out = []
    for j, item in enumerate(raw):
        where = f"item {i}: {nset.kind} {nset.name!r} element {j}"
        value = None
        if nset.kind == "map":
            if not isinstance(item, list) or len(item) != 2:
                raise ParseError(source, f"{where}: expected [key, value]")
            item, value = item
        el = _element_key(item, where, source)
        el.value = value
        if len(el.key) != len(nset.key_type) and nset.key_type != ("typeof",):
            raise ParseError(source, f"{where}: key has {len(el.key)} parts, the type "
                                     f"{' . '.join(nset.key_type)} has {len(nset.key_type)}")
        out.append(el)
    return out


def _element_key(item: object, where: str, source: str) -> NftElement:
    comment = expires = timeout = None
    if isinstance(item, dict) and "elem" in item:
        inner = item["elem"]
        if not isinstance(inner, dict) or "val" not in inner:
            raise ParseError(source, f"{where}: 'elem' without 'val'")
        comment, expires, timeout = inner.get("comment"), inner.get("expires"), inner.get("timeout")
        item = inner["val"]
    if isinstance(item, dict) and "concat" in item:
        parts = item["concat"]
        if not isinstance(parts, list):
            raise ParseError(source, f"{where}: 'concat' must be a list")
        key = tuple(key_part(p, where, source) for p in parts)
    else:
        key = (key_part(item, where, source),)
    return NftElement(key, None, comment, expires, timeout)


def key_part(value: object, where: str = "", source: str = "nft-ruleset.json") -> KeyPart:
    """One element or match value: address/protocol string, port int, prefix network or range."""
    if isinstance(value, bool):
        raise ParseError(source, f"{where}: unexpected boolean value")
    if isinstance(value, (str, int)):
        return value
    if isinstance(value, dict):
        if "prefix" in value:
            p = value["prefix"]
            try:
                return ipaddress.ip_network(f"{p['addr']}/{p['len']}", strict=False)
            except (KeyError, TypeError, ValueError) as e:
                raise ParseError(source, f"{where}: bad prefix {p!r}") from e
        if "range" in value and isinstance(value["range"], list) and len(value["range"]) == 2:
            lo, hi = value["range"]
            return (lo, hi)
    raise ParseError(source, f"{where}: value {json.dumps(value)[:80]} is not something this tool reads")


def proto_name(value: Any) -> str:
    """Normalise an l4proto value (name or number) to nft's lowercase name."""
    if isinstance(value, int):
        return PROTO_NUMBERS.get(value, str(value))
    return str(value).lower()
