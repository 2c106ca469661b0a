"""The packet's fate line at the end of every `trace` (real CLI on real captures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubectl_proxydoctor.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


def fates(capsys, fixture: str, *args: str) -> list[dict]:
    with pytest.raises(SystemExit) as exc:
        main(["trace", "--from", str(FIXTURES / fixture), "-o", "json", *args])
    out, _ = capsys.readouterr()
    assert int(exc.value.code or 0) == 0
    return json.loads(out)["results"]


def test_node_address_port_nobody_uses_is_delivered_to_the_node(capsys) -> None:
    (result,) = fates(capsys, "iptables/healthy", "--src", "172.30.0.2", "--dst", "172.30.0.1:31999")
    assert result["outcomes"][0]["fate"] == "node"
    assert result["fate"].startswith("no DNAT: delivered to the node itself (INPUT, 172.30.0.1:31999/tcp)")
    assert "refused unless a host process listens on tcp/31999 (listening sockets not captured)" \
        in result["fate"]


def test_cluster_ip_not_programmed_is_routed_on_and_times_out(capsys) -> None:
    (result,) = fates(capsys, "iptables/healthy", "--src", "172.30.0.1", "--dst", "10.96.100.21:80")
    assert [o["fate"] for o in result["outcomes"]] == ["routed"]
    assert "routed on unchanged to 10.96.100.21:80" in result["fate"]
    assert "Service default/ignored" in result["fate"] and "times out" in result["fate"]


def test_third_party_accept_names_the_rule_and_times_out(capsys) -> None:
    (result,) = fates(capsys, "iptables/third-party-rules", "--src", "172.30.0.2", "--dst", "10.96.100.10:80")
    assert result["fate"].startswith("ACCEPT without DNAT ('added-by-hand' ended NAT before any DNAT)")
    assert "times out" in result["fate"]


def test_reject_and_drop_name_the_rule_comment(capsys) -> None:
    (rej,) = fates(capsys, "iptables/healthy", "--src", "172.30.0.1", "--dst", "10.96.100.14:80")
    assert rej["fate"] == ("REJECT: the client gets 'connection refused' "
                           "(default/no-endpoints:http has no endpoints)")
    (drop,) = fates(capsys, "iptables/healthy", "--src", "172.30.0.1", "--dst", "10.96.100.19:80")
    assert drop["fate"].startswith(
        "DROP: the client times out (default/itp-local:http has no local endpoints")


def test_dnat_fate_names_pods_shares_and_masquerade(capsys) -> None:
    (result,) = fates(capsys, "iptables/healthy", "--src", "172.30.0.2", "--dst", "10.96.100.10:80")
    assert result["fate"] == (
        "DNAT to 3 endpoints (10.244.0.11:8080 33% pod pdpod1 on this node, 10.244.0.12:8080 33% pod pdpod2 "
        "on this node, 10.244.0.13:8080 33% pod pdpod3 on this node), forwarded to a pod, masqueraded")


def test_stale_endpoint_is_marked(capsys) -> None:
    (result,) = fates(capsys, "iptables/stale-endpoint", "--src", "172.30.0.1", "--dst", "10.96.100.10:80")
    marks = {o["destination"]: o["marks"] for o in result["outcomes"]}
    assert marks["10.244.0.12:8080"] == ["stale: no EndpointSlice of default/web lists 10.244.0.12:8080"]
    assert marks["10.244.0.11:8080"] == [] and marks["10.244.0.13:8080"] == []


def test_nftables_local_delivery_skips_postrouting(capsys) -> None:
    (result,) = fates(capsys, "nftables/healthy", "--src", "172.30.0.2", "--dst", "172.30.0.1:31999")
    (outcome,) = result["outcomes"]
    chains = [step["chain"] for step in outcome["path"]]
    assert any("filter-input" in c for c in chains)
    assert not any("postrouting" in c or "masquerading" in c for c in chains)
    assert outcome["fate"] == "node"


def test_nftables_hooks_in_netfilter_order(capsys) -> None:
    (result,) = fates(capsys, "nftables/healthy", "--src", "172.30.0.2", "--dst", "10.96.100.10:80")
    for outcome in result["outcomes"]:
        hooks = [step["why"].split(",")[0].removeprefix("hook ") for step in outcome["path"]
                 if step["why"].startswith("hook ")]
        order = ["prerouting", "forward", "postrouting"]
        assert [h for h in order if h in hooks] == sorted(set(hooks), key=order.index)
        assert "input" not in hooks


def test_tui_trace_tree_shows_the_same_fate_line() -> None:
    from textual.widgets import Tree

    from kubectl_proxydoctor import modes
    from kubectl_proxydoctor.fate import trace_fate
    from kubectl_proxydoctor.model import Packet
    from kubectl_proxydoctor.node_facts import node_facts
    from kubectl_proxydoctor.snapshot import NodeSnapshot
    from kubectl_proxydoctor.tui.screens.trace import fill_tree

    snapshot = NodeSnapshot.load(FIXTURES / "iptables/healthy")
    results = modes.trace_all(snapshot, Packet("172.30.0.1", 31999, "TCP", "172.30.0.2"), ("iptables",))
    tree: Tree = Tree("packet")
    fill_tree(tree.root, results, node_facts(snapshot))
    label = str(tree.root.children[0].label)
    assert trace_fate(results[0], node_facts(snapshot)).line in label
    assert "delivered to the node itself" in label


def test_two_backends_say_which_takes_the_packet_from_conntrack(capsys) -> None:
    results = fates(capsys, "iptables/legacy-leftovers", "--src", "172.30.0.1", "--dst", "10.96.100.10:80")
    with pytest.raises(SystemExit):
        main(["trace", "--from", str(FIXTURES / "iptables/legacy-leftovers"), "-o", "json",
              "--src", "172.30.0.1", "--dst", "10.96.100.10:80"])
    doc = json.loads(capsys.readouterr()[0])
    assert doc["backends"]["first"] == "iptables-legacy"
    assert "same priority (-100" in doc["backends"]["why"]
    assert "10.244.0.99:8080, which only iptables-legacy DNATs to" in doc["backends"]["why"]
    legacy = next(r for r in results if r["source"] == "iptables-legacy")
    stale = next(o for o in legacy["outcomes"] if o["destination"] == "10.244.0.99:8080")
    assert stale["marks"] == [
        "stale: no EndpointSlice of default/web lists 10.244.0.99:8080 (no EndpointSlice has this IP "
        "at all: if its pod is gone, the connection times out)"]


def test_one_backend_only_has_no_backend_note(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["trace", "--from", str(FIXTURES / "iptables/healthy"), "-o", "json",
              "--src", "172.30.0.1", "--dst", "10.96.100.10:80"])
    assert json.loads(capsys.readouterr()[0])["backends"] is None


def test_terminating_endpoint_is_marked() -> None:
    from kubectl_proxydoctor.fate import outcome_fate
    from kubectl_proxydoctor.model import Endpoint, Packet, ServicePortName, TraceOutcome
    from kubectl_proxydoctor.node_facts import node_facts
    from kubectl_proxydoctor.snapshot import NodeSnapshot

    facts = node_facts(NodeSnapshot.load(FIXTURES / "iptables/healthy"))
    name = ServicePortName("default", "terminating", "http", "TCP")
    packet = Packet("10.96.100.20", 80, "TCP", "172.30.0.1")
    serving = outcome_fate(TraceOutcome("dnat", Endpoint("10.244.0.12", 8080), service=name), packet, facts)
    ready = outcome_fate(TraceOutcome("dnat", Endpoint("10.244.0.11", 8080), service=name), packet, facts)
    assert serving.marks == ("terminating",) and ready.marks == ()


def test_src_accepts_a_pod_name_or_node(capsys) -> None:
    (pod,) = fates(capsys, "iptables/healthy", "--src", "pdpod1", "--dst", "203.0.113.10:80")
    (ns_pod,) = fates(capsys, "iptables/healthy", "--src", "default/pdpod1", "--dst", "203.0.113.10:80")
    assert pod == ns_pod
    assert pod["fate"].startswith("DROP: the client times out")  # pdpod1 is outside the source ranges
    with pytest.raises(SystemExit):
        main(["trace", "--from", str(FIXTURES / "iptables/healthy"), "-o", "json", "--src", "node",
              "--dst", "10.96.100.10:80"])
    doc = json.loads(capsys.readouterr()[0])
    assert doc["packet"]["src"] == "172.30.0.1"
    assert doc["results"][0]["outcomes"][0]["path"][0]["chain"] == "nat/OUTPUT"


def test_src_unknown_name_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["trace", "--from", str(FIXTURES / "iptables/healthy"), "--src", "nopod",
              "--dst", "10.96.100.10:80"])
    err = capsys.readouterr()[1]
    assert exc.value.code == 2
    assert "--src 'nopod' is not an IP address, 'node', or a pod the API's EndpointSlices name" in err


def test_tui_packet_source_by_name() -> None:
    from kubectl_proxydoctor.errors import ParseError
    from kubectl_proxydoctor.node_facts import node_facts, resolve_source
    from kubectl_proxydoctor.snapshot import NodeSnapshot
    from kubectl_proxydoctor.tui.packet import parse_packet

    facts = node_facts(NodeSnapshot.load(FIXTURES / "iptables/healthy"))
    resolve = lambda name, family: resolve_source(name, facts, family)  # noqa: E731
    assert parse_packet("10.96.100.10:80 from pdpod2", resolve).src == "10.244.0.12"
    assert parse_packet("10.96.100.10:80 from node", resolve).src == "172.30.0.1"
    with pytest.raises(ParseError):
        parse_packet("10.96.100.10:80 from pdpod2")  # no API to look names up in


def test_leftover_rules_that_do_not_touch_the_packet_defer_to_the_mode_that_does(capsys) -> None:
    results = fates(capsys, "nftables/after-switch-from-iptables", "--src", "node",
                    "--dst", "10.96.100.10:80")
    by_mode = {r["mode"]: r["fate"] for r in results}
    assert by_mode["iptables"] == ("no rule here touches this packet: it passes these iptables-nft rules "
                                   "untouched, and nftables decides its fate")
    assert by_mode["nftables"].startswith("DNAT to 3 endpoints")


def test_ipvs_fates(capsys) -> None:
    (node,) = fates(capsys, "ipvs/healthy", "--src", "172.30.0.2", "--dst", "172.30.0.1:31999")
    assert node["fate"].startswith("no DNAT: delivered to the node itself (INPUT, 172.30.0.1:31999/tcp)")
    (rej,) = fates(capsys, "ipvs/healthy", "--src", "172.30.0.1", "--dst", "10.96.100.14:80")
    assert rej["fate"] == ("REJECT: the client gets 'connection refused' (IPVS virtual server "
                           "10.96.100.14:80/tcp has no real server with weight > 0)")


def test_hairpin_masquerade_is_named(capsys) -> None:
    (result,) = fates(capsys, "iptables/healthy", "--src", "pdpod1", "--dst", "10.96.100.17:80")
    assert result["fate"].endswith("forwarded to a pod, masqueraded to 10.244.0.11:8080 (hairpin: the "
                                   "client is that endpoint), source kept otherwise")


def test_api_oddities_fqdn_slices_sloppy_ips_and_same_pod_name_in_two_namespaces(capsys, tmp_path) -> None:
    """An FQDN EndpointSlice anywhere is ignored (as kube-proxy does), endpoint IPs written with
    leading zeros match the rules, and a pod name used in two namespaces needs NAMESPACE/NAME."""
    import copy
    import shutil

    capture = tmp_path / "node"
    shutil.copytree(FIXTURES / "iptables" / "healthy", capture)
    api = json.loads((capture / "api.json").read_text())
    slices = [o for o in api["items"] if o.get("kind") == "EndpointSlice"]
    web = next(s for s in slices if s["metadata"]["labels"].get("kubernetes.io/service-name") == "web")
    for ep in web["endpoints"]:
        ep["addresses"] = [".".join(f"{int(o):03d}" for o in a.split(".")) for a in ep["addresses"]]
    fqdn = copy.deepcopy(web)
    fqdn["metadata"]["name"] = "web-fqdn"
    fqdn["addressType"] = "FQDN"
    fqdn["endpoints"] = [{"addresses": ["db.example.com"], "conditions": {"ready": True}}]
    twin = copy.deepcopy(web)
    twin["metadata"].update(name="twin", namespace="other")
    twin["metadata"]["labels"]["kubernetes.io/service-name"] = "twin"
    twin["endpoints"] = [{"addresses": ["10.244.0.77"], "conditions": {"ready": True},
                          "targetRef": {"kind": "Pod", "name": "pdpod1", "namespace": "other"}}]
    api["items"] += [fqdn, twin]
    (capture / "api.json").write_text(json.dumps(api))
    with pytest.raises(SystemExit) as exc:
        main(["svc", "web", "--from", str(capture)])
    out = capsys.readouterr()[0]
    assert exc.value.code == 0 and "stale" not in out
    with pytest.raises(SystemExit) as exc:
        main(["trace", "--from", str(capture), "--src", "pdpod1", "--dst", "10.96.100.10:80"])
    assert exc.value.code == 2 and "ambiguous" in capsys.readouterr()[1]
    with pytest.raises(SystemExit) as exc:
        main(["trace", "--from", str(capture), "-o", "json", "--src", "other/pdpod1",
              "--dst", "10.96.100.10:80"])
    assert json.loads(capsys.readouterr()[0])["packet"]["src"] == "10.244.0.77"


def test_tui_trace_says_rules_unknown_not_no_rules(tmp_path) -> None:
    """The TUI trace view uses the same unknown-rules decision as `trace` (sources.trace_unknown_lines)."""
    import shutil

    from textual.widgets import Tree

    from kubectl_proxydoctor.modes import MODES
    from kubectl_proxydoctor.snapshot import NodeSnapshot
    from kubectl_proxydoctor.tracing import trace_unknown_lines
    from kubectl_proxydoctor.tui.screens.trace import fill_tree

    capture = tmp_path / "node"
    shutil.copytree(FIXTURES / "iptables" / "healthy", capture)
    for dump in [*capture.glob("ip*tables*-save.txt"), *capture.glob("nft-ruleset.*")]:
        dump.unlink()
    unknown = trace_unknown_lines(NodeSnapshot.load(capture), tuple(MODES), set())
    assert unknown and "iptables rules were not captured" in unknown[0]
    tree: Tree = Tree("packet")
    fill_tree(tree.root, [], None, unknown)
    labels = [str(c.label) for c in tree.root.children]
    assert labels[0].startswith("unknown: iptables rules were not captured")
    assert not any("no proxy rules" in label for label in labels)
