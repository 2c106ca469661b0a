"""migrate-check node-level checks, each on a real capture (pass side) and a hand-made variation of
it (fail side): kernel, nft features and userspace, NodePort addresses, localhost NodePorts, host
firewall, conntrack INVALID drops, third-party rules, IPVS schedulers, undefined ClusterIP ports."""

from __future__ import annotations

import json

from kubectl_proxydoctor.migrate import clusterip, conntrack, firewall, ipvs, kernel, nodeports, third_party
from kubectl_proxydoctor.migrate.result import NodeInput
from tests.test_migrate_helpers import (
    api_doc,
    cluster,
    context,
    edit_config,
    only,
    snapshot,
    with_file,
    with_meta,
)


def run(fn, target: str, snap, **kw):
    ctx = context(target, snap, **kw)
    return fn(ctx, NodeInput(snap))


def one(fn, target: str, snap, check: str, **kw):
    """The one result named ``check`` that ``fn`` returns for this capture."""
    return only(run(fn, target, snap, **kw), check)


# ---------------------------------------------------------------------------------------- kernel


def test_kernel_features_and_nft_pass_on_a_real_node():
    results = run(kernel.node_kernel, "nftables", snapshot("iptables/healthy"))
    assert only(results, "kernel-version").status == "pass"
    features = only(results, "nft-features")
    assert features.status == "pass"
    assert any("CONFIG_NFT_NUMGEN=y" in e for e in features.evidence)
    nft = only(results, "nft-version")
    assert nft.status == "pass" and "1.0.6" in nft.summary


def test_old_kernel_fails_and_is_essential():
    snap = snapshot("iptables/healthy", {"kernel.txt": "5.10.0-28-amd64\n"})
    result = one(kernel.node_kernel, "nftables", snap, "kernel-version")
    assert result.status == "fail" and result.essential
    assert "5.10.0-28-amd64" in result.summary and "5.13" in result.summary


def test_missing_nft_feature_is_named():
    config = snapshot("iptables/healthy").text("kernel-config.txt") or ""
    config = config.replace("CONFIG_NFT_NUMGEN=y", "# CONFIG_NFT_NUMGEN is not set")
    snap = snapshot("iptables/healthy", {"kernel-config.txt": config})
    result = one(kernel.node_kernel, "nftables", snap, "nft-features")
    assert result.status == "fail"
    assert "numgen" in result.summary and "fib" not in result.summary


def test_features_proven_by_running_nftables_tables():
    result = one(kernel.node_kernel, "nftables", snapshot("nftables/healthy"), "nft-features")
    assert result.status == "pass"
    assert result.evidence == ["nft-ruleset.json: table ip kube-proxy",
                               "nft-ruleset.json: table ip6 kube-proxy"]


def test_features_unknown_without_evidence():
    # the synthesised IPVS capture has a 7-line kernel config and no nft modules loaded
    result = one(kernel.node_kernel, "nftables", snapshot("ipvs/healthy"), "nft-features")
    assert result.status == "unknown" and "numgen" in result.summary


def test_old_nft_userspace_fails():
    snap = with_meta(snapshot("iptables/healthy"), nft_version="nftables v0.9.8 (E.D.S.)")
    result = one(kernel.node_kernel, "nftables", snap, "nft-version")
    assert result.status == "fail" and "0.9.8" in result.summary


def test_cluster_kernels_from_node_objects():
    ok = context("nftables", state=cluster(_kernels(pdnode1="6.8.0-45-generic", pdnode2="5.15.0-1")))
    assert only(kernel.cluster_kernel(ok), "kernel-version").status == "pass"
    old = context("nftables",
                  state=cluster(_kernels(pdnode1="6.8.0-45-generic", pdnode2="5.4.0-150-generic")))
    result = only(kernel.cluster_kernel(old), "kernel-version")
    assert result.status == "fail" and result.essential
    assert any("pdnode2: 5.4.0-150-generic" in e for e in result.evidence)
    empty = context("nftables", state=cluster("iptables/healthy"))
    unknown = only(kernel.cluster_kernel(empty), "kernel-version")
    assert unknown.status == "unknown" and unknown.essential


