"""One nftables table read over netlink (read-only), as the items ``nft -j list table`` prints.

Why: nft's listing asks the kernel for every rule in one dump, which the kernel answers in time
quadratic in the table's size (issue 19); asking chain by chain is linear. What: the table, its
sets and maps with their elements, its chains, then each chain's rules (one GETRULE dump per
chain), decoded by nft_nlexpr. Exact or nothing: anything not decoded raises ``Undecoded`` (the
collector then lists the table with nft, saying why), and a ruleset that changed while it was read
(generation id) is read again, then given up.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from kubectl_proxydoctor.collect import nft_netlink as nl
from kubectl_proxydoctor.collect.nft_nlexpr import RuleDecoder
from kubectl_proxydoctor.collect.nft_nlfetch import Fetcher
from kubectl_proxydoctor.collect.nft_nlvalues import (
    INTEGER,
    IPV4,
    IPV6,
    SET_TYPES,
    Kind,
    SetInfo,
    Undecoded,
    attr_list,
    attrs,
    be32,
    be64,
    cstr,
    data_value,
    only,
    set_kinds,
    show_value,
    verdict,
)

Json = Any
T = TypeVar("T")
FAMILY_NUMBERS = {"ip": 2, "ip6": 10}
HOOKS = {0: "prerouting", 1: "input", 2: "forward", 3: "output", 4: "postrouting"}
SET_ANONYMOUS, SET_CONSTANT, SET_INTERVAL, SET_MAP, SET_TIMEOUT, SET_EVAL = 1, 2, 4, 8, 0x10, 0x20
DATA_VERDICT = 0xFFFFFF00
HOST_ENDIAN = 1
ATTEMPTS = 2
# set userdata records nft 1.0.6 writes for kube-proxy's ``type`` declarations (not printed): the
# type-of records of a concatenation ending in inet_service / of verdict data, no data interval
KNOWN_USERDATA = {3: b"\x00\x04\r\x00\x00\x00\x01\x00", 4: b"\x00\x04\x01\x00\x00\x00\x01\x00",
                  6: b"\x00\x00\x00\x00"}


class Changed(Exception):
    """The ruleset changed while it was read (every attempt)."""


def read_table(family: str, name: str, netns: str | None = None) -> list[Json] | None:
    """The items of table ``family name`` (table, sets and maps, chains, rules) in nft's JSON, or
    None when there is no such table. ``Undecoded``: something nft would show that this reader
    does not decode; ``nl.NetlinkError``: the kernel refused (EPERM without CAP_NET_ADMIN) or the
    ruleset kept changing."""
    return read_table_with(family, name, list, netns)


def read_table_with(family: str, name: str, consume: Callable[[Iterator[Json]], T],
                    netns: str | None = None) -> T | None:
    """``consume(items)`` of a consistent read of table ``family name`` (see ``read_table``): the
    items come one at a time as they are decoded, so a consumer that turns each into text holds
    no table of items. A read the ruleset changed under is consumed again from the start."""
    if family not in FAMILY_NUMBERS:
        raise Undecoded(f"family {family}")
    with nl.open_socket(netns) as sock, Fetcher(netns) as fetcher:
        for _ in range(ATTEMPTS):
            before = nl.generation(sock)
            items = _read(sock, fetcher, FAMILY_NUMBERS[family], family, name)
            result = None if items is None else consume(items)
            if nl.generation(sock) == before:
                return result
    raise nl.NetlinkError(11, "nftables kept changing while it was read")


def _request(msg: int, family: int, *attributes: tuple[int, str]) -> bytes:
    extra = b"".join(nl.attribute(kind, value.encode() + b"\0") for kind, value in attributes)
    return nl.read_only_request(msg, family, 1, extra)


def _dump(sock: socket.socket, msg: int, family: int, *attributes: tuple[int, str]) -> list[dict[int, bytes]]:
    return [attrs(body, 4) for body in nl.dump_on(sock, _request(msg, family, *attributes))]


def _read(sock: socket.socket, fetcher: Fetcher, fam: int, family: str, name: str) -> Iterator[Json] | None:
    """The table's items as they are decoded, or None when there is no such table."""
    tables = [t for t in _dump(sock, nl.NFT_MSG_GETTABLE, fam) if cstr(t.get(1, b"")) == name]
    if not tables:
        return None
    return _items(sock, fetcher, fam, family, name, tables[0])


