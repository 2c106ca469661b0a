"""The nftables ruleset as read from `nft -j` JSON: tables, chains, rules, sets and maps.

Rules keep their JSON expressions (what the tracer evaluates) and render to `nft` syntax on
demand (what findings and traces show as evidence).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

# nft's named chain priorities (nft prints these names instead of numbers)
PRIORITY_NAMES: dict[str, int] = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0,
                                  "security": 50, "srcnat": 100}
PROTO_NUMBERS = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "ipv6-icmp"}

KeyPart = Any  # str (address, protocol), int (port), ipaddress network (prefix), tuple (range)


class NftRule:
    """One rule: its chain, handle, JSON expressions and optional comment.

    A rule read from a capture's text may keep only where it is in that text (``src``, ``pos``)
    instead of its decoded expressions: ``expr`` then decodes them again when read (not kept), so
    a 10k-service table does not hold millions of small dicts. What the interpreter and the checks
    need of every rule is worked out while the listing is read (NftChain.facts).
    """

    __slots__ = ("family", "table", "chain", "handle", "comment", "expr", "_src", "_pos", "_text", "_line")

    expr: list[dict]  # the statements as nft -j prints them (decoded again from the text if dropped)

    def __init__(self, family: str, table: str, chain: str, handle: int | None, expr: list[dict],
                 comment: str | None = None, src: str | None = None, pos: int = 0) -> None:
        self.family, self.table, self.chain, self.handle = family, table, chain, handle
        self.comment = comment
        self.expr = expr
        self._src, self._pos = src, pos
        self._text: str | None = None
        self._line: str | None = None

    def __getattr__(self, name: str) -> list[dict]:
        # only reached for a dropped ``expr`` (an unset slot): decode it again, without keeping it
        if name != "expr" or self._src is None:
            raise AttributeError(name)
        item, _end = _DECODE(self._src, self._pos)
        return item["rule"]["expr"]

    def drop_expr(self) -> None:
        """Forget the decoded expressions when the text they were read from is at hand."""
        if self._src is not None:
            try:
                del self.expr
            except AttributeError:
                pass

    @property
    def text(self) -> str:
        """The rule in `nft list` syntax (counters without their values)."""
        if self._text is None:
            from kubectl_proxydoctor.formats.nft_render import render_rule

            self._text = render_rule(self)
        return self._text

    def line(self, prefix: str) -> str:
        """``prefix: text`` (an evidence line); one string for every target that shows it when
        ``prefix`` is the rule's own chain."""
        if prefix != self.chain:
            return f"{prefix}: {self.text}"
        if self._line is None:
            self._line = f"{prefix}: {self.text}"
        return self._line

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NftRule):
            return NotImplemented
        return (self.family, self.table, self.chain, self.handle, self.expr, self.comment) == \
            (other.family, other.table, other.chain, other.handle, other.expr, other.comment)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value (as the dataclass was)

    def __repr__(self) -> str:
        return (f"NftRule(family={self.family!r}, table={self.table!r}, chain={self.chain!r}, "
                f"handle={self.handle!r}, expr={self.expr!r}, comment={self.comment!r})")


_DECODE = json.JSONDecoder().raw_decode


@dataclass(slots=True)
class NftChain:
    """A chain; base chains carry type, hook, priority and policy."""

    family: str
    table: str
    name: str
    handle: int | None = None
    type: str | None = None
    hook: str | None = None
    prio: int | None = None
    policy: str | None = None
    comment: str | None = None
    rules: list[NftRule] = field(default_factory=list)
    # the interpreter's walk of this chain, done while the listing was still being read (see
    # RulesetBuilder's on_chain_done): (the chains the walk used, the result); it holds while
    # those chains are still the table's
    walk: tuple[tuple[NftChain, ...], Any] | None = field(default=None, repr=False, compare=False)
    # what the interpreter and the checks need of the chain's rules, worked out while the listing
    # was read (modes/nftables ChainFacts), so its rules need not keep their decoded expressions
    facts: Any = field(default=None, repr=False, compare=False)

    @property
    def is_base(self) -> bool:
        return self.hook is not None

    def header(self) -> str:
        """`type nat hook prerouting priority dstnat; policy accept;` as nft lists it."""
        if not self.is_base:
            return ""
        text = f"type {self.type} hook {self.hook} priority {priority_text(self.prio, self.hook)};"
        return text + (f" policy {self.policy};" if self.policy else "")


