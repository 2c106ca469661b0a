"""Render nft JSON expressions back into `nft list` syntax, for evidence and trace steps."""

from __future__ import annotations

import json
from typing import Any

from kubectl_proxydoctor.formats.nft_model import NftRule

VERDICTS = ("accept", "drop", "continue", "return", "queue")
BINOPS = {"&": "&", "|": "|", "^": "^", "<<": "<<", ">>": ">>"}


def render_rule(rule: NftRule) -> str:
    """A rule as `nft list` prints it (counters shown without their packet/byte values)."""
    expr = rule.expr  # once: a rule read lean decodes it again at every read
    text = _fast_endpoint_rule(expr) or " ".join(render_stmt(e) for e in expr)
    if rule.comment:
        text += f' comment "{rule.comment}"'
    return text


def _fast_endpoint_rule(expr: list[dict]) -> str | None:
    """The two rule shapes of every endpoint chain, rendered without the general walk:
    ``ip saddr A jump mark-for-masquerade`` and ``meta l4proto P dnat to A:PORT``."""
    if len(expr) != 2:
        return None
    first, second = expr
    match = first.get("match")
    if match is None or match.get("op") != "==" or not isinstance(match.get("right"), str):
        return None
    left = match.get("left")
    if "dnat" in second and left == _L4PROTO:
        dnat = second["dnat"]
        if isinstance(dnat, dict) and len(dnat) == 2 and isinstance(dnat.get("addr"), str) \
                and isinstance(dnat.get("port"), int) and ":" not in dnat["addr"]:
            return f"meta l4proto {match['right']} dnat to {dnat['addr']}:{dnat['port']}"
    jump = second.get("jump")
    if isinstance(jump, dict) and len(jump) == 1 and left in (_IP_SADDR, _IP6_SADDR):
        return f"{left['payload']['protocol']} saddr {match['right']} jump {jump.get('target')}"
    return None


_L4PROTO = {"meta": {"key": "l4proto"}}
_IP_SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}
_IP6_SADDR = {"payload": {"protocol": "ip6", "field": "saddr"}}


def render_stmt(stmt: dict) -> str:
    """One statement (match, verdict, nat, mangle, ...)."""
    if not isinstance(stmt, dict) or len(stmt) != 1:
        return _raw(stmt)
    kind, body = next(iter(stmt.items()))
    if kind == "match":
        op = body.get("op", "==")
        left, right = render_expr(body.get("left")), render_expr(body.get("right"))
        if isinstance(body.get("left"), dict) and next(iter(body["left"]), None) in BINOPS:
            return f"{left} {'==' if op == 'in' else op} {_hex(body.get('right'))}"
        if op in ("==", "in"):
            return f"{left} {right}"
        return f"{left} {op} {right}"
    if kind in VERDICTS:
        return kind
    if kind in ("jump", "goto"):
        return f"{kind} {body.get('target')}"
    if kind == "counter":
        return "counter"
    if kind == "reject":
        if not body:
            return "reject"
        rtype, rexpr = body.get("type"), body.get("expr")
        if rtype == "tcp reset":
            return "reject with tcp reset"
        if rtype in ("icmp", "icmpx", "icmpv6") and rexpr == "port-unreachable":
            return "reject"
        return f"reject with {rtype} {rexpr}" if rexpr else f"reject with {rtype}"
    if kind in ("dnat", "snat"):
        addr, port = body.get("addr"), body.get("port")
        target = render_expr(addr) if addr is not None else ""
        if isinstance(addr, dict) and ("map" in addr or "concat" in addr) and port is None:
            family = body.get("family")  # nft prints "dnat ip to numgen random mod 2 map { 0 : ip . port }"
            return f"{kind} {family} to {target}" if family else f"{kind} to {target}"
        if port is not None:
            target = f"[{target}]:{render_expr(port)}" if ":" in target else f"{target}:{render_expr(port)}"
        return f"{kind} to {target}"
    if kind == "masquerade":
        flags = body.get("flags") if isinstance(body, dict) else None
        if isinstance(flags, list):
            flags = ",".join(flags)
        return f"masquerade {flags}" if flags else "masquerade"
    if kind == "mangle":
        return f"{render_expr(body.get('key'))} set {render_expr(body.get('value'))}"
    if kind == "vmap":
        return f"{render_expr(body.get('key'))} vmap {render_expr(body.get('data'))}"
    if kind == "set":
        return f"{body.get('op')} {body.get('set')} {{ {render_expr(body.get('elem'))} }}"
    if kind == "log":
        return "log" + (f' prefix "{body["prefix"]}"' if isinstance(body, dict) and "prefix" in body else "")
    if kind == "limit":
        return f"limit rate {body.get('rate')}/{body.get('per')}"
    if kind == "notrack":
        return "notrack"
    return _raw(stmt)