def _items(sock: socket.socket, fetcher: Fetcher, fam: int, family: str, name: str,
           table: dict[int, bytes]) -> Iterator[Json]:
    only(table, {1, 2, 3, 4, 5, 6, 7}, "table")
    if be32(table.get(2, b"\0\0\0\0")) != 0:
        raise Undecoded("table flags")
    for msg, what in ((nl.NFT_MSG_GETOBJ, "stateful objects"), (nl.NFT_MSG_GETFLOWTABLE, "flowtables")):
        if any(cstr(o.get(1, b"")) == name for o in _dump(sock, msg, fam, (1, name))):
            raise Undecoded(f"table holds {what}")
    yield {"table": {"family": family, "name": name, "handle": be64(table[4])}}
    sets: dict[str, SetInfo] = {}
    found = [s for s in _dump(sock, nl.NFT_MSG_GETSET, fam, (1, name)) if cstr(s[1]) == name]
    # every set's elements are asked for at once, on the fetcher's sockets (nft_nlfetch)
    elements = fetcher.dumps(_request(nl.NFT_MSG_GETSETELEM, fam, (1, name), (2, cstr(s[2])))
                             for s in found)
    for s, bodies in zip(found, elements, strict=True):
        info, item = _set(s, family, name, bodies)
        sets[info.name] = info
        if item is not None:
            yield item
    chains = [c for c in _dump(sock, nl.NFT_MSG_GETCHAIN, fam, (1, name)) if cstr(c[1]) == name]
    for c in chains:
        yield _chain(c, family, name)
    decoder = RuleDecoder(family, sets)
    names = [cstr(c[3]) for c in chains]
    rules = fetcher.dumps(_request(nl.NFT_MSG_GETRULE, fam, (1, name), (2, chain)) for chain in names)
    for chain, bodies in zip(names, rules, strict=True):
        for body in bodies:
            yield _rule(attrs(body, 4), family, name, chain, decoder)


def _chain(c: dict[int, bytes], family: str, table: str) -> Json:
    only(c, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, "chain")
    out: dict[str, Json] = {"family": family, "table": table, "name": cstr(c[3]), "handle": be64(c[2])}
    flags = be32(c[10]) if 10 in c else 0
    if 4 not in c:
        if flags or 5 in c or 7 in c:
            raise Undecoded("chain flags")
        return {"chain": out}
    if flags not in (0, 1):
        raise Undecoded(f"base chain flags {flags}")
    hook = attrs(c[4])
    only(hook, {1, 2}, "chain hook")
    num = be32(hook[1])
    if num not in HOOKS:
        raise Undecoded(f"hook {num}")
    policy = {0: "drop", 1: "accept"}.get(be32(c[5])) if 5 in c else None
    if policy is None:
        raise Undecoded("chain policy")
    out.update({"type": cstr(c[7]), "hook": HOOKS[num], "prio": int(struct.unpack(">i", hook[2])[0]),
                "policy": policy})
    return {"chain": out}


def _tlv(data: bytes) -> dict[int, bytes]:
    """nftnl userdata: (type u8, length u8, value) records."""
    out = {}
    off = 0
    while off + 2 <= len(data):
        kind, length = data[off], data[off + 1]
        out[kind] = data[off + 2:off + 2 + length]
        off += 2 + length
    return out


def _kinds(type_id: int, size: int, order: bytes | None) -> list[Kind]:
    if type_id == 4 and size == 4 and order == struct.pack("=I", HOST_ENDIAN):
        return [INTEGER]
    if type_id == 4:
        raise Undecoded("integer set type")
    kinds = set_kinds(type_id)
    if sum((k.size + 3) & ~3 for k in kinds) != size and not (len(kinds) == 1 and kinds[0].size == size):
        raise Undecoded(f"set type {type_id} of length {size}")
    return kinds