def _kernels(**kernels):
    from tests.test_migrate_helpers import set_kernels

    return set_kernels(api_doc(), **kernels)


# ---------------------------------------------------------------------------------------- NodePorts

EXTRA_NODEPORT_CONN = ("ipv4     2 tcp      6 113 TIME_WAIT src=172.30.0.2 dst=10.244.0.1 sport=58250 "
                       "dport=30080 src=10.244.0.12 dst=10.244.0.1 sport=8080 dport=54956 "
                       "[ASSURED] mark=0 use=1\n")
LOCALHOST_CONN = ("ipv4     2 tcp      6 113 TIME_WAIT src=127.0.0.1 dst=127.0.0.1 sport=40000 dport=30080 "
                  "src=10.244.0.11 dst=10.244.0.1 sport=8080 dport=40000 [ASSURED] mark=0 use=1\n")


def test_nodeports_used_on_primary_ip_only_pass():
    result = one(nodeports.node_port_addresses, "nftables", snapshot("iptables/healthy"),
                 "nodeport-addresses")
    assert result.status == "pass"
    assert "10.244.0.1" in result.summary  # where NodePorts will stop answering


def test_nodeport_traffic_on_another_address_fails():
    base = snapshot("iptables/healthy")
    snap = with_file(base, "conntrack.txt", (base.text("conntrack.txt") or "") + EXTRA_NODEPORT_CONN)
    result = one(nodeports.node_port_addresses, "nftables", snap, "nodeport-addresses")
    assert result.status == "fail"
    assert any("172.30.0.2 -> 10.244.0.1:30080/tcp" in e and "default/web-np:http" in e
               for e in result.evidence)
    assert "nodePortAddresses" in result.action and "10.244.0.1/32" in result.action


def test_nodeport_addresses_configured_pass():
    doc = edit_config(api_doc(), nodePortAddresses=["0.0.0.0/0"])
    base = snapshot("iptables/healthy")
    snap = with_file(base, "conntrack.txt", (base.text("conntrack.txt") or "") + EXTRA_NODEPORT_CONN)
    result = one(nodeports.node_port_addresses, "nftables", snap, "nodeport-addresses",
                 state=cluster(doc))
    assert result.status == "pass" and "0.0.0.0/0" in result.summary


def test_nodeports_without_conntrack_warn():
    snap = snapshot("iptables/healthy", {"conntrack.txt": None})
    result = one(nodeports.node_port_addresses, "nftables", snap, "nodeport-addresses")
    assert result.status == "warn" and "10.244.0.1" in result.summary


def test_nodeports_without_node_addresses_unknown():
    snap = snapshot("iptables/healthy", {"ip-addr.json": None})
    assert one(nodeports.node_port_addresses, "nftables", snap, "nodeport-addresses").status == "unknown"


def test_ipvs_service_addresses_are_not_nodeport_addresses():
    result = one(nodeports.node_port_addresses, "nftables", snapshot("ipvs/healthy"), "nodeport-addresses")
    assert "10.96.100.10" not in result.summary and "10.244.0.1" in result.summary


def test_localhost_nodeports_unknown_without_metric():
    result = one(nodeports.localhost_node_ports, "nftables", snapshot("iptables/healthy"),
                 "localhost-nodeports")
    assert result.status == "unknown"
    assert "sysctl net.ipv4.conf.all.route_localnet = 1" in result.evidence


def _with_metric(snap, line: str):
    text = (snap.text("kube-proxy-metrics.txt") or "") + line + "\n"
    return with_file(snap, "kube-proxy-metrics.txt", text)


def test_localhost_nodeports_metric_fails_and_zero_passes():
    metric = "kubeproxy_iptables_localhost_nodeports_accepted_packets_total"
    used = _with_metric(snapshot("iptables/healthy"), f"{metric} 12")
    result = one(nodeports.localhost_node_ports, "nftables", used, "localhost-nodeports")
    assert result.status == "fail" and "12 packets" in result.summary
    unused = _with_metric(snapshot("iptables/healthy"), f"{metric} 0")
    assert one(nodeports.localhost_node_ports, "nftables", unused, "localhost-nodeports").status == "pass"