@dataclass(slots=True)
class NftElement:
    """A set or map element: its key parts, its value (maps), comment and timing."""

    key: tuple[KeyPart, ...]
    value: Any = None  # a verdict dict ({"goto": {"target": ...}}, {"drop": None}) or data
    comment: str | None = None
    expires: int | None = None
    timeout: int | None = None

    def key_text(self) -> str:
        return " . ".join(key_part_text(p) for p in self.key)

    def text(self) -> str:
        from kubectl_proxydoctor.formats.nft_render import render_verdict_or_value

        out = self.key_text()
        if self.comment:
            out += f' comment "{self.comment}"'
        if self.value is not None:
            out += f" : {render_verdict_or_value(self.value)}"
        return out


@dataclass
class NftSet:
    """A named set or map (``kind`` "set" or "map") with typed, possibly concatenated keys."""

    family: str
    table: str
    name: str
    kind: str  # "set" | "map"
    key_type: tuple[str, ...]
    data_type: str | None = None  # "verdict" for vmaps
    flags: tuple[str, ...] = ()
    timeout: int | None = None  # seconds
    size: int | None = None
    comment: str | None = None
    elements: list[NftElement] = field(default_factory=list)
    _index: dict | None = field(default=None, repr=False, compare=False)

    def lookup(self, key: tuple[KeyPart, ...]) -> NftElement | None:
        """The element matching ``key`` (exact parts, or prefixes/ranges when the set has them)."""
        if self._index is None:
            self._index = {}
            for el in self.elements:
                if all(isinstance(p, (str, int)) for p in el.key):
                    self._index.setdefault(el.key, el)
        hit = self._index.get(key)
        if hit is not None:
            return hit
        for el in self.elements:
            if len(el.key) == len(key) and all(part_matches(p, k) for p, k in zip(el.key, key, strict=True)):
                return el
        return None


@dataclass
class NftTable:
    """One table with its chains and its named sets and maps."""

    family: str
    name: str
    handle: int | None = None
    comment: str | None = None
    chains: dict[str, NftChain] = field(default_factory=dict)
    sets: dict[str, NftSet] = field(default_factory=dict)
    others: list[dict] = field(default_factory=list)  # flowtables, counters, ... kept verbatim

    @property
    def key(self) -> tuple[str, str]:
        return (self.family, self.name)

    @property
    def label(self) -> str:
        return f"table {self.family} {self.name}"

    def base_chains(self, hook: str | None = None) -> list[NftChain]:
        return [c for c in self.chains.values() if c.is_base and (hook is None or c.hook == hook)]


@dataclass
class NftRuleset:
    """Every table of one `nft -j` document, plus the nft version that printed it."""

    tables: dict[tuple[str, str], NftTable] = field(default_factory=dict)
    version: str | None = None
    schema_version: int | None = None
    source: str = "nft-ruleset.json"
    # what the interpreter could not follow in each table, by (family, name) (modes/nftables)
    problems: dict[tuple[str, str], list[str]] = field(default_factory=dict, repr=False, compare=False)

    def table(self, family: str, name: str) -> NftTable | None:
        return self.tables.get((family, name))

    def kube_proxy_tables(self) -> list[NftTable]:
        return [t for t in (self.table("ip", "kube-proxy"), self.table("ip6", "kube-proxy")) if t]


def priority_text(prio: int | None, hook: str | None = None) -> str:
    """A priority as nft lists it: a standard name, 'name - 10' (within 10), or the number.

    ``dstnat`` is only a name at the prerouting hook and ``srcnat`` only at postrouting.
    """
    if prio is None:
        return "?"
    best = None
    for name, value in PRIORITY_NAMES.items():
        if (name == "dstnat" and hook != "prerouting") or (name == "srcnat" and hook != "postrouting"):
            continue
        if abs(prio - value) <= 10 and (best is None or abs(prio - value) < abs(prio - best[1])):
            best = (name, value)
    if best is None:
        return str(prio)
    name, value = best
    if prio == value:
        return name
    return f"{name} {'+' if prio > value else '-'} {abs(prio - value)}"


def key_part_text(part: KeyPart) -> str:
    if isinstance(part, tuple):
        return f"{part[0]}-{part[1]}"
    return str(part)


def part_matches(pattern: KeyPart, value: KeyPart) -> bool:
    """Whether one element key part (literal, prefix or range) matches one packet value."""
    if isinstance(pattern, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        try:
            return ipaddress.ip_address(str(value)) in pattern
        except ValueError:
            return False
    if isinstance(pattern, tuple):
        lo, hi = pattern
        try:
            if isinstance(lo, int):
                return lo <= int(value) <= hi
            addr, first, last = (ipaddress.ip_address(str(v)) for v in (value, lo, hi))
            return addr.version == first.version == last.version and int(first) <= int(addr) <= int(last)
        except (ValueError, TypeError):
            return False
    return pattern == value



def is_ip_text(text: str) -> bool:
    """True when ``text`` is an IPv4 or IPv6 address (not a name such as a protocol)."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False
