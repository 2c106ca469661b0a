"""nft -j output decoded while it is read (modes/nftables/stream.py) gives exactly what parsing
the whole text gives, whatever pieces the pipe delivers, and the same kind of error when broken."""

from __future__ import annotations

import json
import random

import pytest

from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.formats.nft_parse import parse_ruleset_text
from kubectl_proxydoctor.formats.nft_stream import ItemStream, parse_stream
from tests.test_nftables_expect import FIXTURES

CAPTURES = sorted(p.name for p in FIXTURES.iterdir() if (p / "nft-ruleset.json").exists())


def _pieces(text: str, seed: int) -> list[str]:
    rnd = random.Random(seed)
    out, i = [], 0
    while i < len(text):
        n = rnd.choice([1, 2, 3, 5, 17, 64, 333, 4096, 65536])
        out.append(text[i:i + n])
        i += n
    return out


@pytest.mark.parametrize("capture", CAPTURES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streamed_equals_whole(capture, seed):
    text = (FIXTURES / capture / "nft-ruleset.json").read_text()
    assert parse_stream(_pieces(text, seed)) == parse_ruleset_text(text)


def test_pretty_printed_and_other_layouts_are_decoded_whole():
    text = (FIXTURES / "healthy" / "nft-ruleset.json").read_text()
    pretty = json.dumps(json.loads(text), indent=2)
    assert parse_stream(_pieces(pretty, 3)) == parse_ruleset_text(text)
    reordered = json.dumps({"other": 1, **json.loads(text)})
    assert parse_stream([reordered]) == parse_ruleset_text(text)


def test_separator_inside_a_string_falls_back_to_item_by_item():
    """The fast path cuts at '}}, {"rule": {"family": '; inside a comment that text is no cut."""
    doc = json.loads((FIXTURES / "healthy" / "nft-ruleset.json").read_text())
    rule = next(i for i in doc["nftables"] if "rule" in i)
    rule["rule"]["comment"] = 'x}}, {"rule": {"family": "ip"}}, {"chain": {"family": y'
    text = json.dumps(doc)
    streamed = parse_stream(_pieces(text, 4))
    assert streamed == parse_ruleset_text(text)
    assert any(r.comment and r.comment.startswith("x}}") for t in streamed.tables.values()
               for c in t.chains.values() for r in c.rules)


@pytest.mark.parametrize("cut", [0, 1, 15, 40, 1000, -300, -3, -1])
def test_truncated_output_is_a_parse_error(cut):
    text = (FIXTURES / "healthy" / "nft-ruleset.json").read_text().rstrip()
    broken = text[:cut] if cut else ""
    with pytest.raises(ParseError) as whole:
        parse_ruleset_text(broken)
    with pytest.raises(ParseError) as streamed:
        parse_stream(_pieces(broken, 5))
    for e in (whole.value, streamed.value):
        assert "nft-ruleset.json" in str(e)
    if cut < -2 or cut > 20:
        assert "truncated" in str(streamed.value)


@pytest.mark.parametrize("text,message", [
    ('{"nftables": [{"metainfo": {}}, {"table": {"family": "ip", "name": "t"}} x', "expected ',' or ']'"),
    ('{"nftables": []} trailing', "unexpected text after"),
    ('{"nftables": [{"metainfo": {"json_schema_version": 2}}]}', "schema version 2"),
    ('{"tables": []}', 'expected a JSON object {"nftables": [...]}'),
    ("[]", 'expected a JSON object {"nftables": [...]}'),
    ("   ", "empty file"),
])
def test_malformed_documents(text, message):
    with pytest.raises(ParseError, match=None) as e:
        parse_stream(_pieces(text, 6))
    assert message in str(e.value)


def test_items_arrive_while_the_text_is_still_coming():
    seen: list[object] = []
    stream = ItemStream(seen.append)
    stream.feed('{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"fam')
    assert seen == [{"metainfo": {"version": "1.0.6"}}]  # the table is not complete yet
    text = (FIXTURES / "healthy" / "nft-ruleset.json").read_text()
    body = text[text.index('{"table"'):]
    stream.feed('ily": "ip", "name": "t", "handle": 1}}, ' + body[:len(body) // 2])
    half = len(seen)
    assert half > 20  # most of the first half, before the end of the text
    stream.feed(body[len(body) // 2:])
    stream.close()
    assert stream.items == len(seen) > half
