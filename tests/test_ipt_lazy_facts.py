"""proxy_mode's chain facts of a parsed dump: the mode decision reads names and counts from the
ruleset's chain tables, the same answers the text scan gives, and a check on an iptables node builds
no ChainInfo (115k of them at 10k services); the leftover paths that list chains still get them."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from kubectl_proxydoctor import proxy_mode
from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.modes.iptables.parse import parse
from kubectl_proxydoctor.proxy_mode import dump_from_ruleset, parse_iptables_save
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIXTURES = Path("/work/shared/fixtures")
LOCAL = Path(__file__).resolve().parent / "fixtures"
DUMPS = sorted(p for root in (FIXTURES, LOCAL) for p in root.rglob("*tables*-save.txt") if p.stat().st_size)
ODD = """\
*filter
:INPUT ACCEPT [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-FIREWALL - [0:0]
:CILIUM_INPUT - [0:0]
-A INPUT -j KUBE-FIREWALL
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-SVC-ABCDEFGHIJKLMNOP - [0:0]
:KUBE-SVL-ABCDEFGHIJKLMNOP - [0:0]
:KUBE-SVC-TOO-SHORT - [0:0]
:KUBE-SEP-ABCDEFGHIJKLMNOP - [0:0]
:CILIUM_PRE_nat - [0:0]
-A PREROUTING -j CILIUM_PRE_nat
-A KUBE-SVC-ABCDEFGHIJKLMNOP -j KUBE-SEP-ABCDEFGHIJKLMNOP
COMMIT
"""


def _facts(dump: proxy_mode.IptablesDump) -> tuple:
    names = list(dump.names())
    return (sorted(names), dump.has_iptables_mode(), dump.has_kubelet(),
            dump.service_chain_count(("KUBE-SVC-", "KUBE-SVL-")), dump.service_chain_count(("KUBE-SEP-",)),
            [dump.has_chain(n) for n in ("KUBE-SERVICES", "KUBE-FIREWALL", "CILIUM_INPUT", "INPUT", "KUBE-")])


@pytest.mark.parametrize("text", [p.read_text() for p in DUMPS] + [ODD],
                         ids=[f"{p.parent.name}/{p.name}" for p in DUMPS] + ["odd"])
def test_lazy_facts_equal_the_text_scan(text):
    scanned = parse_iptables_save(text, "x", "f")
    lazy = dump_from_ruleset(parse(text), "x", "f")
    assert _facts(lazy) == _facts(scanned)
    assert asdict(lazy) == asdict(scanned)  # chains built on this first read
    assert _facts(lazy) == _facts(scanned)  # and answered from them afterwards


def test_odd_dump_counts():
    dump = dump_from_ruleset(parse(ODD))
    assert dump.service_chain_count(("KUBE-SVC-", "KUBE-SVL-")) == 2  # not KUBE-SVC-TOO-SHORT
    assert dump.has_kubelet() and dump.has_iptables_mode()
    assert dump.has_chain("CILIUM_INPUT") and not dump.has_chain("INPUT")


def _capture(name: str) -> Path:
    path = LOCAL / name
    return path if path.is_dir() else FIXTURES / name


def test_check_on_an_iptables_node_builds_no_chain_info(monkeypatch):
    built: list[int] = []
    real = proxy_mode._chain_infos
    monkeypatch.setattr(proxy_mode, "_chain_infos", lambda rs: built.append(1) or real(rs))
    capture = _capture("iptables/healthy")
    snap = NodeSnapshot.load(capture)
    cluster = ClusterState.from_json_text((capture / "api.json").read_text())
    report = analyse(snap, cluster)
    assert report.findings is not None and built == []
    dumps = proxy_mode.iptables_dumps(snap)
    assert dumps and [d.chains for d in dumps]  # read when asked
    assert built
