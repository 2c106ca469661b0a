"""kube-proxy's own expectations as the oracle, for every nftables layout generation.

tests/fixtures/upstream/nftables/<version>/ holds the ruleset kube-proxy's TestOverallNFTablesRules
expects at one upstream commit (source.json), loaded with the real nft and dumped
(regenerate.py), with the test's Services/EndpointSlices/Node as api.json:

- healthy: ``check`` finds every service port ok and no drift;
- drift made by changing only the API (an endpoint removed or added, a port or nodePort changed,
  a service deleted) is found on the right service port;
- the fixture is what the real nft makes of the stored expected ruleset (regenerated in a
  namespace and compared);
- ``trace`` agrees with every packet-flow case of kube-proxy's tests (flows/<test>/cases.json:
  endpoint set, REJECT/DROP/not DNATed, masquerade) on the ruleset kube-proxy programs for that
  test's objects (kube_proxy_nft.py, which must reproduce every stored expectation exactly).
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.modes.nftables import layout_generations
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.fixtures.upstream.kube_proxy_nft import Config, generate
from tests.fixtures.upstream.regenerate import nft_script

UPSTREAM = Path(__file__).parent / "fixtures" / "upstream" / "nftables"
VERSIONS = sorted(p.name for p in UPSTREAM.iterdir() if (p / "expected-ruleset.txt").exists())
GENERATION = {"1.31-era": "v1.29-v1.33", "1.34-era": "v1.34-v1.35", "master": "v1.36+"}
DRIFT_CODES = {"stale-endpoint", "missing-endpoint", "wrong-port", "missing-frontend", "stale-frontend",
               "stale-service", "not-programmed", "chain-missing"}


FLOWS = sorted(p for p in UPSTREAM.glob("*/flows/*") if (p / "cases.json").exists())


def _api(version: str) -> dict:
    return json.loads((UPSTREAM / version / "api.json").read_text())


def _report(version: str, api: dict | None = None):
    snapshot = NodeSnapshot.load(UPSTREAM / version)
    cluster = ClusterState.from_json_text(json.dumps(api if api is not None else _api(version)))
    return analyse(snapshot, cluster)


def _item(api: dict, kind: str, ns: str, name: str) -> dict:
    return next(i for i in api["items"] if i["kind"] == kind and i["metadata"]["namespace"] == ns
                and i["metadata"]["name"] == name)


@pytest.mark.parametrize("version", VERSIONS)
def test_healthy_expected_ruleset_checks_healthy(version: str) -> None:
    report = _report(version)
    statuses = {s.name.key: s.status for s in report.services}
    assert len(statuses) == 6
    assert set(statuses.values()) == {"ok"}, statuses
    assert [f"{f.code} {f.message}" for f in report.findings if f.severity in ("error", "warning")] == []
    assert report.exit_code == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_layout_generation_is_named(version: str) -> None:
    [(family, gen)] = layout_generations(NodeSnapshot.load(UPSTREAM / version)).items()
    assert family == "ip" and gen is not None
    assert gen.name == GENERATION[version] and gen.evidence


def _remove_endpoint(api: dict) -> tuple[str, str, str]:
    eps = _item(api, "EndpointSlice", "ns4", "svc4-1")["endpoints"]
    eps[:] = [e for e in eps if e["addresses"] != ["10.180.0.4"]]
    return "ns4/svc4", "stale-endpoint", "10.180.0.4:80"


def _add_endpoint(api: dict) -> tuple[str, str, str]:
    _item(api, "EndpointSlice", "ns1", "svc1-1")["endpoints"].append({"addresses": ["10.180.0.9"]})
    return "ns1/svc1", "missing-endpoint", "10.180.0.9:80"


def _change_port(api: dict) -> tuple[str, str, str]:
    _item(api, "Service", "ns3", "svc3")["spec"]["ports"][0]["port"] = 8080
    return "ns3/svc3", "wrong-port", "172.30.0.43"


def _change_node_port(api: dict) -> tuple[str, str, str]:
    _item(api, "Service", "ns5", "svc5")["spec"]["ports"][0]["nodePort"] = 3005
    return "ns5/svc5", "wrong-port", "3002"


def _delete_service(api: dict) -> tuple[str, str, str]:
    api["items"].remove(_item(api, "Service", "ns4", "svc4"))
    return "ns4/svc4", "stale-service", "172.30.0.44"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("inject", [_remove_endpoint, _add_endpoint, _change_port, _change_node_port,
                                    _delete_service], ids=lambda f: f.__name__.strip("_"))
def test_injected_drift_is_found_on_the_right_port(version: str, inject) -> None:
    api = copy.deepcopy(_api(version))
    service, code, needle = inject(api)
    report = _report(version, api)
    drift = [f for f in report.findings if f.code in DRIFT_CODES]
    assert drift, f"{inject.__name__}: no drift found"
    assert {f.service for f in drift} == {service}, [(f.code, f.service, f.message) for f in drift]
    assert all(f.port == "p80" for f in drift)
    hits = [f for f in drift if f.code == code]
    assert hits, [(f.code, f.message) for f in drift]
    assert any(needle in f.message + "\n".join(f.evidence) for f in hits)
    assert report.exit_code == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_fixture_is_what_nft_makes_of_the_expected_ruleset(version: str, netns) -> None:
    ns = netns("pd-upstream-")
    script = nft_script((UPSTREAM / version / "expected-ruleset.txt").read_text())
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True, check=True,
                   capture_output=True)
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"], text=True,
                         check=True, capture_output=True).stdout
    stored = json.loads((UPSTREAM / version / "nft-ruleset.json").read_text())
    assert _objects(json.loads(out)) == _objects(stored)


def _objects(doc: dict) -> list:
    """The listing without nft's metainfo (its version differs between machines)."""
    return [item for item in doc["nftables"] if "metainfo" not in item]


