"""kube-proxy's own iptables unit-test expectations as the specification.

Each tests/fixtures/upstream/iptables/<version>/ holds the expected ruleset of an upstream test
(loaded with iptables-nft-restore and dumped with iptables-nft-save by regenerate_iptables.py),
the Services/EndpointSlices the test creates (api.json) and its packet-flow cases. A healthy
ruleset must check healthy; a change to api.json alone must be found on the right port; `trace`
must agree with every upstream packet-flow case.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from kubectl_proxydoctor import modes
from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.model import Packet
from kubectl_proxydoctor.snapshot import NodeSnapshot

ROOT = Path(__file__).parent / "fixtures" / "upstream" / "iptables"
VERSIONS = sorted(p for p in ROOT.iterdir() if (p / "iptables-save.txt").is_file())


def _id(p: Path) -> str:
    return p.name


def _api(version: Path) -> dict:
    return json.loads((version / "api.json").read_text())


def _report(version: Path, api: dict | None = None):
    snapshot = NodeSnapshot.load(version)
    cluster = ClusterState.from_list(api if api is not None else _api(version))
    return analyse(snapshot, cluster)


def _item(api: dict, kind: str, ns: str, name: str) -> dict:
    for item in api["items"]:
        meta = item["metadata"]
        if item["kind"] == kind and meta.get("namespace") == ns and meta["name"] == name:
            return item
    raise KeyError((kind, ns, name))


@pytest.mark.parametrize("version", VERSIONS, ids=_id)
def test_healthy_upstream_ruleset_has_no_drift(version: Path) -> None:
    report = _report(version)
    assert report.services, "no service ports compared"
    assert {s.name.key: s.status for s in report.services if s.status != "ok"} == {}
    assert [f.code for f in report.findings if f.severity == "error"] == []
    assert report.exit_code == 0


def _remove_endpoint(api: dict) -> str:
    eps = _item(api, "EndpointSlice", "ns4", "svc4-1")
    eps["endpoints"] = [e for e in eps["endpoints"] if e["addresses"] != ["10.180.0.4"]]
    return "ns4/svc4:p80"


def _add_endpoint(api: dict) -> str:
    _item(api, "EndpointSlice", "ns1", "svc1-1")["endpoints"].append({"addresses": ["10.180.0.9"]})
    return "ns1/svc1:p80"


def _change_port(api: dict) -> str:
    _item(api, "Service", "ns3", "svc3")["spec"]["ports"][0]["port"] = 8080
    return "ns3/svc3:p80"


def _change_node_port(api: dict) -> str:
    _item(api, "Service", "ns3", "svc3")["spec"]["ports"][0]["nodePort"] = 3033
    return "ns3/svc3:p80"


def _delete_service(api: dict) -> str:
    api["items"] = [i for i in api["items"] if i["metadata"].get("namespace") != "ns1"]
    return "ns1/svc1:p80"


DRIFT = {
    "endpoint-removed": _remove_endpoint,
    "endpoint-added": _add_endpoint,
    "port-changed": _change_port,
    "nodeport-changed": _change_node_port,
    "service-deleted": _delete_service,
}


@pytest.mark.parametrize("kind", sorted(DRIFT))
@pytest.mark.parametrize("version", VERSIONS, ids=_id)
def test_injected_drift_is_found_on_the_right_port(version: Path, kind: str) -> None:
    api = copy.deepcopy(_api(version))
    port = DRIFT[kind](api)
    report = _report(version, api)
    drifted = {f"{s.name.service}:{s.name.port}" for s in report.services if s.status != "ok"}
    errors = {f"{f.service}:{f.port}" for f in report.findings if f.severity == "error" and f.service}
    assert port in errors, [f"{f.code} {f.service}:{f.port}" for f in report.findings]
    assert errors == {port}
    assert drifted <= {port}
    assert report.exit_code == 1


def test_api_written_with_leading_zeros_and_spaces_reads_as_kube_proxy_reads_it() -> None:
    """netutils.ParseIPSloppy: 010.180.000.001 is 10.180.0.1; source ranges are trimmed."""
    version = ROOT / "k8s-1.33plus"
    api = copy.deepcopy(_api(version))
    _item(api, "Service", "ns1", "svc1")["spec"]["clusterIP"] = "172.030.000.041"
    _item(api, "EndpointSlice", "ns1", "svc1-1")["endpoints"][0]["addresses"] = ["010.180.000.001"]
    _item(api, "Service", "ns4", "svc4")["spec"]["externalIPs"] = ["192.168.099.033"]
    _item(api, "Service", "ns5", "svc5")["spec"]["loadBalancerSourceRanges"] = ["  203.0.113.000/25 "]
    report = _report(version, api)
    assert {s.name.key: s.status for s in report.services if s.status != "ok"} == {}
    assert [f.code for f in report.findings if f.severity == "error"] == []


def _flow_cases() -> list[tuple[Path, dict]]:
    out = []
    for version in VERSIONS:
        for flows in sorted((version / "upstream").glob("*.flows.json")):
            out += [(version, case) for case in json.loads(flows.read_text())["cases"]]
    return out


def _upstream_output(result) -> tuple[str, bool]:
    """The trace as kube-proxy's tracePacket reports it: DNAT destinations, or ACCEPT/DROP/REJECT, or ""."""
    dnat = sorted(str(o.destination) for o in result.outcomes if o.verdict == "dnat")
    verdicts = {o.verdict for o in result.outcomes}
    if dnat:
        output = ", ".join(dnat)
    elif verdicts & {"drop", "reject", "accept"}:
        (verdict,) = verdicts & {"drop", "reject", "accept"}
        output = verdict.upper()
    else:
        output = ""
    return output, any(o.masquerade for o in result.outcomes)


def _flow_id(value: object) -> str:
    return value["name"] if isinstance(value, dict) else value.name  # type: ignore[union-attr,index]


@pytest.mark.parametrize(("version", "case"), _flow_cases(), ids=_flow_id)
def test_trace_agrees_with_upstream_packet_flow(version: Path, case: dict) -> None:
    snapshot = NodeSnapshot.load(version)
    packet = Packet(case["destIP"], case["destPort"], case.get("protocol") or "TCP", case["sourceIP"])
    (result,) = modes.trace_all(snapshot, packet, ("iptables",))
    want_output = ", ".join(sorted(case["output"].split(", "))) if case["output"] else ""
    assert _upstream_output(result) == (want_output, case["masq"])
