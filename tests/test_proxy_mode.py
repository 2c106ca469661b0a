"""Which proxy runs the node (proxy_mode.decide) and its checks, on every real capture and on
hand-made Cilium / userspace / leftover cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubectl_proxydoctor.checks import CheckContext, run_checks
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.proxy_mode import decide, leftovers, parse_iptables_save
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIXTURES = Path(__file__).parent / "fixtures"
SCENARIOS = sorted(str(p.parent.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*/meta.json"))
MY_CHECKS = ("proxy-mode-unsupported", "proxy-mode-cilium", "proxy-mode-leftover", "proxy-mode-mismatch")
RUNTIME_FILES = ("kube-proxy-mode.txt", "kube-proxy.log", "kube-proxy-metrics.txt")


def load(scenario: str, drop: tuple[str, ...] = ()) -> tuple[NodeSnapshot, ClusterState]:
    snap = NodeSnapshot.load(FIXTURES / scenario)
    for name in drop:
        snap.files.pop(name, None)
    return snap, ClusterState.from_json_text((FIXTURES / scenario / "api.json").read_text())


def meta_mode(scenario: str) -> str:
    return json.loads((FIXTURES / scenario / "meta.json").read_text())["mode"]


def findings(snap: NodeSnapshot, cluster: ClusterState | None):
    return run_checks(CheckContext(snapshot=snap, cluster=cluster), only=MY_CHECKS)


def test_every_mode_has_fixtures():
    assert {s.split("/")[0] for s in SCENARIOS} == {"iptables", "nftables", "ipvs"}
    assert len(SCENARIOS) >= 18


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_mode_of_every_capture(scenario):
    snap, cluster = load(scenario)
    snap.meta["mode"] = "not-a-mode"  # the oracle must not leak into the decision
    decision = decide(snap, cluster)
    assert decision.mode == meta_mode(scenario)
    assert decision.modes_found == [meta_mode(scenario)]
    assert decision.unsupported is None and decision.kube_proxy_checks_apply
    assert any(e.startswith("rules: ") and meta_mode(scenario) in e for e in decision.evidence)


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("variant", ["no-runtime", "no-api", "rules-only"])
def test_mode_from_weaker_evidence(scenario, variant):
    drop = RUNTIME_FILES if variant in ("no-runtime", "rules-only") else ()
    snap, cluster = load(scenario, drop)
    decision = decide(snap, None if variant in ("no-api", "rules-only") else cluster)
    assert decision.mode == meta_mode(scenario)
    assert decision.reported_mode is None if drop else True


def test_evidence_names_each_source():
    snap, cluster = load("nftables/healthy")
    decision = decide(snap, cluster)
    text = "\n".join(decision.evidence)
    assert "kube-proxy /proxyMode says 'nftables'" in text
    assert ("config: mode nftables -> nftables "
            "(ConfigMap kube-system/kube-proxy config.conf mode: nftables)") in text
    assert "nftables table ip kube-proxy" in text
    assert "not iptables mode" in text  # v1.30 nftables mode exports no iptables rule counters
    snap, cluster = load("iptables/healthy")
    assert decide(snap, cluster).metrics_mode == "iptables"


def test_stopped_kube_proxy_mode_comes_from_its_log():
    snap, _ = load("iptables/stale-endpoint")
    assert not snap.has("kube-proxy-mode.txt")
    decision = decide(snap)
    assert decision.reported_mode == "iptables"
    assert any("Using iptables Proxier" in e for e in decision.evidence)


def test_ipvs_capture_whose_config_says_iptables_is_a_mismatch():
    snap, cluster = load("ipvs/healthy")
    decision = decide(snap, cluster)
    assert decision.mode == "ipvs" and decision.config_mode == "iptables"
    assert decision.conflicts == ["config says iptables but this node runs ipvs"]
    found = findings(snap, cluster)
    assert [(f.code, f.severity) for f in found] == [("mode-mismatch", "warning")]


def test_without_any_evidence_the_mode_is_unknown():
    decision = decide(NodeSnapshot.from_files({"kernel.txt": "6.1.0\n"}))
    assert decision.mode == "unknown" and not decision.kube_proxy_checks_apply
    assert leftovers(NodeSnapshot(), decision) == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_mode_leftover_findings_match_the_oracle(scenario):
    snap, cluster = load(scenario)
    expected = json.loads((FIXTURES / scenario / "expected.json").read_text())
    want = sorted(d["detail"] for d in expected.get("drift", []) if d["kind"] == "mode-leftover")
    got = [f for f in findings(snap, cluster) if f.code == "mode-leftover"]
    assert sorted(f.message.split(": ", 1)[1].rsplit(" (", 1)[0] for f in got) == want
    if expected["healthy"]:
        assert not [f for f in findings(snap, cluster) if f.severity == "error"]


def test_after_switch_to_nftables_leftovers_and_their_cleanup():
    snap, cluster = load("nftables/after-switch-from-iptables")
    found = [f for f in findings(snap, cluster) if f.code == "mode-leftover"]
    assert [f.severity for f in found] == ["warning", "warning"]  # no per-service rules remain
    fix = found[0].fix
    # issue 16: KUBE-FIREWALL holds the localnet DROP and route_localnet = 1 here: it is kept, and said why
    assert "KUBE-FIREWALL" not in fix.split(". iptables: ")[0].split("behind): ", 1)[1]
    assert "KUBE-FIREWALL is kept" in fix and "route_localnet = 1" in fix
    assert "iptables-nft -t nat -X KUBE-MARK-MASQ" in fix
    assert fix.index("-F KUBE-MARK-MASQ") < fix.index("-X KUBE-MARK-MASQ")
    assert found[1].fix.startswith("Remove")
    assert "ip6tables-nft -t mangle -X KUBE-PROXY-CANARY" in found[1].fix


# -- hand-made cases --------------------------------------------------------------------------

KUBE_PROXY_IPTABLES = """*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-SVC-CDGGSHYLG3RE2FKL - [0:0]
:KUBE-SEP-AAAAAAAAAAAAAAAA - [0:0]
:KUBE-MARK-MASQ - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.100.10/32 -p tcp -m comment --comment "default/web:http cluster IP" \
-m tcp --dport 80 -j KUBE-SVC-CDGGSHYLG3RE2FKL
-A KUBE-SVC-CDGGSHYLG3RE2FKL -j KUBE-SEP-AAAAAAAAAAAAAAAA
-A KUBE-SEP-AAAAAAAAAAAAAAAA -p tcp -m tcp -j DNAT --to-destination 10.244.0.11:8080
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
COMMIT
"""
CILIUM_IPTABLES = """*filter
:INPUT ACCEPT [0:0]
:CILIUM_INPUT - [0:0]
-A INPUT -m comment --comment "cilium-feeder: CILIUM_INPUT" -j CILIUM_INPUT
COMMIT
"""
KUBELET_IPTABLES = """*mangle
:KUBE-IPTABLES-HINT - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
COMMIT
*filter
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
-A INPUT -j KUBE-FIREWALL
-A OUTPUT -j KUBE-FIREWALL
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" \
-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
COMMIT
"""


def cilium_cluster(replacement: str | None = "true", *, daemonset: bool = True) -> ClusterState:
    items: list[dict] = []
    if daemonset:
        items.append({"apiVersion": "apps/v1", "kind": "DaemonSet",
                      "metadata": {"name": "cilium", "namespace": "kube-system"}, "spec": {}})
    if replacement is not None:
        items.append({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "cilium-config", "namespace": "kube-system"},
                      "data": {"kube-proxy-replacement": replacement, "tunnel-protocol": "vxlan"}})
    return ClusterState.from_list({"kind": "List", "items": items})


def kube_proxy_configmap(mode: str) -> ClusterState:
    text = f"apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: {mode}\n"
    return ClusterState.from_list({"kind": "List", "items": [{
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"}, "data": {"config.conf": text}}]})


def test_cilium_owns_services():
    snap = NodeSnapshot.from_files({"iptables-save.txt": CILIUM_IPTABLES, "kernel.txt": "6.8.0\n"})
    decision = decide(snap, cilium_cluster("true"))
    assert decision.mode == "cilium" and decision.modes_found == []
    assert not decision.kube_proxy_checks_apply
    assert "ConfigMap kube-system/cilium-config kube-proxy-replacement: true" in decision.evidence
    assert "DaemonSet kube-system/cilium exists" in decision.evidence
    found = findings(snap, cilium_cluster("true"))
    assert [(f.code, f.severity) for f in found] == [("cilium-owns-services", "info")]


def test_cilium_strict_and_cilium_from_node_rules_only():
    snap = NodeSnapshot.from_files({"iptables-save.txt": CILIUM_IPTABLES})
    assert decide(snap, cilium_cluster("strict")).mode == "cilium"
    decision = decide(snap)  # offline, no api.json: only Cilium's own chains and no kube-proxy
    assert decision.mode == "cilium"
    assert any("Cilium chains (CILIUM_INPUT)" in e for e in decision.evidence)


def test_cilium_partial_replacement_leaves_services_to_kube_proxy():
    snap = NodeSnapshot.from_files({"iptables-save.txt": KUBE_PROXY_IPTABLES + CILIUM_IPTABLES})
    decision = decide(snap, cilium_cluster("false"))
    assert decision.mode == "iptables" and decision.conflicts == []
    assert not [f for f in findings(snap, cilium_cluster("false")) if f.code == "cilium-owns-services"]


def test_cilium_replacement_while_kube_proxy_still_programs_services():
    snap = NodeSnapshot.from_files({"iptables-save.txt": KUBE_PROXY_IPTABLES,
                                    "kube-proxy-mode.txt": "iptables"})
    decision = decide(snap, cilium_cluster("true"))
    assert decision.mode == "iptables"
    assert any("Cilium's kube-proxy replacement (true)" in c for c in decision.conflicts)


def test_kube_proxy_rules_left_behind_under_cilium_are_an_error():
    snap = NodeSnapshot.from_files({"iptables-save.txt": CILIUM_IPTABLES,
                                    "iptables-legacy-save.txt": KUBE_PROXY_IPTABLES})
    # Cilium replaces kube-proxy, no kube-proxy DaemonSet answers; legacy iptables still has its rules
    decision = decide(snap, cilium_cluster("true"))
    assert decision.mode == "cilium" and decision.modes_found == ["iptables"]
    left = leftovers(snap, decision)
    assert [(lo.source, lo.service_rules) for lo in left] == [("iptables-legacy", True)]
    assert "iptables-legacy -t nat -D PREROUTING -m comment --comment \"kubernetes service portals\" " \
           "-j KUBE-SERVICES" in left[0].commands
    found = findings(snap, cilium_cluster("true"))
    assert sorted((f.code, f.severity) for f in found) == [
        ("cilium-owns-services", "info"), ("mode-leftover", "error")]
    # with a kube-proxy DaemonSet in the API, those rules are kube-proxy's own
    with_kube_proxy = cilium_cluster("true")
    with_kube_proxy.daemonsets.append({"apiVersion": "apps/v1", "kind": "DaemonSet",
                                       "metadata": {"name": "kube-proxy", "namespace": "kube-system"}})
    decision = decide(snap, with_kube_proxy)
    assert decision.mode == "iptables" and decision.conflicts


@pytest.mark.parametrize(("where", "mode", "severity"), [
    ("config", "userspace", "error"), ("proxyMode", "userspace", "error"),
    ("config", "kernelspace", "warning"),
])
def test_unsupported_modes(where, mode, severity):
    files = {"kernel.txt": "5.4.0\n"}
    cluster = None
    if where == "config":
        cluster = kube_proxy_configmap(mode)
    else:
        files["kube-proxy-mode.txt"] = mode
    snap = NodeSnapshot.from_files(files)
    decision = decide(snap, cluster)
    assert decision.mode == mode and decision.unsupported and not decision.kube_proxy_checks_apply
    found = findings(snap, cluster)
    assert [(f.code, f.severity) for f in found] == [("unsupported-mode", severity)]
    assert mode in found[0].message


def test_metrics_alone_decide_between_iptables_and_nftables():
    iptables = 'kubeproxy_sync_proxy_rules_iptables_total{table="nat"} 42\n'
    nft = "kubeproxy_sync_proxy_rules_nftables_sync_failures_total 0\n"
    assert decide(NodeSnapshot.from_files({"kube-proxy-metrics.txt": iptables})).mode == "iptables"
    assert decide(NodeSnapshot.from_files({"kube-proxy-metrics.txt": nft})).mode == "nftables"


def test_empty_mode_in_config_means_iptables():
    decision = decide(NodeSnapshot.from_files({}), kube_proxy_configmap('""'))
    assert decision.mode == "iptables" and decision.config_mode == "iptables"
    assert any("mode (unset) -> iptables" in e for e in decision.evidence)


def test_kubelets_chains_are_not_leftovers():
    snap, cluster = load("nftables/healthy")
    snap.files["iptables-nft-save.txt"] = KUBELET_IPTABLES
    snap.files["iptables-save.txt"] = KUBELET_IPTABLES
    assert [f for f in findings(snap, cluster) if f.code == "mode-leftover"] == []
    dump = parse_iptables_save(KUBELET_IPTABLES)
    assert dump.has_kubelet() and not dump.has_iptables_mode()


def test_iptables_mode_leftovers_under_ipvs_keep_ipvs_own_chains():
    snap, cluster = load("ipvs/healthy")
    assert leftovers(snap, decide(snap, cluster)) == []  # KUBE-SERVICES, KUBE-MARK-MASQ are IPVS mode's
    snap.files["iptables-nft-save.txt"] = snap.files["iptables-save.txt"].replace(
        ":KUBE-SERVICES - [0:0]", ":KUBE-SERVICES - [0:0]\n:KUBE-SVC-CDGGSHYLG3RE2FKL - [0:0]")
    found = [f for f in findings(snap, cluster) if f.code == "mode-leftover"]
    assert len(found) == 1 and found[0].severity == "error"
    assert "nat KUBE-SVC-CDGGSHYLG3RE2FKL (0 rules)" in found[0].message
    assert "KUBE-SERVICES" not in found[0].message.split(": ", 1)[1].split(" (")[0]


def test_nftables_and_ipvs_leftovers_under_iptables():
    snap, cluster = load("iptables/healthy")
    nft = load("nftables/healthy")[0]
    snap.files["nft-ruleset.json"] = nft.files["nft-ruleset.json"]
    ipvs = load("ipvs/healthy")[0]
    snap.files["ip-addr.json"] = ipvs.files["ip-addr.json"]
    snap.files["ipset-save.txt"] = ipvs.files["ipset-save.txt"]
    decision = decide(snap, cluster)
    assert decision.mode == "iptables"  # /proxyMode says so, although nftables rules exist too
    assert decision.modes_found == ["iptables", "nftables"]
    found = {f.mode: f for f in findings(snap, cluster) if f.code == "mode-leftover"}
    assert set(found) == {"nftables", "ipvs"}
    assert found["nftables"].severity == "error"  # service chains can still DNAT
    assert "nft delete table ip kube-proxy" in found["nftables"].fix
    assert found["ipvs"].severity == "warning"  # no virtual servers, only the interface and ipsets
    assert "interface kube-ipvs0 (15 addresses)" in found["ipvs"].message
    assert "ip link delete kube-ipvs0" in found["ipvs"].fix


def test_corrupt_node_files_do_not_crash_the_decision():
    snap = NodeSnapshot.from_files({"nft-ruleset.json": "{not json", "ip-addr.json": "[1, 2",
                                    "iptables-save.txt": "garbage\n-A\n*nat\n:KUBE-SVC-X\n",
                                    "kube-proxy-metrics.txt": "# nothing\n"})
    assert decide(snap).mode == "unknown"


def _big_iptables_dump(services: int) -> str:
    def h(i: int) -> str:
        return f"{i:016d}".translate(str.maketrans("0123456789", "ABCDEFGHIJ"))

    lines = ["*nat", ":PREROUTING ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]", ":KUBE-MARK-MASQ - [0:0]"]
    lines += [f":KUBE-SVC-{h(i)} - [0:0]" for i in range(services)]
    lines += [f":KUBE-SEP-{h(i)} - [0:0]" for i in range(services)]
    lines.append("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES")
    for i in range(services):
        lines.append(f'-A KUBE-SERVICES -d 10.96.0.{i}/32 -p tcp -m comment --comment "ns/s{i}:http '
                     f'cluster IP" -m tcp --dport 80 -j KUBE-SVC-{h(i)}')
        lines.append(f'-A KUBE-SVC-{h(i)} -m comment --comment "ns/s{i}:http -> 10.1.0.{i}:80" '
                     f"-j KUBE-SEP-{h(i)}")
        lines.append(f"-A KUBE-SEP-{h(i)} -s 10.1.0.{i}/32 -j KUBE-MARK-MASQ")
        lines.append(f"-A KUBE-SEP-{h(i)} -p tcp -m tcp -j DNAT --to-destination 10.1.0.{i}:80")
    return "\n".join([*lines, "COMMIT", ""])


def test_large_leftovers_are_summarised():
    snap = NodeSnapshot.from_files({"iptables-nft-save.txt": _big_iptables_dump(40),
                                    "kube-proxy-mode.txt": "nftables\n"})
    decision = decide(snap)
    assert decision.mode == "nftables" and decision.modes_found == ["iptables"]
    assert decision.conflicts == ["kube-proxy runs nftables but only iptables rules exist on the node"]
    (left,) = leftovers(snap, decision)
    assert left.items == ["nat KUBE-MARK-MASQ (0 rules, jumped to from 40 rules in service chains)",
                          "nat KUBE-SERVICES (40 rules, jumped to from PREROUTING)",
                          "80 KUBE-SVC/SEP/EXT/FW service chains"]
    assert left.service_rules
    # unhook from PREROUTING only (rules inside leftover chains go with their flush), flush, delete
    assert left.commands[0] == ("iptables-nft -t nat -D PREROUTING -m comment --comment "
                                '"kubernetes service portals" -j KUBE-SERVICES')
    # 82 chains: flush and delete are one loop each over the table's KUBE-* chains (a fix cut after
    # 24 commands, "... 141 more commands of the same kind", did not work as written)
    assert left.commands[1:] == [
        f"for c in $(iptables-nft-save -t nat | sed -n 's/^:\\(KUBE-[^ ]*\\) .*/\\1/p'); "
        f'do iptables-nft -t nat -{op} "$c"; done' for op in ("F", "X")]
    (finding,) = [f for f in findings(snap, None) if f.code == "mode-leftover"]
    assert finding.severity == "error"
    assert "more commands" not in finding.fix and finding.fix.endswith('-X "$c"; done')


def test_mode_from_the_node_command_line_in_meta():
    meta = {"node": "n1", "kube_proxy_cmdline": "/usr/local/bin/kube-proxy --proxy-mode=nftables"}
    decision = decide(NodeSnapshot.from_files({"meta.json": json.dumps(meta)}))
    assert decision.mode == "nftables" and decision.config_mode == "nftables"
    assert any("node command line flag --proxy-mode=nftables" in e for e in decision.evidence)
    meta["kube_proxy_cmdline"] = "kube-proxy --config=/var/lib/kube-proxy/config.conf"
    decision = decide(NodeSnapshot.from_files({"meta.json": json.dumps(meta)}))
    assert decision.mode == "unknown" and decision.config_mode is None  # the file was not captured


def test_a_windows_node_is_unsupported():
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "win1", "labels": {"kubernetes.io/os": "windows"}},
            "status": {"nodeInfo": {"operatingSystem": "windows"}}}
    cluster = ClusterState.from_list({"kind": "List", "items": [node]})
    snap = NodeSnapshot.from_files({"meta.json": json.dumps({"node": "win1"})})
    decision = decide(snap, cluster)
    assert decision.mode == "kernelspace" and decision.unsupported
    assert any("runs Windows" in e for e in decision.evidence)
    linux = load("iptables/healthy")
    assert decide(*linux).mode == "iptables"  # its Node says linux


def test_mismatch_explains_an_ipvs_fallback_and_a_missing_nftables_gate():
    snap, _ = load("iptables/healthy")
    snap.files["modules.txt"] = "nf_conntrack 172032 1 - Live 0x0\nnf_nat 49152 1 - Live 0x0\n"
    (finding,) = findings(snap, kube_proxy_configmap("ipvs"))
    assert finding.code == "mode-mismatch"
    assert finding.message.startswith("config says ipvs but this node runs iptables (the ip_vs kernel module")
    assert "modules.txt: no ip_vs module" in finding.evidence
    cluster = kube_proxy_configmap("nftables")
    cluster.daemonsets.append({"apiVersion": "apps/v1", "kind": "DaemonSet",
                               "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
                               "spec": {"template": {"spec": {"containers": [{
                                   "name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.30.3",
                                   "command": ["kube-proxy", "--config=/var/lib/kube-proxy/config.conf"],
                                   "volumeMounts": [{"name": "kp", "mountPath": "/var/lib/kube-proxy"}]}],
                                   "volumes": [{"name": "kp", "configMap": {"name": "kube-proxy"}}]}}}})
    (finding,) = findings(snap, cluster)
    assert "needs the NFTablesProxyMode feature gate" in finding.message


def test_a_proxymode_answer_that_is_not_a_mode_is_ignored():
    snap, cluster = load("nftables/healthy")
    snap.files["kube-proxy-mode.txt"] = "404 page not found\n"
    decision = decide(snap, cluster)
    assert decision.mode == "nftables"
    assert decision.evidence[0].startswith("kube-proxy-mode.txt holds '404 page not found', not a proxy mode")
    assert "Using nftables Proxier" in decision.evidence[0]  # the log answers instead
