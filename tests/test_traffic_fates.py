"""Every real request in the fixtures' traffic.txt is explained by its trace's fate.

traffic.txt holds requests made through the node's real rules when the capture was taken (curl /
a UDP client, 2 s timeout) and what happened: which pod answered, or refused / timed out. Each is
traced from the same source (the node itself, the off-node client, a pod, by name) and the fate
must agree: the answering pod among the DNAT destinations; refused by a REJECT or by delivery to
the node itself with nothing listening; timed out by a DROP, by routing on an address nothing
owns, or by DNAT to a stale endpoint no pod has.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kubectl_proxydoctor import modes
from kubectl_proxydoctor.backend_order import backend_order
from kubectl_proxydoctor.fate import trace_fate
from kubectl_proxydoctor.model import Packet, TraceResult
from kubectl_proxydoctor.node_facts import node_facts, resolve_source
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIXTURES = Path(__file__).parent / "fixtures"
TRAFFIC = sorted(FIXTURES.glob("*/*/traffic.txt"))
_LINE = re.compile(r"^(\S+) -> (https?|udp)://([^/:\s]+)(?::(\d+))?/? : (.+)$")
_ANSWER = re.compile(r"^(\S+) \(([\d.]+)\)(?: (?:port |udp/)(\d+))?$")
_SOURCES = re.compile(r"(\w+) = (?:the node itself|off-node client ([\d.]+)|pod ([\d.]+))")


def requests(path: Path) -> list[tuple[int, str, Packet, str, str | None, int | None]]:
    """(line, source name, packet without source, outcome, answering IP, answering port)."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        m = _LINE.match(line)
        if not m:
            continue
        source, scheme, host, port, result = m.groups()
        proto = "UDP" if scheme == "udp" else "TCP"
        packet = Packet(host, int(port or 80), proto)
        answer = _ANSWER.match(result)
        if answer:
            out.append((number, source, packet, "answered", answer.group(2),
                        int(answer.group(3)) if answer.group(3) else None))
        elif result == "FAIL (connection refused)":
            out.append((number, source, packet, "refused", None, None))
        elif result == "FAIL (timeout)":
            out.append((number, source, packet, "timeout", None, None))
        else:
            raise AssertionError(f"{path}:{number}: unknown result {result!r}")
    return out


def source_ips(path: Path, snapshot: NodeSnapshot) -> dict[str, str]:
    """Source names of the header ('pdnode1 = the node itself, pdclient = off-node client ...')."""
    facts = node_facts(snapshot)
    header = next(line for line in path.read_text().splitlines() if line.startswith("# sources:"))
    found = {}
    for name, client, pod in _SOURCES.findall(header):
        found[name] = client or pod or resolve_source("node", facts, 4)
    return found


def effective(results: list[TraceResult], mode: str, facts) -> list[TraceResult]:
    """The traces of the mode the node runs; of two iptables backends, the one that takes it."""
    mine = [r for r in results if r.mode == mode]
    order = backend_order(mine, facts)
    if order is not None and order.first is not None:
        return [r for r in mine if r.source == order.first]
    return mine


def explains(result: TraceResult, facts, outcome: str, ip: str | None, port: int | None) -> str | None:
    """None when the fate explains what really happened, else why not."""
    fate = trace_fate(result, facts)
    pairs = list(zip(result.outcomes, fate.outcomes, strict=True))
    if outcome == "answered":
        hits = [o for o, f in pairs if f.kind in ("pod", "local") and o.destination is not None
                and o.destination.ip == ip and (port is None or o.destination.port == port)]
        return None if hits else f"no DNAT to {ip}{f':{port}' if port else ''} in {fate.line!r}"
    if outcome == "refused":
        ok = [f for _, f in pairs if f.kind == "reject" or (f.kind == "node" and "refused" in f.text)]
        return None if ok else f"nothing refuses in {fate.line!r}"
    ok = [f for _, f in pairs if f.kind in ("drop", "routed") and "times out" in f.text
          or any("times out" in m for m in f.marks)]
    return None if ok else f"nothing times out in {fate.line!r}"


@pytest.mark.parametrize("path", TRAFFIC, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_every_request_is_explained_by_its_fate(path: Path) -> None:
    snapshot = NodeSnapshot.load(path.parent)
    facts = node_facts(snapshot)
    mode = path.parent.parent.name
    sources = source_ips(path, snapshot)
    problems = []
    checked = 0
    for number, source, packet, outcome, ip, port in requests(path):
        src = sources[source]
        pkt = Packet(packet.dst, packet.port, packet.protocol, src)
        results = effective(modes.trace_all(snapshot, pkt), mode, facts)
        assert results, f"{path}:{number}: no {mode} trace for {pkt}"
        why = [explains(r, facts, outcome, ip, port) for r in results]
        if any(w is not None for w in why):
            problems.append(f"line {number} {source} {pkt} {outcome} {ip or ''}: {why}")
        checked += 1
    assert checked >= 28
    assert not problems, "\n".join(problems)


def test_traffic_files_found() -> None:
    assert len(TRAFFIC) >= 16


@pytest.mark.parametrize("fixture", ["iptables/healthy", "nftables/healthy", "iptables/third-party-rules"])
def test_a_wrong_outcome_is_not_explained(fixture: str) -> None:
    """The check can fail: every request, paired with an outcome that did not happen, is refused."""
    path = FIXTURES / fixture / "traffic.txt"
    snapshot = NodeSnapshot.load(path.parent)
    facts = node_facts(snapshot)
    sources = source_ips(path, snapshot)
    wrong = {"answered": ("refused", None), "refused": ("answered", "10.244.0.11"),
             "timeout": ("answered", "10.244.0.11")}
    for number, source, packet, outcome, _ip, _port in requests(path):
        pkt = Packet(packet.dst, packet.port, packet.protocol, sources[source])
        other, other_ip = wrong[outcome]
        if outcome == "answered":
            other, other_ip = ("timeout", None) if number % 2 else ("answered", "10.244.0.250")
        for result in effective(modes.trace_all(snapshot, pkt), fixture.split("/")[0], facts):
            assert explains(result, facts, other, other_ip, None) is not None, (number, pkt, other)