# -- shapes beyond the stored expectations (changed in a copy of the master fixture) ----------------


def _master_with(change) -> NodeSnapshot:
    """The master fixture with ``change(rule)`` applied to the JSON of every rule (in place)."""
    files = {p.name: p.read_text() for p in (UPSTREAM / "master").iterdir() if p.is_file()}
    doc = json.loads(files["nft-ruleset.json"])
    for item in doc["nftables"]:
        if "rule" in item:
            change(item["rule"])
    files["nft-ruleset.json"] = json.dumps(doc)
    return NodeSnapshot.from_files(files)


def _svc_dnat(chain_prefix: str, new: dict):
    def change(rule: dict) -> None:
        if rule["chain"].startswith(chain_prefix):
            for stmt in rule["expr"]:
                if "dnat" in stmt:
                    stmt["dnat"] = new
    return change


def _analyse(snapshot: NodeSnapshot):
    return analyse(snapshot, ClusterState.from_json_text(snapshot.text("api.json")))


def test_single_endpoint_dnat_without_numgen_checks_and_traces():
    """v1.37 (#140723, #140960): a service with one endpoint may DNAT straight from its chain."""
    from kubectl_proxydoctor.model import Packet
    from kubectl_proxydoctor.modes.nftables import trace

    snapshot = _master_with(_svc_dnat("service-ULMVA6XW-ns1/svc1", {"addr": "10.180.0.1", "port": 80}))
    report = _analyse(snapshot)
    assert {s.name.key: s.status for s in report.services}["ns1/svc1:p80/TCP"] == "ok"
    assert report.exit_code == 0
    [result] = trace(snapshot, Packet("172.30.0.41", 80, "TCP", "10.0.0.2"))
    assert [(o.verdict, str(o.destination), o.masquerade) for o in result.outcomes] == [
        ("dnat", "10.180.0.1:80", False)]