def render_expr(expr: Any) -> str:
    """One expression (payload, meta, ct, fib, numgen, concat, set, prefix, ...)."""
    if expr is None:
        return ""
    if isinstance(expr, bool):
        return str(expr).lower()
    if isinstance(expr, (int, str)):
        return str(expr)
    if isinstance(expr, list):
        return "{ " + ", ".join(render_expr(e) for e in expr) + " }"
    if not isinstance(expr, dict) or len(expr) != 1:
        return _raw(expr)
    kind, body = next(iter(expr.items()))
    if kind == "payload":
        if "protocol" in body:
            return f"{body['protocol']} {body['field']}"
        return f"@{body.get('base')},{body.get('offset')},{body.get('len')}"
    if kind == "meta":
        key = body.get("key")
        return f"meta {key}" if key in ("l4proto", "mark", "nfproto", "protocol", "length") else key
    if kind == "ct":
        return f"ct {body.get('key')}"
    if kind == "fib":
        flags = body.get("flags") or []
        if isinstance(flags, str):
            flags = [flags]
        return f"fib {' . '.join(flags)} {body.get('result')}"
    if kind == "numgen":
        offset = body.get("offset") or 0
        return f"numgen {body.get('mode')} mod {body.get('mod')}" + (f" offset {offset}" if offset else "")
    if kind == "concat":
        return " . ".join(render_expr(e) for e in body)
    if kind == "map":
        return f"{render_expr(body.get('key'))} map {render_expr(body.get('data'))}"
    if kind == "set":
        return "{ " + ", ".join(_set_entry(e) for e in body) + " }" if isinstance(body, list) else \
            "{ " + render_expr(body) + " }"
    if kind == "prefix":
        return f"{body.get('addr')}/{body.get('len')}"
    if kind == "range":
        return f"{render_expr(body[0])}-{render_expr(body[1])}"
    if kind in BINOPS:
        left, right = body
        return f"{render_expr(left)} {BINOPS[kind]} {_hex(right)}"
    if kind in ("jump", "goto"):
        return f"{kind} {body.get('target')}"
    if kind in VERDICTS or kind in ("drop", "accept"):
        return kind
    if kind == "elem":
        return render_expr(body.get("val"))
    return _raw(expr)


def render_verdict_or_value(value: Any) -> str:
    """A map element's value: a verdict (``goto chain``, ``drop``) or data."""
    if isinstance(value, dict) and len(value) == 1:
        kind, body = next(iter(value.items()))
        if kind in ("jump", "goto"):
            return f"{kind} {body.get('target')}"
        if kind in VERDICTS:
            return kind
    return render_expr(value)


def _set_entry(entry: Any) -> str:
    if isinstance(entry, list) and len(entry) == 2:
        key, value = entry
        if type(key) is int and type(value) is dict and len(value) == 1:
            # the entries of kube-proxy's numgen maps, rendered without the general walk:
            # ``i : ip . port`` (v1.36+ DNAT maps) and ``i : goto chain`` (vmaps)
            parts = value.get("concat")
            if type(parts) is list and len(parts) == 2 and type(parts[0]) is str and type(parts[1]) is int:
                return f"{key} : {parts[0]} . {parts[1]}"
            goto = value.get("goto")
            if type(goto) is dict:
                return f"{key} : goto {goto.get('target')}"
        return f"{render_expr(key)} : {render_verdict_or_value(value)}"
    return render_expr(entry)


def _hex(value: Any) -> str:
    if isinstance(value, int):
        return f"0x{value:08x}"
    return render_expr(value)


def _raw(obj: Any) -> str:
    return "[" + json.dumps(obj, separators=(",", ":"), sort_keys=True) + "]"
