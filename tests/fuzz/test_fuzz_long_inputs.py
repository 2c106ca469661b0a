"""Every parser on one very long line and on a huge file: linear time, and a bounded error text.

Bounds are relative, never absolute: a long line must parse in at most ``LONG_FACTOR`` times the
time of a same-size input of ordinary lines, and a file ``GROWTH`` times larger in at most
``GROWTH x SLACK`` times the time (plus a small constant for timer noise). `make test` uses 1 MB
lines and 0.25 -> 2 MB files; `make fuzz` (PROXYDOCTOR_FUZZ_EXAMPLES >= 10000) 6.4 MB lines and
4 -> 32 MB files. Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubectl_proxydoctor.errors import ProxyDoctorError
from tests.fuzz.strategies import EXAMPLES

FIX = Path(__file__).parents[1] / "fixtures"
FULL = EXAMPLES >= 10000
LONG = 6_400_000 if FULL else 1_000_000  # characters in the one long line
SMALL = 4_000_000 if FULL else 250_000  # the "huge file" test: SMALL, then GROWTH x SMALL
GROWTH = 8
LONG_FACTOR = 20
SLACK = 3
NOISE = 0.25  # seconds


def _resolve(path: str) -> Callable:
    module_name, _, attr = path.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


def _repeat_lines(seed: str, size: int, header: int = 0) -> str:
    """The seed's first ``header`` lines, then its other lines repeated until ``size`` characters."""
    lines = seed.splitlines(keepends=True)
    head, body = "".join(lines[:header]), "".join(lines[header:])
    return head + body * max(1, (size - len(head)) // max(1, len(body)) + 1)


def _insert_line(seed: str, line: str, header: int = 0, after: str | None = None) -> str:
    lines = seed.splitlines(keepends=True)
    at = next((i + 1 for i, x in enumerate(lines) if after and x.startswith(after)),
              max(header, len(lines) // 2))
    return "".join(lines[:at]) + line + "\n" + "".join(lines[at:])


def _json_items(seed: str, key: str, size: int) -> str:
    doc = json.loads(seed)
    items = doc[key] if isinstance(doc, dict) else doc
    one = len(json.dumps(items))
    many = items * max(1, size // max(1, one) + 1)
    return json.dumps({**doc, key: many} if isinstance(doc, dict) else many)


def _nft_long(seed: str, size: int) -> str:
    doc = json.loads(seed)
    rule = next(i for i in doc["nftables"] if "rule" in i)
    rule["rule"]["comment"] = "x" * size
    return json.dumps(doc)


def _api_long(seed: str, size: int) -> str:
    doc = json.loads(seed)
    svc = next(i for i in doc["items"] if i["kind"] == "Service")
    svc["metadata"].setdefault("annotations", {})["note"] = "x " * (size // 2)
    return json.dumps(doc)


def _ip_addr_long(seed: str, size: int) -> str:
    doc = json.loads(seed)
    doc[0]["ifalias"] = "x" * size
    return json.dumps(doc)


def _healthz_long(seed: str, size: int) -> str:
    return json.dumps({**json.loads(seed), "note": "x" * size})


def _healthz_huge(seed: str, size: int) -> str:
    return json.dumps({**json.loads(seed), "padding": ["x" * 100] * (size // 104 + 1)})


@dataclass
class Case:
    label: str
    parser: str  # "module:function"
    seed: str  # capture file under tests/fixtures
    long: Callable[[str, int], str]
    huge: Callable[[str, int], str]


def _text_case(label: str, parser: str, seed: str, line: Callable[[int], str], header: int = 0,
               after: str | None = None) -> Case:
    return Case(label, parser, seed, lambda s, n: _insert_line(s, line(n), header, after),
                lambda s, n: _repeat_lines(s, n, header))


CASES = [
    _text_case("iptables-save comment", "kubectl_proxydoctor.modes.iptables.parse:parse",
               "iptables/healthy/iptables-nft-save.txt",
               lambda n: f'-A KUBE-SERVICES -s 10.9.9.9/32 -m comment --comment "{"x" * n}" -j ACCEPT',
               after=":KUBE-SERVICES"),
    _text_case("iptables-save words", "kubectl_proxydoctor.modes.iptables.parse:parse",
               "iptables/healthy/iptables-nft-save.txt",
               lambda n: f'-A KUBE-SERVICES -m comment --comment "{"ab " * (n // 3)}" -j ACCEPT',
               after=":KUBE-SERVICES"),
    _text_case("iptables-save escaped quotes", "kubectl_proxydoctor.modes.iptables.parse:parse",
               "iptables/healthy/iptables-nft-save.txt",
               lambda n: f'-A KUBE-SERVICES -m comment --comment "{chr(92) + chr(34) + "ab " * (n // 3)}" '
                         "-j ACCEPT", after=":KUBE-SERVICES"),
    _text_case("proxy_mode scan", "kubectl_proxydoctor.proxy_mode:parse_iptables_save",
               "iptables/healthy/iptables-nft-save.txt",
               lambda n: f'-A KUBE-SERVICES -m comment --comment "{"x -j " * (n // 5)}" -j KUBE-MARK-MASQ',
               after=":KUBE-SERVICES"),
    _text_case("ipvsadm", "kubectl_proxydoctor.formats.ipvsadm:parse", "ipvs/healthy/ipvsadm.txt",
               lambda n: "TCP  10.96.0.99:443 rr " + "x" * n, header=3),
    _text_case("ipvsadm-save", "kubectl_proxydoctor.formats.ipvsadm:parse",
               "../fuzz/seeds/ipvsadm-save.txt", lambda n: "-A -t 10.96.0.99:443 -s " + "rr " * (n // 3)),
    _text_case("proc ip_vs", "kubectl_proxydoctor.formats.ipvs_procfs:parse",
               "ipvs/healthy/proc-net-ip_vs.txt",
               lambda n: "TCP  0A600063:01BB rr " + "x " * (n // 2), header=3),
    _text_case("ipset", "kubectl_proxydoctor.modes.ipvs.ipset:parse", "ipvs/healthy/ipset-save.txt",
               lambda n: "add KUBE-CLUSTER-IP " + "1" * n, after="create KUBE-CLUSTER-IP"),
    _text_case("conntrack", "kubectl_proxydoctor.conntrack:parse_conntrack",
               "iptables/stale-udp-conntrack/conntrack.txt",
               lambda n: "ipv4 2 udp 17 23 src=172.30.0.1 dst=10.96.100.16 sport=59894 dport=53 "
                         "src=10.244.0.11 dst=10.244.0.1 sport=5353 dport=20834 " + "k=v " * (n // 4)),
    _text_case("sysctl", "kubectl_proxydoctor.nodeinfo:parse_sysctl", "iptables/healthy/sysctl.txt",
               lambda n: "net.example.long = " + "v" * n),
    _text_case("metrics", "kubectl_proxydoctor.nodeinfo:parse_metrics",
               "iptables/sync-failing/kube-proxy-metrics.txt",
               lambda n: 'kubeproxy_example{label="' + "v" * n + '"} 1'),
    Case("nft json", "kubectl_proxydoctor.formats.nft_parse:parse_ruleset_text",
         "nftables/healthy/nft-ruleset.json", _nft_long, lambda s, n: _json_items(s, "nftables", n)),
    Case("api.json", "kubectl_proxydoctor.cluster:ClusterState.from_json_text", "iptables/healthy/api.json",
         _api_long, lambda s, n: _json_items(s, "items", n)),
    Case("ip-addr.json", "kubectl_proxydoctor.nodeinfo:parse_ip_addr_json", "iptables/healthy/ip-addr.json",
         _ip_addr_long, lambda s, n: _json_items(s, "", n)),
    Case("healthz", "kubectl_proxydoctor.nodeinfo:parse_healthz",
         "iptables/sync-failing/kube-proxy-healthz.json", _healthz_long, _healthz_huge),
]


def _timed(parse: Callable, text: str) -> tuple[float, str]:
    """(best run in seconds, of two under `make fuzz`; "ok" or the tool's error text)."""
    best, outcome = float("inf"), "ok"
    for _ in range(2 if FULL else 1):
        start = time.perf_counter()
        try:
            parse(text)
            outcome = "ok"
        except ProxyDoctorError as e:
            outcome = str(e)
        best = min(best, time.perf_counter() - start)
    return best, outcome


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_long_line_parses_in_linear_time(case: Case) -> None:
    parse = _resolve(case.parser)
    seed = (FIX / case.seed).read_text()
    long_text = case.long(seed, LONG)
    baseline_text = case.huge(seed, len(long_text))
    t_base, _ = _timed(parse, baseline_text)
    t_long, outcome = _timed(parse, long_text)
    print(f"\n[long line] {case.label}: {len(long_text) / 1e6:.1f} MB with a {LONG / 1e6:.1f} MB line "
          f"{t_long:.3f} s; same size of ordinary lines {t_base:.3f} s; "
          f"{'parsed' if outcome == 'ok' else 'error: ' + outcome[:80]}")
    assert t_long <= LONG_FACTOR * t_base + NOISE
    assert len(outcome) <= 2100  # an error names the problem, it does not print the line


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_huge_file_parses_in_linear_time(case: Case) -> None:
    parse = _resolve(case.parser)
    seed = (FIX / case.seed).read_text()
    small, large = case.huge(seed, SMALL), case.huge(seed, SMALL * GROWTH)
    t_small, small_outcome = _timed(parse, small)
    t_large, large_outcome = _timed(parse, large)
    ratio = len(large) / len(small)
    print(f"\n[huge file] {case.label}: {len(small) / 1e6:.1f} MB {t_small:.3f} s, "
          f"{len(large) / 1e6:.1f} MB {t_large:.3f} s ({t_large / max(t_small, 1e-9):.1f}x for {ratio:.1f}x "
          f"the size); {'parsed' if large_outcome == 'ok' else 'error: ' + large_outcome[:80]}")
    assert t_large <= ratio * SLACK * t_small + NOISE
    assert small_outcome == "ok" or len(small_outcome) <= 2100
