"""The lean read of nft-ruleset.json (issue 19): items decoded one by one from the text, kube-proxy's
service, local, external and endpoint chains summed up while read (ChainFacts) and their rules'
decoded expressions dropped. It must give what the whole-document read gives: the same ruleset,
views, problems and findings on every fixture, and the same ParseError on malformed input."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubectl_proxydoctor.checks import CheckContext, load_checks, run_checks
from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.formats.nft_model import NftRule, NftRuleset
from kubectl_proxydoctor.formats.nft_parse import RulesetBuilder, decode_items, parse_ruleset_text
from kubectl_proxydoctor.model import ProgrammedView
from kubectl_proxydoctor.modes.nftables.interpreter import interpret_ruleset, note_chain_facts, table_problems
from kubectl_proxydoctor.modes.nftables.layout import parse_chain_name
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.test_nftables_collect import _summary
from tests.test_nftables_interpret import UPSTREAM_DIRS, _rules_reordered

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = sorted({p.parent for p in (ROOT / "tests" / "fixtures").glob("**/nft-ruleset.json")})
HEALTHY = ROOT / "tests" / "fixtures" / "nftables" / "healthy"


def _whole(text: str) -> NftRuleset:
    """The whole-document read: json.loads, then every item to the builder (no facts, no drop)."""
    builder = RulesetBuilder("nft-ruleset.json")
    for item in decode_items(text, "nft-ruleset.json"):
        builder.add(item)
    return builder.finish()


def _lean(text: str) -> NftRuleset:
    return parse_ruleset_text(text, "nft-ruleset.json", on_chain_done=note_chain_facts)


def _outcome(read, text: str) -> tuple:
    """What a read of ``text`` gives: the ParseError's message, or the ruleset, views, problems and
    nftables findings (a non-ParseError exception fails the test)."""
    try:
        ruleset = read(text)
        views = interpret_ruleset(ruleset)
    except ParseError as e:
        return ("ParseError", str(e), e.exit_code)
    snapshot = NodeSnapshot.load(HEALTHY)
    ctx = CheckContext(snapshot=snapshot, views=views)  # the checks read the ruleset from the views
    findings = run_checks(ctx, only=[n for n in load_checks() if n.startswith("nftables-")]) if views else []
    return (ruleset.tables, ruleset.version, _summary(views),
            [table_problems(ruleset, f) for f in ("ip", "ip6")],
            [(f.code, f.severity, f.message, f.evidence, f.fix) for f in findings])


def _dropped(ruleset: NftRuleset) -> int:
    """Rules that hold no decoded expressions (read again from the text when asked)."""
    count = 0
    for table in ruleset.tables.values():
        for chain in table.chains.values():
            for rule in chain.rules:
                try:
                    NftRule.expr.__get__(rule)  # type: ignore[attr-defined]  # the slot itself
                except AttributeError:
                    count += 1
    return count


@pytest.mark.parametrize("order", ["as listed", "reversed", "shuffled", "one-moved-last", "one-relisted"])
@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: str(p.relative_to(ROOT / "tests" / "fixtures")))
def test_lean_read_gives_what_the_whole_document_read_gives(capture, order):
    items = json.loads((capture / "nft-ruleset.json").read_text())["nftables"]
    for seed in range(1 if order in ("as listed", "reversed") else 2):
        try:
            reordered = _rules_reordered(copy.deepcopy(items), order, seed)
        except (IndexError, StopIteration):
            continue  # no endpoint chain to move
        text = json.dumps({"nftables": reordered})
        assert _outcome(_lean, text) == _outcome(_whole, text)


def test_kube_proxy_chains_drop_their_decoded_rules():
    """The lean read keeps no decoded expressions for kube-proxy's service and endpoint chains,
    and a dropped rule still reads (and renders) as the whole-document read's."""
    for capture in UPSTREAM_DIRS + [HEALTHY]:
        text = (capture / "nft-ruleset.json").read_text()
        lean, whole = _lean(text), _whole(text)
        assert _dropped(lean) > 0, capture
        assert _dropped(whole) == 0
        table = lean.table("ip", "kube-proxy")
        assert table is not None
        kept = [c.name for c in table.chains.values()
                if (n := parse_chain_name(c.name)) and n.prefix in ("service", "endpoint", "external",
                                                                     "local")
                and any(_dropped_rule(r) is False for r in c.rules)]
        assert kept == [], capture
        for name, chain in table.chains.items():
            other = whole.table("ip", "kube-proxy").chains[name]  # type: ignore[union-attr]
            assert [r.text for r in chain.rules] == [r.text for r in other.rules]
            assert [r.expr for r in chain.rules] == [r.expr for r in other.rules]


def _dropped_rule(rule: NftRule) -> bool:
    try:
        NftRule.expr.__get__(rule)  # type: ignore[attr-defined]
    except AttributeError:
        return True
    return False


def _healthy_text() -> str:
    return (HEALTHY / "nft-ruleset.json").read_text()


