"""Netlink attributes and nftables values as nft prints them in JSON (nft_nlexpr and nft_nlread).

Datatypes are kube-proxy's (addresses, protocols, ports, marks, ct state/status bits, fib address
types, integers); any other value raises ``Undecoded`` (the caller falls back to nft).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Json = Any


_NLA = struct.Struct("=HH")


class Undecoded(Exception):
    """Something nft's own listing would have to show (this decoder gives up)."""


def attrs(data: bytes, off: int = 0) -> dict[int, bytes]:
    """Netlink attributes of ``data`` from ``off`` (type without flag bits -> payload)."""
    out: dict[int, bytes] = {}
    end = len(data)
    unpack = _NLA.unpack_from
    while off + 4 <= end:
        length, kind = unpack(data, off)
        if length < 4:
            raise Undecoded("malformed netlink attribute")
        out[kind & 0x3FFF] = data[off + 4:off + length]
        off += (length + 3) & ~3
    return out


def attr_list(data: bytes) -> list[bytes]:
    """The payloads of a nested list (NFTA_LIST_ELEM ...), in order."""
    out = []
    off = 0
    while off + 4 <= len(data):
        length, _kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            raise Undecoded("malformed netlink list")
        out.append(data[off + 4:off + length])
        off += (length + 3) & ~3
    return out


def be32(b: bytes) -> int:
    return int(struct.unpack(">I", b)[0])


def be64(b: bytes) -> int:
    return int(struct.unpack(">Q", b)[0])


def only(a: dict[int, bytes], allowed: set[int], what: str) -> None:
    if not allowed.issuperset(a):
        raise Undecoded(f"{what}: attribute(s) {sorted(set(a) - allowed)} not decoded")


# -- values -------------------------------------------------------------------------------------

PROTOS = {6: "tcp", 17: "udp", 132: "sctp"}
CT_STATE = {1: "invalid", 2: "established", 4: "related", 8: "new", 64: "untracked"}
CT_STATUS = {1: "expected", 2: "seen-reply", 4: "assured", 8: "confirmed", 16: "snat", 32: "dnat",
             512: "dying"}
FIB_TYPES = {0: "unspec", 1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
             6: "blackhole", 7: "unreachable", 8: "prohibit"}


def _ipv4(b: bytes) -> str:
    if len(b) != 4:
        raise Undecoded("ipv4_addr of unexpected length")
    return socket.inet_ntop(socket.AF_INET, b)


def _ipv6(b: bytes) -> str:
    if len(b) != 16:
        raise Undecoded("ipv6_addr of unexpected length")
    return socket.inet_ntop(socket.AF_INET6, b)  # as nft prints it (it calls inet_ntop)


def _proto(b: bytes) -> str:
    if len(b) != 1 or b[0] not in PROTOS:
        raise Undecoded(f"inet_proto {b.hex()}")
    return PROTOS[b[0]]


def service_number(b: bytes) -> int:
    if len(b) != 2:
        raise Undecoded("inet_service of unexpected length")
    return int.from_bytes(b, "big")


def _host_int(b: bytes) -> int:
    return int.from_bytes(b, "little")


def _bits(names: dict[int, str]) -> Callable[[bytes], str]:
    def decode(b: bytes) -> str:
        value = int.from_bytes(b, "little")
        if value not in names:
            raise Undecoded(f"flag value {value:#x} not a single known flag")
        return names[value]
    return decode


def _fib_type(b: bytes) -> str:
    value = int.from_bytes(b, "little")
    if value not in FIB_TYPES:
        raise Undecoded(f"fib type {value}")
    return FIB_TYPES[value]


@dataclass(frozen=True)
class Kind:
    """A datatype: its nft name, its length in bytes and how a value of it prints in JSON."""

    name: str
    size: int
    show: Callable[[bytes], Json]


