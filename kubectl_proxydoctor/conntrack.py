"""Parse `conntrack -L` text (plain or ``-o extended``) into entries.

An extended line looks like::

    ipv4 2 udp 17 119 src=172.30.0.2 dst=10.96.100.16 sport=40001 dport=53 \
        src=10.244.0.13 dst=10.244.0.1 sport=5353 dport=19239 [ASSURED] mark=0 use=1

The first ``src=...`` group is the original direction, the second the reply direction: for a
DNATed connection the reply source is the endpoint the connection was sent to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

from kubectl_proxydoctor.errors import ParseError

_FAMILIES = {"ipv4": 4, "ipv6": 6}
_TUPLE_KEYS = ("src", "dst", "sport", "dport", "type", "code", "id", "packets", "bytes")
# the common shape (port-based protocols), matched in one go; anything else takes the general path
_FAST = re.compile(
    r"(?:(ipv[46])\s+\d+\s+)?(tcp|udp|sctp|udplite|dccp)\s+\d+\s+(\d+)\s+(?:([A-Z_]+)\s+)?"
    r"src=(\S+)\s+dst=(\S+)\s+sport=(\d+)\s+dport=(\d+)\s+(?:packets=\d+\s+bytes=\d+\s+)?"
    r"(\[UNREPLIED\]\s+)?src=(\S+)\s+dst=(\S+)\s+sport=(\d+)\s+dport=(\d+)(\s.*)?")


class Tuple(NamedTuple):
    """One direction of a connection."""

    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None


@dataclass(slots=True)
class ConntrackEntry:
    """One conntrack table entry."""

    proto: str  # "tcp", "udp", "sctp", "icmp", ...
    original: Tuple
    reply: Tuple
    family: int | None = None  # 4 | 6 (extended output only)
    timeout: int | None = None
    state: str | None = None  # TCP/SCTP state, e.g. ESTABLISHED
    flags: set[str] = field(default_factory=set)  # ASSURED, UNREPLIED, ...
    mark: int | None = None
    zone: int | None = None
    line: int = 0
    text: str = ""

    @property
    def dnat(self) -> bool:
        """True when the reply comes from somewhere else than the original destination."""
        return self.reply.src != self.original.dst or (
            self.reply.sport is not None and self.reply.sport != self.original.dport)


def _int(value: str, key: str, source: str, number: int) -> int:
    try:
        return int(value, 0)
    except ValueError as e:
        raise ParseError(source, f"{key}={value!r} is not a number", number) from e


def _fast(line: str, source: str, number: int) -> ConntrackEntry | None:
    m = _FAST.fullmatch(line)
    if m is None:
        return None
    (fam, proto, timeout, state, osrc, odst, osport, odport, unreplied,
     rsrc, rdst, rsport, rdport, tail) = m.groups()
    flags = {"UNREPLIED"} if unreplied else set()
    mark = zone = None
    for word in (tail or "").split():
        if word[0] == "[" and word[-1] == "]":
            flags.add(word[1:-1])
        elif word.startswith("mark="):
            mark = _int(word[5:], "mark", source, number)
        elif word.startswith("zone="):
            zone = _int(word[5:], "zone", source, number)
        elif "=" not in word:
            return None  # let the general path name the problem
    return ConntrackEntry(
        proto, Tuple(osrc, odst, int(osport), int(odport)), Tuple(rsrc, rdst, int(rsport), int(rdport)),
        _FAMILIES[fam] if fam else None, int(timeout), state, flags, mark, zone, number, line,
    )


def parse_line(line: str, source: str = "conntrack.txt", number: int = 0) -> ConntrackEntry:
    """One `conntrack -L` line; ParseError names the line when it is not in that format."""
    line = line.strip()
    return _fast(line, source, number) or parse_line_general(line, source, number)


def parse_line_general(line: str, source: str = "conntrack.txt", number: int = 0) -> ConntrackEntry:
    """The word-by-word parser every line shape goes through (the fast path covers the common one)."""
    line = line.strip()
    words = line.split()
    pos = 0
    family = None
    if words and words[0] in _FAMILIES:
        if len(words) < 2 or not words[1].isdigit():
            raise ParseError(source, f"expected the layer-3 protocol number after {words[0]}", number)
        family = _FAMILIES[words[0]]
        pos = 2
    if len(words) < pos + 3 or "=" in words[pos] or not words[pos + 1].isdigit():
        raise ParseError(source, f"not a conntrack entry: {line[:80]!r}", number)
    proto = words[pos]
    pos += 2
    timeout = None
    if pos < len(words) and words[pos].isdigit():
        timeout = int(words[pos])
        pos += 1
    state = None
    if pos < len(words) and "=" not in words[pos] and not words[pos].startswith("["):
        state = words[pos]
        pos += 1
    tuples: list[dict[str, str]] = []
    flags: set[str] = set()
    extras: dict[str, str] = {}
    for word in words[pos:]:
        if word.startswith("[") and word.endswith("]"):
            flags.add(word[1:-1])
            continue
        key, sep, value = word.partition("=")
        if not sep:
            raise ParseError(source, f"unexpected word {word!r}", number)
        if key == "src" and len(tuples) < 2 and (not tuples or "src" in tuples[-1]):
            tuples.append({})
        if key in _TUPLE_KEYS and tuples and key not in tuples[-1]:
            tuples[-1][key] = value
        else:
            extras[key] = value
    if len(tuples) != 2 or any("dst" not in t for t in tuples):
        raise ParseError(source, "expected an original and a reply tuple (src= dst= twice)", number)

    def make(t: dict[str, str]) -> Tuple:
        sport = _int(t["sport"], "sport", source, number) if "sport" in t else None
        dport = _int(t["dport"], "dport", source, number) if "dport" in t else None
        return Tuple(t["src"], t["dst"], sport, dport)

    return ConntrackEntry(
        proto=proto, original=make(tuples[0]), reply=make(tuples[1]), family=family, timeout=timeout,
        state=state, flags=flags,
        mark=_int(extras["mark"], "mark", source, number) if "mark" in extras else None,
        zone=_int(extras["zone"], "zone", source, number) if "zone" in extras else None,
        line=number, text=line,
    )


def parse_conntrack(text: str, source: str = "conntrack.txt",
                    proto: str | None = None) -> list[ConntrackEntry]:
    """Every entry of `conntrack -L [-o extended]` output (only ``proto``'s when given).

    The trailing summary line is ignored. With ``proto``, lines of other protocols are skipped
    unparsed (a quick pre-filter for large tables).
    """
    entries: list[ConntrackEntry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("conntrack v"):
            continue
        if proto is not None:
            head = stripped.split(None, 3)
            if len(head) >= 3 and (head[2] if head[0] in _FAMILIES else head[0]) != proto:
                continue
        entries.append(parse_line(stripped, source, number))
    return entries