def test_unknown_dnat_shape_is_an_unknown_layout_warning_not_drift():
    """A DNAT the layouts do not know (the shape of the unmerged single-map PR #140362) is named
    as unknown layout with its rule, and the port is not reported as drift."""
    unknown = {"family": "ip", "addr": {"map": {
        "key": {"concat": [{"payload": {"protocol": "ip", "field": "daddr"}},
                           {"payload": {"protocol": "tcp", "field": "dport"}},
                           {"numgen": {"mode": "random", "mod": 2, "offset": 0}}]},
        "data": "@endpoints-tcp"}}}
    report = _analyse(_master_with(_svc_dnat("service-LAUZTJTB-ns4/svc4", unknown)))
    svc4 = [f for f in report.findings if f.service == "ns4/svc4"]
    assert [f.code for f in svc4] == ["unknown-layout"], [(f.code, f.message) for f in svc4]
    [warning] = svc4
    assert warning.severity == "warning" and warning.message.startswith("unknown layout: ")
    assert "@endpoints-tcp" in warning.evidence[0]
    assert not [f for f in report.findings if f.severity == "error"]


def test_numgen_map_with_a_missing_entry_is_reported_and_traced():
    from kubectl_proxydoctor.model import Packet
    from kubectl_proxydoctor.modes.nftables import trace

    def three(rule: dict) -> None:
        if rule["chain"].startswith("service-LAUZTJTB-ns4/svc4"):
            next(s for s in rule["expr"] if "dnat" in s)["dnat"]["addr"]["map"]["key"]["numgen"]["mod"] = 3

    snapshot = _master_with(three)
    report = _analyse(snapshot)
    assert any(f.code == "numgen-mismatch" and f.service == "ns4/svc4" for f in report.findings)
    [result] = trace(snapshot, Packet("172.30.0.44", 80, "TCP", "10.0.0.2"))
    by = {(o.verdict, str(o.destination) if o.destination else None): o.probability for o in result.outcomes}
    assert by[("dnat", "10.180.0.4:80")] == pytest.approx(1 / 3)
    assert by[("dnat", "10.180.0.5:80")] == pytest.approx(1 / 3)
    # the third of new connections no map entry takes falls through: no DNAT (rejected by cluster-ips-check)
    assert sum(p for (v, _), p in by.items() if v != "dnat") == pytest.approx(1 / 3)


# -- packet flows ------------------------------------------------------------------------------


def _normalised(text: str) -> tuple[set[str], dict[str, list[str]]]:
    """A ruleset in the tests' format as (objects and elements, each chain's rules in order): the
    comparison kube-proxy's assertNFTablesTransactionEqual makes."""
    objects: set[str] = set()
    rules: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[1] == "rule":
            rules.setdefault(words[4], []).append(line)
        else:
            objects.add(line)
    return objects, rules


@pytest.mark.parametrize("version", VERSIONS)
def test_generator_reproduces_kube_proxys_expected_ruleset(version: str) -> None:
    """The flows' rulesets are generated; the generator is held to kube-proxy's own output."""
    source = json.loads((UPSTREAM / version / "source.json").read_text())
    got = generate(_api(version), Config(version, source["node"]))
    assert _normalised(got) == _normalised((UPSTREAM / version / "expected-ruleset.txt").read_text())


def _traced(outcomes) -> tuple[str, set[bool]]:
    """A trace as kube-proxy's runPacketFlowTests states its output: endpoints, REJECT, DROP or
    "" (neither DNATed nor dropped), and the masquerade of the outcomes."""
    live = [o for o in outcomes if o.probability > 0]
    kinds = {o.verdict for o in live}
    masq = {o.masquerade for o in live}
    if kinds == {"dnat"}:
        return ", ".join(sorted({str(o.destination) for o in live})), masq
    if kinds in ({"reject"}, {"drop"}):
        return kinds.pop().upper(), masq
    if kinds <= {"accept", "no-match"}:
        return "", masq
    return f"mixed {sorted(kinds)}", masq


def _flow_cases() -> list:
    return [pytest.param(d, i, id=f"{d.parent.parent.name}/{d.name}/{c['name']}")
            for d in FLOWS for i, c in enumerate(json.loads((d / "cases.json").read_text())["cases"])]


