"""proxy_mode reads each capture file once per snapshot: the iptables scan is cached on the snapshot
and the nftables tables come from the ruleset the interpreter parsed; both give what the original
re-reading code gave (copies of it are kept here as the oracle)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest

from kubectl_proxydoctor import proxy_mode
from kubectl_proxydoctor.formats.nft_parse import FILENAME, RULESET_KEY, parse_ruleset_text
from kubectl_proxydoctor.modes.nftables.interpreter import load_ruleset
from kubectl_proxydoctor.proxy_mode import (
    IPTABLES_SERVICE_CHAIN,
    decide,
    iptables_dumps,
    leftovers,
    nft_kube_proxy_tables,
    parse_iptables_save,
)
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIXTURES = Path(__file__).parent / "fixtures"
CAPTURES = sorted(str(p.parent.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*/meta.json"))
NFT_CAPTURES = [c for c in CAPTURES if (FIXTURES / c / "nft-ruleset.json").exists()]
DUMPS = sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*/*tables*-save.txt"))


# -- the implementations before the cache, verbatim --------------------------------------------


def _old_jump_target(line: str) -> str | None:
    at = max(line.rfind(" -j "), line.rfind(" -g "))
    if at < 0:
        return None
    return line[at + 4:].split(" ", 1)[0]


def old_parse_iptables_save(text: str, label: str = "iptables", file: str = "") -> proxy_mode.IptablesDump:
    dump = proxy_mode.IptablesDump(label=label, file=file)
    table = ""
    chains: dict[tuple[str, str], proxy_mode.ChainInfo] = {}
    for line in text.splitlines():
        first = line[:1]
        if first == "-":
            if not line.startswith("-A "):
                continue
            owner = line[3:].split(" ", 1)[0]
            info = chains.get((table, owner))
            if info is not None:
                info.rules += 1
            name = _old_jump_target(line)
            target = chains.get((table, name)) if name else None
            if target is None:
                continue
            if IPTABLES_SERVICE_CHAIN.match(owner):
                target.service_jumps += 1
                continue
            if owner not in target.jumps_from:
                target.jumps_from.append(owner)
            if len(target.jump_rules) < 50:
                target.jump_rules.append(line.strip())
        elif first == ":":
            name = line[1:].split(" ", 1)[0]
            if name.startswith(("KUBE-", "CILIUM")):
                chains[(table, name)] = info = proxy_mode.ChainInfo(table, name)
                dump.chains.append(info)
        elif first == "*":
            table = line[1:].strip()
    return dump


def old_nft_kube_proxy_tables(snapshot: NodeSnapshot) -> list[proxy_mode.NftTable]:
    tables: dict[tuple[str, str], proxy_mode.NftTable] = {}
    text = snapshot.text("nft-ruleset.json")
    if text is not None:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = None
        items = doc.get("nftables", []) if isinstance(doc, dict) else []
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            if isinstance(item.get("table"), dict) and item["table"].get("name") == "kube-proxy":
                key = (str(item["table"].get("family")), "kube-proxy")
                tables.setdefault(key, proxy_mode.NftTable(*key))
            chain = item.get("chain")
            if isinstance(chain, dict) and chain.get("table") == "kube-proxy":
                key = (str(chain.get("family")), "kube-proxy")
                t = tables.setdefault(key, proxy_mode.NftTable(*key))
                t.chains += 1
                if str(chain.get("name", "")).startswith("service-"):
                    t.service_chains += 1
        return list(tables.values())
    text = snapshot.text("nft-ruleset.txt")
    if text is not None:
        current: proxy_mode.NftTable | None = None
        for line in text.splitlines():
            m = re.match(r"^table (\S+) (\S+) \{", line)
            if m:
                current = proxy_mode.NftTable(m.group(1), m.group(2)) if m.group(2) == "kube-proxy" else None
                if current is not None:
                    tables[(current.family, current.name)] = current
                continue
            m = re.match(r"^\s+chain (\S+) \{", line)
            if m and current is not None:
                current.chains += 1
                if m.group(1).startswith("service-"):
                    current.service_chains += 1
    return list(tables.values())


def _dump(d: proxy_mode.IptablesDump) -> tuple:
    return d.label, d.file, [asdict(c) for c in d.chains]


def _tables(tables: list[proxy_mode.NftTable]) -> list[dict]:
    return [asdict(t) for t in tables]


# -- the iptables scan -------------------------------------------------------------------------


@pytest.mark.parametrize("dump", DUMPS)
def test_scan_gives_what_it_gave(dump):
    text = (FIXTURES / dump).read_text()
    assert _dump(parse_iptables_save(text, "x", dump)) == _dump(old_parse_iptables_save(text, "x", dump))


ODD_DUMP = """\
# Generated by iptables-nft-save v1.8.9 (nf_tables)
-A KUBE-EARLY -j KUBE-LATE
*filter
:INPUT ACCEPT [0:0]
-A KUBE-FIREWALL -j DROP
:KUBE-FIREWALL - [0:0]
:CILIUM_INPUT - [0:0]
-A INPUT -j KUBE-FIREWALL
-A INPUT -m comment --comment "cilium-feeder: CILIUM_INPUT" -j CILIUM_INPUT
-A INPUT  -j KUBE-FIREWALL
 -A INPUT -j KUBE-FIREWALL
