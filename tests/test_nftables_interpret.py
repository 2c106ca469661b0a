"""The nftables interpreter on every real capture: endpoints equal what kube-proxy was given."""

from __future__ import annotations

import pytest

from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.model import Endpoint, ServicePortName
from kubectl_proxydoctor.modes import interpret_all
from kubectl_proxydoctor.modes.nftables import interpret
from kubectl_proxydoctor.modes.nftables.interpreter import chain_hash, parse_chain_name, table_problems
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.test_nftables_expect import FIXTURES, expected_endpoints, fixture_dirs

# drift captures: what SCENARIO.md says differs from the current API objects
DRIFT = {
    "stale-endpoint": {"default/web:http/TCP": {"extra": {"10.244.0.12:8080"}}},
    "new-service": {"default/late:http/TCP": {"absent": True}},
}


def _ports(snapshot: NodeSnapshot) -> dict[str, object]:
    views = [v for v in interpret(snapshot) if v.source == "nftables"]
    assert len(views) == 1
    return {name.key: port for (name, fam), port in views[0].ports.items()}


@pytest.mark.parametrize("capture", fixture_dirs(), ids=lambda p: p.name)
def test_endpoints_equal_what_kube_proxy_was_given(capture):
    snapshot = NodeSnapshot.load(capture)
    ports = _ports(snapshot)
    expected = expected_endpoints(snapshot.text("api.json"))
    drift = DRIFT.get(capture.name, {})
    for key, exp in expected.items():
        d = drift.get(key, {})
        if d.get("absent"):
            assert key not in ports, key
            continue
        assert key in ports, f"{key} not programmed"
        port = ports[key]
        got = {str(e) for e in port.endpoints}
        assert got == exp["cluster"] | d.get("extra", set()), key
        cluster_fe = [f for f in port.frontends if f.kind == "cluster-ip"]
        assert len(cluster_fe) == 1
        if not exp["cluster"]:
            assert cluster_fe[0].no_endpoints == ("drop" if exp["itp_local"] else "reject"), key
        else:
            total = sum(t.probability for t in cluster_fe[0].targets)
            assert total == pytest.approx(1.0), key
        for fe in port.frontends:
            if fe.kind == "node-port":
                assert fe.port == exp["node_port"]
                want = exp["local"] if exp["etp_local"] else exp["cluster"]
                assert {str(e) for e in fe.endpoints} == want | d.get("extra", set())
                assert fe.policy == ("local" if exp["etp_local"] else "cluster")
    # nothing programmed that the API does not know, except the drift
    assert set(ports) - set(expected) == set()
    assert table_problems(views_raw(snapshot), "ip") == []


def views_raw(snapshot):
    return next(v.raw for v in interpret(snapshot) if v.source == "nftables")


def test_healthy_details():
    snapshot = NodeSnapshot.load(FIXTURES / "healthy")
    ports = _ports(snapshot)
    lb = ports["default/lb:http/TCP"]
    kinds = {f.kind: f for f in lb.frontends}
    assert set(kinds) == {"cluster-ip", "load-balancer", "node-port"}
    assert kinds["load-balancer"].ip == "203.0.113.10"
    assert kinds["load-balancer"].source_ranges == ["172.30.0.0/24", "203.0.113.10"]
    assert kinds["load-balancer"].masquerade.startswith("always")
    assert kinds["cluster-ip"].masquerade == "from sources outside 10.244.0.0/16 (off-cluster traffic)"
    assert any("firewall-D2RGPZ6L" in e for e in kinds["load-balancer"].evidence)
    ext = {f.kind: f for f in ports["default/ext:http/TCP"].frontends}
    assert ext["external-ip"].ip == "198.51.100.20"
    aff = ports["default/web-affinity:http/TCP"].frontends[0]
    assert aff.affinity_seconds == 600
    web = ports["default/web:http/TCP"].frontends[0]
    assert [round(t.probability, 6) for t in web.targets] == [round(1 / 3, 6)] * 3
    assert any("dnat to 10.244.0.12:8080" in e for t in web.targets for e in t.evidence)
    element = "10.96.100.10 . tcp . 80 : goto service-SUSTUHLJ-default/web/tcp/http"
    assert f"map service-ips: {element}" in web.evidence
    local = {f.kind: f for f in ports["default/web-local:http/TCP"].frontends}["node-port"]
    assert local.policy == "local" and local.masquerade.startswith("only traffic from this node")
    dns = ServicePortName("default", "dns", "dns", "UDP")
    assert ports[dns.key].frontends[0].targets[0].endpoint == Endpoint("10.244.0.11", 5353)


def test_views_through_mode_dispatch():
    snapshot = NodeSnapshot.load(FIXTURES / "healthy")
    views = [v for v in interpret_all(snapshot, modes=("nftables",))]
    assert [v.source for v in views] == ["nftables", "nftables-ip6"]
    assert views[0].mode == "nftables" and views[0].endpoint_count > 0
    assert views[1].ports == {}


