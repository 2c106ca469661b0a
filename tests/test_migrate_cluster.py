"""migrate-check cluster-level checks (kube-proxy version, mode, settings) on API fixtures, the
engine's verdicts, and the plan."""

from __future__ import annotations

from kubectl_proxydoctor.migrate import config, facts
from kubectl_proxydoctor.migrate.engine import check_readiness, verdict_of
from kubectl_proxydoctor.migrate.result import result
from tests.test_migrate_helpers import (
    api_doc,
    cluster,
    context,
    drop_kind,
    edit_config,
    only,
    set_image,
    set_kernels,
    snapshot,
)


def version_result(doc, target="nftables"):
    return only(config.kube_proxy_version(context(target, state=cluster(doc))), "kube-proxy-version")


# ---------------------------------------------------------------------------------------- version


def test_alpha_version_with_gate_warns_and_without_gate_fails():
    result = version_result(api_doc())  # v1.30.3 with NFTablesProxyMode: true
    assert result.status == "warn" and "alpha" in result.summary
    assert "registry.k8s.io/kube-proxy:v1.30.3" in result.evidence[0]
    no_gate = version_result(edit_config(api_doc(), featureGates={}))
    assert no_gate.status == "fail" and "NFTablesProxyMode" in no_gate.action


def test_version_before_alpha_fails_beta_and_ga_pass():
    assert version_result(set_image(api_doc(), "registry.k8s.io/kube-proxy:v1.28.4")).status == "fail"
    beta = version_result(set_image(api_doc(), "registry.k8s.io/kube-proxy:v1.31.2"))
    assert beta.status == "pass" and "beta" in beta.summary
    ga = version_result(set_image(api_doc(), "registry.k8s.io/kube-proxy:v1.33.1"))
    assert ga.status == "pass" and "GA" in ga.summary


def test_iptables_target_accepts_any_version_and_notes_ipvs_deprecation():
    doc = set_image(api_doc(), "registry.k8s.io/kube-proxy:v1.35.0")
    result = version_result(doc, target="iptables")
    assert result.status == "pass" and "deprecated since 1.35" in result.summary


def test_unknown_version_is_essential_for_nftables():
    result = version_result(drop_kind(api_doc(), "DaemonSet"))
    assert result.status == "unknown" and result.essential


def test_version_from_the_capture_when_the_api_has_no_daemonset():
    ctx = context("nftables", snapshot("iptables/healthy"), state=cluster(drop_kind(api_doc(), "DaemonSet")))
    result = only(config.kube_proxy_version(ctx), "kube-proxy-version")
    assert result.status == "warn" and "meta.json kube_proxy_version" in result.evidence[0]


# ---------------------------------------------------------------------------------------- mode and settings


def test_mode_unset_warns_and_explicit_mode_passes():
    unset = context("nftables", state=cluster(edit_config(api_doc(), mode="")))
    result = only(config.mode_setting(unset), "mode-unset")
    assert result.status == "warn" and "unset" in result.summary
    explicit = context("nftables", state=cluster(api_doc()))
    assert only(config.mode_setting(explicit), "mode-unset").status == "pass"


def test_iptables_settings_that_stop_mattering():
    doc = edit_config(api_doc(), iptables__masqueradeAll=True, iptables__minSyncPeriod="10s",
                      iptables__localhostNodePorts=False)
    ctx = context("nftables", state=cluster(doc))
    result = only(config.ignored_settings(ctx), "ignored-settings")
    assert result.status == "warn"
    assert "iptables.masqueradeAll: True -> set nftables.masqueradeAll: True" in result.evidence
    assert "iptables.localhostNodePorts: False -> no equivalent" in result.evidence
    default = context("nftables", state=cluster(api_doc()))
    assert only(config.ignored_settings(default), "ignored-settings").status == "pass"


def test_ipvs_settings_ignored_when_leaving_ipvs():
    doc = edit_config(api_doc(), ipvs__scheduler="lc", ipvs__strictARP=True)
    result = only(config.ignored_settings(context("iptables", state=cluster(doc))), "ignored-settings")
    assert result.status == "warn"
    assert "ipvs.scheduler: lc -> ignored in iptables mode" in result.evidence


def test_daemonset_flags_without_config_file():
    doc = drop_kind(api_doc(), "ConfigMap")
    for item in doc["items"]:
        if item["kind"] == "DaemonSet":
            item["spec"]["template"]["spec"]["containers"][0]["command"] = [
                "/usr/local/bin/kube-proxy", "--proxy-mode=iptables", "--conntrack-tcp-be-liberal=true",
                "--iptables-min-sync-period=5s"]
    f = facts.from_cluster(cluster(doc))
    assert f.mode == "iptables" and f.tcp_be_liberal is True
    assert f.iptables == {"minSyncPeriod": "5s"}