def test_localhost_nodeport_connection_fails():
    base = snapshot("iptables/healthy")
    snap = with_file(base, "conntrack.txt", (base.text("conntrack.txt") or "") + LOCALHOST_CONN)
    result = one(nodeports.localhost_node_ports, "nftables", snap, "localhost-nodeports")
    assert result.status == "fail"
    assert any("127.0.0.1 -> 127.0.0.1:30080/tcp" in e for e in result.evidence)


def test_localhost_nodeports_impossible_without_route_localnet():
    base = snapshot("iptables/healthy")
    sysctl = (base.text("sysctl.txt") or "").replace("route_localnet = 1", "route_localnet = 0")
    result = one(nodeports.localhost_node_ports, "nftables", with_file(base, "sysctl.txt", sysctl),
                 "localhost-nodeports")
    assert result.status == "pass" and "route_localnet is 0" in result.summary


def test_localhost_nodeports_not_served_in_ipvs_mode():
    result = one(nodeports.localhost_node_ports, "nftables", snapshot("ipvs/healthy"), "localhost-nodeports")
    assert result.status == "pass" and "ipvs" in result.summary


# ---------------------------------------------------------------------------------------- firewall


def test_nft_firewall_dropping_a_nodeport_fails():
    result = one(firewall.host_firewall, "nftables", snapshot("nftables/firewall-in-front"), "host-firewall")
    assert result.status == "fail"
    hit = result.evidence[0]
    assert "table inet hostfw chain prerouting" in hit and "tcp dport 30080" in hit
    assert "30080/tcp (default/web-np:http)" in hit


def test_nft_firewall_after_dnat_does_not_see_the_nodeport():
    text = snapshot("nftables/firewall-in-front").text("nft-ruleset.json") or ""
    doc = json.loads(text)
    for item in doc["nftables"]:
        if "chain" in item and item["chain"]["table"] == "hostfw":
            item["chain"]["prio"] = 0  # filter priority: after kube-proxy's DNAT at -100
    snap = snapshot("nftables/firewall-in-front", {"nft-ruleset.json": json.dumps(doc)})
    assert one(firewall.host_firewall, "nftables", snap, "host-firewall").status == "pass"


def _filter_forward_drop(text: str) -> str:
    head, _, tail = text.partition("*filter\n")
    return head + "*filter\n" + tail.replace(":FORWARD ACCEPT [0:0]", ":FORWARD DROP [0:0]", 1)


def test_iptables_forward_drop_policy_fails_and_default_passes():
    healthy = snapshot("iptables/healthy")
    assert one(firewall.host_firewall, "nftables", healthy, "host-firewall").status == "pass"
    changes = {name: _filter_forward_drop(healthy.text(name) or "")
               for name in ("iptables-save.txt", "iptables-nft-save.txt")}
    result = one(firewall.host_firewall, "nftables", snapshot("iptables/healthy", changes), "host-firewall")
    assert result.status == "fail"
    assert any("filter FORWARD (policy DROP)" in e and "KUBE-FORWARD ACCEPT" in e for e in result.evidence)


def test_iptables_input_catch_all_reject_warns_for_health_check_nodeports():
    healthy = snapshot("iptables/healthy")

    def reject_all(text: str) -> str:
        head, _, tail = text.partition("*filter\n")
        tail = tail.replace("COMMIT", "-A INPUT -m comment --comment \"host firewall\" -j REJECT\nCOMMIT", 1)
        return head + "*filter\n" + tail

    changes = {name: reject_all(healthy.text(name) or "")
               for name in ("iptables-save.txt", "iptables-nft-save.txt")}
    snap = snapshot("iptables/healthy", changes)
    # the fixture's Services have no healthCheckNodePort: nothing relies on kube-proxy's INPUT ACCEPTs
    assert one(firewall.host_firewall, "nftables", snap, "host-firewall").status == "pass"
    doc = api_doc()
    for item in doc["items"]:
        if item["kind"] == "Service" and item["metadata"]["name"] == "lb":
            item["spec"]["externalTrafficPolicy"] = "Local"
            item["spec"]["healthCheckNodePort"] = 32000
    result = one(firewall.host_firewall, "nftables", snap, "host-firewall", state=cluster(doc))
    assert result.status == "warn"
    assert any("filter INPUT (rule" in e and "32000/tcp (default/lb healthCheckNodePort)" in e
               for e in result.evidence)