-A INPUT -g KUBE-FIREWALL
-A INPUT -m comment --comment "x -j KUBE-FIREWALL"
-A INPUT -j LOG --log-prefix " -j KUBE-FIREWALL"
-A INPUT -j KUBE-FIREWALL -g CILIUM_INPUT
-A KUBE-FIREWALL
-A KUBE-SVC-AAAAAAAAAAAAAAAA -j KUBE-FIREWALL
-I INPUT -j KUBE-FIREWALL
COMMIT
*nat
:KUBE-FIREWALL - [0:0]
:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]
-A KUBE-SVC-AAAAAAAAAAAAAAAA -j KUBE-FIREWALL
-A OUTPUT -j KUBE-FIREWALL
:KUBE-FIREWALL - [0:0]
-A OUTPUT -j KUBE-FIREWALL
-A KUBE-FIREWALL -j KUBE-SVC-AAAAAAAAAAAAAAAA
*filter
-A FORWARD -j KUBE-FIREWALL\r
-A FORWARD -j KUBE-FIREWALL
COMMIT
"""


def test_scan_of_odd_layouts_gives_what_it_gave():
    """Rules before their chain, chains declared twice, a table reopened, -g, odd spacing, -j inside
    quotes, \\r line ends: the scan reads them as it always did."""
    assert _dump(parse_iptables_save(ODD_DUMP)) == _dump(old_parse_iptables_save(ODD_DUMP))
    lines = ODD_DUMP.splitlines()
    for cut in range(len(lines)):  # every prefix and every dump with one line left out
        for text in ("\n".join(lines[:cut]), "\n".join(lines[:cut] + lines[cut + 1:])):
            assert _dump(parse_iptables_save(text)) == _dump(old_parse_iptables_save(text))


def test_jump_rules_are_capped_and_verbatim():
    rules = [f'-A INPUT -s 10.0.0.{i}/32 -m comment --comment "r {i}" -j KUBE-FIREWALL  ' for i in range(60)]
    text = "\n".join(["*filter", ":INPUT ACCEPT [0:0]", ":KUBE-FIREWALL - [0:0]", *rules, "COMMIT"])
    (chain,) = parse_iptables_save(text).chains
    assert chain.jumps_from == ["INPUT"] and len(chain.jump_rules) == 50
    assert chain.jump_rules[0] == rules[0].strip()
    assert _dump(parse_iptables_save(text)) == _dump(old_parse_iptables_save(text))


@pytest.mark.parametrize("capture", CAPTURES)
def test_decide_twice_scans_once(capture, monkeypatch):
    snap = NodeSnapshot.load(FIXTURES / capture)
    scans: list[str] = []
    real = proxy_mode.parse_iptables_save

    def counting(text: str, label: str = "iptables", file: str = "") -> proxy_mode.IptablesDump:
        scans.append(file)
        return real(text, label, file)

    monkeypatch.setattr(proxy_mode, "parse_iptables_save", counting)
    first = decide(snap)
    assert scans and len(scans) == len(set(scans))  # each file once
    second = decide(snap)
    assert len(scans) == len(set(scans))  # nothing scanned again
    assert first.dumps is not None and second.dumps is not None
    assert [id(d) for d in second.dumps] == [id(d) for d in first.dumps]
    assert [id(d) for d in iptables_dumps(snap)] == [id(d) for d in first.dumps]
    for mode in ("nftables", "ipvs", "cilium"):
        second.mode, second.dumps = mode, None  # leftovers() reading the dumps itself
        leftovers(snap, second)
    assert len(scans) == len(set(scans))
    assert asdict(first) == asdict(decide(NodeSnapshot.load(FIXTURES / capture)))


def test_a_replaced_dump_is_scanned_again():
    snap = NodeSnapshot.load(FIXTURES / "iptables/healthy")
    before = iptables_dumps(snap)
    snap.files["iptables-nft-save.txt"] = "*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"
    after = iptables_dumps(snap)
    assert after[0] is not before[0] and [c.name for c in after[0].chains] == ["KUBE-SERVICES"]
    assert [id(d) for d in after[1:]] == [id(d) for d in before[1:]]


def test_default_dump_equal_to_the_legacy_one_is_left_out():
    snap = NodeSnapshot.load(FIXTURES / "iptables/legacy-leftovers")
    del snap.files["iptables-nft-save.txt"]
    snap.files["iptables-save.txt"] = "# a header\n" + snap.files["iptables-legacy-save.txt"]
    assert [d.file for d in iptables_dumps(snap) if d.label == "iptables"] == []
    snap.files["iptables-save.txt"] = "*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"  # now it differs
    assert [d.file for d in iptables_dumps(snap)].count("iptables-save.txt") == 1


# -- the nftables tables -----------------------------------------------------------------------


@pytest.mark.parametrize("capture", CAPTURES)
def test_nft_tables_as_before(capture):
    snap = NodeSnapshot.load(FIXTURES / capture)
    assert _tables(nft_kube_proxy_tables(snap)) == _tables(old_nft_kube_proxy_tables(snap))
    snap.files.pop(FILENAME, None)  # the text listing, when that is all there is
    assert _tables(nft_kube_proxy_tables(snap)) == _tables(old_nft_kube_proxy_tables(snap))


def test_nft_tables_known_counts():
    snap = NodeSnapshot.load(FIXTURES / "nftables/healthy")
    assert [(t.family, t.name, t.chains > 0) for t in nft_kube_proxy_tables(snap)] == [
        ("ip", "kube-proxy", True), ("ip6", "kube-proxy", True)]
    iptables_node = NodeSnapshot.load(FIXTURES / "iptables/healthy")
    assert all(t.service_chains == 0 for t in nft_kube_proxy_tables(iptables_node))


@pytest.mark.parametrize("capture", NFT_CAPTURES)
def test_nft_tables_come_from_the_parsed_ruleset(capture, monkeypatch):
    snap = NodeSnapshot.load(FIXTURES / capture)
    expected = _tables(old_nft_kube_proxy_tables(snap))

    def no_rescan(text: str) -> list:
        raise AssertionError("nft-ruleset.json decoded again")

    monkeypatch.setattr(proxy_mode, "_nft_tables_from_json", no_rescan)
    ruleset = load_ruleset(snap)
    assert _tables(nft_kube_proxy_tables(snap)) == expected
    assert load_ruleset(snap) is ruleset
    assert _tables(nft_kube_proxy_tables(snap)) == expected


def test_nft_tables_from_a_collector_seeded_ruleset():
    snap = NodeSnapshot.load(FIXTURES / "nftables/healthy")
    seeded = parse_ruleset_text(snap.files[FILENAME])
    seeded.tables.pop(("ip6", "kube-proxy"))
    snap.seed(RULESET_KEY, (FILENAME,), seeded)  # what the collector parsed is what counts
    assert [t.family for t in nft_kube_proxy_tables(snap)] == ["ip"]


NFT_ODD = [
    "", "   ", "{not json", "[]", "3", '{"nftables": 3}', '{"nftables": []}', '{"other": []}',
    '{"nftables": [5, "x", {"table": {"family": "ip", "name": "kube-proxy"}}, '
    '{"chain": {"family": "ip", "table": "kube-proxy", "name": "service-x"}}, {"chain": 3}]}',
    '{"nftables": [{"chain": {"family": "ip6", "table": "kube-proxy", "name": "service-y"}}]}',
    '{"nftables": [{"table": {"family": "inet", "name": "kube-proxy", "handle": 1}}, '
    '{"chain": {"family": "inet", "table": "kube-proxy", "name": "service-z", "handle": 2}}, '
    '{"gadget": {"family": "inet", "table": "kube-proxy"}}]}',
    '{"nftables": [{"table": {"family": "ip", "name": "kube-proxy", "handle": 1}}, '
    '{"chain": {"family": "ip", "table": "kube-proxy", "name": 7, "handle": 2}}]}',
    '{"nftables": [{"table": {"family": "ip", "name": "kube-proxy", "handle": 1}}, '
    '{"table": {"family": "inet", "name": "kube-proxy", "handle": 2}}, '
    '{"chain": {"family": "inet", "table": "kube-proxy", "name": "service-z", "handle": 3}}, '
    '{"chain": {"family": "ip", "table": "kube-proxy", "name": "endpoint-z", "handle": 4}}]}',
]


@pytest.mark.parametrize("text", NFT_ODD)
def test_nft_tables_of_odd_or_malformed_json_as_before(text):
    snap = NodeSnapshot.from_files({FILENAME: text, "nft-ruleset.txt": "table ip kube-proxy {\n}\n"})
    assert _tables(nft_kube_proxy_tables(snap)) == _tables(old_nft_kube_proxy_tables(snap))
    assert _tables(nft_kube_proxy_tables(snap)) == _tables(old_nft_kube_proxy_tables(snap))  # cached


def test_truncated_nft_json_still_counts_as_before():
    text = (FIXTURES / "nftables/healthy" / FILENAME).read_text()
    for cut in (1, len(text) // 3, len(text) // 2, len(text) - 3):
        snap = NodeSnapshot.from_files({FILENAME: text[:cut]})
        assert _tables(nft_kube_proxy_tables(snap)) == _tables(old_nft_kube_proxy_tables(snap))
