"""kube-proxy's configuration from its ConfigMap and DaemonSet (kubeproxy_config)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.collect.api import read_cluster
from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.kubeproxy_config import (
    from_cluster,
    image_version,
    parse_config_text,
    parse_flags,
    read_config,
    referenced_configmap,
)
from tests import api_fixtures

api_server = api_fixtures.api_server
kube_api = api_fixtures.kube_api

FIXTURES = Path(__file__).parent / "fixtures"


def _state(scenario: str) -> ClusterState:
    return ClusterState.from_json_text((FIXTURES / scenario / "api.json").read_text())


def daemonset(args: list[str], *, volumes: list[dict] | None = None, mounts: list[dict] | None = None,
              image: str = "registry.k8s.io/kube-proxy:v1.29.4") -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "spec": {"template": {"spec": {
            "containers": [{"name": "kube-proxy", "image": image, "command": ["/usr/local/bin/kube-proxy"],
                            "args": args, "volumeMounts": mounts or []}],
            "volumes": volumes or [],
        }}},
    }


def configmap(name: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "kube-system"},
            "data": data}


@pytest.mark.parametrize(("scenario", "mode"),
                         [("nftables/healthy", "nftables"), ("iptables/healthy", "iptables")])
def test_fixture_configmaps(scenario, mode):
    cfg = from_cluster(_state(scenario))
    assert cfg.found and cfg.problems == []
    assert cfg.mode == mode and cfg.effective_mode == mode
    assert cfg.evidence["mode"] == f"ConfigMap kube-system/kube-proxy config.conf mode: {mode}"
    assert cfg.config_file == "/var/lib/kube-proxy/config.conf"
    assert cfg.cluster_cidr == "10.244.0.0/16"
    assert cfg.node_port_addresses == []
    assert cfg.version == "v1.30.3"
    assert cfg.feature_gates == {"NFTablesProxyMode": True}
    effective = cfg.conntrack_effective()
    assert effective["maxPerCore"] == 0  # explicit 0: leave nf_conntrack_max alone
    assert effective["min"] == 131072 and effective["tcpEstablishedTimeout"] == "24h0m0s"
    assert cfg.masquerade_all is False
    # --hostname-override is the one flag kube-proxy still honours next to --config
    assert cfg.hostname_override == "$(NODE_NAME)"
    assert "flag --hostname-override" in cfg.evidence["hostname_override"]


def test_flags_without_config_file():
    ds = daemonset(["--proxy-mode=ipvs", "--cluster-cidr", "10.0.0.0/8",
                    "--nodeport-addresses=10.0.0.0/8,192.168.0.0/16", "--conntrack-max-per-core=0",
                    "--masquerade-all", "--ipvs-scheduler=lc", "--feature-gates=Foo=true,Bar=false", "--v=2"])
    cfg = read_config(daemonset=ds)
    assert cfg.mode == "ipvs" and cfg.cluster_cidr == "10.0.0.0/8"
    assert cfg.node_port_addresses == ["10.0.0.0/8", "192.168.0.0/16"]
    assert cfg.conntrack["maxPerCore"] == 0 and cfg.ipvs["scheduler"] == "lc"
    assert cfg.masquerade_all is True
    assert cfg.feature_gates == {"Foo": True, "Bar": False}
    assert cfg.evidence["mode"] == "DaemonSet kube-system/kube-proxy flag --proxy-mode=ipvs"
    assert cfg.evidence["cluster_cidr"] == "DaemonSet kube-system/kube-proxy flag --cluster-cidr=10.0.0.0/8"
    assert cfg.version == "v1.29.4" and cfg.config_file is None


def test_config_file_wins_over_flags_and_the_flags_are_reported():
    ds = daemonset(["--config=/var/lib/kube-proxy/config.conf", "--proxy-mode=ipvs"],
                   volumes=[{"name": "kp", "configMap": {"name": "kube-proxy"}}],
                   mounts=[{"name": "kp", "mountPath": "/var/lib/kube-proxy"}])
    cm = configmap("kube-proxy", {"config.conf": "kind: KubeProxyConfiguration\nmode: nftables\n"})
    cfg = read_config(daemonset=ds, configmaps=[cm])
    assert cfg.mode == "nftables"
    assert any("--proxy-mode" in p and "ignores" in p for p in cfg.problems)


def test_unset_mode_means_iptables():
    cm = configmap("kube-proxy", {"config.conf": "kind: KubeProxyConfiguration\nmode: \"\"\n"})
    cfg = read_config(configmaps=[cm])
    assert cfg.mode == "" and cfg.effective_mode == "iptables"
    assert read_config().evidence["mode"].startswith("default")
    assert read_config().found is False


def test_the_mounted_configmap_is_found_by_volume():
    ds = daemonset(["--config=/var/lib/kube-proxy-config/config", "--hostname-override=$(NODE_NAME)"],
                   volumes=[{"name": "config", "configMap": {"name": "kube-proxy-config"}}],
                   mounts=[{"name": "config", "mountPath": "/var/lib/kube-proxy-config/"}])
    assert referenced_configmap(ds) == ("kube-proxy-config", "config")
    decoy = configmap("kube-proxy", {"config.conf": "mode: iptables\n"})
    real = configmap("kube-proxy-config", {"config": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
                                                     "kind: KubeProxyConfiguration\nmode: ipvs\n"
                                                     "ipvs:\n  scheduler: rr\n"})
    cfg = read_config(daemonset=ds, configmaps=[decoy, real])
    assert cfg.mode == "ipvs" and cfg.ipvs == {"scheduler": "rr"}
    assert cfg.evidence["mode"] == "ConfigMap kube-system/kube-proxy-config config mode: ipvs"


def test_items_mapping_renames_the_key():
    ds = daemonset(["--config", "/etc/kp/kube-proxy.yaml"],
                   volumes=[{"name": "c", "configMap": {"name": "kp", "items": [
                       {"key": "cfg", "path": "kube-proxy.yaml"}]}}],
                   mounts=[{"name": "c", "mountPath": "/etc/kp"}])
    assert referenced_configmap(ds) == ("kp", "cfg")


def test_broken_configmap_is_a_problem_not_a_crash():
    ds = daemonset(["--config=/var/lib/kube-proxy/config.conf"],
                   volumes=[{"name": "kp", "configMap": {"name": "kube-proxy"}}],
                   mounts=[{"name": "kp", "mountPath": "/var/lib/kube-proxy"}])
    cm = configmap("kube-proxy", {"config.conf": "kind: KubeProxyConfiguration\nmode: [ipvs\n"})
    cfg = read_config(daemonset=ds, configmaps=[cm])
    assert cfg.mode == ""
    assert len(cfg.problems) == 1 and "not valid YAML" in cfg.problems[0]
    assert "kube-system/kube-proxy" in cfg.problems[0]


def test_parse_config_text_errors():
    with pytest.raises(ParseError) as e:
        parse_config_text("mode: iptables\nconntrack: [\n", "cm")
    assert e.value.line is not None and e.value.source == "cm"
    with pytest.raises(ParseError, match="expected KubeProxyConfiguration"):
        parse_config_text("kind: KubeletConfiguration\n")
    with pytest.raises(ParseError, match="mapping"):
        parse_config_text("- a\n- b\n")
    assert parse_config_text("") == {}


def test_configmap_without_config_flag_is_noted():
    ds = daemonset(["--proxy-mode=iptables"])
    cm = configmap("kube-proxy", {"config.conf": "kind: KubeProxyConfiguration\nmode: ipvs\n"})
    cfg = read_config(daemonset=ds, configmaps=[cm])
    assert cfg.mode == "iptables"
    assert any("does not pass --config" in p for p in cfg.problems)


def test_nftables_masquerade_all_is_its_own_setting():
    cm = configmap("kube-proxy", {"config.conf": "mode: nftables\niptables:\n  masqueradeAll: true\n"
                                                 "nftables:\n  masqueradeAll: false\n"})
    assert read_config(configmaps=[cm]).masquerade_all is False
    cm = configmap("kube-proxy", {"config.conf": "mode: iptables\niptables:\n  masqueradeAll: true\n"})
    assert read_config(configmaps=[cm]).masquerade_all is True


def test_flag_and_image_parsing():
    assert parse_flags(["kube-proxy", "--a=1", "--b", "2", "--masquerade-all", "--c"]) == {
        "a": "1", "b": "2", "masquerade-all": "true", "c": "true"}
    assert image_version("registry.k8s.io/kube-proxy:v1.30.3") == "v1.30.3"
    assert image_version("my.registry:5000/kube-proxy:v1.28.1-eksbuild.1@sha256:abc") == "v1.28.1-eksbuild.1"
    assert image_version("my.registry:5000/kube-proxy") == ""


def test_live_read_fetches_the_mounted_configmap(kube_api):
    ds = daemonset(["--config=/var/lib/kube-proxy-config/config"],
                   volumes=[{"name": "config", "configMap": {"name": "kube-proxy-config"}}],
                   mounts=[{"name": "config", "mountPath": "/var/lib/kube-proxy-config"}])
    cm = configmap("kube-proxy-config", {"config": "kind: KubeProxyConfiguration\nmode: ipvs\n"})
    objects = [o for o in json.loads((FIXTURES / "iptables/healthy/api.json").read_text())["items"]
               if o["kind"] not in ("ConfigMap", "DaemonSet")]
    api = kube_api([*copy.deepcopy(objects), ds, cm])
    state = read_cluster(kubeconfig=str(api.kubeconfig))
    assert state.sources["get configmaps/kube-system/kube-proxy"] == "ok (not found)"
    assert state.sources["get configmaps/kube-system/kube-proxy-config"] == "ok"
    assert from_cluster(state).mode == "ipvs"


def test_shell_wrapped_command_and_node_command_line():
    ds = daemonset([])
    ds["spec"]["template"]["spec"]["containers"][0]["command"] = [
        "/bin/sh", "-c", "exec kube-proxy --proxy-mode=ipvs --ipvs-scheduler='wrr' --v=2"]
    cfg = read_config(daemonset=ds)
    assert cfg.mode == "ipvs" and cfg.ipvs == {"scheduler": "wrr"}
    cfg = from_cluster(None, "/usr/local/bin/kube-proxy --proxy-mode nftables --cluster-cidr=10.0.0.0/8")
    assert cfg.mode == "nftables" and cfg.cluster_cidr == "10.0.0.0/8" and cfg.mode_known
    assert cfg.evidence["mode"] == "node command line flag --proxy-mode=nftables"
    assert from_cluster(None, 42).found is False  # meta.json junk is ignored


def test_an_unread_config_file_leaves_the_mode_unknown():
    cfg = from_cluster(None, "kube-proxy --config=/var/lib/kube-proxy/config.conf --proxy-mode=ipvs")
    assert cfg.found and not cfg.mode_known  # the flag is ignored by kube-proxy, the file is not here
    assert any("ConfigMap kube-system/kube-proxy was not read" in p for p in cfg.problems)
    cm = configmap("kube-proxy", {"config.conf": "kind: KubeProxyConfiguration\nmode: nftables\n"})
    state = ClusterState.from_list({"kind": "List", "items": [cm]})
    cfg = from_cluster(state, "kube-proxy --config=/var/lib/kube-proxy/config.conf")
    assert cfg.mode_known and cfg.mode == "nftables"


def test_config_file_mounted_with_subpath_and_odd_command_lines():
    ds = daemonset(["--config=/etc/kube-proxy/kube-proxy.yaml"],
                   volumes=[{"name": "c", "configMap": {"name": "kp-config"}}],
                   mounts=[{"name": "c", "mountPath": "/etc/kube-proxy/kube-proxy.yaml",
                            "subPath": "kubeproxy.conf"}])
    assert referenced_configmap(ds) == ("kp-config", "kubeproxy.conf")
    assert from_cluster(None, "kube-proxy --proxy-mode='ipvs").mode == "'ipvs"  # kept, not a crash