def _set(s: dict[int, bytes], family: str, table: str, bodies: list[bytes]) -> tuple[SetInfo, Json]:
    """A set or map (its item, None for an anonymous one) and what rules need of it, from its
    GETSET attributes and the bodies of its element dump."""
    # 19, 20: the backend type and element count (newer kernels; nft does not print them)
    only(s, {1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 13, 14, 16, 19, 20}, "set")
    name = cstr(s[2])
    flags = be32(s[3]) if 3 in s else 0
    if flags & ~(SET_ANONYMOUS | SET_CONSTANT | SET_MAP | SET_TIMEOUT | SET_EVAL | SET_INTERVAL):
        raise Undecoded(f"set {name}: flags {flags:#x}")
    if flags & SET_INTERVAL and flags != SET_ANONYMOUS | SET_CONSTANT | SET_INTERVAL:
        raise Undecoded(f"interval set {name} with flags {flags:#x}")
    user = _tlv(s.get(13, b""))
    if flags == SET_ANONYMOUS | SET_CONSTANT | SET_INTERVAL:
        # an address set literal of a rule (key type checked below): merge and type-of records
        # only say how nft built it
        user = {k: v for k, v in user.items() if k not in (2, 3)}
    unknown = any(user.get(k, known) != known for k, known in KNOWN_USERDATA.items())
    if set(user) - {0, 1, 3, 4, 6, 7} or unknown:
        raise Undecoded(f"set {name}: userdata {sorted(user)}")
    key_len = be32(s[5])
    key = _kinds(be32(s[4]), key_len, user.get(0))
    data: list[Kind] | None = None
    if flags & SET_MAP:
        data_type = be32(s[6])
        data = [] if data_type == DATA_VERDICT else _kinds(data_type, be32(s[7]), user.get(1))
    info = SetInfo(name, key, key_len, data, anonymous=bool(flags & SET_ANONYMOUS),
                   timeout=be64(s[11]) if 11 in s else 0)
    if flags & SET_INTERVAL:
        if 11 in s or data is not None or key not in ([IPV4], [IPV6]):
            raise Undecoded(f"interval set {name}")
        info.elements = _intervals(bodies, info)
        return info, None
    elements = _elements(bodies, info)
    if info.anonymous:
        if not flags & SET_CONSTANT or 11 in s:
            raise Undecoded(f"anonymous set {name}")
        if key != [INTEGER]:
            raise Undecoded(f"anonymous set {name} keyed by {[k.name for k in key]}")
        info.elements = sorted(elements, key=lambda e: e[0] if isinstance(e, list) else e)  # as nft
        return info, None
    if flags & SET_CONSTANT:
        raise Undecoded(f"constant set {name}")
    out: dict[str, Json] = {"family": family, "name": name, "table": table,
                            "type": _type_json(key), "handle": be64(s[16])}
    if 7 in user:
        out["comment"] = cstr(user[7])
    if data:
        raise Undecoded(f"map {name} of data (kube-proxy's named maps are verdict maps)")
    if data is not None:
        out["map"] = "verdict"
    if flags & SET_TIMEOUT:
        out["flags"] = ["timeout"]
    if 11 in s:
        timeout = be64(s[11])
        if timeout % 1000:
            raise Undecoded(f"set {name}: timeout in ms")
        out["timeout"] = timeout // 1000
    if 9 in s:
        desc = attrs(s[9])
        only(desc, {1, 2}, "set description")
        if 1 in desc:
            out["size"] = be32(desc[1])
    if elements:
        out["elem"] = elements
    return info, {"map" if data is not None else "set": out}


def _type_json(kinds: list[Kind]) -> Json:
    names = [k.name for k in kinds]
    if any(n not in {k.name for k in SET_TYPES.values()} for n in names):
        raise Undecoded(f"set type {names}")
    return names[0] if len(names) == 1 else names


def _elements(bodies: list[bytes], info: SetInfo) -> list[Json]:
    out: list[Json] = []
    for msg in map(_body_attrs, bodies):
        only(msg, {1, 2, 3, 4}, "element list")
        for raw in attr_list(msg.get(3, b"")):
            out.append(_element(attrs(raw), info))
    return out