# ---------------------------------------------------------------------------------------- conntrack

INVALID = "kubeproxy_iptables_ct_state_invalid_dropped_packets_total"


def test_conntrack_new_kernel_passes():
    result = one(conntrack.conntrack_invalid, "nftables", snapshot("iptables/healthy"), "conntrack-invalid")
    assert result.status == "pass" and "6.1" in result.summary


def test_conntrack_old_kernel_with_drops_fails():
    snap = _with_metric(snapshot("iptables/healthy", {"kernel.txt": "5.15.0-105-generic\n"}), f"{INVALID} 40")
    result = one(conntrack.conntrack_invalid, "nftables", snap, "conntrack-invalid")
    assert result.status == "fail" and "40 INVALID packets" in result.summary
    assert "tcpBeLiberal" in result.action


def test_conntrack_old_kernel_without_metric_warns():
    snap = snapshot("iptables/healthy", {"kernel.txt": "5.15.0-105-generic\n"})
    assert one(conntrack.conntrack_invalid, "nftables", snap, "conntrack-invalid").status == "warn"


def test_conntrack_be_liberal_already_on_passes():
    old = snapshot("iptables/healthy", {"kernel.txt": "5.15.0-105-generic\n"})
    sysctl = (old.text("sysctl.txt") or "").replace("tcp_be_liberal = 0", "tcp_be_liberal = 1")
    snap = _with_metric(with_file(old, "sysctl.txt", sysctl), f"{INVALID} 40")
    assert one(conntrack.conntrack_invalid, "nftables", snap, "conntrack-invalid").status == "pass"
    doc = edit_config(api_doc(), conntrack__tcpBeLiberal=True)
    result = one(conntrack.conntrack_invalid, "nftables", _with_metric(old, f"{INVALID} 40"),
                 "conntrack-invalid", state=cluster(doc))
    assert result.status == "pass"


# ---------------------------------------------------------------------------------------- third-party rules


def test_third_party_rules_are_named():
    result = one(third_party.third_party_rules, "nftables", snapshot("iptables/third-party-rules"),
                 "third-party-rules")
    assert result.status == "fail"
    text = "\n".join(result.evidence)
    assert "nat KUBE-SERVICES rule 1 (inserted into KUBE-SERVICES)" in text and "added-by-hand" in text
    assert text.count("CNI-DN-92edd5a420873c4595c0d") >= 2 and "jumps into KUBE-MARK-MASQ" in text
    assert result.summary.startswith("3 rules")


def test_kube_proxy_and_kubelet_rules_are_not_third_party():
    for scenario in ("iptables/healthy", "iptables/legacy-leftovers", "ipvs/healthy",
                     "nftables/after-switch-from-iptables"):
        result = one(third_party.third_party_rules, "nftables", snapshot(scenario), "third-party-rules")
        assert result.status == "pass", (scenario, result.evidence)


def test_a_network_policy_engine_rule_is_third_party():
    base = snapshot("iptables/healthy")
    text = (base.text("iptables-nft-save.txt") or "").replace(
        ":KUBE-SERVICES - [0:0]\n", ":KUBE-SERVICES - [0:0]\n:KUBE-ROUTER-FORWARD - [0:0]\n", 1).replace(
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n",
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n"
        "-A KUBE-ROUTER-FORWARD -m comment --comment \"rule to jump traffic\" -j KUBE-SERVICES\n", 1)
    snap = snapshot("iptables/healthy", {"iptables-nft-save.txt": text, "iptables-save.txt": text})
    result = one(third_party.third_party_rules, "nftables", snap, "third-party-rules")
    assert result.status == "fail"
    assert any("KUBE-ROUTER-FORWARD rule 1 (jumps into KUBE-SERVICES)" in e for e in result.evidence)


