"""Structural nftables checks: fixtures, and hand-broken copies of the healthy ruleset."""

from __future__ import annotations

import copy
import json

import pytest

from kubectl_proxydoctor.checks import CheckContext, load_checks, run_checks
from kubectl_proxydoctor.checks.nftables_structure import mode_leftover_findings
from kubectl_proxydoctor.modes.nftables import interpret
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.test_nftables_expect import FIXTURES

ALL = FIXTURES.parent


def _nft_checks() -> list[str]:
    return [n for n in load_checks() if n.startswith("nftables-")]


def _findings(snapshot: NodeSnapshot):
    return run_checks(CheckContext(snapshot=snapshot, views=interpret(snapshot)), only=_nft_checks())


def _healthy_doc() -> dict:
    return json.loads((FIXTURES / "healthy" / "nft-ruleset.json").read_text())


def _snapshot(doc: dict, **files: str) -> NodeSnapshot:
    base = NodeSnapshot.load(FIXTURES / "healthy")
    out = dict(base.files)
    out["nft-ruleset.json"] = json.dumps(doc)
    out.update({k.replace("_", "-") + ".txt": v for k, v in files.items()})
    return NodeSnapshot.from_files(out)


@pytest.mark.parametrize("capture", sorted(p for p in ALL.glob("*/*") if p.is_dir()),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixtures(capture):
    snapshot = NodeSnapshot.load(capture)
    findings = _findings(snapshot)
    if capture.name != "firewall-in-front":
        assert findings == [], [f.message for f in findings]
        return
    [f] = findings
    expected = json.loads((capture / "expected.json").read_text())["drift"]
    [drift] = [d for d in expected if d["kind"] == "firewall-in-front"]
    assert (f.code, f.severity, f.service, f.port, f.protocol) == (
        "firewall-in-front", "error", drift["service"], drift["port"], "TCP")
    assert drift["detail"] in f.message
    assert "tcp dport 30080 counter drop" in " ".join(f.evidence)
    assert f.fix


def test_mode_leftover_when_node_runs_iptables():
    snapshot = _snapshot(_healthy_doc(), kube_proxy_mode="iptables\n")
    findings = mode_leftover_findings(CheckContext(snapshot=snapshot, views=interpret(snapshot)))
    by_sev = {f.severity: f for f in findings if f.code == "mode-leftover"}
    assert set(by_sev) == {"error", "warning"}  # ip: still DNATs; ip6: empty maps
    assert "kube-proxy runs in iptables mode, but table ip kube-proxy" in by_sev["error"].message
    assert "nat-prerouting (prerouting dstnat)" in by_sev["error"].message
    assert "nft delete table ip kube-proxy" in by_sev["error"].fix
    # the same tables in nftables mode are no leftover
    snapshot = _snapshot(_healthy_doc(), kube_proxy_mode="nftables")
    assert mode_leftover_findings(CheckContext(snapshot=snapshot, views=interpret(snapshot))) == []


def test_mode_leftover_reported_once_with_the_proxy_mode_checks():
    snapshot = _snapshot(_healthy_doc(), kube_proxy_mode="iptables\n")
    ctx = CheckContext(snapshot=snapshot, views=interpret(snapshot))
    checks = [*_nft_checks(), *(n for n in load_checks() if n == "proxy-mode-leftover")]
    leftovers = [f for f in run_checks(ctx, only=checks) if f.code == "mode-leftover"]
    assert len([f for f in leftovers if "table ip kube-proxy" in f.message]) == 1


def _rule(doc: dict, chain: str) -> dict:
    return next(i["rule"] for i in doc["nftables"] if "rule" in i and i["rule"]["chain"] == chain
                and i["rule"]["family"] == "ip" and any("vmap" in e for e in i["rule"]["expr"]))


def test_numgen_modulus_mismatch():
    doc = _healthy_doc()
    rule = _rule(doc, "service-SUSTUHLJ-default/web/tcp/http")
    rule["expr"][0]["vmap"]["key"]["numgen"]["mod"] = 4
    findings = [f for f in _findings(_snapshot(doc)) if f.code == "numgen-mismatch"]
    [f] = findings
    assert (f.service, f.port, f.severity) == ("default/web", "http", "error")
    assert "numgen random mod 4 but the vmap has 3 entries (0, 1, 2): 1 in 4 new connections" in f.message
    # the interpreter gives the real chances: 1/4 each, 1/4 lost
    view = interpret(_snapshot(doc))[0]
    web = next(p for n, p in view.ports.items() if n[0].name == "web")
    assert sum(t.probability for t in web.frontends[0].targets) == pytest.approx(0.75)


def test_missing_and_unreferenced_chains():
    doc = _healthy_doc()
    gone = "endpoint-ZTRZVRFS-default/web/tcp/http__10.244.0.12/8080"
    doc["nftables"] = [i for i in doc["nftables"]
                       if not (next(iter(i.values())).get("chain") == gone or
                               ("chain" in i and i["chain"]["name"] == gone))]
    extra = "service-AAAAAAAA-default/old/tcp/http"
    doc["nftables"] += [
        {"chain": {"family": "ip", "table": "kube-proxy", "name": extra}},
        {"rule": {"family": "ip", "table": "kube-proxy", "chain": extra, "expr": [{"drop": None}]}},
        {"chain": {"family": "ip", "table": "kube-proxy",
                   "name": "endpoint-BBBBBBBB-default/old/tcp/http__1.2.3.4/80"}},
    ]
    findings = _findings(_snapshot(doc))
    codes = sorted((f.code, f.severity, f.service) for f in findings)
    assert ("missing-chain", "error", "default/web") in codes
    assert ("unreferenced-chain", "warning", "default/old") in codes
    assert ("unreferenced-chain", "info", "default/old") in codes
    assert ("nft-unrecognised", "warning", None) in codes  # the interpreter's own report
    missing = next(f for f in findings if f.code == "missing-chain")
    assert gone in missing.message and "numgen random mod 3" in missing.evidence[0]


def _add_firewall(doc: dict, hook: str, prio: int, policy: str, rules: list[list[dict]]) -> None:
    doc["nftables"] += [
        {"table": {"family": "inet", "name": "fw"}},
        {"chain": {"family": "inet", "table": "fw", "name": "c", "type": "filter", "hook": hook, "prio": prio,
                   "policy": policy}},
        *({"rule": {"family": "inet", "table": "fw", "chain": "c", "expr": r}} for r in rules),
    ]


def test_policy_drop_in_front_hits_every_port():
    doc = _healthy_doc()
    accept_ssh = [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                             "right": 22}}, {"accept": None}]
    _add_firewall(doc, "prerouting", -200, "drop", [accept_ssh])
    findings = [f for f in _findings(_snapshot(doc)) if f.code == "firewall-in-front"]
    assert len({(f.service, f.port, f.protocol) for f in findings}) == 16
    assert all(f.severity == "error" and "has policy drop" in f.message for f in findings)