def test_chain_names_and_hashes():
    name = parse_chain_name("endpoint-ZTRZVRFS-default/web/tcp/http__10.244.0.12/8080")
    assert name is not None and name.prefix == "endpoint" and name.endpoint == "10.244.0.12/8080"
    assert name.name == ServicePortName("default", "web", "http", "TCP")
    assert name.hash_ok
    assert parse_chain_name("service-SUSTUHLJ-default/web/tcp/http").hash_ok
    assert chain_hash("ns1/svc1/tcp/p80") == "ULMVA6XW"  # from kube-proxy's own unit tests
    assert parse_chain_name("services") is None
    assert parse_chain_name("service-ABCDEFGH-only/three/parts") is None
    assert not parse_chain_name("service-AAAAAAAA-default/web/tcp/http").hash_ok


def test_no_nft_capture_means_no_view():
    assert interpret(NodeSnapshot.from_files({"iptables-save.txt": ""})) == []


def test_views_are_interpreted_once_per_snapshot_and_evidence_renders_when_read():
    from kubectl_proxydoctor.modes.nftables.interpreter import NftFrontend, NftTarget
    from kubectl_proxydoctor.snapshot import NodeSnapshot

    snap = NodeSnapshot.load(FIXTURES / "stale-endpoint")
    views = interpret(snap)
    assert [id(v) for v in interpret(snap)] == [id(v) for v in views]  # cached
    fe = next(f for p in views[0].ports.values() for f in p.frontends if f.targets)
    assert isinstance(fe, NftFrontend) and isinstance(fe.targets[0], NftTarget)
    assert fe.pending  # nothing rendered yet
    lines = fe.evidence
    assert lines and all(isinstance(line, str) for line in lines) and not fe.pending
    assert fe.targets[0].evidence[-1].startswith("endpoint-") and " dnat to " in fe.targets[0].evidence[-1]
    snap.files["nft-ruleset.json"] += " "  # a replaced capture file is interpreted again
    assert interpret(snap)[0] is not views[0]


# kube-proxy's expected rulesets of every layout generation (tests/fixtures/upstream)
UPSTREAM_DIRS = sorted(p for p in (FIXTURES.parent / "upstream" / "nftables").iterdir()
                       if (p / "nft-ruleset.json").exists())


def _walked_and_plain(items: list) -> tuple:
    """(views, problems) of ``items`` parsed with chains walked while read, then without."""
    import copy

    from kubectl_proxydoctor.formats.nft_parse import RulesetBuilder
    from kubectl_proxydoctor.modes.nftables.interpreter import interpret_ruleset, note_chain_done
    from tests.test_nftables_collect import _summary

    out = []
    for hook in (note_chain_done, None):
        try:
            builder = RulesetBuilder(on_chain_done=hook)
            for item in copy.deepcopy(items):
                builder.add(item)
            ruleset = builder.finish()
            walked = sum(1 for t in ruleset.tables.values() for c in t.chains.values() if c.walk is not None)
            views = interpret_ruleset(ruleset)
        except ParseError as e:
            out.append((f"ParseError: {e}", None, 0))
            continue
        out.append((_summary(views), [table_problems(ruleset, f) for f in ("ip", "ip6")], walked))
    return out


def _rules_reordered(items: list, order: str, seed: int) -> list:
    import copy
    import random

    rules = [i for i in items if "rule" in i]
    rest = [i for i in items if "rule" not in i]
    if order == "reversed":
        rules.reverse()  # every service chain listed before its endpoint chains
    elif order == "shuffled":
        random.Random(seed).shuffle(rules)  # chains' rules split up, counts change after a walk
    elif order == "one-moved-last":  # a chain completes, is walked, and gains a rule afterwards
        rng = random.Random(seed)
        eps = [i for i, r in enumerate(rules) if r["rule"]["chain"].startswith("endpoint-")]
        rules.append(rules.pop(rng.choice(eps)))
    elif order == "one-relisted":  # an endpoint chain listed again, with another dnat: it replaces
        rng = random.Random(seed)
        dnat = copy.deepcopy(rng.choice([r for r in rules if r["rule"]["chain"].startswith("endpoint-")
                                         and any("dnat" in e for e in r["rule"]["expr"])]))
        body = dnat["rule"]
        chain = next(i for i in rest if "chain" in i and i["chain"]["name"] == body["chain"]
                     and i["chain"]["family"] == body["family"])
        next(e for e in body["expr"] if "dnat" in e)["dnat"]["addr"] = "10.99.99.99"
        rules += [copy.deepcopy(chain), dnat]
    elif order == "one-dropped":  # an endpoint chain without its dnat: the service walk must not hold
        rng = random.Random(seed)
        dnats = [i for i, r in enumerate(rules) if any("dnat" in e for e in r["rule"]["expr"])]
        del rules[rng.choice(dnats)]
    return rest + rules


@pytest.mark.parametrize("order", ["as listed", "reversed", "shuffled", "one-moved-last", "one-dropped",
                                   "one-relisted"])
@pytest.mark.parametrize("capture", fixture_dirs() + UPSTREAM_DIRS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_chains_walked_while_read_give_what_walking_afterwards_gives(capture, order):
    """note_chain_done's early walks are used only while they still hold: whatever the order of
    the rules, the views and problems equal those of a ruleset walked only afterwards."""
    import json

    items = json.loads((capture / "nft-ruleset.json").read_text())["nftables"]
    for seed in range(1 if order in ("as listed", "reversed") else 3):
        (walked_views, walked_problems, walked), (views, problems, none) = _walked_and_plain(
            _rules_reordered(items, order, seed))
        assert none == 0
        if order == "as listed":
            assert walked > 0
        assert walked_views == views
        assert walked_problems == problems
