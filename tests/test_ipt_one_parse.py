"""One parse per iptables dump: proxy_mode's chain facts come from the parsed rules, and are the
same as its own text scan would find."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from kubectl_proxydoctor import proxy_mode
from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.modes.iptables.parse import parse
from kubectl_proxydoctor.proxy_mode import dump_from_ruleset, iptables_dumps, parse_iptables_save
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
if not FIXTURES.is_dir():
    FIXTURES = Path("/work/shared/fixtures")
DUMPS = sorted(p for p in FIXTURES.rglob("*tables*-save.txt") if p.stat().st_size)
SAMPLE = Path(__file__).resolve().parents[1] / "kubectl_proxydoctor" / "sample"


@pytest.mark.parametrize("path", DUMPS + sorted(SAMPLE.glob("*tables*-save.txt")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_chain_facts_from_the_parse_equal_the_text_scan(path):
    text = path.read_text()
    assert asdict(dump_from_ruleset(parse(text), "x", path.name)) == asdict(
        parse_iptables_save(text, "x", path.name))


def test_analyse_scans_no_parsed_iptables_text_again(monkeypatch):
    captures = sorted({p.parent for p in DUMPS})
    assert captures
    scans: list[str] = []
    real = proxy_mode.parse_iptables_save

    def counting(text: str, label: str = "iptables", file: str = "") -> proxy_mode.IptablesDump:
        scans.append(file)
        return real(text, label, file)

    for capture in captures:
        snap = NodeSnapshot.load(capture)
        monkeypatch.setattr(proxy_mode, "parse_iptables_save", counting)
        analyse(snap, None)
        monkeypatch.setattr(proxy_mode, "parse_iptables_save", real)
        # only empty dumps (which nothing parses) are left for the text scan
        assert [f for f in scans if (snap.text(f) or "").strip()] == [], capture
        scans.clear()
        fresh = [asdict(d) for d in iptables_dumps(NodeSnapshot.load(capture))]
        assert [asdict(d) for d in iptables_dumps(snap)] == fresh, capture


def _fields(rule) -> dict:
    names = [k for k in dir(rule) if not k.startswith("_")]
    return {k: getattr(rule, k) for k in names if not callable(getattr(rule, k))}


@pytest.mark.parametrize("line", [
    "-A KUBE-SVC-X -j KUBE-SEP-Y",
    "-A KUBE-SEP-Y -s 10.0.0.1/32 -j KUBE-MARK-MASQ",
    "-A KUBE-SVC-X -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-Y",
    "-A KUBE-SEP-Y -p tcp -m tcp -j DNAT --to-destination 10.0.0.1:8080",
    "-A KUBE-SEP-Y -p udp -m udp -j DNAT --to-destination [fd00::1]:53",
    "-A KUBE-SVC-X -m statistic --mode nth --probability 0.5 -j KUBE-SEP-Y",
    "-A KUBE-SEP-Y -d 10.0.0.1/32 -j KUBE-MARK-MASQ",
    "-A KUBE-SEP-Y -p tcp -m tcp -j DNAT --random --persistent",
    '-A KUBE-SVC-X -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" '
    '-m tcp --dport 443 -j KUBE-SEP-Y',
    '-A KUBE-SVC-X ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns '
    'cluster IP" -m udp --dport 53 -j KUBE-MARK-MASQ',
    '-A KUBE-SVC-X ! -s 10.244.0.0/16 ! -d 10.96.0.10/32 -p udp -m comment --comment "a/b:c cluster IP" '
    '-m udp --dport 53 -j KUBE-MARK-MASQ',
    '-A KUBE-SVC-X -s 10.244.0.0/16 -m comment --comment "x" -d 10.96.0.10/32 -p udp -m udp --dport 53 -j Y',
    '-A KUBE-SVC-X -d 10.96.0.1/32 -p tcp -m comment --comment "a \\"quoted\\" word" -m tcp --dport 443 -j Y',
    '-A KUBE-SVC-X -s "a b" -j KUBE-MARK-MASQ',
])
def test_fixed_shapes_parse_as_the_generic_parser(line):
    from kubectl_proxydoctor.modes.iptables.parse import parse_rule, tokenize

    text = f"*nat\n:KUBE-SVC-X - [0:0]\n:KUBE-SEP-Y - [0:0]\n{line}\nCOMMIT\n"
    (rule,) = [r for c in parse(text).tables["nat"].chains.values() for r in c.rules]
    generic = parse_rule(tokenize(line, "t", 4), "nat", 1, 4, line, "t")
    assert _fields(rule) == _fields(generic)