IPV4 = Kind("ipv4_addr", 4, _ipv4)
IPV6 = Kind("ipv6_addr", 16, _ipv6)
PROTO = Kind("inet_proto", 1, _proto)
SERVICE = Kind("inet_service", 2, service_number)
MARK = Kind("mark", 4, _host_int)
INTEGER = Kind("integer", 4, _host_int)
CT_STATE_KIND = Kind("ct_state", 4, _bits(CT_STATE))
CT_STATUS_KIND = Kind("ct_status", 4, _bits(CT_STATUS))
FIB_KIND = Kind("fib_addrtype", 4, _fib_type)
# nft's datatype numbers (src/datatype.h) of the set key/data types kube-proxy uses
SET_TYPES = {7: IPV4, 8: IPV6, 12: PROTO, 13: SERVICE, 19: MARK}
TYPE_BITS = 6
VERDICT_TYPE = 1


def set_kinds(type_id: int) -> list[Kind]:
    """A set's key or data type (concatenations pack TYPE_BITS per part, the first highest)."""
    if type_id in SET_TYPES:
        return [SET_TYPES[type_id]]
    kinds: list[Kind] = []
    while type_id:
        part = type_id & ((1 << TYPE_BITS) - 1)
        if part not in SET_TYPES:
            raise Undecoded(f"set type {type_id} (part {part})")
        kinds.insert(0, SET_TYPES[part])
        type_id >>= TYPE_BITS
    if len(kinds) < 2:
        raise Undecoded(f"set type {type_id}")
    return kinds


def show_value(kinds: list[Kind], data: bytes) -> Json:
    """A (possibly concatenated: each part padded to 4 bytes) value as nft prints it."""
    if len(kinds) == 1:
        kind = kinds[0]
        if len(data) != kind.size and not (kind.size < 4 and len(data) == 4):
            raise Undecoded(f"{kind.name} value of {len(data)} bytes")
        return kind.show(data[:kind.size])
    parts = []
    off = 0
    for kind in kinds:
        parts.append(kind.show(data[off:off + kind.size]))
        off += (kind.size + 3) & ~3
    if off != len(data):
        raise Undecoded("concatenated value of unexpected length")
    return {"concat": parts}


VERDICTS = {0: "drop", 1: "accept", -1: "continue", -3: "jump", -4: "goto", -5: "return"}


def verdict(nested: bytes) -> Json:
    """NFTA_DATA_VERDICT's payload as a JSON verdict statement."""
    a = attrs(nested)
    only(a, {1, 2}, "verdict")
    code = int(struct.unpack(">i", a[1])[0])
    name = VERDICTS.get(code)
    if name is None:
        raise Undecoded(f"verdict {code}")
    if name in ("jump", "goto"):
        if 2 not in a:
            raise Undecoded("jump without a chain")
        return {name: {"target": cstr(a[2])}}
    if 2 in a:
        raise Undecoded("verdict with a chain")
    return {name: None}


def data_value(nested: bytes) -> bytes:
    """NFTA_DATA_VALUE's payload: the one attribute of ``nested`` (Undecoded if it holds more)."""
    if len(nested) >= 4:  # the usual case, read without building a table of attributes
        length, kind = _NLA.unpack_from(nested, 0)
        if kind & 0x3FFF == 1 and length >= 4 and (length + 3) & ~3 >= len(nested):
            return nested[4:length]
    a = attrs(nested)
    if set(a) != {1}:
        raise Undecoded("data that is not a plain value")
    return a[1]


def cstr(b: bytes) -> str:
    return b.rstrip(b"\0").decode("utf-8")


# -- sets, as the rules see them -----------------------------------------------------------------


@dataclass
class SetInfo:
    """What a rule needs of a set: name, key/data kinds, and (anonymous sets) its elements."""

    name: str
    key: list[Kind]
    key_len: int
    data: list[Kind] | None = None  # None: a set; [] : a verdict map
    anonymous: bool = False
    timeout: int = 0  # ms, the set's default for its elements
    elements: list[Json] = field(default_factory=list)

    def ref(self) -> Json:
        if self.anonymous:
            return {"set": self.elements}
        return f"@{self.name}"
