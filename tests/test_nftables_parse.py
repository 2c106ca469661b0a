"""nft JSON parsing and rendering, and bad input: every failure is the tool's own error."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubectl_proxydoctor.checks import CheckContext, load_checks, run_checks
from kubectl_proxydoctor.errors import ParseError, ProxyDoctorError
from kubectl_proxydoctor.formats.nft_model import priority_text
from kubectl_proxydoctor.formats.nft_parse import parse_ruleset, parse_ruleset_text
from kubectl_proxydoctor.model import Packet
from kubectl_proxydoctor.modes.nftables import interpret, trace
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.test_nftables_expect import FIXTURES

HEALTHY = (FIXTURES / "healthy" / "nft-ruleset.json").read_text()


def test_parses_tables_sets_maps_and_renders_like_nft():
    rs = parse_ruleset_text(HEALTHY)
    assert rs.version == "1.0.6" and rs.schema_version == 1
    table = rs.table("ip", "kube-proxy")
    svc_ips = table.sets["service-ips"]
    assert svc_ips.kind == "map" and svc_ips.key_type == ("ipv4_addr", "inet_proto", "inet_service")
    assert svc_ips.data_type == "verdict" and len(svc_ips.elements) == 16
    assert svc_ips.lookup(("10.96.100.10", "tcp", 80)).value == {
        "goto": {"target": "service-SUSTUHLJ-default/web/tcp/http"}}
    firewall = table.sets["firewall-ips"].elements[0]
    assert firewall.comment == "default/lb:http"
    affinity = table.sets["affinity-OY3EDL3P-default/web-affinity/tcp/http__10.244.0.13/8080"]
    assert affinity.timeout == 600 and affinity.elements[0].key == ("172.30.0.1",)
    assert affinity.elements[0].expires == 593
    chain = table.chains["nat-prerouting"]
    assert (chain.type, chain.hook, chain.prio, chain.policy) == ("nat", "prerouting", -100, "accept")
    # rule texts: the same as the fixture's `nft list ruleset` (counter values aside)
    listing = (FIXTURES / "healthy" / "nft-ruleset.txt").read_text()
    for c in table.chains.values():
        if c.is_base:
            assert c.header() in listing
        for r in c.rules:
            assert r.text in listing, r.text


@pytest.mark.parametrize("prio,hook,text", [
    (-300, "prerouting", "raw"), (-110, "prerouting", "dstnat - 10"), (-110, "input", "-110"),
    (-100, "output", "-100"), (-90, "output", "-90"), (100, "postrouting", "srcnat"), (0, "input", "filter"),
    (5, "forward", "filter + 5"),
])
def test_priority_names_as_nft_lists_them(prio, hook, text):
    assert priority_text(prio, hook) == text


@pytest.mark.parametrize("text,message", [
    ("", "empty file"),
    (HEALTHY[: len(HEALTHY) // 2], "not valid JSON"),
    ("[]", 'expected a JSON object {"nftables": [...]}'),
    ('{"nftables": [{"metainfo": {"json_schema_version": 2, "version": "9.9"}}]}',
     "nft JSON schema version 2 (nft 9.9) is not supported"),
    ('{"nftables": [{"table": {"family": "ip"}}]}', "item 0 (table): missing or bad 'name'"),
    ('{"nftables": [{"table": {"family": "ipx", "name": "t"}}]}', "unknown family 'ipx'"),
    ('{"nftables": [{"frobnicator": {}}]}', "unknown object kind 'frobnicator'"),
    ('{"nftables": [{"chain": {"family": "ip", "table": "t", "name": "c"}}]}',
     "table ip t is not listed before it"),
    ('{"nftables": [{"table": {"family": "ip", "name": "t"}}, '
     '{"rule": {"family": "ip", "table": "t", "chain": "c", "expr": []}}]}',
     "rule for chain 'c', which table ip t does not list"),
    ('{"nftables": [{"table": {"family": "ip", "name": "t"}}, '
     '{"chain": {"family": "ip", "table": "t", "name": "c", "hook": "input", "prio": {"name": "filter"}}}]}',
     "in a format this tool does not read"),
    ('{"nftables": [{"table": {"family": "ip", "name": "t"}}, {"map": {"family": "ip", "table": "t", '
     '"name": "m", "type": ["ipv4_addr", "inet_proto"], "map": "verdict", "elem": [[{"concat": ["1.2.3.4"]}, '
     '{"drop": null}]]}}]}', "key has 1 parts, the type ipv4_addr . inet_proto has 2"),
])
def test_bad_input_is_a_parse_error(text, message):
    with pytest.raises(ParseError) as err:
        parse_ruleset_text(text)
    assert message in str(err.value)
    assert str(err.value).startswith("nft-ruleset.json")


def test_truncated_file_names_the_line():
    pretty = json.dumps(json.loads(HEALTHY), indent=1)
    with pytest.raises(ParseError) as err:
        parse_ruleset_text(pretty[:5000])
    assert err.value.line is not None and err.value.line > 1
    assert "truncated?" in str(err.value)


def test_a_table_named_kube_proxy_that_is_not_kube_proxys():
    doc = {"nftables": [{"table": {"family": "ip", "name": "kube-proxy"}},
                        {"chain": {"family": "ip", "table": "kube-proxy", "name": "input", "type": "filter",
                                   "hook": "input", "prio": 0, "policy": "accept"}}]}
    snapshot = NodeSnapshot.from_files({"nft-ruleset.json": json.dumps(doc)})
    with pytest.raises(ParseError, match="table ip kube-proxy is not kube-proxy's"):
        interpret(snapshot)


def test_other_objects_are_kept_not_dropped():
    doc = json.loads(HEALTHY)
    doc["nftables"].append({"counter": {"family": "ip", "table": "kube-proxy", "name": "c1", "packets": 0}})
    rs = parse_ruleset(doc)
    assert rs.table("ip", "kube-proxy").others == [doc["nftables"][-1]]


def _mutations(doc: dict, rnd: random.Random) -> dict:
    doc = json.loads(json.dumps(doc))
    items = doc["nftables"]
    for _ in range(rnd.randint(1, 4)):
        item = rnd.choice(items)
        body = next(iter(item.values()))
        if not isinstance(body, dict) or not body:
            continue
        key = rnd.choice(sorted(body))
        choice = rnd.randint(0, 4)
        if choice == 0:
            del body[key]
        elif choice == 1:
            body[key] = None
        elif choice == 2:
            body[key] = rnd.choice([0, "", [], {}, "x", -1, True, {"set": []}])
        elif choice == 3:
            items.remove(item)
        else:
            body[key] = [body[key]]
    return doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=2**32))
def test_mutated_json_never_crashes(seed):
    doc = _mutations(json.loads(HEALTHY), random.Random(seed))
    snapshot = NodeSnapshot.from_files({"nft-ruleset.json": json.dumps(doc),
                                        "ip-addr.json": (FIXTURES / "healthy" / "ip-addr.json").read_text()})
    try:
        views = interpret(snapshot)
        checks = [n for n in load_checks() if n.startswith("nftables-")]
        run_checks(CheckContext(snapshot=snapshot, views=views), only=checks)
        trace(snapshot, Packet("10.96.100.10", 80, "TCP", "172.30.0.2"))
        trace(snapshot, Packet("172.30.0.1", 30081, "TCP", "172.30.0.1"))
    except ProxyDoctorError:
        pass