def _body_attrs(body: bytes) -> dict[int, bytes]:
    return attrs(body, 4)  # after nfgenmsg


def _intervals(bodies: list[bytes], info: SetInfo) -> list[Json]:
    """An anonymous interval set of addresses as nft prints it: ascending; a single address, a
    prefix, or a range (the kernel keeps each as a start and an exclusive end element)."""
    bounds: list[tuple[int, int]] = []  # (key, 1 for an end)
    for msg in map(_body_attrs, bodies):
        only(msg, {1, 2, 3, 4}, "element list")
        for raw in attr_list(msg.get(3, b"")):
            e = attrs(raw)
            only(e, {1, 3}, f"element of {info.name}")
            flag = be32(e[3]) if 3 in e else 0
            if flag not in (0, 1):
                raise Undecoded(f"element flags in {info.name}")
            bounds.append((int.from_bytes(data_value(e[1]), "big"), flag))
    kind = info.key[0]
    top = 1 << (8 * kind.size)
    bounds.sort()
    if bounds and bounds[0] == (0, 1):
        bounds.pop(0)  # the marker some kernels keep before a first range not starting at 0
    out: list[Json] = []
    i = 0
    while i < len(bounds):
        start, flag = bounds[i]
        if flag != 0:
            raise Undecoded(f"interval end without a start in {info.name}")
        if i + 1 < len(bounds):
            end, end_flag = bounds[i + 1]
            if end_flag != 1:
                raise Undecoded(f"interval start without an end in {info.name}")
            i += 2
        else:
            end, i = top, i + 1
        out.append(_interval(kind, start, end))
    return out


def _interval(kind: Kind, start: int, end: int) -> Json:
    size = end - start
    show = kind.show
    addr = show(start.to_bytes(kind.size, "big"))
    if size == 1:
        return addr
    if size & (size - 1) == 0 and start % size == 0:
        return {"prefix": {"addr": addr, "len": 8 * kind.size - size.bit_length() + 1}}
    return {"range": [addr, show((end - 1).to_bytes(kind.size, "big"))]}


def _element(e: dict[int, bytes], info: SetInfo) -> Json:
    only(e, {1, 2, 3, 4, 5, 6, 8}, f"element of {info.name}")
    if 3 in e and be32(e[3]) != 0:
        raise Undecoded(f"element flags in {info.name}")
    key = show_value(info.key, data_value(e[1]))
    user = _tlv(e.get(6, b""))
    if set(user) - {0}:
        raise Undecoded(f"element userdata in {info.name}")
    extra: dict[str, Json] = {}
    if 0 in user:
        extra["comment"] = cstr(user[0])
    if 4 in e and be64(e[4]) != info.timeout:  # nft prints an element's own timeout only
        timeout = be64(e[4])
        if timeout % 1000:
            raise Undecoded(f"element timeout in ms in {info.name}")
        extra["timeout"] = timeout // 1000
    if 5 in e and be64(e[5]) // 1000:
        extra["expires"] = be64(e[5]) // 1000
    if extra:
        key = {"elem": {"val": key, **extra}}
    if info.data is None:
        if 2 in e:
            raise Undecoded(f"element data in set {info.name}")
        return key
    nested = attrs(e[2])
    if info.data == []:
        if set(nested) != {2}:
            raise Undecoded(f"element of verdict map {info.name}")
        return [key, verdict(nested[2])]
    return [key, show_value(info.data, data_value(e[2]))]


def _rule(r: dict[int, bytes], family: str, table: str, chain: str, decoder: RuleDecoder) -> Json:
    only(r, {1, 2, 3, 4, 6, 7, 8}, f"rule in {chain}")
    out: dict[str, Json] = {"family": family, "table": table, "chain": chain, "handle": be64(r[3])}
    user = _tlv(r.get(7, b""))
    if set(user) - {0}:
        raise Undecoded(f"rule userdata in {chain}")
    if 0 in user:
        out["comment"] = cstr(user[0])
    try:
        out["expr"] = decoder.decode(r.get(4, b""))
    except Undecoded as e:
        raise Undecoded(f"rule {out['handle']} in {chain}: {e}") from e
    return {"rule": out}
