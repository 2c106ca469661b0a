"""Fixes are exact commands with the real names filled in (issue 16 item 7). Where the kernel
allows it the commands are run, as written, against the captured rules in a network namespace."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.conftest import ns_run

FIXTURES = Path(__file__).parent / "fixtures"
KUBE_PROXY_POD = {"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": "kube-proxy-x7k2p", "namespace": "kube-system",
                               "labels": {"k8s-app": "kube-proxy"}},
                  "spec": {"nodeName": "pdnode1"}}
OTHER_NODE_POD = {"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": "kube-proxy-abcde", "namespace": "kube-system",
                               "labels": {"k8s-app": "kube-proxy"}},
                  "spec": {"nodeName": "pdnode2"}}


def _report(snap: NodeSnapshot):
    return analyse(snap, ClusterState.from_json_text(snap.text("api.json")), snap.node)


def _load(scenario: str) -> NodeSnapshot:
    return NodeSnapshot.load(FIXTURES / scenario)


def _with_pods(snap: NodeSnapshot, *pods: dict) -> NodeSnapshot:
    api = json.loads(snap.text("api.json"))
    api["items"] += list(pods)
    snap.files["api.json"] = json.dumps(api)
    return snap


def _backticked(fix: str) -> list[str]:
    return re.findall(r"`([^`]+)`", fix)


def test_no_placeholders_and_this_nodes_pod_by_field_selector():
    for scenario in ("iptables/chain-flushed", "iptables/sync-failing", "ipvs/stale-endpoint",
                     "iptables/deleted-service"):
        report = _report(_load(scenario))
        fixes = [f.fix for f in report.findings if f.fix]
        assert fixes
        for fix in fixes:
            assert "<" not in fix and "ds/kube-proxy" not in fix, fix
        kube_proxy = [f for f in fixes if "kubectl" in f]
        assert kube_proxy, scenario
        for fix in kube_proxy:
            assert "--field-selector spec.nodeName=pdnode1" in fix
            assert "kubectl -n kube-system logs $(kubectl -n kube-system get pods -l k8s-app=kube-proxy " \
                   "--field-selector spec.nodeName=pdnode1 -o name)" in fix or "logs" not in fix, fix


def test_the_kube_proxy_pod_from_the_api_is_named():
    snap = _with_pods(_load("iptables/chain-flushed"), OTHER_NODE_POD, KUBE_PROXY_POD)
    report = _report(snap)
    missing = [f for f in report.findings if f.code == "missing-endpoint"]
    assert missing
    for f in missing:
        assert "kubectl -n kube-system logs pod/kube-proxy-x7k2p" in f.fix
        assert "kubectl -n kube-system delete pod/kube-proxy-x7k2p" in f.fix
        assert "kube-proxy-abcde" not in f.fix
    chain = [f for f in report.findings if f.code == "chain-missing"]
    assert "`kubectl -n kube-system delete pod/kube-proxy-x7k2p`" in chain[0].fix


def test_sync_failing_fix_reads_this_nodes_pod_log():
    report = _report(_with_pods(_load("iptables/sync-failing"), KUBE_PROXY_POD))
    (f,) = [f for f in report.findings if f.code == "sync-failing"]
    assert "`kubectl -n kube-system logs pod/kube-proxy-x7k2p`" in f.fix


def test_foreign_rule_deleted_by_its_spec_for_real(netns):
    snap = _load("iptables/third-party-rules")
    report = _report(snap)
    (f,) = [f for f in report.findings if f.code == "foreign-rule" and f.service == "default/web"]
    (command,) = [c for c in _backticked(f.fix) if " -D " in c]
    assert command == ("iptables-nft -t nat -D KUBE-SERVICES -d 10.96.100.10/32 -p tcp -m tcp --dport 80 "
                       "-m comment --comment added-by-hand -j ACCEPT")
    assert not re.search(r"-D KUBE-SERVICES \d+\b", f.fix)
    ns = netns("pd-fixcmd-")
    ns_run(ns, "iptables-nft-restore", input=snap.text("iptables-nft-save.txt"))
    before = ns_run(ns, "iptables-nft-save", "-t", "nat").stdout
    ns_run(ns, *shlex.split(command))
    after = ns_run(ns, "iptables-nft-save", "-t", "nat").stdout
    assert "added-by-hand" in before and "added-by-hand" not in after
    assert after.count("-A KUBE-SERVICES") == before.count("-A KUBE-SERVICES") - 1


def test_backend_leftover_commands_remove_every_legacy_chain_for_real(netns):
    snap = _load("iptables/legacy-leftovers")
    report = _report(snap)
    found = [f for f in report.findings if f.code == "backend-leftover"]
    assert found
    fix = found[0].fix
    assert "flush/delete the KUBE-* chains there" not in fix
    steps = fix.split("each chain): ", 1)[1].split(". Then", 1)[0].split("; ")
    assert steps[0] == "iptables-legacy-save > /tmp/iptables-legacy.rules"
    commands = steps[1:]
    assert commands[0].startswith("iptables-legacy -t nat -D PREROUTING ") and commands[0].endswith(
        "-j KUBE-SERVICES")
    assert commands.index("iptables-legacy -t nat -F KUBE-SERVICES") < commands.index(
        "iptables-legacy -t nat -X KUBE-SERVICES")
    ns = netns("pd-fixcmd-")
    ns_run(ns, "iptables-legacy-restore", input=snap.text("iptables-legacy-save.txt"))
    for command in commands:
        ns_run(ns, *shlex.split(command))
    after = ns_run(ns, "iptables-legacy-save", "-t", "nat").stdout
    assert "KUBE-" not in after


def _ipvs_service_deleted(name: str) -> NodeSnapshot:
    snap = _load("ipvs/healthy")
    api = json.loads(snap.text("api.json"))
    api["items"] = [i for i in api["items"] if i["metadata"]["name"] != name]
    snap.files["api.json"] = json.dumps(api)
    return snap


def test_ipvs_leftover_virtual_server_gets_its_removal_commands(netns):
    snap = _ipvs_service_deleted("web")
    report = _report(snap)
    (f,) = [f for f in report.findings if f.code == "stale-service"]
    assert f.service == "10.96.100.10:80" and f.protocol == "TCP"
    assert "has not synced" not in f.fix
    commands = _backticked(f.fix)
    assert commands[:4] == ["ipvsadm -D -t 10.96.100.10:80", "ip addr del 10.96.100.10/32 dev kube-ipvs0",
                            "ipset del KUBE-CLUSTER-IP 10.96.100.10,tcp:80",
                            "ipset del KUBE-IPVS-IPS 10.96.100.10"]
    assert not [c for c in commands if "10.96.100.11" in c]  # only this frontend
    # the address and ipset commands, run against the captured kube-ipvs0 and ipsets (this kernel
    # may lack IP_VS, so ipvsadm itself is not run)
    ns = netns("pd-fixcmd-")
    ns_run(ns, "ip", "link", "add", "kube-ipvs0", "type", "bridge")  # (dummy on a real node)
    for item in json.loads(snap.text("ip-addr.json")):
        if item.get("ifname") == "kube-ipvs0":
            for addr in item.get("addr_info", []):
                ns_run(ns, "ip", "addr", "add", f"{addr['local']}/{addr['prefixlen']}", "dev", "kube-ipvs0")
    ns_run(ns, "ipset", "restore", input=snap.text("ipset-save.txt"))
    for command in commands[1:]:
        if command.startswith(("ip ", "ipset ")):
            ns_run(ns, *shlex.split(command))
    addresses = ns_run(ns, "ip", "-j", "addr", "show", "dev", "kube-ipvs0").stdout
    assert "10.96.100.10" not in addresses and "10.96.100.11" in addresses
    saved = ns_run(ns, "ipset", "save").stdout
    assert "10.96.100.10," not in saved and "add KUBE-IPVS-IPS 10.96.100.10\n" not in saved
    assert "add KUBE-CLUSTER-IP 10.96.100.11,tcp:8080" in saved


def test_ipvs_leftover_commands_only_for_what_the_capture_shows():
    snap = _ipvs_service_deleted("web")
    del snap.files["ipset-save.txt"]
    del snap.files["ip-addr.json"]
    (f,) = [f for f in _report(snap).findings if f.code == "stale-service" and f.service == "10.96.100.10:80"]
    assert _backticked(f.fix)[0] == "ipvsadm -D -t 10.96.100.10:80"
    assert "ip addr del" not in f.fix and "ipset del" not in f.fix


def test_ipvs_shared_address_removed_once_with_the_last_port():
    snap = _ipvs_service_deleted("multi")  # 10.96.100.15 ports 80 and 9090, both leftovers
    fixes = [f.fix for f in _report(snap).findings if f.code == "stale-service"]
    assert len(fixes) == 2
    assert sum(fix.count("ip addr del 10.96.100.15/32 dev kube-ipvs0") for fix in fixes) == 1
    kept = _ipvs_service_deleted("web-np")  # 10.96.100.11 only; nodeport 30080 on every node address
    fixes = [f.fix for f in _report(kept).findings if f.code == "stale-service"]
    assert any("`ipset del KUBE-NODE-PORT-TCP 30080`" in fix for fix in fixes)


def test_output_hook_firewall_is_told_about_the_output_hook():
    snap = _load("nftables/firewall-in-front")
    doc = json.loads(snap.text("nft-ruleset.json"))
    for item in doc["nftables"]:
        chain = item.get("chain")
        if chain and chain.get("table") == "hostfw":
            chain.update(hook="output", name="output")
        rule = item.get("rule")
        if rule and rule.get("table") == "hostfw":
            rule["chain"] = "output"
            rule["expr"][0]["match"]["right"] = 80
    snap.files["nft-ruleset.json"] = json.dumps(doc)
    found = [f for f in _report(snap).findings if f.code == "firewall-in-front"]
    assert found
    for f in found:
        assert "output hook" in f.fix and "input" not in f.fix and "forward" not in f.fix
    prerouting = [f for f in _report(_load("nftables/firewall-in-front")).findings
                  if f.code == "firewall-in-front"]
    assert prerouting and all("input and forward hooks" in f.fix for f in prerouting)


def test_backend_cleanup_of_many_chains_is_a_loop_that_works_as_written(netns):
    """60 leftover service chains: the fix is a few loop lines (not cut mid-command), run as written
    it removes every kube-proxy chain and keeps KUBE-FIREWALL while route_localnet is 1."""
    import subprocess

    from kubectl_proxydoctor.proxy_mode import MANY_CHAINS, backend_cleanup

    chains = [f"KUBE-SVC-{i:016d}" for i in range(60)]
    nat = ["*nat", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]",
           *(f":{c} - [0:0]" for c in chains),
           '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
           *(f"-A KUBE-SERVICES -d 10.96.{i // 250}.{i % 250 + 1}/32 -p tcp -m tcp --dport 80 -j {c}"
             for i, c in enumerate(chains)),
           *(f"-A {c} -p tcp -j DNAT --to-destination 10.244.0.{i % 250 + 1}:8080"
             for i, c in enumerate(chains)),
           "COMMIT"]
    flt = ["*filter", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":KUBE-FIREWALL - [0:0]",
           "-A INPUT -j KUBE-FIREWALL", "-A OUTPUT -j KUBE-FIREWALL",
           '-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming '
           'localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP', "COMMIT"]
    dump = "\n".join([*nat, *flt]) + "\n"
    snap = NodeSnapshot.from_files({"iptables-legacy-save.txt": dump,
                                    "sysctl.txt": "net.ipv4.conf.all.route_localnet = 1\n"})
    left = backend_cleanup(snap, "iptables-legacy")
    assert left is not None and len(chains) > MANY_CHAINS
    assert len(left.commands) <= 6 and all(len(c) < 400 for c in left.commands)
    assert any("KUBE-FIREWALL is kept" in k for k in left.kept)
    ns = netns("pd-fixcmd-")
    ns_run(ns, "iptables-legacy-restore", input=dump)
    for command in left.commands:
        subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", command], check=True, timeout=60)
    assert "KUBE-" not in ns_run(ns, "iptables-legacy-save", "-t", "nat").stdout
    after = ns_run(ns, "iptables-legacy-save", "-t", "filter").stdout
    assert ":KUBE-FIREWALL" in after and "block incoming localnet connections" in after