@pytest.mark.parametrize("flow,index", _flow_cases())
def test_trace_agrees_with_kube_proxys_packet_flow_case(flow: Path, index: int) -> None:
    from kubectl_proxydoctor.model import Packet
    from kubectl_proxydoctor.modes.nftables import trace

    case = json.loads((flow / "cases.json").read_text())["cases"][index]
    [result] = trace(NodeSnapshot.load(flow), Packet(case["destination"], case["port"], case["protocol"],
                                                     case["source"]))
    output, masq = _traced(result.outcomes)
    want = case["output"]
    if want not in ("", "REJECT", "DROP"):
        want = ", ".join(sorted(want.split(", ")))
    assert output == want, [(o.verdict, str(o.destination), o.probability) for o in result.outcomes]
    if output not in ("", "REJECT", "DROP"):
        assert masq == {case["masq"]}


def test_every_version_has_packet_flows() -> None:
    counts = {v: sum(len(json.loads((d / "cases.json").read_text())["cases"]) for d in FLOWS
                     if d.parent.parent.name == v) for v in VERSIONS}
    assert all(n >= 59 for n in counts.values()), counts


@pytest.mark.parametrize("flow", FLOWS, ids=lambda d: f"{d.parent.parent.name}/{d.name}")
def test_flow_fixtures_check_healthy(flow: Path) -> None:
    """The generated rulesets are what kube-proxy programs for the flows' API objects: healthy."""
    report = analyse(NodeSnapshot.load(flow), ClusterState.from_json_text((flow / "api.json").read_text()))
    assert {s.status for s in report.services} == {"ok"}
    assert [f"{f.code} {f.message}" for f in report.findings if f.severity == "error"] == []


def test_rule_no_generation_writes_is_named_with_its_rule():
    """An endpoint chain rule that accepts (added by hand, or a newer layout): a warning that
    quotes it; the endpoints of the port are still read and compared."""
    def accept_first(rule: dict) -> None:
        if rule["chain"].startswith("endpoint-GTK6MW7G-ns5/svc5") and any("dnat" in s for s in rule["expr"]):
            rule["expr"] = [{"counter": {"packets": 0, "bytes": 0}}, {"accept": None}]

    report = _analyse(_master_with(accept_first))
    unknown = [f for f in report.findings if f.code == "unknown-layout"]
    assert [(f.service, f.port) for f in unknown] == [("ns5/svc5", "p80")]
    assert "ending in 'accept'" in unknown[0].message and unknown[0].evidence[0].endswith("accept")
    # the affinity chain lost its DNAT: the port is not called drift, its rules are not understood
    assert not [f for f in report.findings if f.service == "ns5/svc5" and f.severity == "error"]


def test_table_in_no_known_generation_is_an_unknown_layout_warning():
    files = {p.name: p.read_text() for p in (UPSTREAM / "master").iterdir() if p.is_file()}
    doc = json.loads(files["nft-ruleset.json"])
    renamed = {"filter-prerouting-pre-dnat": "filter-pre", "filter-output-pre-dnat": "filter-out-pre",
               "masquerading": "masq"}
    for item in doc["nftables"]:
        body = item.get("chain") or item.get("rule")
        if body is not None:
            key = "name" if "chain" in item else "chain"
            body[key] = renamed.get(body[key], body[key])
        if "rule" in item:
            for stmt in item["rule"]["expr"]:
                if "jump" in stmt and stmt["jump"]["target"] in renamed:
                    stmt["jump"]["target"] = renamed[stmt["jump"]["target"]]
    doc["nftables"] = [i for i in doc["nftables"]
                       if not ("set" in i and i["set"]["name"] == "hairpin-connections")
                       and not ("rule" in i and i["rule"]["chain"] == "masq")]
    files["nft-ruleset.json"] = json.dumps(doc)
    snapshot = NodeSnapshot.from_files(files)
    assert layout_generations(snapshot) == {"ip": None}
    report = _analyse(snapshot)
    [warning] = [f for f in report.findings if f.code == "unknown-layout"]
    assert warning.severity == "warning" and "none of the base chains" in warning.message
    assert {s.status for s in report.services} == {"ok"}  # the services themselves are still read