def _mutations() -> dict[str, str]:
    """Malformed (and a few well-formed but unusual) documents, by what is wrong."""
    text = _healthy_text()
    doc = json.loads(text)
    items = doc["nftables"]
    rule_at = next(i for i, it in enumerate(items)
                   if "rule" in it and it["rule"]["chain"].startswith("endpoint-"))
    chain_at = next(i for i, it in enumerate(items) if "chain" in it)
    set_at = next(i for i, it in enumerate(items) if "map" in it and it["map"].get("elem"))

    def changed(fn) -> str:
        d = copy.deepcopy(doc)
        fn(d["nftables"])
        return json.dumps(d)

    out = {f"truncated at {f}": text[:int(len(text) * f)] for f in (0.0001, 0.2, 0.5, 0.77, 0.999)}
    out |= {
        "truncated before the closing brace": text.rstrip()[:-1],
        "empty": "",
        "only whitespace": "  \n",
        "not an object": "[1, 2]",
        "nftables not a list": '{"nftables": {"rule": 1}}',
        "empty list": '{"nftables": []}',
        "pretty-printed": json.dumps(doc, indent=2),
        "no spaces": json.dumps(doc, separators=(",", ":")),
        "trailing text": text.rstrip() + " x",
        "a vertical tab between items (not JSON whitespace)": text.replace('}}, {"', '}},\x0b{"', 1),
        "a key before the list": '{"a": 1, ' + text.lstrip()[1:],
        "trailing comma": text.rstrip()[:-2] + ",]}",
        "two documents": text + text,
        "item not an object": changed(lambda it: it.insert(3, [1])),
        "item with two keys": changed(lambda it: it[rule_at].update({"chain": {}})),
        "rule body a list": changed(lambda it: it.__setitem__(rule_at, {"rule": []})),
        "rule expr a dict": changed(lambda it: it[rule_at]["rule"].__setitem__("expr", {})),
        "rule expr item a string": changed(lambda it: it[rule_at]["rule"]["expr"].append("accept")),
        "rule expr item two keys": changed(lambda it: it[rule_at]["rule"]["expr"].append(
            {"accept": None, "drop": None})),
        "rule of an unknown chain": changed(lambda it: it[rule_at]["rule"].__setitem__("chain", "nope")),
        "rule family a number": changed(lambda it: it[rule_at]["rule"].__setitem__("family", 4)),
        "dnat body a list": changed(lambda it: next(e for e in it[rule_at]["rule"]["expr"]
                                                    if "jump" in e or "dnat" in e).update(
            {"dnat" if "dnat" in json.dumps(it[rule_at]) else "jump": [1]})),
        "chain name a number": changed(lambda it: it[chain_at]["chain"].__setitem__("name", 7)),
        "chain of an unknown table": changed(lambda it: it[chain_at]["chain"].__setitem__("table", "x")),
        "map elem not a list": changed(lambda it: it[set_at]["map"].__setitem__("elem", {"a": 1})),
        "map element not a pair": changed(lambda it: it[set_at]["map"]["elem"].append([1])),
        "map element key a boolean": changed(lambda it: it[set_at]["map"]["elem"].append(
            [True, {"drop": None}])),
        "schema version 2": changed(lambda it: it[0]["metainfo"].__setitem__("json_schema_version", 2)),
        "unknown kind": changed(lambda it: it.append({"flux": {}})),
        "a rule before its chain": changed(lambda it: it.insert(1, it.pop(rule_at))),
    }
    return out


@pytest.mark.parametrize("what", list(_mutations()))
def test_malformed_input_gives_the_same_error_or_result(what):
    text = _mutations()[what]
    lean, whole = _outcome(_lean, text), _outcome(_whole, text) if text.strip() else None
    if whole is None:  # decode_items' own message for an empty file
        with pytest.raises(ParseError) as e:
            decode_items(text)
        whole = ("ParseError", str(e.value), e.value.exit_code)
    assert lean == whole


@pytest.mark.parametrize("what", ["truncated at 0.5", "rule expr a dict", "map element not a pair"])
def test_check_from_a_malformed_capture_is_one_line_and_unknown(tmp_path, what):
    cap = tmp_path / "cap"
    cap.mkdir()
    for f in HEALTHY.iterdir():
        (cap / f.name).write_bytes(f.read_bytes())
    (cap / "nft-ruleset.json").write_text(_mutations()[what])
    done = subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", "check", "--from", str(cap)],
                          capture_output=True, text=True, cwd=ROOT)
    assert "Traceback" not in done.stderr
    assert done.returncode == 3, (done.returncode, done.stdout[-500:], done.stderr[-500:])
    assert "nft-ruleset.json" in done.stdout + done.stderr


def test_views_raw_is_the_lean_ruleset():
    """check --from reads the capture the lean way (facts worked out, rules dropped)."""
    from kubectl_proxydoctor.modes.nftables import interpret

    views: list[ProgrammedView] = interpret(NodeSnapshot.load(HEALTHY))
    assert views and _dropped(views[0].raw) > 0