# ---------------------------------------------------------------------------------------- IPVS


def test_ipvs_round_robin_and_persistence_pass():
    results = run(ipvs.ipvs_checks, "nftables", snapshot("ipvs/healthy"))
    assert only(results, "ipvs-scheduler").status == "pass"
    sticky = only(results, "session-affinity")
    assert sticky.status == "pass" and any("10.96.100.13:80 persistent 600" in e for e in sticky.evidence)


def test_ipvs_other_scheduler_warns():
    base = snapshot("ipvs/healthy")
    text = (base.text("ipvsadm.txt") or "").replace("TCP  10.96.100.10:80 rr", "TCP  10.96.100.10:80 wlc")
    results = run(ipvs.ipvs_checks, "iptables", with_file(base, "ipvsadm.txt", text))
    result = only(results, "ipvs-scheduler")
    assert result.status == "warn" and "wlc" in result.summary
    assert any("TCP 10.96.100.10:80 wlc" in e for e in result.evidence)


def test_ipvs_checks_skip_other_modes():
    assert run(ipvs.ipvs_checks, "nftables", snapshot("iptables/healthy")) == []


# ---------------------------------------------------------------------------------------- ClusterIP ports

UNDEFINED_PORT = ("ipv4     2 tcp      6 431999 ESTABLISHED src=10.244.0.11 dst=10.96.100.10 "
                  "sport=40100 dport=8443 src=10.96.100.10 dst=10.244.0.11 sport=8443 dport=40100 "
                  "[ASSURED] mark=0 use=1\n")


def test_clusterip_ports_defined_pass():
    result = one(clusterip.undefined_cluster_ip_ports, "nftables", snapshot("iptables/healthy"),
                 "clusterip-undefined-ports")
    assert result.status == "pass"


def test_clusterip_undefined_port_warns_and_fails_from_ipvs():
    base = snapshot("iptables/healthy")
    snap = with_file(base, "conntrack.txt", (base.text("conntrack.txt") or "") + UNDEFINED_PORT)
    result = one(clusterip.undefined_cluster_ip_ports, "nftables", snap, "clusterip-undefined-ports")
    assert result.status == "warn"
    assert any("10.96.100.10:8443/tcp (default/web defines 80/tcp) answered" in e for e in result.evidence)
    from_ipvs = with_file(snapshot("ipvs/healthy"), "conntrack.txt", UNDEFINED_PORT)
    result = one(clusterip.undefined_cluster_ip_ports, "nftables", from_ipvs, "clusterip-undefined-ports")
    assert result.status == "fail" and "kube-ipvs0" in result.summary


def test_older_kube_proxy_rule_shapes_are_kube_proxys():
    from kubectl_proxydoctor.modes.iptables.parse import parse

    ruleset = parse(
        "*nat\n:KUBE-XLB-ABCDEFGHIJKLMNOP - [0:0]\n:KUBE-SEP-ABCDEFGHIJKLMNOP - [0:0]\n"
        ":KUBE-SVC-ABCDEFGHIJKLMNOP - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:CALI-X - [0:0]\n"
        '-A KUBE-XLB-ABCDEFGHIJKLMNOP -m comment --comment "Balancing rule 0 for default/web-local:http" '
        "-j KUBE-SEP-ABCDEFGHIJKLMNOP\n"
        "-A KUBE-XLB-ABCDEFGHIJKLMNOP -s 10.244.0.0/16 -m comment --comment "
        '"Redirect pods trying to reach external loadbalancer VIP to clusterIP" '
        "-j KUBE-SVC-ABCDEFGHIJKLMNOP\n"
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n"
        "-A KUBE-MARK-MASQ -j LOG --log-prefix masq\n"
        "-A CALI-X -j KUBE-MARK-MASQ\n"
        "COMMIT\n")
    found = [(how, rule.text) for how, rule in third_party.foreign_rules(ruleset)]
    assert found == [("inserted into KUBE-MARK-MASQ", "-A KUBE-MARK-MASQ -j LOG --log-prefix masq"),
                     ("jumps into KUBE-MARK-MASQ", "-A CALI-X -j KUBE-MARK-MASQ")]