# ---------------------------------------------------------------------------------------- engine and plan


def test_verdicts():
    ok = result("a", "A", "cluster", "pass", "")
    fail = result("b", "B", "cluster", "fail", "")
    soft_unknown = result("c", "C", "cluster", "unknown", "")
    hard_unknown = result("d", "D", "cluster", "unknown", "", essential=True)
    assert verdict_of([ok, soft_unknown]) == "ready"
    assert verdict_of([ok, hard_unknown]) == "could not tell"
    assert verdict_of([hard_unknown, fail]) == "not ready"


def test_healthy_iptables_node_is_ready_with_plan():
    snap = snapshot("iptables/healthy")
    readiness = check_readiness("nftables", cluster(api_doc()), [snap])
    assert readiness.verdict == "ready" and readiness.exit_code == 0
    plan = readiness.plan
    assert plan.config[0].endswith("mode: nftables")
    assert any("nft delete table ip kube-proxy; nft delete table ip6 kube-proxy" in r for r in plan.rollback)
    assert any("set mode back to iptables" in r for r in plan.rollback)
    assert any("nftables_sync_failures_total" in w for w in plan.watch)
    doc = readiness.to_json()
    assert doc["verdict"] == "ready" and doc["counts"]["fail"] == 0


def test_third_party_rules_make_the_node_not_ready():
    readiness = check_readiness("nftables", cluster("iptables/third-party-rules"),
                                [snapshot("iptables/third-party-rules")])
    assert readiness.verdict == "not ready" and readiness.exit_code == 1
    assert readiness.results[0].scope == "cluster"
    assert [r.check for r in readiness.results if r.status == "fail"] == ["third-party-rules"]


def test_cluster_view_without_node_access():
    kernels = set_kernels(api_doc(), pdnode1="6.8.0-45-generic", pdnode2="5.10.0-28-amd64")
    readiness = check_readiness("nftables", cluster(kernels), [])
    assert readiness.verdict == "not ready"
    assert only(readiness.results, "kernel-version").scope == "cluster"
    assert any("node-level checks" in n for n in readiness.notes)
    unknown = check_readiness("nftables", cluster(api_doc()), [])  # Node objects report no kernel
    assert unknown.verdict == "could not tell" and unknown.exit_code == 3


def test_node_already_in_target_mode():
    readiness = check_readiness("nftables", cluster("nftables/healthy"), [snapshot("nftables/healthy")])
    node = [r for r in readiness.results if r.scope != "cluster"]
    # issue 16: the node already runs nftables: no READY + plan, but a check for the old mode's rules
    assert [(r.check, r.status) for r in node] == [("current-mode", "pass"), ("old-mode-leftovers", "pass")]
    assert readiness.verdict == "already" and readiness.exit_code == 0


def test_leaving_ipvs_for_iptables():
    readiness = check_readiness("iptables", cluster("ipvs/healthy"), [snapshot("ipvs/healthy")])
    assert readiness.verdict == "ready"
    assert only(readiness.results, "ipvs-scheduler").status == "pass"
    assert any("set mode back to ipvs" in r for r in readiness.plan.rollback)
    assert any("kube-ipvs0" in r for r in readiness.plan.rollout)


def test_plan_carries_required_config_changes():
    doc = edit_config(set_image(api_doc(), "registry.k8s.io/kube-proxy:v1.29.6"), featureGates={},
                      iptables__masqueradeAll=True)
    old = snapshot("iptables/healthy", {"kernel.txt": "5.15.0-105-generic\n"})
    readiness = check_readiness("nftables", cluster(doc), [old])
    assert readiness.verdict == "not ready"
    config_lines = "\n".join(readiness.plan.config)
    assert "featureGates: {NFTablesProxyMode: true}" in config_lines
    assert "nftables.masqueradeAll: True" in config_lines
    assert "conntrack.tcpBeLiberal: true" in config_lines


def test_unreadable_capture_file_becomes_unknown_not_a_traceback():
    snap = snapshot("iptables/healthy", {"nft-ruleset.json": "{ truncated"})
    readiness = check_readiness("nftables", cluster(api_doc()), [snap])
    firewall = only(readiness.results, "host-firewall")
    assert firewall.status == "unknown" and "nft-ruleset.json" in firewall.summary