def test_conditional_drop_is_a_warning_and_output_hook_counts():
    doc = _healthy_doc()
    by_iface = [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}},
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                           "right": "10.96.100.10"}}, {"drop": None}]
    _add_firewall(doc, "prerouting", -150, "accept", [by_iface])
    [f] = [f for f in _findings(_snapshot(doc)) if f.code == "firewall-in-front"]
    assert (f.service, f.severity) == ("default/web", "warning")
    assert "that match iifname \"eth0\"" in f.message or "that match iifname eth0" in f.message
    assert "ahead of every kube-proxy hook" in f.message

    doc = _healthy_doc()
    to_web = [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                         "right": "10.96.100.10"}}, {"reject": None}]
    _add_firewall(doc, "output", -105, "accept", [to_web])
    [f] = [f for f in _findings(_snapshot(doc)) if f.code == "firewall-in-front"]
    assert (f.service, f.severity) == ("default/web", "error")
    assert "every connection from this node to 10.96.100.10:80" in f.message and "rejected" in f.message
    assert "ahead of kube-proxy's DNAT" in f.message  # -105: after filter-output (-110), before -100


def test_firewall_after_dnat_or_accepting_is_not_in_front():
    doc = _healthy_doc()
    drop_all = [[{"drop": None}]]
    _add_firewall(doc, "prerouting", 0, "accept", drop_all)  # priority filter: after the DNAT
    assert [f for f in _findings(_snapshot(doc)) if f.code == "firewall-in-front"] == []
    doc = _healthy_doc()
    established = [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established"]}},
                   {"drop": None}]
    _add_firewall(doc, "prerouting", -300, "accept", [established])  # never a new connection
    assert [f for f in _findings(_snapshot(doc)) if f.code == "firewall-in-front"] == []


def test_checks_skip_snapshots_without_nft():
    snap = NodeSnapshot.from_files({"iptables-save.txt": ""})
    assert run_checks(CheckContext(snapshot=snap), only=_nft_checks()) == []
    broken = copy.deepcopy(NodeSnapshot.load(FIXTURES / "healthy").files)
    broken["nft-ruleset.json"] = "{"
    assert run_checks(CheckContext(snapshot=NodeSnapshot.from_files(broken)), only=_nft_checks()) == []


def test_endpoint_chain_dnat_to_another_address_is_reported():
    doc = _healthy_doc()
    chain = "endpoint-ZTRZVRFS-default/web/tcp/http__10.244.0.12/8080"
    rule = next(i["rule"] for i in doc["nftables"] if "rule" in i and i["rule"]["chain"] == chain
                and any("dnat" in e for e in i["rule"]["expr"]))
    rule["expr"][-1]["dnat"]["addr"] = "10.244.0.99"
    snapshot = _snapshot(doc)
    web = next(p for (n, _f), p in interpret(snapshot)[0].ports.items() if n.name == "web")
    assert "10.244.0.99:8080" in {str(e) for e in web.endpoints}  # the rule is the truth
    [f] = [f for f in _findings(snapshot) if f.code == "nft-unrecognised"]
    assert "DNATs to 10.244.0.99:8080, not the endpoint its name says" in f.message
