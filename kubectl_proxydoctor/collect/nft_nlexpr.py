"""kube-proxy's nftables rule expressions, decoded from netlink into the JSON ``nft -j`` prints.

Exact or nothing: an expression, attribute, register use or value this module has not been
proven on (tests/test_nft_nlread.py compares it with nft's own listing) raises ``Undecoded``, and
the caller falls back to nft for the whole table. The vocabulary is kube-proxy's
(pkg/proxy/nftables): payload/meta/ct/fib/numgen loads matched by cmp, bitwise and lookups
(plain, concatenated, maps and verdict maps, named or anonymous), immediate verdicts and values,
dnat (addresses or maps of addr . port), masquerade, reject, counter, dynset update.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubectl_proxydoctor.collect.nft_nlvalues import (
    CT_STATE_KIND,
    CT_STATUS_KIND,
    FIB_KIND,
    INTEGER,
    IPV4,
    IPV6,
    MARK,
    PROTO,
    SERVICE,
    Json,
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
    service_number,
    verdict,
)

# -- rules -----------------------------------------------------------------------------------------

# payload (base, offset, length) -> (protocol, field, kind) by table family
NETWORK = 1
TRANSPORT = 2
FIELDS = {
    "ip": {(NETWORK, 12): ("ip", "saddr", IPV4), (NETWORK, 16): ("ip", "daddr", IPV4)},
    "ip6": {(NETWORK, 8): ("ip6", "saddr", IPV6), (NETWORK, 24): ("ip6", "daddr", IPV6)},
}
META_KEYS = {3: ("mark", MARK), 16: ("l4proto", PROTO)}
CT_KEYS = {0: ("state", CT_STATE_KIND), 2: ("status", CT_STATUS_KIND)}


@dataclass
class Loaded:
    """A register's content: the JSON of the expression loaded, its kind, its length, and (a
    payload load shorter than its field, or masked) the prefix it stands for."""

    expr: Json
    kind: Kind | None
    length: int
    prefix_field: Kind | None = None  # an address field loaded in part: a prefix match follows
    mask: bytes | None = None
    op: str | None = None  # "&", "|", "^" applied by a bitwise
    operand: bytes | None = None
    is_meta_l4proto: bool = False
    dependency: Json = None  # the ``meta l4proto X`` match nft folds into ``X dport``


def slot(reg: int) -> int:
    """A register number as a 32-bit slot (NFT_REG_1..4 are 16 bytes: 4 slots each)."""
    if 1 <= reg <= 4:
        return (reg - 1) * 4
    if 8 <= reg <= 23:
        return reg - 8
    raise Undecoded(f"register {reg}")


class RuleDecoder:
    """Decodes one rule's expression list into nft's JSON statements."""

    def __init__(self, family: str, sets: dict[str, SetInfo]) -> None:
        if family not in FIELDS:
            raise Undecoded(f"family {family}")
        self.family = family
        self.sets = sets

    def decode(self, expressions: bytes) -> list[Json]:
        self.regs: dict[int, Loaded] = {}
        self.out: list[Json] = []
        self.l4_context = False
        for item in attr_list(expressions):
            a = attrs(item)
            only(a, {1, 2}, "expression")
            name = cstr(a[1])
            handler = getattr(self, f"_{name}", None)
            if handler is None:
                raise Undecoded(f"expression {name}")
            handler(attrs(a.get(2, b"")))
        if self.regs:
            raise Undecoded("a loaded register no statement used")
        return self.out

    # loads
    def _store(self, reg: int, loaded: Loaded) -> None:
        s = slot(reg)
        if s in self.regs:
            raise Undecoded("a register loaded again before it was used")
        self.regs[s] = loaded

    def _take(self, reg: int) -> Loaded:
        s = slot(reg)
        if s not in self.regs:
            raise Undecoded("a register read before it was loaded")
        return self.regs.pop(s)

    def _payload(self, a: dict[int, bytes]) -> None:
        only(a, {1, 2, 3, 4}, "payload")
        base, offset, length = be32(a[2]), be32(a[3]), be32(a[4])
        if base == TRANSPORT and offset == 2 and length == 2:
            loaded = Loaded({"payload": {"protocol": "th", "field": "dport"}}, SERVICE, 2)
            if self.l4_context:
                # nft prints ``meta l4proto tcp th dport 80`` as ``tcp dport 80`` when the
                # protocol match comes just before
                last = self.out[-1] if self.out else None
                match = last.get("match") if isinstance(last, dict) else None
                if not (match and match["op"] == "==" and match["left"] == {"meta": {"key": "l4proto"}}):
                    raise Undecoded("transport payload apart from its protocol match")
                loaded.expr = {"payload": {"protocol": match["right"], "field": "dport"}}
                loaded.dependency = last
            self._store(be32(a[1]), loaded)
            return
        known = FIELDS[self.family].get((base, offset))
        if known is None:
            raise Undecoded(f"payload base {base} offset {offset}")
        proto, name, kind = known
        expr = {"payload": {"protocol": proto, "field": name}}
        if length == kind.size:
            self._store(be32(a[1]), Loaded(expr, kind, length))
        elif 0 < length < kind.size:
            self._store(be32(a[1]), Loaded(expr, None, length, prefix_field=kind))
        else:
            raise Undecoded(f"payload of {length} bytes")

    def _meta(self, a: dict[int, bytes]) -> None:
        only(a, {1, 2, 3}, "meta")
        key = be32(a[2])
        if key not in META_KEYS:
            raise Undecoded(f"meta key {key}")
        name, kind = META_KEYS[key]
        if 3 in a:  # meta set
            if name != "mark":
                raise Undecoded(f"meta set {name}")
            value = self._take(be32(a[3]))
            self.out.append({"mangle": {"key": {"meta": {"key": name}}, "value": self._value_expr(value)}})
            return
        self._store(be32(a[1]), Loaded({"meta": {"key": name}}, kind, kind.size if kind.size >= 4 else 1,
                                       is_meta_l4proto=name == "l4proto"))

    def _ct(self, a: dict[int, bytes]) -> None:
        only(a, {1, 2}, "ct")
        key = be32(a[2])
        if key not in CT_KEYS:
            raise Undecoded(f"ct key {key}")
        name, kind = CT_KEYS[key]
        self._store(be32(a[1]), Loaded({"ct": {"key": name}}, kind, 4))

    def _fib(self, a: dict[int, bytes]) -> None:
        only(a, {1, 2, 3}, "fib")
        result, flags = be32(a[2]), be32(a[3])
        if result != 3 or flags != 1:
            raise Undecoded(f"fib result {result} flags {flags}")
        self._store(be32(a[1]), Loaded({"fib": {"result": "type", "flags": ["saddr"]}}, FIB_KIND, 4))

    def _numgen(self, a: dict[int, bytes]) -> None:
        only(a, {1, 2, 3, 4}, "numgen")
        if be32(a[3]) != 1:
            raise Undecoded("numgen inc")
        expr = {"numgen": {"mode": "random", "mod": be32(a[2]), "offset": be32(a[4]) if 4 in a else 0}}
        self._store(be32(a[1]), Loaded(expr, INTEGER, 4))

    def _immediate(self, a: dict[int, bytes]) -> None:
        only(a, {1, 2}, "immediate")
        reg = be32(a[1])
        nested = attrs(a[2])
        if reg == 0:
            if set(nested) != {2}:
                raise Undecoded("immediate verdict without a verdict")
            self.out.append(verdict(nested[2]))
            return
        if set(nested) != {1}:
            raise Undecoded("immediate data")
        self._store(reg, Loaded({"raw": nested[1]}, None, len(nested[1])))

    def _bitwise(self, a: dict[int, bytes]) -> None:
        only(a, {1, 2, 3, 4, 5, 6}, "bitwise")
        if 6 in a and be32(a[6]) != 0:
            raise Undecoded("bitwise shift")
        src, dst = be32(a[1]), be32(a[2])
        loaded = self._take(src)
        if loaded.op is not None or loaded.mask is not None:
            raise Undecoded("two bitwise operations")
        mask, xor = data_value(a[4]), data_value(a[5])
        length = be32(a[3])
        if len(mask) != length or len(xor) != length or length != loaded.length:
            raise Undecoded("bitwise lengths")
        ones = (1 << (8 * length)) - 1
        m, x = int.from_bytes(mask, "big"), int.from_bytes(xor, "big")
        if loaded.prefix_field is not None or (loaded.kind in (IPV4, IPV6)):
            if x != 0:
                raise Undecoded("bitwise xor on an address")
            loaded.mask = mask
            if loaded.prefix_field is None:
                loaded.prefix_field = loaded.kind
        elif x == 0:
            loaded.op, loaded.operand = "&", mask
        elif m == ones:
            loaded.op, loaded.operand = "^", xor
        elif m & x == 0 and m | x == ones:
            loaded.op, loaded.operand = "|", xor
        else:
            raise Undecoded("bitwise mask and xor")
        self._store(dst, loaded)

    # uses
    def _value_expr(self, loaded: Loaded) -> Json:
        """A register as the value of a statement (meta mark set ...)."""
        if loaded.op is None or loaded.kind is None or loaded.operand is None:
            raise Undecoded("a set statement's value")
        return {loaded.op: [loaded.expr, loaded.kind.show(loaded.operand)]}

    def _cmp(self, a: dict[int, bytes]) -> None:
        only(a, {1, 2, 3}, "cmp")
        op = be32(a[2])
        if op not in (0, 1):
            raise Undecoded(f"cmp op {op}")
        loaded = self._take(be32(a[1]))
        value = data_value(a[3])
        if len(value) != loaded.length:
            raise Undecoded("cmp length")
        sign = "==" if op == 0 else "!="
        if loaded.prefix_field is not None:
            right = self._prefix(loaded, value)
            self.out.append({"match": {"op": sign, "left": loaded.expr, "right": right}})
            return
        if loaded.kind is None:
            raise Undecoded("cmp of immediate data")
        if loaded.kind in (CT_STATE_KIND, CT_STATUS_KIND):
            # ct state new: (reg & new) != 0
            if loaded.op != "&" or op != 1 or any(value) or loaded.operand is None:
                raise Undecoded("ct bit match form")
            bit = loaded.kind.show(loaded.operand)
            self.out.append({"match": {"op": "in", "left": loaded.expr, "right": bit}})
            return
        left = loaded.expr
        if loaded.op is not None:
            if loaded.operand is None:
                raise Undecoded("bitwise operand")
            left = {loaded.op: [loaded.expr, loaded.kind.show(loaded.operand)]}
        if loaded.is_meta_l4proto:
            self.l4_context = True
        if loaded.dependency is not None:
            if not self.out or self.out[-1] is not loaded.dependency or loaded.op is not None:
                raise Undecoded("transport match apart from its protocol match")
            self.out.pop()
        self.out.append({"match": {"op": sign, "left": left, "right": loaded.kind.show(value)}})

    def _prefix(self, loaded: Loaded, value: bytes) -> Json:
        kind = loaded.prefix_field
        assert kind is not None
        mask = loaded.mask or b"\xff" * loaded.length
        bits = bin(int.from_bytes(mask, "big")).count("1")
        full = (bytes(mask) + b"\0" * kind.size)[:kind.size]
        if int.from_bytes(full, "big") != ((1 << bits) - 1) << (8 * kind.size - bits):
            raise Undecoded("mask that is not a prefix")
        if bits == 8 * kind.size or bits == 0:
            raise Undecoded("full-length or empty mask")
        addr = (value + b"\0" * kind.size)[:kind.size]
        return {"prefix": {"addr": kind.show(addr), "len": bits}}

    def _key_expr(self, sreg: int, key_len: int) -> tuple[Json, list[Kind]]:
        """The (possibly concatenated) expression a lookup reads from ``sreg``."""
        parts: list[Loaded] = []
        s = slot(sreg)
        covered = 0
        while covered < key_len:
            if s not in self.regs:
                raise Undecoded("lookup of an unloaded register")
            loaded = self.regs.pop(s)
            if (loaded.kind is None or loaded.op is not None or loaded.prefix_field is not None
                    or loaded.dependency is not None):
                raise Undecoded("lookup of a modified value")
            width = (loaded.length + 3) & ~3
            parts.append(loaded)
            covered += width
            s += width // 4
        if covered != key_len:
            raise Undecoded("lookup key length")
        kinds = [p.kind for p in parts if p.kind is not None]
        if len(parts) == 1:
            return parts[0].expr, kinds
        return {"concat": [p.expr for p in parts]}, kinds

    def _set(self, name: str) -> SetInfo:
        info = self.sets.get(name)
        if info is None:
            raise Undecoded(f"lookup of set {name} not read")
        return info

    def _lookup(self, a: dict[int, bytes]) -> None:
        only(a, {1, 2, 3, 4, 5}, "lookup")
        info = self._set(cstr(a[1]))
        inverted = 5 in a and be32(a[5]) & 1
        if 5 in a and be32(a[5]) & ~1:
            raise Undecoded("lookup flags")
        key, kinds = self._key_expr(be32(a[2]), info.key_len)
        if [k.name for k in kinds] != [k.name for k in info.key]:
            raise Undecoded("lookup key of another type than the set's")
        if 3 not in a:
            if info.data is not None:
                raise Undecoded("map used as a set")
            self.out.append({"match": {"op": "!=" if inverted else "==", "left": key, "right": info.ref()}})
            return
        if inverted:
            raise Undecoded("inverted map lookup")
        dreg = be32(a[3])
        if info.data is None:
            raise Undecoded("set used as a map")
        if dreg == 0:
            if info.data:
                raise Undecoded("vmap of a data map")
            self.out.append({"vmap": {"key": key, "data": info.ref()}})
            return
        self._store(dreg, Loaded({"map": {"key": key, "data": info.ref()}}, None,
                                 sum((k.size + 3) & ~3 for k in info.data)))
        self.regs[slot(dreg)].operand = bytes([len(info.data)])  # parts of the data

    def _nat(self, a: dict[int, bytes]) -> None:
        only(a, {1, 2, 3, 4, 5, 6, 7}, "nat")
        if be32(a[1]) != 1:
            raise Undecoded("snat")
        family = {2: "ip", 10: "ip6"}.get(be32(a[2]))
        if family != self.family:
            raise Undecoded("nat family")
        addr_kind = IPV4 if family == "ip" else IPV6
        if a.get(3) != a.get(4) or a.get(5) != a.get(6) or 3 not in a or 5 not in a:
            raise Undecoded("nat ranges")
        if 7 not in a or be32(a[7]) != 3:  # exactly MAP_IPS | PROTO_SPECIFIED (the registers)
            raise Undecoded(f"nat flags {be32(a[7]):#x}")
        addr_reg, port_reg = be32(a[3]), be32(a[5])
        addr = self._take(addr_reg)
        if "map" in addr.expr:
            if slot(port_reg) != slot(addr_reg) + addr_kind.size // 4 or addr.operand != bytes([2]):
                raise Undecoded("nat map registers")
            self.out.append({"dnat": {"family": family, "addr": addr.expr}})
            return
        port = self._take(port_reg)
        if "raw" not in addr.expr or "raw" not in port.expr:
            raise Undecoded("nat operands")
        port_raw = port.expr["raw"]
        self.out.append({"dnat": {"addr": addr_kind.show(addr.expr["raw"]),
                                  "port": service_number(port_raw[:2] if len(port_raw) == 4 else port_raw)}})

    def _masq(self, a: dict[int, bytes]) -> None:
        only(a, {1}, "masq")
        flags = be32(a[1]) if 1 in a else 0
        if flags == 0:
            self.out.append({"masquerade": None})
        elif flags == 0x10:
            self.out.append({"masquerade": {"flags": "fully-random"}})
        else:
            raise Undecoded(f"masquerade flags {flags:#x}")

    def _reject(self, a: dict[int, bytes]) -> None:
        only(a, {1, 2}, "reject")
        kind, code = be32(a[1]), a[2][0]
        if kind == 0 and code == 3 and self.family == "ip":
            self.out.append({"reject": {"type": "icmp", "expr": "port-unreachable"}})
        elif kind == 0 and code == 4 and self.family == "ip6":
            self.out.append({"reject": {"type": "icmpv6", "expr": "port-unreachable"}})
        else:
            raise Undecoded(f"reject type {kind} code {code}")

    def _counter(self, a: dict[int, bytes]) -> None:
        only(a, {1, 2}, "counter")
        self.out.append({"counter": {"packets": be64(a[2]), "bytes": be64(a[1])}})

    def _dynset(self, a: dict[int, bytes]) -> None:
        only(a, {1, 2, 3, 4, 6, 9}, "dynset")
        if be32(a[3]) != 1 or (6 in a and be64(a[6]) != 0) or (9 in a and be32(a[9]) != 0):
            raise Undecoded("dynset other than update without timeout")
        info = self._set(cstr(a[1]))
        if info.data is not None or info.anonymous:
            raise Undecoded("dynset of a map")
        key, _kinds = self._key_expr(be32(a[4]), info.key_len)
        self.out.append({"set": {"op": "update", "elem": key, "set": f"@{info.name}"}})
