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
